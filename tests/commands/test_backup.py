"""Issue 10 through the CLI: backup and restore (status and history on a reset store and the persistence
warning are in test_status.py and test_history.py)."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import set_verdict
from tests.redis_snapshot import snapshot, wipe
from tests.runner import Run
from thorcut.clock import now_iso
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys
from thorcut.verdict import ParityRecord


def _populate(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    store.change("positions", Stage.SHADOW, reason="start parity")
    set_verdict(client, keys, "positions", "PASS", now_iso())
    store.change("positions", Stage.LIVE, percent=25, reason="canary ünïcode")
    store.change("intraday", Stage.SHADOW)
    store.record_parity(
        "intraday",
        ParityRecord.from_hash({"verdict": "FAIL", "judged_at": now_iso()}),
        ['{"path":"a"}', '{"path":"b"}'],
    )


def test_backup_wipe_restore_round_trip_is_byte_for_byte(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys, prefix: str, tmp_path: Path
) -> None:
    _populate(store, client, keys)
    before = snapshot(client, prefix)
    file = tmp_path / "b.jsonl"
    made = run("backup", str(file), "--json")
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.stdout)["counts"] == {"meta": 1, "flag": 2, "parity": 2, "mismatches": 1, "audit": 3}
    header, *records = [json.loads(x) for x in file.read_text().splitlines()]
    assert header["format"] == "thorcut-backup"
    assert {r["kind"] for r in records} == {"meta", "flag", "parity", "mismatches", "audit"}
    wipe(client, prefix)
    restored = run("restore", str(file))
    assert restored.exit_code == 0, restored.stderr
    assert "Restored 2 flags, 3 audit entries" in restored.stdout
    assert snapshot(client, prefix) == before  # same values, same audit ids and hashes
    assert run("history", "--verify").exit_code == 0


def test_restore_over_data_is_refused_then_forced_and_recorded(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys, prefix: str, tmp_path: Path
) -> None:
    _populate(store, client, keys)
    file = tmp_path / "b.jsonl"
    assert run("backup", str(file)).exit_code == 0
    store.change("global_market", Stage.SHADOW, reason="after the backup")
    before = snapshot(client, prefix)
    refused = run("restore", str(file))
    assert refused.exit_code == 3
    assert "already has data" in refused.stderr
    assert snapshot(client, prefix) == before
    assert run("restore", str(file), "--force").exit_code == 2  # --force needs --reason
    forced = run("restore", str(file), "--force", "--reason", "undo the 14:00 mistake", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert client.hget(keys.flag("global_market"), "stage") is None  # the store is the backup's again
    newest = store.history(limit=1)[0]
    assert newest.id == json.loads(forced.stdout)["audit_id"]
    assert (newest.fields["event"], newest.fields["forced"], newest.fields["by"]) == ("restore", "1", "tester")
    assert "undo the 14:00 mistake" in newest.fields["reason"]
    assert run("history", "--verify").exit_code == 0


def _corrupt(data: st.DataObject, good: bytes) -> bytes:
    lines = good.splitlines(keepends=True)
    how = data.draw(st.sampled_from(["truncate", "drop", "flip", "garbage", "header", "swap", "edit"]), label="how")
    if how == "truncate":
        return good[: data.draw(st.integers(0, len(good) - 1), label="cut")]
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    if how == "drop":
        return b"".join(lines[:i] + lines[i + 1 :]) if len(lines) > 1 else b""
    if how == "flip":
        j = data.draw(st.integers(0, len(lines[i]) - 2), label="byte")
        b = bytearray(lines[i])
        b[j] ^= data.draw(st.integers(1, 255), label="xor")
        lines[i] = bytes(b)
    elif how == "garbage":
        lines[i] = data.draw(st.binary(max_size=40), label="garbage") + b"\n"
    elif how == "header":
        lines[0] = json.dumps({"format": "thorcut-backup", "version": 2}).encode() + b"\n"
    elif how == "swap" and len(lines) > 2:
        lines[-1], lines[-2] = lines[-2], lines[-1]
    else:
        obj = json.loads(lines[-1])
        obj["fields"]["reason"] = "rewritten"
        lines[-1] = json.dumps(obj).encode() + b"\n"
    return b"".join(lines)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_backups_exit_2_naming_the_line_and_write_nothing(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys, prefix: str, tmp_path: Path, data: st.DataObject
) -> None:
    if not client.exists(keys.audit):
        _populate(store, client, keys)
        assert run("backup", str(tmp_path / "good.jsonl")).exit_code == 0
    good = (tmp_path / "good.jsonl").read_bytes()
    bad = _corrupt(data, good)
    if bad == good:
        return
    file = tmp_path / "bad.jsonl"
    file.write_bytes(bad)
    empty = Keys(prefix + "-empty")
    result = run("restore", str(file), env={"THORCUT_PREFIX": empty.prefix})
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:  # a change that kept the file valid (e.g. a flipped byte in a verdict)
        names = list(client.scan_iter(match=f"{{{empty.prefix}}}*"))
        client.delete(*names)
        return
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ")
    assert "line" in result.stderr or "empty file" in result.stderr
    assert not list(client.scan_iter(match=f"{{{empty.prefix}}}*"))
