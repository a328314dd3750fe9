"""Resyncs in a replay (docs/contracts.md, "Resuming a stream" and "Recordings"): a recorded message
marked ``"resync": true`` is judged as a resync, exactly as live, in a recording thorcut wrote or
one written by hand with only the required fields; ``max_resyncs`` decides; the server's replies to
a resume are never samples; and a recording's ``reconnected`` mark judges what follows a reconnect
as the live run did. Resyncs reach the report, ``--json``, JUnit, and the stored verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import redis

from tests.parity.build import Recording, at, balance, envelope, steady, write_plain, write_thorcut
from tests.runner import Run
from thorcut.parity.report import parity_record
from thorcut.redisconn import Keys
from thorcut.verdict import COUNTS, ParityRecord


def marked(rec: Recording, t: float, seq: int, key: str = "DU1234") -> Recording:
    """A message at ``seq`` marked resync, and the REST response made for it."""
    msg = {**envelope("account_balance", key, seq, balance(float(seq)), t), "resync": True}
    rec.ws(t, msg)
    return rec.rest(t + 0.01, "account_balance", key, seq, envelope("account_balance", key, seq, balance(float(seq))))


def with_resyncs(*seqs: int) -> Recording:
    """61 equal pairs over 60 s, then on DU5555 a first message and a marked jump to each of ``seqs``."""
    rec = steady(n=61)
    rec.pair(10.5, "account_balance", "DU5555", 1, balance(1.0))
    for i, seq in enumerate(seqs):
        marked(rec, 20.5 + i, seq, "DU5555")
    return rec


def judged(run: Run, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("check", "account_balance", "--replay", str(path), "--json", *args)
    assert result.exit_code in (0, 1, 5), result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout)


def every_way(run: Run, tmp_path: Path, rec: Recording) -> dict[str, Any]:
    """Judge ``rec`` as built, as thorcut writes it and with only the required fields: one judgement."""
    built = judged(run, rec.write(tmp_path / "built.jsonl"))
    by_thorcut = judged(run, write_thorcut(rec, tmp_path / "thorcut.jsonl"))
    plain = judged(run, write_plain(rec, tmp_path / "plain.jsonl", seed=4))
    assert built[1]["features"] == by_thorcut[1]["features"] == plain[1]["features"]
    assert built[0] == by_thorcut[0] == plain[0]
    f: dict[str, Any] = built[1]["features"]["account_balance"]
    return f


def test_a_marked_jump_is_a_resync_in_a_replay_and_within_the_default_threshold_passes(
    run: Run, tmp_path: Path
) -> None:
    f = every_way(run, tmp_path, with_resyncs(10, 30, 31))
    assert f["verdict"] == "PASS", f["reasons"]
    c = f["counts"]
    assert (c["gaps"], c["missed"], c["resyncs"], c["resynced_missed"]) == (0, 0, 2, 8 + 19)
    assert (f["health"]["resyncs"], f["health"]["resynced_missed"]) == (2, 27)
    assert f["thresholds"]["max_resyncs"] == 3
    assert c["paired"] == 65  # a resync is a sample like any other


def test_a_hand_written_line_with_only_the_required_fields_counts_its_resync(run: Run, tmp_path: Path) -> None:
    lines = [
        {"thorcut_recording": 1, "created": at(0), "manifest": {}},
        {"at": at(0), "src": "ws", "msg": envelope("account_balance", "DU1", 3, balance())},
        {"at": at(1), "src": "ws", "msg": {**envelope("account_balance", "DU1", 9, balance()), "resync": True}},
        {"at": at(2), "src": "ws", "msg": envelope("account_balance", "DU1", 12, balance())},
        {"at": at(3), "src": "ws", "msg": {**envelope("account_balance", "DU1", 14, balance()), "resync": "yes"}},
    ]
    path = tmp_path / "hand.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, body = judged(run, path)
    c = body["features"]["account_balance"]["counts"]
    assert (c["resyncs"], c["resynced_missed"], c["gaps"], c["missed"]) == (1, 5, 2, 3)  # only `true` marks
    assert code == 1


def test_more_resyncs_than_max_resyncs_fail(run: Run, tmp_path: Path) -> None:
    f = every_way(run, tmp_path, with_resyncs(5, 10, 15, 20))
    assert f["verdict"] == "FAIL"
    assert f["reasons"] == ["4 resyncs > 3 allowed"]
    path = with_resyncs(5, 10, 15, 20).write(tmp_path / "r.jsonl")
    (tmp_path / "thorcut.toml").write_text("[features.account_balance.thresholds]\nmax_resyncs = 4\n")
    assert judged(run, path)[0] == 0
    (tmp_path / "thorcut.toml").write_text("[features.account_balance.thresholds]\nmax_resyncs = 0\n")
    code, body = judged(run, with_resyncs(5).write(tmp_path / "one.jsonl"))
    assert code == 1
    assert body["features"]["account_balance"]["reasons"] == ["1 resyncs > 0 allowed"]


def test_resume_replies_and_errors_are_not_samples(run: Run, tmp_path: Path) -> None:
    plain = steady(n=61)
    noisy = steady(n=61)
    noisy.ws(30.5, {"type": "resumed", "replayed": 3, "resynced": 1})
    noisy.ws(30.6, {"type": "resumed", "replayed": 0, "resynced": 0, "healed": True})
    noisy.ws(30.7, {"type": "error", "error": "bad resume"})
    a = every_way(run, tmp_path, plain)
    b = every_way(run, tmp_path, noisy)
    assert a["counts"] == b["counts"]
    assert b["verdict"] == "PASS"
    _, body = judged(run, noisy.write(tmp_path / "n.jsonl"))
    assert body["resumes"] == {"sent": 0, "answered": 0, "refused": 0, "unanswered": 0, "healed": 1,
                               "replayed": 3, "resynced": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("mark", "answered", "gaps"), [(None, False, 1), ("resume", True, 1), ("resume", False, 0), ("reset", False, 0)]
)
def test_the_reconnected_mark_judges_a_reconnect_as_the_live_run_did(
    run: Run, tmp_path: Path, mark: str | None, answered: bool, gaps: int
) -> None:
    """No mark: the same connection, a jump is a gap. ``resume``: a jump as the first message is a
    gap once the resume is answered without what it skipped (unanswered, as after ``reset``: none)."""
    rec = steady(n=61)
    line = {"at": at(61), "src": "ws", "msg": envelope("account_balance", "DU1234", 70, balance())}
    if mark is not None:
        line["reconnected"] = mark
    rec.lines.append(json.dumps(line))
    if answered:
        rec.ws(61.2, {"type": "resumed", "replayed": 0, "resynced": 0})
    rec.ws(61.5, envelope("account_balance", "DU1234", 71, balance()))
    _, body = judged(run, rec.write(tmp_path / "r.jsonl"))
    assert body["features"]["account_balance"]["counts"]["gaps"] == gaps


def test_a_resume_in_a_recording_holds_a_jump_ahead_until_its_answer(run: Run, tmp_path: Path) -> None:
    """Recorded: held 61, reconnected with a resume; 65 pushed before the answer, 62..64 replayed."""
    rec = steady(n=61)
    rec.lines.append(json.dumps({"at": at(61), "src": "ws", "reconnected": "resume",
                                 "msg": envelope("account_balance", "DU1234", 65, balance())}))  # fmt: skip
    for seq in (62, 63, 64, 65):
        rec.ws(61.1, envelope("account_balance", "DU1234", seq, balance()))
    rec.ws(61.2, {"type": "resumed", "replayed": 4, "resynced": 0})
    _, body = judged(run, rec.write(tmp_path / "r.jsonl"))
    c = body["features"]["account_balance"]["counts"]
    assert (c["gaps"], c["duplicates"], c["out_of_order"], c["resyncs"]) == (0, 0, 0, 0)
    assert body["resumes"]["answered"] == 1


def test_a_bad_reconnected_mark_is_bad_input_naming_the_line(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    rec.lines.append(json.dumps({"at": at(3), "src": "ws", "reconnected": "maybe",
                                 "msg": envelope("account_balance", "DU1234", 3, balance())}))  # fmt: skip
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 6: 'reconnected' must be \"resume\" or \"reset\" or absent, not 'maybe'" in result.stderr


# -- where resyncs are shown ----------------------------------------------------------------------


def test_the_report_junit_and_json_show_resyncs(run: Run, tmp_path: Path) -> None:
    path = with_resyncs(10, 20, 30, 40).write(tmp_path / "r.jsonl")
    text = run("diff", "account_balance", "--replay", str(path))
    assert text.exit_code == 1
    header = next(line for line in text.stdout.splitlines() if "paired" in line and "gaps" in line)
    assert header.index("gaps") < header.index("resyncs") < header.index("dups")
    assert "4 resync(s), 35 seq(s) skipped" in text.stdout
    assert "4 resyncs > 3 allowed" in text.stdout
    narrow = run("diff", "account_balance", "--replay", str(path), env={"COLUMNS": "60"})
    assert "resyncs 4" in narrow.stdout
    junit = tmp_path / "parity.xml"
    run("check", "account_balance", "--replay", str(path), "--junit", str(junit))
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "FAIL: 4 resyncs > 3 allowed"
    assert json.loads(failure.text or "")["counts"]["resyncs"] == 4


def test_the_stored_record_carries_resyncs_and_status_shows_them_beside_gaps(
    run: Run, tmp_path: Path, client: redis.Redis, keys: Keys
) -> None:
    from thorcut.compare.shadow import ShadowJudge
    from thorcut.manifest import DEFAULT_MANIFEST
    from thorcut.parity.replay import replay

    assert {"resyncs", "resynced_missed"} <= set(COUNTS)
    judge = ShadowJudge(DEFAULT_MANIFEST, ["account_balance"], strict_json=True)
    report = replay(judge, with_resyncs(10, 20).write(tmp_path / "r.jsonl")).reports["account_balance"]
    record = parity_record(report, "live", judged_at="2026-11-24T14:30:00.000Z")
    stored = record.to_hash()
    assert (stored["resyncs"], stored["resynced_missed"], stored["gaps"]) == ("2", "17", "0")
    assert json.loads(stored["thresholds"])["max_resyncs"] == 3
    assert ParityRecord.from_hash(stored).counts == report.counts
    assert record.health() == "2 resyncs"
    assert not record.stream_problem()
    assert ParityRecord.from_hash({**stored, "gaps": "1"}).health() == "1 gaps · 2 resyncs"

    client.hset(keys.parity("account_balance"), mapping=stored)
    status = json.loads(run("status", "--json").stdout)
    row = next(r for r in status["features"] if r["feature"] == "account_balance")
    assert row["parity"]["stream"] == "2 resyncs"
    assert row["parity"]["counts"]["resyncs"] == 2
    table = run("status").stdout
    assert "2 resyncs" in next(line for line in table.splitlines() if "account_balance" in line)
