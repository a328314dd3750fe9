"""The backend fixtures live in ``tests/backend_fixtures.py`` (a plugin of the root conftest)."""

from tests.backend_fixtures import BACKEND, Server, start_server

__all__ = ["BACKEND", "Server", "start_server"]
