"""The verdict report of ``check``/``diff`` (``thorcut.parity.report``): the table of differing paths
with both values, escaped network text, the JUnit file and GitHub Actions annotations; and (issue 9)
where there is no terminal (CI logs, pipes, ``COLUMNS=80``) every verdict, count and reason kept
whole — no ``PEND…``, no dropped ``why`` column."""

from __future__ import annotations

import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from rich.console import Console

from tests.parity.build import balance, positions, steady
from tests.runner import Run
from thorcut.compare.shadow import FeatureReport, PathStat
from thorcut.manifest import Thresholds
from thorcut.parity.report import render
from thorcut.verdict import Verdict

# -- what the report shows ------------------------------------------------------------------------


def test_diff_report_shows_a_table_of_paths_with_both_values(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.25), balance(2.5))
    result = run("diff", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "equity" in line and "changed" in line)
    assert "1.25" in row
    assert "2.5" in row


def test_network_text_is_escaped_in_the_report(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(note="[bold]x\x1b[2J"), balance(note="y"))
    result = run("diff", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert "\x1b" not in result.stdout
    assert "[bold]x" in result.stdout


# -- JUnit and GitHub Actions ---------------------------------------------------------------------


def test_junit_has_one_case_per_feature(run: Run, tmp_path: Path) -> None:
    rec = steady(n=61).pair(70, "positions", "DU1234", 1, positions([("ES", 1, 1.0)]), positions([("ES", 1, 2.0)]))
    junit = tmp_path / "parity.xml"
    result = run("check", "--all", "--replay", str(rec.write(tmp_path / "r.jsonl")), "--junit", str(junit))
    assert result.exit_code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"account_balance", "positions", "intraday", "global_market"}
    assert cases["account_balance"].find("failure") is None
    assert cases["account_balance"].find("skipped") is None
    failure = cases["positions"].find("failure")
    assert failure is not None
    assert "positions[symbol=ES].last_price" in (failure.text or "")
    assert cases["intraday"].find("skipped") is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")


def test_github_actions_annotations(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.0), balance(2.0))
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert "::error title=thorcut parity FAIL: account_balance::" in result.stdout
    assert "equity" in result.stdout


def test_no_annotations_outside_github_actions(run: Run, tmp_path: Path) -> None:
    rec = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.0), balance(2.0))
    path = str(rec.write(tmp_path / "r.jsonl"))
    for github_actions in (None, "false", "1"):  # only GITHUB_ACTIONS=true means GitHub Actions
        result = run("check", "account_balance", "--replay", path, env={"GITHUB_ACTIONS": github_actions})
        # The same FAIL as under GitHub Actions is judged and reported...
        assert result.exit_code == 1, (github_actions, result.stdout + result.stderr)
        assert result.stderr == "Error: account_balance FAIL\n"
        row = next(line for line in result.stdout.splitlines() if "account_balance" in line)
        assert "FAIL" in row
        assert "mismatch rate 1.79% > 0.00% (1 of 56 pairs)" in row
        assert "equity" in result.stdout
        # ...but no workflow command is printed, on either stream.
        output = result.stdout + result.stderr
        assert "::error" not in output, github_actions
        assert not [line for line in output.splitlines() if line.startswith("::")], github_actions


# -- issue 9: where there is no terminal ----------------------------------------------------------

COUNTS = {"samples": 12, "paired": 12, "matched": 9, "mismatched": 3, "unpaired": 4, "gaps": 1, "missed": 2,
          "duplicates": 1, "out_of_order": 0, "errors": 2}  # fmt: skip


def report(feature: str, verdict: Verdict, reasons: tuple[str, ...], paths: tuple[PathStat, ...] = ()) -> FeatureReport:
    return FeatureReport(feature, verdict, reasons, dict(COUNTS), {}, {}, {}, paths, (), 12.0, None, None,
                         Thresholds())  # fmt: skip


