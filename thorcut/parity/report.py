"""Showing verdicts: the Rich report, JSON, JUnit XML, GitHub annotations, and the Redis record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from thorcut.clock import now_iso
from thorcut.compare.shadow import FeatureReport, ShadowJudge
from thorcut.errors import ExitCode, UsageError
from thorcut.text import fit_table, pack, safe
from thorcut.verdict import ParityRecord, Verdict

STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.PENDING: "bold yellow"}
_VALUE_WIDTH = 60


def exit_code(reports: dict[str, FeatureReport]) -> ExitCode:
    """0 all PASS, 1 any FAIL, 5 any PENDING and none FAIL (docs/contracts.md, "Exit codes")."""
    verdicts = {r.verdict for r in reports.values()}
    if Verdict.FAIL in verdicts:
        return ExitCode.PARITY_FAIL
    if Verdict.PENDING in verdicts:
        return ExitCode.PENDING
    return ExitCode.OK


def value_text(value: Any, missing: bool = False) -> Text:
    """One compared value, JSON-encoded, shortened and escaped."""
    if missing:
        return Text("(missing)", style="dim italic")
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > _VALUE_WIDTH:
        text = text[: _VALUE_WIDTH - 1] + "…"
    return safe(text)


_COUNTS = (("paired", "paired"), ("matched", "matched"), ("mismatched", "mismatched"), ("unpaired", "unpaired"),
           ("gaps", "gaps"), ("resyncs", "resyncs"), ("dups", "duplicates"), ("errors", "errors"))  # fmt: skip


def _count(c: dict[str, int], key: str) -> int:
    return c["duplicates"] + c["out_of_order"] if key == "duplicates" else c.get(key, 0)


def verdict_lines(reports: dict[str, FeatureReport], title: str, width: int) -> Text:
    """The verdict table's facts as lines, for a width the table cannot fit in (CI logs, pipes):
    every verdict, count and reason whole."""
    text = Text(title, style="italic")
    for r in reports.values():
        text.append("\n")
        text.append(r.feature, style="bold")
        text.append("  ")
        text.append(r.verdict.value, style=STYLE[r.verdict])
        counts = [f"{label} {_count(r.counts, key)}" for label, key in _COUNTS]
        text.append("\n" + pack(counts, width))
        if r.reasons:
            text.append("\n  why: ")
            text.append_text(safe("; ".join(r.reasons)))
    return text


def verdict_table(reports: dict[str, FeatureReport], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("feature", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for name in ("paired", "matched", "mismatched", "unpaired", "gaps", "resyncs", "dups", "errors"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("why", ratio=1)
    for r in reports.values():
        c = r.counts
        resyncs = c.get("resyncs", 0)
        table.add_row(
            r.feature,
            Text(r.verdict.value, style=STYLE[r.verdict]),
            str(c["paired"]),
            str(c["matched"]),
            Text(str(c["mismatched"]), style="red" if c["mismatched"] else ""),
            str(c["unpaired"]),
            Text(str(c["gaps"]), style="red" if c["gaps"] else ""),
            Text(str(resyncs), style=("red" if resyncs > r.thresholds.max_resyncs else "yellow") if resyncs else ""),
            Text(str(c["duplicates"] + c["out_of_order"]), style="red" if c["duplicates"] + c["out_of_order"] else ""),
            Text(str(c["errors"]), style="yellow" if c["errors"] else ""),
            "; ".join(r.reasons),
        )
    return table


def paths_table(r: FeatureReport) -> Table:
    table = Table(title=f"{r.feature}: differing paths (WebSocket vs REST, first example of each)",
                  title_justify="left")  # fmt: skip
    table.add_column("path", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("times", justify="right")
    table.add_column("WebSocket", overflow="fold")
    table.add_column("REST", overflow="fold")
    table.add_column("key · seq", no_wrap=True)
    for p in r.paths:
        table.add_row(safe(p.path or "(body)"), p.kind, str(p.count),
                      value_text(p.ws, p.kind == "missing_on_ws"), value_text(p.rest, p.kind == "extra_on_ws"),
                      safe(f"{p.key} · {p.seq}"))  # fmt: skip
    return table


def details(r: FeatureReport) -> Text | None:
    """Health and error detail lines worth showing under the table, or None."""
    bits = []
    h = r.health
    if h.get("gaps"):
        bits.append(f"{h['gaps']} gap(s), {h['missed']} seq(s) missed")
    if h.get("resyncs"):
        bits.append(f"{h['resyncs']} resync(s), {h.get('resynced_missed', 0)} seq(s) skipped")
    if h.get("duplicates"):
        bits.append(f"{h['duplicates']} duplicate(s)")
    if h.get("out_of_order"):
        bits.append(f"{h['out_of_order']} out of order")
    if r.rest_errors:
        bits.append("REST errors: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.rest_errors.items())))
    if r.unpaired_why:
        bits.append("unpaired: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.unpaired_why.items())))
    if h.get("messages"):
        bits.append(f"freshness lag mean {h['lag_ms_mean']} ms, max {h['lag_ms_max']} ms")
    if not bits:
        return None
    return safe(f"{r.feature}: " + " · ".join(bits))


def paths_lines(r: FeatureReport) -> Text:
    """The paths table's facts as lines, for a width the table cannot fit in."""
    text = Text(f"{r.feature}: differing paths (WebSocket vs REST, first example of each)", style="italic")
    for p in r.paths:
        text.append("\n  ")
        text.append_text(safe(p.path or "(body)"))
        text.append(f"  {p.kind} ×{p.count}  ", style="bold")
        text.append_text(safe(f"(key {p.key} · seq {p.seq})"))
        text.append("\n    WebSocket: ")
        text.append_text(value_text(p.ws, p.kind == "missing_on_ws"))
        text.append("\n    REST: ")
        text.append_text(value_text(p.rest, p.kind == "extra_on_ws"))
    return text


