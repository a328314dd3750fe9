"""The backend through Redis Sentinel (issue 13): configured from a Sentinel URL, and through a failover.

Real servers only: a Sentinel deployment on loopback (``tests/sentinel.py``: a primary, a replica,
three Sentinels), ``manage.py run_jobs`` and uvicorn, real WebSocket clients, thorcut's own
``FlagStore`` for the stage changes. The failover test kills the primary with SIGKILL and checks
that everything comes back on the replica the Sentinels promote, with nothing silently stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.backend.test_heartbeat import _path
from tests.backend.test_resume import Client, Msg, Stream, check_order, collect, db_seqs, until_true
from tests.backend.test_ws_integration import open_ws
from tests.backend_fixtures import BACKEND, Server, start_server, stop_process
from tests.sentinel import Deployment, sentinel_deployment
from thorcut.errors import ConfigError
from thorcut.flags import connect
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys
from thorcut.redisurl import SENTINEL_TIMEOUT

SENTINEL_URL = "redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/thor/2?sentinel_password=spw"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
CORE = "channels_redis.core.RedisChannelLayer"


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """A fresh copy of ``thor_project/settings.py`` run under ``env`` (Django's own copy is untouched)."""
    for name in ("THORCUT_REDIS_URL", "THOR_CHANNEL_REDIS_URL", "THOR_CHANNEL_LAYER", "THORCUT_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("settings_under_test", BACKEND / "thor_project" / "settings.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the settings --------------------------------------------------------------------------------


def test_a_sentinel_url_gives_the_pubsub_layer_the_sentinels_service_and_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = load_settings(monkeypatch, THORCUT_REDIS_URL=SENTINEL_URL, THORCUT_PREFIX="acme")
    layer = s.CHANNEL_LAYERS["default"]
    assert layer["BACKEND"] == PUBSUB  # the default, and the one for Sentinel (the module's docstring)
    assert layer["CONFIG"]["prefix"] == "acme.thor"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["master_name"] == "thor"
    assert host["sentinels"] == [["127.0.0.1", 26379], ["127.0.0.1", 26380]]
    assert (host["db"], host["password"]) == (2, "s3cret")
    # The Sentinels' own password, and every query to one of them bounded.
    kw = {k: v for k, v in host["sentinel_kwargs"].items() if k != "retry"}
    assert kw == {"password": "spw", "socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT}
    assert host["sentinel_kwargs"]["retry"].get_retries() == 0
    assert s.CHANNEL_REDIS_URL == SENTINEL_URL  # the flags' Redis, unless told otherwise


def test_the_core_layer_when_chosen_gets_the_same_sentinel_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(monkeypatch, THORCUT_REDIS_URL=SENTINEL_URL, THOR_CHANNEL_LAYER="core")
    assert s.CHANNEL_LAYERS["default"]["BACKEND"] == CORE
    (host,) = s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert (host["master_name"], host["db"]) == ("thor", 2)


def test_the_channel_layer_may_have_a_sentinel_url_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(monkeypatch, THORCUT_REDIS_URL="redis://127.0.0.1:7000/0",
                      THOR_CHANNEL_REDIS_URL="redis+sentinel://10.0.0.1:26379/layer")  # fmt: skip
    (host,) = s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert (host["master_name"], host["sentinels"], host["db"]) == ("layer", [["10.0.0.1", 26379]], 0)
    assert s.THORCUT_REDIS_URL == "redis://127.0.0.1:7000/0"


def test_a_plain_url_gives_the_layer_the_url_without_thorcut_s_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(monkeypatch, THORCUT_REDIS_URL="redis://127.0.0.1:7000/3?wait_replicas=1")
    assert s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] == ["redis://127.0.0.1:7000/3"]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"THORCUT_REDIS_URL": "redis+sentinel://127.0.0.1:26379"}, "THORCUT_REDIS_URL: it must name the service"),
        ({"THOR_CHANNEL_REDIS_URL": "redis+sentinel://h/thor"}, "THOR_CHANNEL_REDIS_URL: each Sentinel must be"),
    ],
)
def test_a_bad_redis_url_stops_the_settings_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(monkeypatch, **env)


# -- every client the backend makes, against real Sentinels ----------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with sentinel_deployment(tmp_path_factory.mktemp("sentinel")) as d:
        yield d


