"""``thorcut check --replay`` / ``diff --replay`` on hand-made recordings: every kind of difference,
every verdict, every bad input. No network: the recordings are the whole input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import Result

from tests.parity.build import Recording, balance, envelope, positions, steady
from tests.runner import Run
from thorcut.redisconn import Keys


def check(run: Run, rec: Recording | Path, tmp_path: Path, *args: str) -> Result:
    path = rec if isinstance(rec, Path) else rec.write(tmp_path / "rec.jsonl")
    return run("check", "account_balance", "positions", "--replay", str(path), "--json", *args)


def feature(result: Result, name: str = "account_balance") -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = json.loads(result.stdout)["features"]
    return features[name]


# -- verdicts ------------------------------------------------------------------------------------


def test_enough_equal_pairs_over_the_window_pass(run: Run, tmp_path: Path) -> None:
    rec = steady(n=61)
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    f = feature(result)
    assert f["verdict"] == "PASS"
    assert f["counts"]["paired"] == f["counts"]["matched"] == 61
    assert f["window_s"] == pytest.approx(60.01)


def test_too_few_pairs_is_pending_exit_5(run: Run, tmp_path: Path) -> None:
    result = run("check", "account_balance", "--replay", str(steady(n=20, every=4).write(tmp_path / "r.jsonl")))
    assert result.exit_code == 5
    assert "PENDING" in result.stdout
    assert "20 paired samples < 50 needed" in result.stdout


def test_too_short_a_window_is_pending(run: Run, tmp_path: Path) -> None:
    result = run("check", "account_balance", "--json", "--replay",
                 str(steady(n=100, every=0.1).write(tmp_path / "r.jsonl")))  # fmt: skip
    assert result.exit_code == 5
    assert feature(result)["verdict"] == "PENDING"
    assert any("window" in r for r in feature(result)["reasons"])


def test_no_traffic_at_all_is_pending_never_pass(run: Run, tmp_path: Path) -> None:
    result = run("check", "--all", "--json", "--replay", str(Recording().write(tmp_path / "r.jsonl")))
    assert result.exit_code == 5
    assert {f["verdict"] for f in json.loads(result.stdout)["features"].values()} == {"PENDING"}


def test_fail_wins_over_pending_exit_1(run: Run, tmp_path: Path) -> None:
    rec = steady(n=3)
    rec.pair(5, "positions", "DU1234", 1, positions([("ES", 1, 10.0)]), positions([("ES", 2, 10.0)]))
    result = check(run, rec, tmp_path)
    assert result.exit_code == 1
    assert feature(result)["verdict"] == "PENDING"
    assert feature(result, "positions")["verdict"] == "FAIL"


def test_samples_option_lowers_the_minimum(run: Run, tmp_path: Path) -> None:
    path = str(steady(n=10, every=7).write(tmp_path / "r.jsonl"))  # 10 equal pairs over 63 s
    default = run("check", "account_balance", "--replay", path, "--json")
    assert default.exit_code == 5, default.stdout + default.stderr
    assert feature(default)["reasons"] == ["10 paired samples < 50 needed"]  # too few for the default
    lowered = run("check", "account_balance", "--samples", "10", "--replay", path, "--json")
    assert lowered.exit_code == 0, lowered.stdout + lowered.stderr
    assert lowered.stderr == ""
    f = feature(lowered)
    assert (f["verdict"], f["counts"]["paired"], f["counts"]["matched"]) == ("PASS", 10, 10)
    assert not any("needed" in reason for reason in f["reasons"]), f["reasons"]
    above = run("check", "account_balance", "--samples", "11", "--replay", path, "--json")
    assert above.exit_code == 5, above.stdout + above.stderr  # the option sets the minimum; it never waives it
    assert feature(above)["reasons"] == ["10 paired samples < 11 needed"]


def test_manifest_thresholds_apply(run: Run, tmp_path: Path) -> None:
    (tmp_path / "thorcut.toml").write_text(
        "[features.account_balance.thresholds]\nmin_paired = 5\nmin_duration = 4\nmax_mismatch_rate = 0.5\n"
    )
    rec = steady(n=5)
    rec.pair(5, "account_balance", "DU1234", 6, balance(1.0), balance(2.0))
    result = run("check", "account_balance", "--json", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 0, result.stdout
    assert feature(result)["counts"]["mismatched"] == 1  # 1 of 6 is within a 50 % allowance


# -- every kind of difference, with its exact path ------------------------------------------------


@pytest.mark.parametrize(
    ("ws", "rest", "path", "kind"),
    [
        (balance(1.0), balance(2.0), "equity", "changed"),
        ({k: v for k, v in balance().items() if k != "margin_used"}, balance(), "margin_used", "missing_on_ws"),
        (balance(extra_field=1), balance(), "extra_field", "extra_on_ws"),
        (balance(equity="100000.0"), balance(100_000.0), "equity", "type_changed"),  # type: ignore[arg-type]
        (balance(flag=True), balance(flag=1), "flag", "type_changed"),
        (balance(note=None), balance(), "note", "extra_on_ws"),  # null is not missing
    ],
)
def test_each_difference_is_named_with_both_values(
    run: Run, tmp_path: Path, ws: dict[str, Any], rest: dict[str, Any], path: str, kind: str
) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, ws, rest)
    result = check(run, rec, tmp_path)
    assert result.exit_code == 1
    f = feature(result)
    assert f["verdict"] == "FAIL"
    assert f["counts"]["mismatched"] == 1
    assert [(p["path"], p["kind"]) for p in f["paths"]] == [(path, kind)]
    assert f["paths"][0]["seq"] == 56


def test_list_length_and_keyed_item_differences(run: Run, tmp_path: Path) -> None:
    rec = Recording()
    rec.pair(1, "positions", "DU1234", 1, positions([("ES", 1, 10.0)]), positions([("ES", 1, 10.0), ("NQ", 2, 5.0)]))
    rec.pair(2, "positions", "DU1234", 2, positions([("ES", 1, 10.5)]), positions([("ES", 1, 10.0)]))
    result = check(run, rec, tmp_path)
    paths = {(p["path"], p["kind"]) for p in feature(result, "positions")["paths"]}
    assert ("positions[symbol=NQ]", "missing_on_ws") in paths
    assert ("positions[symbol=ES].last_price", "changed") in paths


def test_reordered_keyed_list_is_equal(run: Run, tmp_path: Path) -> None:
    rec = Recording()
    rows = [("ES", 1, 10.0), ("NQ", -2, 5.25), ("CL", 3, 70.1)]
    for i in range(60):
        rec.pair(i * 1.1, "positions", "DU1234", i + 1, positions(rows[::-1]), positions(rows))
    result = run("check", "positions", "--json", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 0, result.stdout
    assert feature(result, "positions")["counts"]["matched"] == 60


def test_envelope_metadata_is_not_compared(run: Run, tmp_path: Path) -> None:
    rec = Recording()
    for i in range(60):
        rec.ws(i * 1.1, envelope("account_balance", "DU1234", i + 1, balance(), t=i))
        rec.rest(i * 1.1 + 0.01, "account_balance", "DU1234", i + 1,
                 {**envelope("account_balance", "DU1234", i + 1, balance(), t=i + 0.5), "request_id": i})  # fmt: skip
    assert check(run, rec, tmp_path).exit_code == 5  # positions has no traffic; balance itself passed
    assert feature(check(run, rec, tmp_path))["verdict"] == "PASS"


# -- pairing and stream health --------------------------------------------------------------------


def test_rest_ahead_is_unpaired_not_a_mismatch(run: Run, tmp_path: Path) -> None:
    rec = steady(n=60)
    rec.ws(70, envelope("account_balance", "DU1234", 61, balance(5.0)))
    rec.rest(70.1, "account_balance", "DU1234", 61, envelope("account_balance", "DU1234", 62, balance(6.0)))
    f = feature(check(run, rec, tmp_path))
    assert f["verdict"] == "PASS"
    assert f["counts"]["unpaired"] == 1
    assert f["counts"]["mismatched"] == 0
    assert f["unpaired_why"] == {"rest_ahead": 1}


def test_rest_ahead_pairs_with_the_message_that_arrives_later(run: Run, tmp_path: Path) -> None:
    rec = Recording()
    rec.ws(0, envelope("account_balance", "DU1234", 1, balance(1.0)))
    rec.rest(0.1, "account_balance", "DU1234", 1, envelope("account_balance", "DU1234", 2, balance(2.0)))
    rec.ws(0.2, envelope("account_balance", "DU1234", 2, balance(2.5)))  # pairs with the held response
    f = feature(check(run, rec, tmp_path))
    assert f["counts"]["paired"] == 1
    assert f["paths"][0]["path"] == "equity"
    assert f["paths"][0]["ws"] == 2.5
    assert f["paths"][0]["rest"] == 2.0


def test_rest_behind_then_caught_up_pairs(run: Run, tmp_path: Path) -> None:
    rec = Recording()
    rec.ws(0, envelope("account_balance", "DU1234", 5, balance(5.0)))
    rec.rest(0.1, "account_balance", "DU1234", 5, envelope("account_balance", "DU1234", 4, balance(4.0)))
    rec.rest(0.2, "account_balance", "DU1234", 5, envelope("account_balance", "DU1234", 5, balance(5.0)))
    f = feature(check(run, rec, tmp_path))
    assert (f["counts"]["paired"], f["counts"]["matched"], f["counts"]["unpaired"]) == (1, 1, 0)


@pytest.mark.parametrize(
    ("seqs", "counter", "value"),
    [([1, 2, 4, 5], "gaps", 1), ([1, 2, 2, 3], "duplicates", 1), ([1, 3, 2, 4], "out_of_order", 1)],
)
def test_stream_health_counters_fail_the_feature(
    run: Run, tmp_path: Path, seqs: list[int], counter: str, value: int
) -> None:
    rec = steady(n=60)
    for i, s in enumerate(seqs):
        rec.pair(100 + i, "account_balance", "DU9999", s, balance(float(s)))
    result = check(run, rec, tmp_path)
    f = feature(result)
    assert result.exit_code == 1
    assert f["verdict"] == "FAIL"
    assert f["counts"][counter] == value
    assert any(counter.replace("_", "-") in r or counter in r for r in f["reasons"])


def test_gap_reports_how_many_seqs_were_missed(run: Run, tmp_path: Path) -> None:
    rec = Recording().pair(0, "account_balance", "DU1234", 1, balance())
    rec.pair(1, "account_balance", "DU1234", 9, balance())
    assert feature(check(run, rec, tmp_path))["health"]["missed"] == 7


def test_rest_failures_are_counted_by_kind(run: Run, tmp_path: Path) -> None:
    rec = steady(n=60)
    for i, kwargs in enumerate([{"status": 500, "body": {"detail": "boom"}}, {"raw": "<html>oops</html>"},
                                {"error": "timeout"}, {"body": {"no": "seq"}}]):  # fmt: skip
        rec.ws(100 + i, envelope("account_balance", "DU1234", 61 + i, balance()))
        rec.rest(100.1 + i, "account_balance", "DU1234", 61 + i, **kwargs)  # type: ignore[arg-type]
    f = feature(check(run, rec, tmp_path))
    assert f["rest_errors"] == {"http_500": 1, "not_json": 1, "timeout": 1, "no_seq": 1}
    assert f["counts"]["errors"] == 4
    assert f["counts"]["unpaired"] == 4


def test_non_json_frames_and_unknown_messages_are_counted_not_fatal(run: Run, tmp_path: Path) -> None:
    rec = steady(n=61).raw_ws(1, "garbage{").ws(2, {"hello": "world"}).ws(3, [1, 2])
    rec.ws(4, {"type": "account_balance", "key": "DU1234", "data": {}})  # no seq
    result = check(run, rec, tmp_path)
    body = json.loads(result.stdout)
    assert body["non_json_frames"] == 1
    assert feature(result)["counts"]["errors"] == 1
    assert feature(result)["verdict"] == "PASS"


# -- outputs --------------------------------------------------------------------------------------


def test_replay_is_deterministic(run: Run, tmp_path: Path) -> None:
    rec = steady(n=70)
    for i in range(30):
        rec.pair(80 + i, "positions", "DU1234", i + 1, positions([("ES", i, 1.0)]), positions([("ES", i % 3, 1.0)]))
    path = rec.write(tmp_path / "r.jsonl")
    first = run("check", "--all", "--replay", str(path), "--json").stdout
    second = run("check", "--all", "--replay", str(path), "--json").stdout
    assert first == second
    assert json.loads(first)["features"]["positions"]["verdict"] == "FAIL"


def test_replay_writes_nothing_to_redis(run: Run, tmp_path: Path, client: redis.Redis, keys: Keys) -> None:
    assert run("check", "account_balance", "--replay", str(steady(n=61).write(tmp_path / "r.jsonl"))).exit_code == 0
    assert client.exists(keys.parity("account_balance")) == 0


# -- bad input ------------------------------------------------------------------------------------


def test_unknown_feature_exits_2(run: Run, tmp_path: Path) -> None:
    result = run("check", "balances", "--replay", str(steady(n=1).write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "unknown feature 'balances'" in result.stderr
    assert "account_balance" in result.stderr


@pytest.mark.parametrize(
    ("content", "line", "why"),
    [
        ("", 1, "empty file"),
        ("not json\n", 1, "not JSON"),
        ('{"hello": 1}\n', 1, "not a thorcut recording"),
        ('{"thorcut_recording": 99}\n', 1, "format 99 is not supported"),
        ('{"thorcut_recording": 1}\n{"at": "x", "src": "ws", "msg": {}}\n{broken\n', 3, "not JSON"),
        ('{"thorcut_recording": 1}\n{"at": "x", "src": "carrier-pigeon"}\n', 2, "'src' must be"),
        ('{"thorcut_recording": 1}\n{"src": "ws", "msg": {}}\n', 2, "'at' must be a string"),
        ('{"thorcut_recording": 1}\n{"at": "x", "src": "ws"}\n', 2, "needs 'msg'"),
        ('{"thorcut_recording": 1}\n[1, 2]\n', 2, "expected a JSON object"),
        (
            '{"thorcut_recording": 1}\n{"at": "x", "src": "rest", "feature": "positions", "type": "positions", '
            '"key": "K", "url": "/", "status": "200", "body": {}}\n',
            2,
            "'status' must be an integer",
        ),
    ],
)
def test_malformed_recording_exits_2_naming_the_line(
    run: Run, tmp_path: Path, content: str, line: int, why: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = run("check", "--all", "--replay", str(path))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"line {line}" in result.stderr
    assert why in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_recording_exits_2(run: Run, tmp_path: Path) -> None:
    result = run("check", "--all", "--replay", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "cannot read recording" in result.stderr


def test_live_diff_needs_a_feature_or_all(run: Run) -> None:
    # Issue 9: a replay with no feature named judges what the recording holds
    # (tests/parity/test_replay_features.py); a live diff still needs to be told what to sample.
    result = run("diff", "--duration", "1")
    assert result.exit_code == 2
    assert "--all" in result.stderr