def render(console: Console, reports: dict[str, FeatureReport], title: str, *, show_paths: bool = True) -> None:
    """Print the verdicts (and differing paths) readably at the console's width: as tables where
    they fit without cutting a word, else as lines (CI logs and pipes are often 80 wide)."""
    table = verdict_table(reports, title)
    parts: list[Any] = [table if fit_table(console, table) else verdict_lines(reports, title, console.width)]
    for r in reports.values():
        line = details(r)
        if line is not None:
            line.stylize("dim")
            parts.append(line)
    if show_paths:
        for r in reports.values():
            if r.paths:
                paths = paths_table(r)
                parts.append(paths if fit_table(console, paths) else paths_lines(r))
    console.print(Group(*parts))


def to_json(reports: dict[str, FeatureReport], **meta: Any) -> dict[str, Any]:
    return {**meta, "exit_code": int(exit_code(reports)), "features": {n: r.to_dict() for n, r in reports.items()}}


def write_junit(path: Path, reports: dict[str, FeatureReport], suite: str, elapsed: float) -> None:
    """One test case per feature: FAIL is a failure, PENDING a skipped case with its reasons."""
    counts = [r.verdict for r in reports.values()]
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(counts)),
                       failures=str(counts.count(Verdict.FAIL)), skipped=str(counts.count(Verdict.PENDING)),
                       errors="0", time=f"{elapsed:.3f}", timestamp=now_iso())  # fmt: skip
    for r in reports.values():
        case = ET.SubElement(ts, "testcase", classname="thorcut.parity", name=r.feature, time=f"{r.window_s:.3f}")
        summary = "; ".join(r.reasons)
        body = json.dumps({"counts": r.counts, "paths": [p.to_dict() for p in r.paths[:20]]}, indent=2, default=str)
        if r.verdict is Verdict.FAIL:
            ET.SubElement(case, "failure", message=f"FAIL: {summary}", type="ParityFailed").text = body
        elif r.verdict is Verdict.PENDING:
            ET.SubElement(case, "skipped", message=f"PENDING: {summary}")
        ET.SubElement(case, "system-out").text = body
    try:
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise UsageError(f"cannot write JUnit report {path}: {exc.strerror}") from None


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_annotations(reports: dict[str, FeatureReport]) -> list[str]:
    """``::error``/``::warning`` workflow commands when running under GitHub Actions."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return []
    lines = []
    for r in reports.values():
        if r.verdict is Verdict.FAIL:
            first = r.paths[0] if r.paths else None
            where = f" (first differing path: {first.path}, {first.kind})" if first else ""
            msg = _escape_annotation(f"{'; '.join(r.reasons)}{where}")
            lines.append(f"::error title=thorcut parity FAIL: {r.feature}::{msg}")
        elif r.verdict is Verdict.PENDING:
            msg = _escape_annotation("; ".join(r.reasons))
            lines.append(f"::warning title=thorcut parity PENDING: {r.feature}::{msg}")
    return lines


def parity_record(r: FeatureReport, source: str, judged_at: str | None = None) -> ParityRecord:
    """The stored record (``{prefix}:parity:<feature>``) of one report."""
    return ParityRecord.judged(
        r.verdict, judged_at=judged_at or now_iso(), source=source, reasons=r.reasons,
        window=(r.first_at, r.last_at, r.window_s), thresholds=vars(r.thresholds), health=r.health,
        rest_errors=r.rest_errors, counts=r.counts, last_mismatch=r.examples[-1] if r.examples else None,
    )  # fmt: skip


def mismatch_examples(r: FeatureReport) -> list[str]:
    """The run's mismatch examples, oldest first (LPUSH leaves the newest at the head)."""
    return [json.dumps(e, default=str) for e in r.examples]


def progress(judge: ShadowJudge, elapsed: float, duration: float) -> Group:
    """The live view while sampling: per feature, progress toward the minimum samples and window."""
    table = Table(title=f"sampling · {elapsed:.0f}/{duration:.0f} s", title_justify="left")
    for col in ("feature", "samples", "paired", "toward min", "match rate", "unpaired", "gaps", "resyncs", "dups",
                "errors"):  # fmt: skip
        table.add_column(col, justify="left" if col == "feature" else "right", no_wrap=True)
    for name, t in judge.tallies.items():
        h = judge.health.totals(t.spec.types)
        need = t.spec.thresholds.min_paired
        rate = f"{t.matched / t.paired:.1%}" if t.paired else "—"
        toward = f"{min(t.paired, need)}/{need} · {min(elapsed, t.spec.thresholds.min_duration):.0f}/" \
                 f"{t.spec.thresholds.min_duration:.0f} s"  # fmt: skip
        table.add_row(name, str(t.samples), str(t.paired), toward,
                      Text(rate, style="green" if t.paired and t.matched == t.paired else "red" if t.paired else ""),
                      str(t.unpaired), Text(str(h.gaps), style="red" if h.gaps else ""),
                      Text(str(h.resyncs), style="yellow" if h.resyncs else ""), str(h.duplicates),
                      str(t.errors))  # fmt: skip
    foot = Text(f"non-JSON frames {judge.non_json} · other messages {judge.other}", style="dim")
    r = judge.health.resumes
    if r.sent or r.healed:
        foot.append(f" · {r.text()}")
    return Group(table, foot)