def test_the_broadcaster_the_layer_and_the_history_reach_the_primary_through_the_sentinels(
    thor_env: dict[str, str], deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from global_markets.groups import event, group_for
    from global_markets.services.stream_history import history_key
    from global_markets.services.websocket_broadcast import Broadcaster, close_sentinels, layer_from_config

    url = deployment.url()
    config = load_settings(monkeypatch, THORCUT_REDIS_URL=url).CHANNEL_LAYERS["default"]
    key = f"S{uuid.uuid4().hex[:6]}"
    message = {"type": "vwap", "feature": "intraday", "key": key, "seq": 1, "ts": "2026-01-01T00:00:00.000Z",
               "data": {"symbol": key, "vwap": 1.5, "cum_volume": 1}}  # fmt: skip

    async def scenario() -> dict[str, Any]:
        layer = layer_from_config(config)  # a worker's layer: no socket timeouts
        try:
            channel = await layer.new_channel()
            await layer.group_add(group_for(message), channel)
            # Its own pools, Sentinels included, are closed when it stops: no socket left open.
            with Broadcaster(lambda: layer_from_config(config, socket_timeout=0.5), history_url=url) as b:
                assert b.submit(message)
                got: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 5)
                assert await asyncio.to_thread(b.flush, 5)
                assert b.stats()["history_written"] == 1
            return got
        finally:
            await close_sentinels(layer)
            await layer.flush()

    got = asyncio.run(scenario())
    assert got["text"] == event(message)["text"]
    with contextlib.closing(deployment.node(deployment.primary_port()).client()) as primary:
        assert primary.zrange(history_key("vwap", key), 0, -1) == [event(message)["text"]]


def test_the_leader_lock_is_taken_on_the_primary_through_the_sentinels(
    thor_env: dict[str, str], deployment: Deployment
) -> None:
    from thor_runner.leader import LeaderLock, leader_key, lock_client

    key = leader_key(f"t{uuid.uuid4().hex[:8]}")
    client = lock_client(deployment.url(), 3.0)
    try:
        lock = LeaderLock(client, key, 3.0)
        assert lock.acquire()
        with contextlib.closing(deployment.node(deployment.primary_port()).client()) as primary:
            assert primary.get(key) == lock.token
        assert lock.release()
    finally:
        client.close()


# -- a failover under the whole stack --------------------------------------------------------------

TICK = 0.1


def flag_seen(frames: list[tuple[float, str, Msg]], feature: str, stage: Stage, version: int) -> bool:
    """Whether the client got a ``flags`` message with ``feature`` at ``stage`` and ``version``."""
    return any(m.get("type") == "flags" and m["features"][feature]["stage"] == stage.value
               and m["features"][feature]["version"] == version for _, _, m in frames)  # fmt: skip


def last_seqs(frames: list[tuple[float, str, Msg]]) -> dict[Stream, int]:
    out: dict[Stream, int] = {}
    for _, _, m in frames:
        if m.get("feature"):
            out[m["type"], m["key"]] = m["seq"]
    return out


def change(url: str, prefix: str, feature: str, to: Stage, *, replicas: int) -> int:
    """``thorcut``'s way: a FlagStore on a fresh connection to ``url``; returns the new version."""
    client = connect(url, 2.0)
    try:
        store = FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names, operator="tests", wait_replicas=replicas)
        return store.change(feature, to, force=True, reason="sentinel failover test").after.version
    finally:
        client.close()


def start_runner(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env})  # fmt: skip


