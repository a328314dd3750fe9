"""``check``/``diff`` leave through the documented errors (issue 9): one path per exit code, a
one-line ``Error:`` summary on stderr, the report (or ``--json``) intact on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.parity.build import balance, positions, steady
from tests.runner import Run


def test_fail_exits_1_with_a_one_line_summary(run: Run, tmp_path: Path) -> None:
    rec = steady(n=20).pair(30, "positions", "DU1234", 1, positions([("ES", 1, 1.0)]), positions([("ES", 2, 1.0)]))
    path = rec.write(tmp_path / "r.jsonl")
    result = run("check", "--all", "--replay", str(path))
    assert result.exit_code == 1
    assert result.stderr == "Error: positions FAIL; 3 features PENDING (account_balance, intraday, global_market)\n"
    assert "positions[symbol=ES].quantity" in result.stdout  # the report stays on stdout
    as_json = run("check", "--all", "--replay", str(path), "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["exit_code"] == 1
    assert as_json.stderr.startswith("Error: positions FAIL")


def test_pending_exits_5(run: Run, tmp_path: Path) -> None:
    result = run("check", "account_balance", "--replay", str(steady(n=10).write(tmp_path / "r.jsonl")))
    assert result.exit_code == 5
    assert result.stderr == "Error: account_balance PENDING\n"


def test_pass_exits_0_quietly(run: Run, tmp_path: Path) -> None:
    result = run("diff", "account_balance", "--replay", str(steady(n=61).write(tmp_path / "r.jsonl")))
    assert result.exit_code == 0
    assert result.stderr == ""


def test_the_commands_raise_errors_never_typer_exit() -> None:
    source = (Path(__file__).parents[2] / "thorcut" / "commands" / "parity.py").read_text()
    assert "typer.Exit" not in source


@pytest.mark.parametrize("value", ["inf", "nan", "1e309", "-inf", "-1", "0", "0.01", "604801"])
@pytest.mark.parametrize("command", ["diff", "check"])
def test_a_duration_that_never_ends_or_means_nothing_exits_2(run: Run, command: str, value: str) -> None:
    # Before issue 9, `diff --duration inf` sampled forever.
    result = run(command, "positions", "--duration", value)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "--duration must be a number of seconds from 0.1 to 604800 (7 days)" in result.stderr
    assert "e.g. --duration 65" in result.stderr


@pytest.mark.parametrize("value", ["0", "-3", "1000000001", "9" * 400])
def test_samples_out_of_range_exits_2(run: Run, tmp_path: Path, value: str) -> None:
    result = run("check", "account_balance", "--samples", value, "--replay",
                 str(steady(n=3).write(tmp_path / "r.jsonl")))  # fmt: skip
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "--samples must be a whole number from 1 to 1,000,000,000" in result.stderr
    assert "Traceback" not in result.stderr


def test_samples_at_the_bound_is_just_pending(run: Run, tmp_path: Path) -> None:
    result = run("check", "account_balance", "--samples", "1000000000", "--replay",
                 str(steady(n=61).write(tmp_path / "r.jsonl")), "--json")  # fmt: skip
    assert result.exit_code == 5
    reasons = json.loads(result.stdout)["features"]["account_balance"]["reasons"]
    assert "61 paired samples < 1000000000 needed" in reasons


def test_a_fail_with_pending_and_junit(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.0), balance(2.0))
    junit = tmp_path / "j.xml"
    result = run("check", "account_balance", "positions", "--replay", str(rec.write(tmp_path / "r.jsonl")),
                 "--junit", str(junit))  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == "Error: account_balance FAIL; positions PENDING\n"
    assert junit.exists()
