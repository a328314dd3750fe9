"""The flag store against a real Redis: transitions, the gate, compare-and-set, audit, rollback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.conftest import set_flag, set_verdict
from tests.redis_snapshot import snapshot
from thorcut.clock import now_iso
from thorcut.errors import EvidenceRefused, StaleVersion, TransitionRefused, UsageError
from thorcut.flags.audit import entry_hash
from thorcut.flags.plan import Request, plan_change
from thorcut.flags.stages import TRANSITIONS, Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys

ALL_PAIRS = [(a, b) for a in Stage for b in Stage]


def _fresh_pass(client: redis.Redis, keys: Keys, feature: str = "positions") -> str:
    at = now_iso()
    set_verdict(client, keys, feature, "PASS", at)
    return at


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a.value}-to-{b.value}" for a, b in ALL_PAIRS])
def test_every_transition_is_allowed_or_refused_as_designed(
    store: FlagStore, client: redis.Redis, keys: Keys, src: Stage, dst: Stage
) -> None:
    set_flag(client, keys, "positions", src.value, 5, 40 if src is Stage.LIVE else 0)
    _fresh_pass(client, keys)
    audit_before = client.xlen(keys.audit)
    if src == dst and src is not Stage.LIVE:
        outcome = store.change("positions", dst)
        assert not outcome.changed
        assert client.xlen(keys.audit) == audit_before
    elif (src, dst) in TRANSITIONS:
        percent = 60 if dst is Stage.LIVE else None
        outcome = store.change("positions", dst, percent=percent, reason="test")
        assert outcome.changed
        state = store.read("positions")
        assert (state.stage, state.version) == (dst, 6)
        assert client.xlen(keys.audit) == audit_before + 1
    else:
        with pytest.raises(TransitionRefused, match=f"cannot go to {dst.value}"):
            store.change("positions", dst, force=True, reason="even forced")
        assert store.read("positions").version == 5
        assert client.xlen(keys.audit) == audit_before


def test_never_written_feature_reads_off_at_version_zero(store: FlagStore) -> None:
    state = store.read("intraday")
    assert (state.stage, state.percent, state.version) == (Stage.OFF, 0, 0)


def test_enable_with_fresh_pass_verdict_goes_live_unforced(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    _fresh_pass(client, keys)
    outcome = store.change("positions", Stage.LIVE, percent=10)
    assert outcome.changed
    assert not outcome.forced
    assert store.read("positions").percent == 10
    entry = store.history("positions", 1)[0]
    assert entry.fields["forced"] == "0"
    assert entry.fields["to"] == "live"


@pytest.mark.parametrize(
    ("verdict", "age", "why"),
    [
        (None, None, "no parity verdict yet"),
        ("FAIL", timedelta(minutes=1), "is FAIL, not PASS"),
        ("PENDING", timedelta(minutes=1), "is PENDING, not PASS"),
        ("PASS", timedelta(hours=25), "is 25.0 h old"),
    ],
)
def test_enable_without_valid_pass_is_refused_and_writes_nothing(
    store: FlagStore, client: redis.Redis, keys: Keys, verdict: str | None, age: timedelta | None, why: str
) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    if verdict is not None and age is not None:
        set_verdict(client, keys, "positions", verdict, now_iso(datetime.now(UTC) - age))
    with pytest.raises(EvidenceRefused, match=why):
        store.change("positions", Stage.LIVE)
    assert store.read("positions").stage is Stage.SHADOW
    assert client.xlen(keys.audit) == 0


def test_validity_window_is_configurable(client: redis.Redis, keys: Keys) -> None:
    store = FlagStore(client, keys, ("positions",), validity=60)
    set_flag(client, keys, "positions", "shadow", 1)
    set_verdict(client, keys, "positions", "PASS", now_iso(datetime.now(UTC) - timedelta(minutes=2)))
    with pytest.raises(EvidenceRefused, match="valid for 1 min"):
        store.change("positions", Stage.LIVE)


def test_force_overrides_gate_and_is_recorded(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    set_verdict(client, keys, "positions", "FAIL", now_iso())
    outcome = store.change("positions", Stage.LIVE, force=True, reason="hotfix verified by hand")
    assert outcome.forced
    entry = store.history("positions", 1)[0]
    assert entry.fields["forced"] == "1"
    assert entry.fields["reason"] == "hotfix verified by hand"
    assert entry.fields["by"] == "tester"


def test_force_without_reason_is_a_usage_error(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    with pytest.raises(UsageError, match="--force needs --reason"):
        store.change("positions", Stage.LIVE, force=True)


def test_force_with_valid_pass_is_not_marked_forced(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    _fresh_pass(client, keys)
    outcome = store.change("positions", Stage.LIVE, force=True, reason="belt and braces")
    assert not outcome.forced
    assert store.history("positions", 1)[0].fields["forced"] == "0"


def test_disable_is_never_gated(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    set_verdict(client, keys, "positions", "FAIL", now_iso())
    assert store.change("positions", Stage.SHADOW).after.stage is Stage.SHADOW


def test_verdict_replaced_between_read_and_commit_is_caught_by_the_script(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    at = _fresh_pass(client, keys)
    before = store.read("positions")
    plan = plan_change(
        Request("positions", Stage.LIVE), before, store.parity("positions"), force=False, validity=store.validity
    )
    assert plan.evidence == at
    set_verdict(client, keys, "positions", "FAIL", now_iso())  # a newer verdict lands meanwhile
    assert store._commit_plans([plan], "", "race") is None
    assert store.read("positions").stage is Stage.SHADOW


def test_expect_version_mismatch_raises_stale_and_writes_nothing(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "off", 7)
    with pytest.raises(StaleVersion, match="at version 7, not 6") as info:
        store.change("positions", Stage.SHADOW, expect_version=6)
    assert info.value.current == 7
    assert store.read("positions").version == 7
    store.change("positions", Stage.SHADOW, expect_version=7)
    assert store.read("positions").version == 8


def test_percent_out_of_range_is_a_usage_error(store: FlagStore) -> None:
    with pytest.raises(UsageError, match="between 0 and 100"):
        store.change("positions", Stage.LIVE, percent=101)


def test_dry_run_writes_nothing(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    outcome = store.change("positions", Stage.SHADOW, dry_run=True)
    assert outcome.dry_run
    assert outcome.changed
    assert store.read("positions").version == 0
    assert client.xlen(keys.audit) == 0


def test_change_writes_flag_audit_and_notification_together(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    pubsub = client.pubsub()
    pubsub.subscribe(keys.changes)
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    store.change("account_balance", Stage.SHADOW, reason="go")
    msg = pubsub.get_message(timeout=1)
    epoch = client.hget(keys.meta, "epoch")  # the store's first change wrote its epoch (issue 10)
    assert epoch
    assert json.loads(msg["data"]) == {"feature": "account_balance", "stage": "shadow", "percent": 0, "version": 1,
                                       "epoch": epoch}  # fmt: skip
    flag = client.hgetall(keys.flag("account_balance"))
    assert flag["stage"] == "shadow"
    assert flag["version"] == "1"
    assert flag["updated_by"] == "tester"
    assert flag["epoch"] == epoch
    (entry,) = store.history()
    assert entry.fields["prev_hash"] == ""
    assert entry.fields["epoch"] == epoch
    assert entry.fields["hash"] == entry_hash(entry.fields)
    pubsub.close()


def test_rollback_all_moves_every_live_and_complete_feature_in_one_step(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "account_balance", "live", 4, 50)
    set_flag(client, keys, "positions", "complete", 9, 100)
    set_flag(client, keys, "intraday", "shadow", 2)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.changes)
    pubsub.get_message(timeout=1)
    outcomes = store.rollback_all(reason="incident")
    assert sorted(o.after.feature for o in outcomes) == ["account_balance", "positions"]
    states = store.read_all()
    assert states["account_balance"].stage is Stage.SHADOW
    assert states["account_balance"].version == 5
    assert states["positions"].stage is Stage.SHADOW
    assert states["positions"].version == 10
    assert states["intraday"].version == 2
    entries = store.history()
    assert len(entries) == 2
    assert len({e.fields["at"] for e in entries}) == 1  # one commit
    published = [json.loads(pubsub.get_message(timeout=1)["data"])["feature"] for _ in range(2)]
    assert sorted(published) == ["account_balance", "positions"]
    assert store.verify().ok
    assert store.rollback_all() == []
    pubsub.close()


def test_history_is_newest_first_filtered_and_limited(store: FlagStore) -> None:
    store.change("positions", Stage.SHADOW)
    store.change("intraday", Stage.SHADOW)
    store.change("positions", Stage.OFF)
    assert [e.feature for e in store.history()] == ["positions", "intraday", "positions"]
    assert [e.fields["to"] for e in store.history("positions")] == ["off", "shadow"]
    assert len(store.history(limit=2)) == 2


def test_verify_detects_an_altered_entry_and_names_it(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    for stage in (Stage.SHADOW, Stage.OFF, Stage.SHADOW, Stage.OFF):
        store.change("global_market", stage)
    assert store.verify().ok
    entries = list(store.iter_audit())
    # Rewrite the stream with the third entry's reason altered, keeping ids and hashes.
    client.delete(keys.audit)
    for i, e in enumerate(entries):
        fields = dict(e.fields)
        if i == 2:
            fields["reason"] = "nothing to see here"
        client.xadd(keys.audit, fields, id=e.id)
    report = store.verify()
    assert not report.ok
    assert report.broken_id == entries[2].id
    assert "altered" in report.problem


def test_verify_detects_a_deleted_entry(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    for stage in (Stage.SHADOW, Stage.OFF, Stage.SHADOW):
        store.change("global_market", stage)
    entries = list(store.iter_audit())
    client.xdel(keys.audit, entries[1].id)
    report = store.verify()
    assert report.broken_id == entries[2].id
    assert "prev_hash" in report.problem


def test_unknown_stored_stage_reads_as_off(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    client.hset(keys.flag("positions"), mapping={"stage": "bananas", "version": "3"})
    assert store.read("positions").stage is Stage.OFF


def test_enable_at_the_current_percent_is_a_noop_with_the_stored_version(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "live", 2, 40)
    outcome = store.change("positions", Stage.LIVE, percent=40)
    assert not outcome.changed
    assert outcome.after.version == 2
    assert client.xlen(keys.audit) == 0


# -- a rollback never turns a feature on (issue 9) ------------------------------------------------


def test_rollback_of_an_off_feature_is_refused_and_writes_nothing(
    store: FlagStore, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    store.change("intraday", Stage.SHADOW)  # some history, so the snapshot is not empty
    set_flag(client, keys, "positions", "off", 4)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.changes)
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    before = snapshot(client, prefix)
    with pytest.raises(TransitionRefused, match=r"positions is off: .* a rollback never turns a feature on"):
        store.change("positions", Stage.SHADOW, rollback=True, reason="incident")
    with pytest.raises(TransitionRefused, match="run `thorcut shadow positions`"):
        store.change("positions", Stage.SHADOW, rollback=True, dry_run=True)
    assert snapshot(client, prefix) == before
    store.change("intraday", Stage.OFF)  # the next published change is this one: nothing came before it
    assert json.loads(pubsub.get_message(timeout=1)["data"])["feature"] == "intraday"
    pubsub.close()


def test_rollback_planned_on_a_live_read_is_refused_once_the_feature_went_off(
    store: FlagStore, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    stale = store.read("positions")
    plan = plan_change(
        Request("positions", Stage.SHADOW, rollback=True),
        stale,
        store.parity("positions"),
        force=False,
        validity=store.validity,
    )
    store.change("positions", Stage.SHADOW)
    store.change("positions", Stage.OFF)  # someone else rolled back and turned it off meanwhile
    before = snapshot(client, prefix)
    assert store._commit_plans([plan], store._chain_head(), "late") is None  # the script's CAS says stale
    assert snapshot(client, prefix) == before
    with pytest.raises(TransitionRefused, match="positions is off"):
        store.change("positions", Stage.SHADOW, rollback=True)
    assert snapshot(client, prefix) == before


def test_rollback_from_live_or_complete_still_goes_to_shadow_and_shadow_is_a_noop(
    store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    for stage in ("live", "complete"):
        set_flag(client, keys, "positions", stage, 3, 100)
        outcome = store.change("positions", Stage.SHADOW, rollback=True)
        assert (outcome.before.stage.value, outcome.after.stage) == (stage, Stage.SHADOW)
    assert not store.change("positions", Stage.SHADOW, rollback=True).changed


def test_rollback_all_never_touches_off_or_shadow_features(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "account_balance", "off", 6)
    set_flag(client, keys, "positions", "live", 2, 10)
    set_flag(client, keys, "intraday", "shadow", 4)
    outcomes = store.rollback_all(reason="incident")
    assert [(o.after.feature, o.after.stage) for o in outcomes] == [("positions", Stage.SHADOW)]
    states = store.read_all()
    assert (states["account_balance"].stage, states["account_balance"].version) == (Stage.OFF, 6)
    assert (states["intraday"].stage, states["intraday"].version) == (Stage.SHADOW, 4)
    assert [e.feature for e in store.history()] == ["positions"]


def test_enable_from_off_is_refused_naming_the_shadow_command(
    store: FlagStore, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    _fresh_pass(client, keys)
    before = snapshot(client, prefix)
    with pytest.raises(
        TransitionRefused, match=r"positions is off; it cannot go to live .*run `thorcut shadow positions` first"
    ):
        store.change("positions", Stage.LIVE, force=True, reason="even forced")
    assert snapshot(client, prefix) == before