@pytest.mark.slow
def test_a_primary_killed_under_the_whole_stack_is_survived_with_nothing_silently_stale(
    thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    tokens = [demo_users["demo"]["token"], demo_users["other"]["token"]]
    prefix = f"snt{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as cleanup:
        d = cleanup.enter_context(sentinel_deployment(tmp_path / "sentinel"))
        url = d.url()
        for feature in DEFAULT_MANIFEST.names:  # every feature broadcasts
            for step in _path(Stage.OFF, Stage.SHADOW):
                change(url, prefix, feature, step, replicas=1)  # on the replica too: it outlives the primary
        env = {**thor_env, "THORCUT_PREFIX": prefix, "THORCUT_REDIS_URL": url, "THOR_CHANNEL_REDIS_URL": url,
               "THOR_TICK": str(TICK), "THOR_LOG_LEVEL": "INFO"}  # fmt: skip
        runner = start_runner(env, tmp_path / "runner.log")
        cleanup.callback(stop_process, runner)
        # Two ASGI worker processes (as uvicorn --workers 2 would run, but each surely with a client).
        servers = []
        for name in ("uvicorn-a.log", "uvicorn-b.log"):
            servers.append(start_server(env, tmp_path / name, extra_env=env))
            cleanup.callback(servers[-1].stop)
        try:
            asyncio.run(asyncio.wait_for(_failover(d, servers, runner, prefix, tokens), 60))
        except BaseException:
            for log in ("runner.log", "uvicorn-a.log", "uvicorn-b.log"):
                print(f"--- {log}\n{(tmp_path / log).read_text(errors='replace')[-6000:]}")
            raise


async def _failover(d: Deployment, servers: list[Server], runner: subprocess.Popen[bytes], prefix: str,
                    tokens: list[str]) -> None:  # fmt: skip
    """One client of ``tokens`` on each of ``servers``, through a failover."""
    url = d.url()
    sockets = [await open_ws(server, token) for server, token in zip(servers, tokens, strict=True)]
    frames: list[list[tuple[float, str, Msg]]] = [[] for _ in sockets]
    readers = [asyncio.create_task(collect(ws, f)) for ws, f in zip(sockets, frames, strict=True)]
    try:
        # Before: every stream of each client flows, and a stage change reaches every worker.
        for f in frames:
            await until_true(lambda f=f: len(last_seqs(f)) >= 21, 20)
        followed = [set(last_seqs(f)) for f in frames]
        version = await asyncio.to_thread(change, url, prefix, "positions", Stage.LIVE, replicas=1)
        for f in frames:
            await until_true(lambda f=f: flag_seen(f, "positions", Stage.LIVE, version), 10)

        old = await asyncio.to_thread(d.kill_primary)
        killed = time.monotonic()
        new = await asyncio.to_thread(d.wait_failover, old)
        promoted = time.monotonic()
        print(f"\nthe replica on {new} was promoted {promoted - killed:.1f} s after the kill")

        # After: every stream each client followed reaches the database's state as of now.
        target = await asyncio.to_thread(db_seqs)
        for f, streams in zip(frames, followed, strict=True):
            await until_true(lambda f=f, streams=streams: all(last_seqs(f).get(st, -1) >= target[st]
                                                              for st in streams), 20)  # fmt: skip
        print(f"every client current again {time.monotonic() - promoted:.1f} s after the promotion")
        for f in frames:
            assert not any(m.get("type") == "closed" for _, _, m in f)  # the same clients, never dropped
            heals = [m for t, _, m in f if m.get("type") == "resumed" and t >= killed]
            assert heals, "a client was never healed"
            assert all(m.get("healed") is True for m in heals), heals
            resyncs = check_order(f)  # seq only goes up per stream; every jump is marked resync
            assert resyncs > 0  # messages were lost in the failover: the jumps came marked

        # The job runner leads on the new primary (the lock key holds its token there).
        with contextlib.closing(d.node(new).client()) as primary:
            holder = primary.get(f"{Keys(prefix).base}:thor:leader")
        assert isinstance(holder, str)
        assert holder.startswith(f"{socket.gethostname()}:{runner.pid}:"), holder
        assert runner.poll() is None

        # A stage change after the failover reaches every worker (no replica is left to wait for).
        version = await asyncio.to_thread(change, url, prefix, "account_balance", Stage.LIVE, replicas=0)
        for f in frames:
            await until_true(lambda f=f: flag_seen(f, "account_balance", Stage.LIVE, version), 10)

        # The history on the new primary replays what was pushed since the failover, as pushed.
        first = frames[0]
        healed = max(t for t, _, m in first if m.get("type") == "resumed")

        def pushed_since_healed() -> dict[Stream, dict[int, str]]:
            out: dict[Stream, dict[int, str]] = {}
            for t, raw, m in first:
                if t > healed and m.get("feature") and "resync" not in m:
                    out.setdefault((m["type"], m["key"]), {})[m["seq"]] = raw
            return out

        await until_true(lambda: any(len(seqs) >= 4 for seqs in pushed_since_healed().values()), 10)
        stream, pushed = max(pushed_since_healed().items(), key=lambda item: len(item[1]))
        seqs = sorted(pushed)
        other = Client(await open_ws(servers[1], tokens[0]))
        try:
            replies, resumed = await other.resume({stream: seqs[-4]})
        finally:
            await other.close()
        replayed = [(m["seq"], raw) for raw, m in replies if (m.get("type"), m.get("key")) == stream]
        assert replayed, replies
        assert all("resync" not in json.loads(raw) for _, raw in replayed), replayed
        assert [raw for s, raw in replayed if s <= seqs[-1]] == [pushed[s] for s in seqs[-3:]]
        assert resumed["replayed"] >= 3
        for f in frames:
            check_order(f)  # and still, up to the end
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for ws in sockets:
            await ws.close()


def test_no_primary_known_yet_is_an_outage_to_the_backend(thor_env: dict[str, str]) -> None:
    """What a failover raises while the Sentinels name no primary is a connection error, so the hub,
    the consumer and the log folding treat it as an outage, not a bug."""
    import redis.asyncio.sentinel
    import redis.sentinel

    from global_markets.services.redis_health import CONNECTION_ERRORS

    assert issubclass(redis.asyncio.sentinel.MasterNotFoundError, CONNECTION_ERRORS)
    assert issubclass(redis.sentinel.MasterNotFoundError, CONNECTION_ERRORS)
