"""The type of the ``run`` fixture (tests/conftest.py), for annotating tests that invoke the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from typer.testing import Result


class Run(Protocol):
    """Invoke the CLI in-process: ``run("status", "--json")`` → Result (stdout/stderr apart).

    ``env`` sets variables for this run only; a ``None`` value unsets one.
    """

    def __call__(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result: ...
