"""``thorcut status``: every feature's stage, where clients read from, parity and last change."""

from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from thorcut.compare.verdict import ParityRecord, Verdict
from thorcut.config import Settings, redact_url
from thorcut.features import Stage
from thorcut.flags.rollout import bad_override, env_override, reads_from
from thorcut.flags.store import FlagState
from thorcut.options import ConfigOpt, JsonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.output import ago, out, print_json, safe
from thorcut.session import Session, open_session

app = typer.Typer()

_STAGE_STYLE = {Stage.OFF: "dim", Stage.SHADOW: "yellow", Stage.LIVE: "green", Stage.COMPLETE: "bold green"}
_VERDICT_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.PENDING: "yellow"}


@dataclass
class Snapshot:
    """Everything ``status`` shows, read in one go."""

    settings: Settings
    flags: dict[str, FlagState]
    parity: dict[str, ParityRecord]
    workers: list[str]
    worker_overrides: dict[str, dict[str, str]]
    read_at: datetime
    error: str = ""

    def overrides(self, feature: str) -> dict[str, Any]:
        """Return where an env override of ``feature`` is in force: workers, and this shell."""
        var = self.settings.manifest.get(feature).env_override
        forced = {w: o[feature] for w, o in self.worker_overrides.items() if feature in o}
        local = env_override(var, os.environ)
        return {
            "variable": var,
            "workers": forced,
            "this_shell": local.value if local else None,
            "ignored_value": bad_override(var, os.environ),
        }

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for name in self.settings.features:
            state = self.flags[name]
            row = state.to_dict()
            row["reads_from"] = reads_from(state.stage, state.percent)
            row["override"] = self.overrides(name)
            row["parity"] = self.parity[name].to_dict(self.read_at)
            rows.append(row)
        return {
            "redis": redact_url(self.settings.redis_url),
            "prefix": self.settings.prefix,
            "workers": len(self.workers),
            "features": rows,
        }

    def _override_text(self, name: str) -> Text | None:
        o = self.overrides(name)
        parts = []
        if o["workers"]:
            stages = sorted(set(o["workers"].values()))
            parts.append(f"{'/'.join(stages)} in {len(o['workers'])}/{len(self.workers)} workers")
        if o["this_shell"]:
            parts.append(f"{o['this_shell']} in this shell")
        if o["ignored_value"]:
            parts.append(f"ignored value {o['ignored_value']!r} in this shell")
        if not parts:
            return None
        return Text(f"{o['variable']}: " + "; ".join(parts), style="magenta")

    def __rich__(self) -> Group:
        now = datetime.now(UTC)  # ages tick on every redraw without another read
        table = Table(title="thorcut cutover status", title_justify="left")
        table.add_column("feature", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("clients read", min_width=8)
        table.add_column("ver", justify="right", no_wrap=True)
        table.add_column("last change", ratio=2)
        table.add_column("parity", ratio=1)
        table.add_column("stream", ratio=1)
        notes: list[Text] = []
        for name in self.settings.features:
            state, parity = self.flags[name], self.parity[name]
            stage = Text(state.stage.value, style=_STAGE_STYLE[state.stage])
            if state.stage is Stage.LIVE:
                stage.append(f" {state.percent}%")
            override = self._override_text(name)
            if override is not None:
                stage.append(" ⚑", style="magenta")
                notes.append(Text(f"⚑ {name}: ", style="magenta") + override)
            if state.version:
                change = safe(f"{state.updated_by} · {ago(state.updated_at, now)}")
                if state.reason:
                    change.append(" · ")
                    change.append_text(safe(state.reason))
            else:
                change = Text("never changed", style="dim")
            if parity.verdict is None:
                verdict = Text("no verdict yet", style="dim")
            else:
                verdict = Text(parity.verdict.value, style=_VERDICT_STYLE[parity.verdict])
                verdict.append(f" · {ago(parity.judged_at, now)}", style="dim")
            health = parity.health()
            stream = Text(health or "—", style="dim" if health in (None, "ok") else "red")
            table.add_row(name, stage, reads_from(state.stage, state.percent), str(state.version), change, verdict,
                          stream)  # fmt: skip
        footer = Text(
            f"Redis {redact_url(self.settings.redis_url)} · prefix {self.settings.prefix} · "
            f"{len(self.workers)} backend worker(s) registered",
            style="dim",
        )
        if self.error:
            footer.append(f"\n{self.error}", style="bold red")
        return Group(table, *notes, footer)


def read_snapshot(session: Session) -> Snapshot:
    store = session.store
    return Snapshot(
        session.settings,
        store.read_all(),
        store.parity_all(),
        store.live_workers(),
        store.worker_overrides(),
        datetime.now(UTC),
    )


@app.command()
def status(
    as_json: JsonOpt = False,
    watch: bool = typer.Option(False, "--watch", help="Redraw on every change notification (Ctrl-C to stop)."),
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show each feature's stage, where clients read from, parity verdict and last change.

    Example: thorcut status --json
    """
    session = open_session(redis_url, timeout, config)
    if watch:
        _watch(session, as_json)
        return
    snap = read_snapshot(session)
    if as_json:
        print_json(snap.to_dict())
    else:
        out().print(snap)


def _watch(session: Session, as_json: bool) -> None:
    """Redraw on ``{prefix}:changes`` notifications; keep the last view while Redis is away."""
    from rich.live import Live

    from thorcut.flags.watcher import FlagWatcher
    from thorcut.redisconn import connect

    settings = session.settings
    changed = threading.Event()
    watcher = FlagWatcher(
        lambda: connect(settings.redis_url, settings.timeout, check=False),
        session.keys,
        settings.features,
        register=False,
        on_change=lambda *_: changed.set(),
    )
    # Subscribed and synced before the first frame, so no change falls between read and watch.
    watcher.start(wait=settings.timeout)
    resyncs = watcher.resyncs
    changed.clear()
    snap = read_snapshot(session)
    try:
        if as_json:
            print_json(snap.to_dict())
        with nullcontext() if as_json else Live(snap, console=out(), refresh_per_second=1):
            while True:
                changed.wait(0.5)
                if watcher.resyncs != resyncs:  # reconnected: the full state may have moved
                    resyncs = watcher.resyncs
                    changed.set()
                if not changed.is_set():
                    if not watcher.connected and not snap.error:
                        snap.error = "Redis unreachable — showing the last known state; reconnecting…"
                    continue
                changed.clear()
                try:
                    new = read_snapshot(session)
                except (redis.ConnectionError, redis.TimeoutError):
                    snap.error = "Redis unreachable — showing the last known state; reconnecting…"
                    continue
                new.error = ""
                snap.__dict__.update(new.__dict__)
                if as_json:
                    print_json(snap.to_dict())
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop(timeout=0.5)
