"""Recordings written by another tool or by hand (issue 9): only the fields docs/contracts.md requires,
keys in any order, ``json.dumps`` defaults, no thorcut markers. Each is judged exactly like the
same traffic written by thorcut: same verdicts, counts, differing paths and reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.parity.build import Recording, balance, envelope, plain_lines, positions, steady, write_plain, write_thorcut
from tests.runner import Run


def judged(run: Run, path: Path, *features: str) -> tuple[int, dict[str, Any]]:
    result = run("check", *(features or ("--all",)), "--replay", str(path), "--json")
    assert result.exit_code in (0, 1, 5), result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout)["features"]


def same_judgement(run: Run, tmp_path: Path, rec: Recording, *features: str) -> dict[str, Any]:
    """Judge ``rec`` written three ways; assert one judgement; return it."""
    as_thorcut = judged(run, write_thorcut(rec, tmp_path / "thorcut.jsonl"), *features)
    as_built = judged(run, rec.write(tmp_path / "built.jsonl"), *features)
    for seed in (1, 2):
        as_plain = judged(run, write_plain(rec, tmp_path / f"plain{seed}.jsonl", seed=seed), *features)
        assert as_plain == as_thorcut == as_built
    return as_thorcut[1]


def test_plain_lines_hold_only_the_required_fields() -> None:
    lines = plain_lines(steady(n=1), seed=3)
    rest = json.loads(lines[2])
    assert set(rest) == {"at", "src", "feature", "url", "status", "elapsed_ms", "body"}
    assert ", " in lines[2]  # json.dumps' default separators
    assert "data_last" not in "".join(lines)


def test_pass(run: Run, tmp_path: Path) -> None:
    f = same_judgement(run, tmp_path, steady(n=61), "account_balance")["account_balance"]
    assert f["verdict"] == "PASS"
    assert f["counts"]["matched"] == 61


def test_fail_names_the_path(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.25), balance(2.5))
    rec.pair(62, "positions", "DU1234", 1, positions([("ES", 1, 10.0), ("NQ", 2, 5.0)]),
             positions([("NQ", 2, 5.0), ("ES", 1, 10.5)]))  # fmt: skip
    f = same_judgement(run, tmp_path, rec, "account_balance", "positions")
    assert f["account_balance"]["verdict"] == "FAIL"
    assert [(p["path"], p["ws"], p["rest"]) for p in f["account_balance"]["paths"]] == [("equity", 1.25, 2.5)]
    assert [p["path"] for p in f["positions"]["paths"]] == ["positions[symbol=ES].last_price"]


def test_pending(run: Run, tmp_path: Path) -> None:
    f = same_judgement(run, tmp_path, steady(n=20, every=4), "account_balance")["account_balance"]
    assert f["verdict"] == "PENDING"
    assert "20 paired samples < 50 needed" in f["reasons"]


@pytest.mark.parametrize(("seqs", "counter"), [([1, 2, 4, 5], "gaps"), ([1, 2, 2, 3], "duplicates")])
def test_gaps_and_duplicates_fail(run: Run, tmp_path: Path, seqs: list[int], counter: str) -> None:
    rec = steady(n=60)
    for i, s in enumerate(seqs):
        rec.pair(100 + i, "account_balance", "DU9999", s, balance(float(s)))
    f = same_judgement(run, tmp_path, rec, "account_balance")["account_balance"]
    assert f["verdict"] == "FAIL"
    assert f["counts"][counter] == 1


def test_rest_ahead_behind_and_caught_up(run: Run, tmp_path: Path) -> None:
    rec = steady(n=60)
    rec.ws(70, envelope("account_balance", "DU1234", 61, balance(5.0)))  # REST already ahead
    rec.rest(70.1, "account_balance", "DU1234", 61, envelope("account_balance", "DU1234", 62, balance(6.0)))
    rec.ws(71, envelope("account_balance", "DU7777", 5, balance(5.0)))  # REST behind, then caught up
    rec.rest(71.1, "account_balance", "DU7777", 5, envelope("account_balance", "DU7777", 4, balance(4.0)))
    rec.rest(71.2, "account_balance", "DU7777", 5, envelope("account_balance", "DU7777", 5, balance(5.0)))
    rec.ws(72, envelope("account_balance", "DU8888", 9, balance(9.0)))  # REST never reached it
    rec.rest(72.1, "account_balance", "DU8888", 9, envelope("account_balance", "DU8888", 8, balance(8.0)))
    f = same_judgement(run, tmp_path, rec, "account_balance")["account_balance"]
    assert f["verdict"] == "PASS"
    assert (f["counts"]["paired"], f["counts"]["unpaired"]) == (61, 2)
    assert f["unpaired_why"] == {"rest_ahead": 1, "rest_behind": 1}


def test_rest_failures_give_the_same_verdict_and_counts(run: Run, tmp_path: Path) -> None:
    """Without for_seq a failure cannot be charged to its sample: the same counts, and the sample
    is unpaired at the end (rest_behind) rather than at once (rest_error)."""
    rec = steady(n=60)
    for i, kwargs in enumerate([{"status": 500, "body": {"detail": "boom"}}, {"raw": "<html>oops</html>"},
                                {"error": "timeout"}]):  # fmt: skip
        rec.ws(100 + i, envelope("account_balance", "DU1234", 61 + i, balance()))
        rec.rest(100.1 + i, "account_balance", "DU1234", 61 + i, **kwargs)  # type: ignore[arg-type]
    _, thorcut = judged(run, write_thorcut(rec, tmp_path / "t.jsonl"), "account_balance")
    _, plain = judged(run, write_plain(rec, tmp_path / "p.jsonl"), "account_balance")
    t, p = thorcut["account_balance"], plain["account_balance"]
    assert (p["verdict"], p["reasons"], p["counts"], p["rest_errors"]) == (
        t["verdict"], t["reasons"], t["counts"], t["rest_errors"])  # fmt: skip
    assert t["unpaired_why"] == {"rest_error": 3}
    assert p["unpaired_why"] == {"rest_behind": 3}


def test_type_and_key_come_from_the_url_when_the_body_has_none(run: Run, tmp_path: Path) -> None:
    """Raw REST bodies (no envelope), absolute URLs, a URL-encoded key, a query in another order."""
    (tmp_path / "thorcut.toml").write_text(
        "[features.intraday.rest_locators]\nseq = 'version'\nkey = ''\nbody = 'bar'\n"
        "[features.intraday.thresholds]\nmin_paired = 4\nmin_duration = 1\n"
        "[features.global_market.rest_locators]\nseq = 'version'\nkey = ''\nbody = 'state'\n"
    )
    rec = Recording()
    lines = rec.lines
    for i, (type_, url) in enumerate([("intraday_bar", "http://thor.example:8000/api/intraday/ES%2FM6/bar"),
                                      ("vwap", "/api/intraday/ES%2FM6/vwap"),
                                      ("intraday_bar", "/thor/api/intraday/ES%2FM6/bar?x=1"),
                                      ("vwap", "https://thor.example/api/intraday/ES%2FM6/vwap/")]):  # fmt: skip
        bar = {"close": 10.0 + i}
        lines.append(json.dumps({"src": "ws", "at": f"2026-11-24T14:00:0{i}.000Z",
                                 "msg": envelope(type_, "ES/M6", i // 2 + 1, bar)}))  # fmt: skip
        lines.append(json.dumps({"url": url, "body": {"version": i // 2 + 1, "bar": bar},
                                 "elapsed_ms": 2, "status": 200, "feature": "intraday", "src": "rest",
                                 "at": f"2026-11-24T14:00:0{i}.500Z"}))  # fmt: skip
    lines.append(json.dumps({"src": "ws", "at": "2026-11-24T14:00:05.000Z",
                             "msg": envelope("market_status", "XNYS", 7, {"open": True})}))  # fmt: skip
    lines.append(json.dumps({"src": "rest", "at": "2026-11-24T14:00:05.100Z", "feature": "global_market",
                             "url": "/api/markets/status?lang=en&market=XNYS", "status": 200, "elapsed_ms": 1,
                             "body": {"version": 7, "state": {"open": 1}}}))  # fmt: skip
    code, f = judged(run, rec.write(tmp_path / "r.jsonl"), "intraday", "global_market")
    assert f["intraday"]["verdict"] == "PASS", f["intraday"]
    assert f["intraday"]["counts"]["matched"] == 4
    gm = f["global_market"]
    assert gm["counts"]["paired"] == 1
    assert [(p["path"], p["kind"]) for p in gm["paths"]] == [("open", "type_changed")]  # true is not 1
    assert code == 1


def test_a_rest_line_nothing_attributes_is_bad_input_naming_it(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    rec.lines.append(json.dumps({"at": "2026-11-24T14:01:00.000Z", "src": "rest", "feature": "account_balance",
                                 "url": "/somewhere/else", "status": 503, "elapsed_ms": 1.0,
                                 "body": {"detail": "down"}}))  # fmt: skip
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 6: cannot tell the key of this account_balance REST response" in result.stderr
    assert "'/somewhere/else'" in result.stderr
    # A feature not judged is not looked at.
    assert run("check", "positions", "--replay", str(tmp_path / "r.jsonl")).exit_code == 5


def test_a_rest_type_of_another_feature_is_bad_input(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    rec.lines.append(json.dumps({"at": "2026-11-24T14:01:00.000Z", "src": "rest", "feature": "account_balance",
                                 "type": "positions", "key": "DU1234", "url": "/x", "status": 200,
                                 "elapsed_ms": 1.0, "body": envelope("positions", "DU1234", 1, {})}))  # fmt: skip
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 6: 'positions' is not a message type of account_balance" in result.stderr
