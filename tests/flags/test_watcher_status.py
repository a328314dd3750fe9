"""The watcher's status listeners: told when Redis is lost and regained, and when a reset begins and ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from tests.conftest import start_redis
from tests.flags.test_watcher import _until
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.flags.watcher import FlagWatcher, StoreReset
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect


class Heard:
    def __init__(self) -> None:
        self.calls: list[tuple[bool, StoreReset | None]] = []
        self.lock = threading.Lock()

    def __call__(self, connected: bool, reset: StoreReset | None) -> None:
        with self.lock:
            self.calls.append((connected, reset))

    def connections(self) -> list[bool]:
        with self.lock:
            return [c for c, _ in self.calls]


def _watcher(url: str, prefix: str) -> FlagWatcher:
    return FlagWatcher(lambda: connect(url, 0.5, check=False), Keys(prefix), DEFAULT_MANIFEST.names, register=False)


def test_status_listeners_hear_redis_lost_and_regained(tmp_path: Path) -> None:
    server = start_redis(tmp_path, save=True)
    heard = Heard()
    w = _watcher(server.url, "status")
    w.add_status_listener(heard)
    w.start(wait=5)
    try:
        assert _until(lambda: heard.connections() == [True])
        assert heard.calls == [(True, None)]
        server.stop()
        assert _until(lambda: heard.connections() == [True, False])
        assert not w.connected
        time.sleep(0.3)  # failed reconnects meanwhile are no news
        assert heard.connections() == [True, False]
        server = EmbeddedRedis(server.binary, server.port, tmp_path).start(save=True)
        assert _until(lambda: heard.connections() == [True, False, True], timeout=10)
        assert heard.calls[-1] == (True, None)
    finally:
        w.stop()
        server.stop()


def test_a_first_attempt_that_fails_is_no_news() -> None:
    heard = Heard()
    w = _watcher(f"redis://127.0.0.1:{free_port()}/0", "never")
    w.add_status_listener(heard)
    w.start()
    try:
        time.sleep(0.2)  # a few attempts
        assert heard.calls == []
    finally:
        w.stop()


def test_status_listeners_hear_a_reset_begin_and_end(
    redis_server: EmbeddedRedis, store: FlagStore, client: redis.Redis, prefix: str
) -> None:
    store.change("positions", Stage.SHADOW)
    heard = Heard()
    w = _watcher(redis_server.url, prefix)
    w.add_status_listener(heard)

    def broken(connected: bool, reset: StoreReset | None) -> None:
        raise RuntimeError("a listener's bug")

    w.add_status_listener(broken)  # must not stop the others, nor flag updates
    w.start(wait=5)
    try:
        assert _until(lambda: heard.calls == [(True, None)])
        for key in client.scan_iter(match=f"{{{prefix}}}*"):
            client.delete(key)  # Redis lost the store
        store.change("intraday", Stage.SHADOW)  # a new epoch's first change: the watcher reads again
        assert _until(lambda: len(heard.calls) == 2)
        connected, reset = heard.calls[1]
        assert connected
        assert reset is not None
        assert reset.kept == ("positions",)
        assert w.stage("intraday") is Stage.SHADOW
        store.change("positions", Stage.SHADOW)  # set in the new epoch too: nothing kept, no flag changed
        assert _until(lambda: len(heard.calls) == 3)
        assert heard.calls[2] == (True, None)
        assert w.reset is None
    finally:
        w.stop()
