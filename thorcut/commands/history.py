"""``thorcut history``: the audit log of stage changes, and verification of its hash chain."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from thorcut.cli.options import ConfigOpt, JsonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.cli.output import out, print_json
from thorcut.cli.session import open_session
from thorcut.errors import AuditChainBroken
from thorcut.flags.stages import check_feature
from thorcut.text import safe

app = typer.Typer()


@app.command()
def history(
    feature: str | None = typer.Argument(None, help="Only this feature's changes."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show at most this many entries (newest first)."),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Recompute the hash chain; exit 1 at the first broken entry, or when the log does not start at "
        "the store's genesis (Redis lost or replaced its data).",
    ),
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show who changed which stage, when and why, newest first.

    Example: thorcut history positions --limit 5 --verify
    """
    session = open_session(redis_url, timeout, config)
    if feature is not None:
        check_feature(feature, session.settings.features)
    if verify:
        report = session.store.verify()
        if as_json:
            print_json(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "broken_id": report.broken_id,
                    "problem": report.problem or None,
                    "genesis": report.genesis or None,
                    "epoch": report.epoch,
                }
            )
        if report.problem:
            raise AuditChainBroken(
                f"audit chain broken at entry {report.broken_id} (#{report.checked}): {report.problem}"
            )
        if report.genesis:
            raise AuditChainBroken(report.genesis)
        if not as_json:
            out().print(f"Audit chain intact: {report.checked} entries verified.")
            if report.epoch:
                out().print(f"It starts at the genesis of the store's epoch {report.epoch}.")
        return
    entries = session.store.history(feature, limit)
    if as_json:
        print_json({"entries": [e.to_dict() for e in entries]})
        return
    table = Table(title="thorcut audit log (newest first)", title_justify="left")
    for col in ("at", "feature", "change", "ver", "by", "reason"):
        table.add_column(col, no_wrap=col != "reason")
    for e in entries:
        f = e.fields
        change = safe(f.get("event") or f"{f.get('from')} → {f.get('to')}")
        if f.get("to") == "live":
            change.append(f" {f.get('percent')}%")
        if e.forced:
            change.append(" FORCED", style="bold yellow")
        if f.get("reset"):
            change.append(" NEW EPOCH after a reset", style="bold red")
        table.add_row(
            safe(f.get("at")),
            safe(e.feature),
            change,
            str(e.version),
            safe(f.get("by")),
            safe(f.get("reason")) if f.get("reason") else Text("—", style="dim"),
        )
    out().print(table)
