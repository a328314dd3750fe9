"""``thorcut history`` through the CLI: the table, its filter, and ``--verify`` on a tampered log and
on a reset store (issue 10)."""

from __future__ import annotations

import json

import redis

from tests.redis_snapshot import wipe
from tests.runner import Run
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys


def test_history_verify_passes_then_fails_on_tampering(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    store.change("positions", Stage.SHADOW)
    store.change("positions", Stage.OFF)
    ok = run("history", "--verify")
    assert ok.exit_code == 0
    assert "Audit chain intact: 2 entries verified." in ok.stdout
    entries = list(store.iter_audit())
    client.delete(keys.audit)
    client.xadd(keys.audit, dict(entries[0].fields, by="mallory"), id=entries[0].id)
    client.xadd(keys.audit, entries[1].fields, id=entries[1].id)
    bad = run("history", "--verify", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["broken_id"] == entries[0].id
    assert f"audit chain broken at entry {entries[0].id}" in bad.stderr


def test_history_table_filters_by_feature(run: Run, store: FlagStore) -> None:
    store.change("positions", Stage.SHADOW, reason="one")
    store.change("intraday", Stage.SHADOW, reason="two")
    result = run("history", "intraday")
    assert result.exit_code == 0
    assert "two" in result.stdout
    assert "one" not in result.stdout


def test_history_verify_exits_1_on_a_reset_store(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    store.change("positions", Stage.SHADOW)
    ok = run("history", "--verify")
    assert ok.exit_code == 0
    assert "Audit chain intact: 1 entries verified." in ok.stdout
    client.delete(keys.audit)  # meta says it had changes; the log is gone
    empty = run("history", "--verify")
    assert empty.exit_code == 1
    assert "the audit log does not start at the store's genesis" in empty.stderr
    wipe(client, prefix)
    assert run("history", "--verify").exit_code == 0  # a store that never had anything is fine
    client.hset(keys.flag("positions"), mapping={"stage": "complete", "version": "9"})
    bad = run("history", "--verify", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["genesis"].startswith("the audit log does not start at the store's genesis")
