"""Backend fixtures: Django on a SQLite file (or DATABASE_URL), the session's real Redis, real servers.

A plugin of the root conftest, so every test folder (backend, commands, parity) shares one
session database and one Django set-up.

``thor_env`` configures this test process (and the environment for child servers) once per
session. ``thor_server`` runs the real ASGI app under uvicorn on a free port in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from thorcut.dev.stack import EmbeddedRedis, free_port

BACKEND = Path(__file__).resolve().parents[1] / "backend"


def _postgres_database() -> Iterator[str]:
    """Create a throwaway PostgreSQL database (THOR_TEST_POSTGRES=postgres://… of the server) and drop it."""
    import psycopg

    server = os.environ["THOR_TEST_POSTGRES"]
    name = f"thor_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"THOR_TEST_POSTGRES is set but PostgreSQL at {server} is unreachable: {exc}")
    base = server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite in a temporary folder, or a fresh PostgreSQL database when THOR_TEST_POSTGRES is set."""
    if os.environ.get("THOR_TEST_POSTGRES"):
        yield from _postgres_database()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('thor') / 'thor.sqlite3'}"


@pytest.fixture(scope="session")
def thor_env(redis_server: EmbeddedRedis, database_url: str) -> dict[str, str]:
    """Environment shared by this process and every child server: DB, Redis, a fresh prefix."""
    env = {
        "DJANGO_SETTINGS_MODULE": "thor_project.settings",
        "THORCUT_REDIS_URL": redis_server.url,
        "THORCUT_PREFIX": f"thor{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": database_url,
        "THOR_TICK": "0.05",
        "THOR_SEED": "7",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BACKEND), os.environ.get("PYTHONPATH", "")])),
    }
    os.environ.update(env)
    if str(BACKEND) not in sys.path:
        sys.path.insert(0, str(BACKEND))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return env


@pytest.fixture(scope="session")
def demo_users(thor_env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Two users, each with one account and an API token: ``demo`` (DU1234) and ``other`` (DU5678)."""
    from thor_trading.users import ensure_user

    return {
        "demo": ensure_user("demo", "demo-pass", "DU1234", token_name="tests"),
        "other": ensure_user("other", "other-pass", "DU5678", token_name="tests"),
    }


@dataclass
class Server:
    url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_server(env: dict[str, str], log: Path, *, extra_env: dict[str, str] | None = None,
                 args: list[str] | None = None, port: int | None = None) -> Server:  # fmt: skip
    """Start uvicorn with the Thor ASGI app on ``port`` (default: a free one) and wait for /api/health."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--ws", "websockets", "--lifespan", "off", *(args or [])]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=BACKEND, env={**os.environ, **env, **(extra_env or {})}, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/stream/", proc, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{server.url}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def thor_server(thor_env: dict[str, str], demo_users: object, tmp_path: Path) -> Iterator[Server]:
    server = start_server(thor_env, tmp_path / "uvicorn.log")
    yield server
    server.stop()
