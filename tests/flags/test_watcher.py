"""The watcher: live updates across processes, acks, outage behaviour, resync after restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import set_flag, start_redis
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.flags.watcher import FlagWatcher
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect

WATCHER_SCRIPT = """
import sys, time
from thorcut.flags.watcher import FlagWatcher
from thorcut.redisconn import Keys, connect
from thorcut.manifest import DEFAULT_MANIFEST
url, prefix = sys.argv[1], sys.argv[2]
def seen(feature, flag):
    print(f"{flag.state.version} {flag.stage.value} {time.monotonic_ns()}", flush=True)
w = FlagWatcher(lambda: connect(url, 2, check=False), Keys(prefix), DEFAULT_MANIFEST.names, on_change=seen)
w.start(wait=5)
print("ready", flush=True)
sys.stdin.readline()
w.stop()
"""


def _watcher(url: str, prefix: str, **kw: object) -> FlagWatcher:
    return FlagWatcher(lambda: connect(url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names, **kw)  # type: ignore[arg-type]


def _until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_watcher_in_another_process_sees_each_change_within_50ms(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", WATCHER_SCRIPT, redis_server.url, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        for i in range(10):
            target = Stage.SHADOW if i % 2 == 0 else Stage.OFF
            start = time.monotonic_ns()
            store.change("positions", target)
            version, stage, seen_at = proc.stdout.readline().split()
            assert (int(version), stage) == (i + 1, target.value)
            assert (int(seen_at) - start) / 1e6 < 50, f"change {i + 1} took {(int(seen_at) - start) / 1e6:.1f} ms"
        proc.stdin.close()
        assert proc.wait(5) == 0


def test_watcher_acknowledges_versions_and_registers_as_worker(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str
) -> None:
    with _watcher(redis_server.url, prefix, worker_id="w-1") as w:
        assert _until(lambda: w.synced)
        assert store.live_workers() == ["w-1"]
        store.change("intraday", Stage.SHADOW)
        assert _until(lambda: "w-1" in store.acks("intraday", 1))
        assert w.get("intraday").stage is Stage.SHADOW
    assert store.live_workers() == []  # deregistered on stop


def test_reads_need_no_io_and_apply_env_overrides(redis_server: EmbeddedRedis, store: FlagStore, prefix: str) -> None:
    store.change("positions", Stage.SHADOW)
    env = {"WS_FEATURE_ACCOUNT_BALANCE": "true", "WS_FEATURE_POSITIONS": "false", "WS_FEATURE_INTRADAY": "maybe"}
    with _watcher(redis_server.url, prefix, env=env, worker_id="w-env") as w:
        assert _until(lambda: w.synced)
        assert w.stage("account_balance") is Stage.LIVE
        assert w.get("account_balance").percent == 100
        assert w.stage("positions") is Stage.OFF  # the override wins over Redis's shadow
        assert w.get("positions").state.stage is Stage.SHADOW
        assert w.stage("intraday") is Stage.OFF  # an unrecognised value is ignored
        assert json.loads(store.client.hget(Keys(prefix).overrides, "w-env")) == {
            "account_balance": "live",
            "positions": "off",
        }
        assert store.worker_overrides() == {"w-env": {"account_balance": "live", "positions": "off"}}


def test_process_that_never_read_sees_every_feature_off() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    w = _watcher(dead, "never").start()
    try:
        time.sleep(0.2)
        assert not w.synced
        assert not w.connected
        assert all(w.stage(f) is Stage.OFF for f in DEFAULT_MANIFEST.names)
    finally:
        w.stop()


@pytest.mark.slow
def test_watcher_keeps_last_stages_through_outage_and_resyncs_after_restart(tmp_path: Path) -> None:
    server = start_redis(tmp_path, save=True)
    port = server.port
    client = redis.Redis(port=port, decode_responses=True)
    keys = Keys("outage")
    store = FlagStore(client, keys, DEFAULT_MANIFEST.names)
    store.change("positions", Stage.SHADOW)
    w = _watcher(server.url, "outage").start(wait=5)
    try:
        assert w.synced
        assert w.stage("positions") is Stage.SHADOW
        # Written straight to Redis with no notification: only a resync can reveal it.
        set_flag(client, keys, "global_market", "shadow", 3)
        client.save()
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(5)
        assert _until(lambda: not w.connected)
        assert w.stage("positions") is Stage.SHADOW  # last known stage kept
        assert w.stage("global_market") is Stage.OFF
        resyncs = w.resyncs
        server = EmbeddedRedis(server.binary, port, tmp_path).start(save=True)
        assert _until(lambda: w.connected and w.resyncs > resyncs, timeout=10)
        assert w.stage("global_market") is Stage.SHADOW
        client = redis.Redis(port=port, decode_responses=True)
        FlagStore(client, keys, DEFAULT_MANIFEST.names).change("positions", Stage.OFF)
        assert _until(lambda: w.stage("positions") is Stage.OFF)
    finally:
        w.stop()
        server.stop()


def test_each_version_is_notified_once_even_across_a_resync(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str
) -> None:
    seen: list[tuple[str, int]] = []
    with _watcher(redis_server.url, prefix, on_change=lambda f, flag: seen.append((f, flag.state.version))) as w:
        assert _until(lambda: w.synced)
        store.change("positions", Stage.SHADOW, reason="r")
        assert _until(lambda: seen == [("positions", 1)])
        w._resync(store.client)  # what a reconnect does
        assert w.get("positions").state.reason == "r"  # the resync filled in the details
    assert seen == [("positions", 1)]


def test_listeners_added_later_hear_changes_and_snapshot_is_a_copy(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str
) -> None:
    heard: list[str] = []
    with _watcher(redis_server.url, prefix, register=False) as w:
        assert _until(lambda: w.synced)
        w.add_listener(lambda f, flag: heard.append(f"{f}:{flag.stage.value}"))
        before = w.snapshot()
        store.change("global_market", Stage.SHADOW)
        assert _until(lambda: heard == ["global_market:shadow"])
        assert before["global_market"].stage is Stage.OFF
        assert w.snapshot()["global_market"].stage is Stage.SHADOW
    assert store.live_workers() == []  # register=False never registered


def test_a_pubsub_connection_its_client_remade_by_itself_ends_in_a_resync(
    redis_server: EmbeddedRedis, client: redis.Redis, prefix: str
) -> None:
    """A client whose connections retry re-subscribes inside get_message (through Sentinel, on the new
    primary after a failover); what was published meanwhile never comes, so the watcher reads again."""
    name = f"watcher-{prefix}"

    def retrying() -> redis.Redis:
        return redis.Redis.from_url(redis_server.url, retry=Retry(NoBackoff(), 3), socket_timeout=1,
                                    decode_responses=True, client_name=name)  # fmt: skip

    keys = Keys(prefix)
    with FlagWatcher(retrying, keys, DEFAULT_MANIFEST.names, register=False) as w:
        assert _until(lambda: w.synced)
        resyncs = w.resyncs
        # Written straight to Redis with no notification: only a resync can reveal it.
        set_flag(client, keys, "global_market", "shadow", 3)
        (pubsub,) = [c for c in client.client_list(_type="pubsub") if c["name"] == name]
        client.client_kill_filter(_id=pubsub["id"])
        assert _until(lambda: w.stage("global_market") is Stage.SHADOW)
        assert w.resyncs > resyncs
