"""Issue 10: a store Redis lost or replaced is detected, never silently taken as the truth."""

from __future__ import annotations

import pytest
import redis

from tests.flags.test_watcher import _until
from tests.redis_snapshot import snapshot, wipe
from thorcut.dev.stack import EmbeddedRedis
from thorcut.errors import StaleVersion, StoreWasReset
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.flags.watcher import FlagWatcher, StoreReset
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect


def _to_complete(store: FlagStore, feature: str) -> None:
    store.change(feature, Stage.SHADOW)
    store.change(feature, Stage.LIVE, force=True, reason="test")
    store.change(feature, Stage.COMPLETE)


def test_first_change_writes_meta_and_a_genesis_entry(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    assert not client.exists(keys.meta)
    store.change("positions", Stage.SHADOW)
    meta = client.hgetall(keys.meta)
    assert set(meta) == {"epoch", "created_at"}
    (entry,) = store.history()
    assert (entry.fields["epoch"], entry.fields["prev_hash"]) == (meta["epoch"], "")
    store.change("positions", Stage.OFF)
    assert client.hget(keys.meta, "epoch") == meta["epoch"]  # written once
    assert store.verify().ok


def test_change_on_a_reset_store_is_refused_and_writes_nothing(
    store: FlagStore, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    store.change("positions", Stage.SHADOW)
    client.delete(keys.meta)  # Redis kept the flags but lost meta: replaced data
    before = snapshot(client, prefix)
    with pytest.raises(StoreWasReset, match=r"no \{t\w+\}:meta.*--force --reason"):
        store.change("intraday", Stage.SHADOW)
    with pytest.raises(StoreWasReset, match="--expect-version 1 cannot be checked across a reset"):
        store.change("positions", Stage.OFF, expect_version=1, force=True, reason="x")
    assert snapshot(client, prefix) == before


def test_forced_change_on_a_reset_store_starts_a_new_epoch_and_records_the_reset(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    store.change("positions", Stage.SHADOW)
    client.delete(keys.meta)
    outcome = store.change("intraday", Stage.SHADOW, force=True, reason="redis lost meta at 14:02")
    assert outcome.forced
    assert outcome.reset is not None
    epoch = client.hget(keys.meta, "epoch")
    newest = store.history(limit=1)[0]
    assert newest.fields["epoch"] == epoch
    assert "no" in newest.fields["reset"]
    assert newest.fields["reason"] == "redis lost meta at 14:02"
    assert store.verify().ok  # the new epoch begins at a recorded reset


def test_rollback_on_a_reset_store_is_never_gated_but_records_the_reset(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    client.hset(keys.flag("positions"), mapping={"stage": "live", "percent": "100", "version": "4"})
    outcome = store.change("positions", Stage.SHADOW, rollback=True)
    assert outcome.after.stage is Stage.SHADOW
    assert outcome.reset is not None
    assert "reset" in store.history(limit=1)[0].fields


@pytest.mark.parametrize("case", ["meta-without-audit", "data-without-meta", "first-entry-not-genesis"])
def test_verify_fails_when_the_log_does_not_start_at_the_genesis(
    store: FlagStore, client: redis.Redis, keys: Keys, case: str
) -> None:
    if case == "meta-without-audit":
        client.hset(keys.meta, mapping={"epoch": "abc", "created_at": "2026-01-01T00:00:00.000Z"})
    elif case == "data-without-meta":
        store.change("positions", Stage.SHADOW)
        client.delete(keys.meta)
    else:
        store.change("positions", Stage.SHADOW)
        client.hset(keys.meta, "epoch", "another")
    report = store.verify()
    assert not report.ok
    assert report.genesis.startswith("the audit log does not start at the store's genesis: ")


def test_expect_version_from_before_a_reset_never_matches(store: FlagStore, client: redis.Redis, prefix: str) -> None:
    store.change("positions", Stage.SHADOW)
    store.change("positions", Stage.OFF)  # version 2 in the old epoch
    wipe(client, prefix)
    with pytest.raises(StaleVersion, match="at version 0, not 2"):
        store.change("positions", Stage.SHADOW, expect_version=2)


def test_watcher_keeps_complete_stage_across_a_reset_and_reports_it(
    redis_server: EmbeddedRedis, store: FlagStore, client: redis.Redis, prefix: str
) -> None:
    _to_complete(store, "positions")
    store.change("intraday", Stage.SHADOW)
    resets: list[StoreReset] = []
    w = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names,
                    register=False, on_reset=resets.append)  # fmt: skip
    w.start(wait=5)
    try:
        old = client.hget(Keys(prefix).meta, "epoch")
        assert w.epoch == old
        assert w.reset is None
        wipe(client, prefix)
        w._resync(store.client)  # what the watcher does on reconnecting after the restart
        assert w.stage("positions") is Stage.COMPLETE  # never back to REST because Redis restarted
        assert w.stage("intraday") is Stage.SHADOW
        assert w.reset is not None
        assert (w.reset.followed, w.reset.found) == (old, None)
        assert set(w.reset.kept) == {"positions", "intraday"}
        assert resets == [w.reset]
        # The new epoch's first change (version 1) is applied although the watcher held version 3.
        store.change("global_market", Stage.SHADOW)
        assert _until(lambda: w.stage("global_market") is Stage.SHADOW)
        assert w.stage("positions") is Stage.COMPLETE
        store.change("positions", Stage.SHADOW)  # changed deliberately in the new epoch: adopted
        assert _until(lambda: w.get("positions").state.version == 1 and w.stage("positions") is Stage.SHADOW)
        assert w.reset is not None
        assert w.reset.kept == ("intraday",)
    finally:
        w.stop()


def test_watcher_reports_a_store_with_data_but_no_meta(
    redis_server: EmbeddedRedis, client: redis.Redis, prefix: str
) -> None:
    client.hset(Keys(prefix).flag("positions"), mapping={"stage": "shadow", "version": "3", "percent": "0"})
    w = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names,
                    register=False).start(wait=5)  # fmt: skip
    try:
        assert w.synced
        assert w.stage("positions") is Stage.SHADOW  # nothing better known: the stored stage
        assert w.reset is not None
        assert "no meta" in w.reset.describe()
    finally:
        w.stop()


def test_a_store_redis_wiped_entirely_is_told_by_the_epoch_workers_hold(
    redis_server: EmbeddedRedis, store: FlagStore, client: redis.Redis, prefix: str
) -> None:
    # Everything gone (Redis restarted without its data): the store alone looks brand new, but the
    # registered backend workers still hold the old epoch's stages and say so in {prefix}:epochs.
    keys = Keys(prefix)
    store.change("positions", Stage.SHADOW)
    old = client.hget(keys.meta, "epoch")
    w = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), keys, DEFAULT_MANIFEST.names, ttl=0.6)
    w.start(wait=5)
    try:
        assert _until(lambda: client.hget(keys.epochs, w.worker_id) == old)
        assert store.epoch().problem(keys) is None
        wipe(client, prefix)
        assert _until(lambda: client.hget(keys.epochs, w.worker_id) == old)  # it registers again
        state = store.epoch()
        assert state.reset
        assert f"backend workers hold the stages of epoch {old}" in (state.problem(keys) or "")
        assert not store.verify().ok
        with pytest.raises(StoreWasReset):
            store.change("intraday", Stage.SHADOW)
        # Nothing written (the worker's own registration keys keep moving, so not a snapshot).
        assert (client.exists(keys.flag("intraday"), keys.meta, keys.audit)) == 0
        store.change("intraday", Stage.SHADOW, force=True, reason="Redis lost its data; starting over")
        assert client.hget(keys.meta, "epoch") not in (None, old)
    finally:
        w.stop()
    assert client.hget(keys.epochs, w.worker_id) is None  # a stopped worker takes its word back