REPORTS = {
    "account_balance": report("account_balance", Verdict.PENDING,
                              ("only 12 paired samples, need at least 50", "window 12 s, need at least 60 s")),
    "positions": report("positions", Verdict.FAIL, ("mismatch rate 25.00% > 0.00% (3 of 12 pairs)",),
                        (PathStat("positions[symbol=AAPL].avg_price", "changed", 3, 1.5, 1.25, "DU1234", 4812),)),
    "global_market": report("global_market", Verdict.PASS, ()),
}  # fmt: skip


def rendered(width: int) -> str:
    buffer = io.StringIO()  # not a terminal
    render(Console(file=buffer, width=width, highlight=False, soft_wrap=True), REPORTS, "thorcut check · live")
    return buffer.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_report_keeps_every_verdict_count_and_reason_whole_at_any_width(width: int) -> None:
    text = rendered(width)
    assert "…" not in text, text
    tables = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in tables), text
    words = text.replace("│", " ").split()
    for verdict in ("PENDING", "FAIL", "PASS"):
        assert verdict in words, (verdict, text)
    for reason in ("only 12 paired samples, need at least 50", "window 12 s, need at least 60 s",
                   "mismatch rate 25.00% > 0.00% (3 of 12 pairs)"):  # fmt: skip
        for word in reason.split():
            assert word.strip(";") in " ".join(words), (word, text)
    assert "positions[symbol=AAPL].avg_price" in "".join(text.replace("│", "").split()), text


@pytest.mark.parametrize("width", [60, 80])
def test_report_at_ci_widths_shows_counts_and_reasons_as_lines(width: int) -> None:
    text = rendered(width)
    assert "account_balance  PENDING" in text
    assert "  why: only 12 paired samples, need at least 50; window 12 s, need at least 60 s" in text
    counts = " ".join(line.strip() for line in text.splitlines() if line.startswith("  paired") or "dups" in line)
    for part in ("paired 12", "matched 9", "mismatched 3", "unpaired 4", "gaps 1", "dups 1", "errors 2"):
        assert part in counts, (part, text)
    assert "  positions[symbol=AAPL].avg_price  changed ×3  (key DU1234 · seq 4812)" in text
    assert "    WebSocket: 1.5" in text
    assert "    REST: 1.25" in text


def test_report_at_200_columns_is_a_table() -> None:
    text = rendered(200)
    row = next(line for line in text.splitlines() if "account_balance" in line)
    assert row.startswith("│ account_balance │ PENDING │")
    assert "only 12 paired samples, need at least 50; window 12 s, need at least 60 s" in row


RECORDING = [
    {"thorcut_recording": 1, "created": "2026-01-01T00:00:00.000Z", "manifest": {}},
    {"at": "2026-01-01T00:00:00.000Z", "src": "ws",
     "msg": {"type": "positions", "feature": "positions", "key": "DU1234", "seq": 1, "ts": "2026-01-01T00:00:00.000Z",
             "data": {"positions": [{"symbol": "AAPL", "qty": 1, "avg_price": 1.5}]}}},
    {"at": "2026-01-01T00:00:00.100Z", "src": "rest", "feature": "positions", "url": "/api/account/positions",
     "status": 200, "elapsed_ms": 3.1,
     "body": {"type": "positions", "feature": "positions", "key": "DU1234", "seq": 1, "ts": "2026-01-01T00:00:00.000Z",
              "data": {"positions": [{"symbol": "AAPL", "qty": 2, "avg_price": 1.25}]}}},
]  # fmt: skip


@pytest.mark.parametrize("columns", ["60", "80"])
def test_diff_replay_without_a_terminal_keeps_the_verdict_and_why(run: Run, tmp_path: Path, columns: str) -> None:
    recording = tmp_path / "r.jsonl"
    recording.write_text("".join(json.dumps(line) + "\n" for line in RECORDING))
    result = run("diff", "positions", "--replay", str(recording), env={"COLUMNS": columns})
    assert result.exit_code == 1, result.stderr
    assert "positions  FAIL" in result.stdout
    assert "paired 1 · matched 0 · mismatched 1" in result.stdout
    assert "  why: mismatch rate 100.00% > 0.00% (1 of 1 pairs)" in result.stdout
    assert "…" not in result.stdout
