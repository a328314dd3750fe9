"""Which features a replay judges (issue 9): with none named, those the recording holds."""

from __future__ import annotations

import json
from pathlib import Path

from tests.parity.build import Recording, balance, steady
from tests.runner import Run


def test_check_with_no_feature_judges_the_one_the_recording_holds(run: Run, tmp_path: Path) -> None:
    # Before issue 9: the three absent features came out PENDING and the run exited 5.
    path = steady(n=61).write(tmp_path / "r.jsonl")
    result = run("check", "--replay", str(path), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert list(json.loads(result.stdout)["features"]) == ["account_balance"]


def test_diff_with_no_feature_judges_the_recording(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.0), balance(2.0))
    result = run("diff", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 1
    assert "equity" in result.stdout
    assert result.stderr == "Error: account_balance FAIL\n"


def test_the_header_may_list_the_features(run: Run, tmp_path: Path) -> None:
    rec = steady(n=61)
    rec.lines[0] = json.dumps({"thorcut_recording": 1, "created": "x", "manifest": {},
                               "features": ["account_balance", "positions"]})  # fmt: skip
    result = run("check", "--replay", str(rec.write(tmp_path / "r.jsonl")), "--json")
    assert result.exit_code == 5
    features = json.loads(result.stdout)["features"]
    assert list(features) == ["account_balance", "positions"]
    assert features["account_balance"]["verdict"] == "PASS"
    assert features["positions"]["verdict"] == "PENDING"
    assert features["positions"]["reasons"][0] == "the recording holds no positions messages"
    assert result.stderr == "Error: positions PENDING\n"


def test_a_header_listing_an_unknown_feature_is_bad_input(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    rec.lines[0] = json.dumps({"thorcut_recording": 1, "features": ["balances"]})
    result = run("check", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 1: the header lists 'balances', which the manifest does not define" in result.stderr


def test_a_header_features_that_is_not_a_list_of_names_is_bad_input(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    rec.lines[0] = json.dumps({"thorcut_recording": 1, "features": "positions"})
    result = run("check", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 1: 'features' must be a list of feature names" in result.stderr


def test_a_named_feature_without_messages_is_pending_and_says_why(run: Run, tmp_path: Path) -> None:
    path = steady(n=61).write(tmp_path / "r.jsonl")
    result = run("check", "account_balance", "positions", "intraday", "--replay", str(path), "--json")
    assert result.exit_code == 5
    features = json.loads(result.stdout)["features"]
    for name in ("positions", "intraday"):
        assert features[name]["verdict"] == "PENDING"
        assert features[name]["reasons"][0] == f"the recording holds no {name} messages"
    assert result.stderr == "Error: 2 features PENDING (positions, intraday)\n"


def test_an_empty_recording_with_nothing_named_is_pending_never_pass(run: Run, tmp_path: Path) -> None:
    result = run("check", "--replay", str(Recording().write(tmp_path / "r.jsonl")), "--json")
    assert result.exit_code == 5
    features = json.loads(result.stdout)["features"]
    assert {f["verdict"] for f in features.values()} == {"PENDING"}
    assert len(features) == 4
