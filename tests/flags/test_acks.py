"""The wait for workers' acknowledgements against a real Redis: who is waited for, and when it ends."""

from __future__ import annotations

import threading
import time

import redis

from tests.conftest import set_flag
from thorcut.flags.acks import AckWait, wait_for_acks
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore, Outcome
from thorcut.redisconn import Keys


def _register(client: redis.Redis, keys: Keys, *workers: str, ttl: float = 60) -> None:
    client.zadd(keys.workers, {w: time.time() + ttl for w in workers})


def _ack(client: redis.Redis, keys: Keys, outcome: Outcome, *workers: str) -> None:
    client.hset(keys.ack(outcome.after.feature, outcome.after.version), mapping={w: repr(time.time()) for w in workers})


def _shadow(store: FlagStore) -> Outcome:
    outcome = store.change("positions", Stage.SHADOW, reason="test")
    assert outcome.changed
    return outcome


def test_every_worker_acked_ends_the_wait_at_once(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    _register(client, keys, "w0", "w1")
    outcome = _shadow(store)
    _ack(client, keys, outcome, "w0", "w1")
    started = time.monotonic()
    result = wait_for_acks(store, outcome, 5)
    assert time.monotonic() - started < 1
    assert (result.feature, result.version) == ("positions", 1)
    assert sorted(result.workers) == ["w0", "w1"]
    assert result.missing == []
    assert result.skipped is None
    assert result.ms is not None
    assert result.ack_ms is not None
    assert sorted(result.ack_ms) == ["w0", "w1"]


def test_the_wait_polls_until_a_late_ack_arrives(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    _register(client, keys, "w0", "late")
    outcome = _shadow(store)
    _ack(client, keys, outcome, "w0")
    timer = threading.Timer(0.15, _ack, (client, keys, outcome, "late"))
    timer.start()
    try:
        result = wait_for_acks(store, outcome, 5)
    finally:
        timer.join()
    assert result.missing == []
    assert result.ms is not None
    assert 100 <= result.ms < 5000
    assert result.ack_ms is not None
    assert result.ack_ms["late"] > result.ack_ms["w0"]


def test_a_worker_that_never_acks_is_missing_at_the_deadline(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    _register(client, keys, "w0", "ghost")
    outcome = _shadow(store)
    _ack(client, keys, outcome, "w0")
    started = time.monotonic()
    result = wait_for_acks(store, outcome, 0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert sorted(result.workers) == ["ghost", "w0"]
    assert result.missing == ["ghost"]
    assert result.ms is None
    assert result.ack_ms is None
    assert result.skipped is None


def test_a_worker_that_leaves_meanwhile_is_not_waited_for(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    _register(client, keys, "w0")
    _register(client, keys, "leaving", ttl=0.1)  # its registration lapses during the wait
    outcome = _shadow(store)
    _ack(client, keys, outcome, "w0")
    result = wait_for_acks(store, outcome, 0.4)
    assert sorted(result.workers) == ["leaving", "w0"]
    assert result.missing == []
    assert result.ms is not None
    assert result.ack_ms is None  # not every worker acknowledged: no per-worker times


def test_no_registered_worker_is_skipped(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    _register(client, keys, "lapsed", ttl=-1)
    outcome = _shadow(store)
    started = time.monotonic()
    result = wait_for_acks(store, outcome, 5)
    assert time.monotonic() - started < 1
    assert result == AckWait("positions", 1, skipped="no_workers")


def test_a_dry_run_or_a_change_that_changed_nothing_is_skipped_even_with_workers(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    _register(client, keys, "w0")
    dry = store.change("positions", Stage.SHADOW, dry_run=True)
    assert wait_for_acks(store, dry, 5) == AckWait("positions", 1, skipped="dry_run")
    set_flag(client, keys, "intraday", "shadow", 3)
    same = store.change("intraday", Stage.SHADOW)
    assert not same.changed
    started = time.monotonic()
    assert wait_for_acks(store, same, 5) == AckWait("intraday", 3, skipped="unchanged")
    assert time.monotonic() - started < 1


def test_to_dict_is_the_json_shape_of_wait() -> None:
    skipped = AckWait("positions", 1, skipped="unchanged").to_dict()
    assert skipped == {"feature": "positions", "version": 1, "workers": [], "missing": [], "ms": None,
                       "skipped": "unchanged"}  # fmt: skip
    assert list(skipped) == ["feature", "version", "workers", "missing", "ms", "skipped"]
    done = AckWait("positions", 2, ["w0"], ms=1.5, ack_ms={"w0": -0.25}).to_dict()
    assert done == {"feature": "positions", "version": 2, "workers": ["w0"], "missing": [], "ms": 1.5,
                    "skipped": None, "ack_ms": {"w0": -0.25}}  # fmt: skip
