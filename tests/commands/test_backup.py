"""Issue 10 through the CLI: status and history on a reset store, backup and restore, persistence."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import set_verdict
from tests.redis_snapshot import snapshot
from thorcut.compare.verdict import now_iso
from thorcut.devstack import find_redis_server, free_port
from thorcut.features import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys


def _wipe(client: redis.Redis, prefix: str) -> None:
    """Redis lost this test's data (the session's server is shared: never FLUSHALL it)."""
    names = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
    if names:
        client.delete(*names)


def _populate(store: FlagStore, client: redis.Redis, keys: Keys) -> None:
    store.change("positions", Stage.SHADOW, reason="start parity")
    set_verdict(client, keys, "positions", "PASS", now_iso())
    store.change("positions", Stage.LIVE, percent=25, reason="canary ünïcode")
    store.change("intraday", Stage.SHADOW)
    store.record_parity("intraday", {"verdict": "FAIL", "judged_at": now_iso()}, ['{"path":"a"}', '{"path":"b"}'])


def test_status_shows_a_reset_store_in_red_and_exits_0(run, store, client, keys) -> None:  # type: ignore[no-untyped-def]
    store.change("positions", Stage.SHADOW)
    assert json.loads(run("status", "--json").stdout)["store"]["reset"] is False
    client.delete(keys.meta)
    result = run("status", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "Store reset" in x)
    assert "no {" in line
    assert re.search(r"\x1b\[[0-9;]*31m\s*Store reset", result.stdout)  # red
    doc = json.loads(run("status", "--json").stdout)
    assert doc["store"]["reset"] is True
    assert doc["store"]["epoch"] is None


def test_history_verify_exits_1_on_a_reset_store(run, store, client, keys, prefix) -> None:  # type: ignore[no-untyped-def]
    store.change("positions", Stage.SHADOW)
    ok = run("history", "--verify")
    assert ok.exit_code == 0
    assert "Audit chain intact: 1 entries verified." in ok.stdout
    client.delete(keys.audit)  # meta says it had changes; the log is gone
    empty = run("history", "--verify")
    assert empty.exit_code == 1
    assert "the audit log does not start at the store's genesis" in empty.stderr
    _wipe(client, prefix)
    assert run("history", "--verify").exit_code == 0  # a store that never had anything is fine
    client.hset(keys.flag("positions"), mapping={"stage": "complete", "version": "9"})
    bad = run("history", "--verify", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["genesis"].startswith("the audit log does not start at the store's genesis")


def test_backup_wipe_restore_round_trip_is_byte_for_byte(run, store, client, keys, prefix, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _populate(store, client, keys)
    before = snapshot(client, prefix)
    file = tmp_path / "b.jsonl"
    made = run("backup", str(file), "--json")
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.stdout)["counts"] == {"meta": 1, "flag": 2, "parity": 2, "mismatches": 1, "audit": 3}
    header, *records = [json.loads(x) for x in file.read_text().splitlines()]
    assert header["format"] == "thorcut-backup"
    assert {r["kind"] for r in records} == {"meta", "flag", "parity", "mismatches", "audit"}
    _wipe(client, prefix)
    restored = run("restore", str(file))
    assert restored.exit_code == 0, restored.stderr
    assert "Restored 2 flags, 3 audit entries" in restored.stdout
    assert snapshot(client, prefix) == before  # same values, same audit ids and hashes
    assert run("history", "--verify").exit_code == 0


def test_restore_over_data_is_refused_then_forced_and_recorded(run, store, client, keys, prefix, tmp_path) -> None:  # type: ignore[no-untyped-def]
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
    run, store, client, keys, prefix, tmp_path, data
) -> None:  # type: ignore[no-untyped-def]
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


def test_status_warns_once_when_redis_has_no_persistence(run) -> None:  # type: ignore[no-untyped-def]
    result = run("status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["persistence"]["configured"] is False
    (line,) = result.stderr.splitlines()
    assert line.startswith("Warning: the flag Redis has no persistence configured")


def test_status_says_it_cannot_tell_when_config_is_disabled(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = find_redis_server()
    assert binary is not None
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
            "--appendonly", "no", "--rename-command", "CONFIG", ""]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            probe = redis.Redis(port=port, socket_connect_timeout=0.2)
            for _ in range(200):  # until it answers; no timing is asserted
                try:
                    probe.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            result = run("status", "--json", "--redis-url", f"redis://127.0.0.1:{port}/0")
            assert result.exit_code == 0, result.stderr
            assert json.loads(result.stdout)["persistence"]["configured"] is None
            (line,) = result.stderr.splitlines()
            assert line.startswith("Warning: cannot tell whether the flag Redis persists its data: CONFIG GET is not "
                                   "allowed")  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
