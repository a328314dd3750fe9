"""``thorcut status``: every feature's stage, where clients read from, parity and last change, the
ramp or guard at work on it, and how often its REST endpoints are still read."""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
import typer
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from thorcut.cli.options import ConfigOpt, JsonOpt, RedisUrlOpt, Seconds, TimeoutOpt
from thorcut.cli.output import err, out, print_json
from thorcut.cli.session import Session, open_session
from thorcut.config import Settings
from thorcut.flags.epoch import StoreEpoch
from thorcut.flags.restreads import RestReads, Window, collect, queue
from thorcut.flags.rollout import bad_override, env_override, reads_from
from thorcut.flags.stages import Stage
from thorcut.flags.state import FlagState
from thorcut.redisconn import Keys, persistence
from thorcut.text import ago, fit_table, safe
from thorcut.values import redact_url
from thorcut.verdict import ParityRecord, Verdict

if TYPE_CHECKING:
    from thorcut.flags.presence import GuardPresence
    from thorcut.flags.ramp import RampState

app = typer.Typer()

_STAGE_STYLE = {Stage.OFF: "dim", Stage.SHADOW: "yellow", Stage.LIVE: "green", Stage.COMPLETE: "bold green"}
_VERDICT_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.PENDING: "yellow"}
_RAMP_STYLE = {"running": "cyan", "holding": "yellow", "interrupted": "yellow", "failed": "bold red",
               "done": "green", "aborted": "dim"}  # fmt: skip


@dataclass
class Snapshot:
    """Everything ``status`` shows, read in one go."""

    settings: Settings
    flags: dict[str, FlagState]
    parity: dict[str, ParityRecord]
    workers: list[str]
    worker_overrides: dict[str, dict[str, str]]
    read_at: datetime
    epoch: StoreEpoch
    error: str = ""
    #: each feature's ramp (``{prefix}:ramp:<feature>``), None where it has none
    ramps: dict[str, RampState | None] = field(default_factory=dict)
    #: each feature's guard (``{prefix}:guard:<feature>``), None where no guard runs
    guards: dict[str, GuardPresence | None] = field(default_factory=dict)
    #: each feature's REST reads in the last minutes (``{prefix}:rest:<feature>:…``)
    rest: dict[str, RestReads] = field(default_factory=dict)

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

    def signature(self) -> tuple[Any, ...]:
        """What the view shows, minus the ages that tick: equal signatures show the same state."""
        parity = {n: p.raw for n, p in self.parity.items()}
        now = self.read_at.timestamp()
        ramps = {n: (r.effective_status(now), r.index, r.why, r.next_due) for n, r in self.ramps.items() if r}
        guards = {n: (g.host, g.pid, g.since) for n, g in self.guards.items() if g}
        rest = {n: (r.total, [(x.label, x.reads) for x in r.readers]) for n, r in self.rest.items()}
        return (self.flags, parity, sorted(self.workers), self.worker_overrides, self.epoch, ramps, guards, rest)

    def rest_text(self, feature: str) -> Text:
        """REST reads per minute and how many clients made them: ``12.4 · 3 clients``."""
        reads = self.rest.get(feature)
        if reads is None or not reads.readers:
            return Text("0", style="dim")
        n = len(reads.readers)
        return Text(f"{reads.per_minute:g} · {n} client{'s' if n != 1 else ''}", style="yellow")

    def ramp_text(self, feature: str, now: datetime) -> Text | None:
        """The feature's ramp in one line ("ramping 25 % → 50 % in 3m 10s"), None without one."""
        ramp = self.ramps.get(feature)
        if ramp is None:
            return None
        status = ramp.effective_status(now.timestamp())
        text = safe(ramp.describe(now.timestamp()))
        text.stylize(_RAMP_STYLE.get(status, ""))
        version = self.flags[feature].version
        if status in ("done", "failed", "aborted") and ramp.flag_version and version != ramp.flag_version:
            # An ended ramp is history once the feature moved on (a guard's rollback, a disable).
            text.append(f"; the feature changed since (version {ramp.flag_version} → {version})", style="dim")
        return text

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for name in self.settings.features:
            state = self.flags[name]
            row = state.to_dict()
            row["reads_from"] = reads_from(state.stage, state.percent)
            row["override"] = self.overrides(name)
            row["parity"] = self.parity[name].to_dict(self.read_at)
            ramp = self.ramps.get(name)
            row["ramp"] = ramp.to_dict(self.read_at.timestamp()) if ramp is not None else None
            guard = self.guards.get(name)
            row["guard"] = guard.to_dict(self.read_at) if guard is not None else None
            reads = self.rest.get(name)
            row["rest_reads_per_min"] = reads.per_minute if reads is not None else 0
            row["rest_readers"] = [r.to_dict(reads.window.now) for r in reads.readers] if reads is not None else []
            rows.append(row)
        return {
            "redis": redact_url(self.settings.redis_url),
            "prefix": self.settings.prefix,
            "workers": len(self.workers),
            "features": rows,
            "store": self.epoch.to_dict(Keys(self.settings.prefix)),
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

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.render(console, options.max_width)

    def render(self, console: Console, width: int) -> Group:
        """The table, or where it cannot fit without cutting words (``COLUMNS=60``), one block
        per feature with the same facts."""
        now = datetime.now(UTC)  # ages tick on every redraw without another read
        table = Table(title="thorcut cutover status", title_justify="left")
        table.add_column("feature", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("clients read", min_width=8)
        table.add_column("ver", justify="right", no_wrap=True)
        table.add_column("last change", ratio=2)
        table.add_column("parity", ratio=1)
        table.add_column("stream", ratio=1)
        # Like the ramp and guard columns, shown only when it has something to say: the table as it
        # was still fits 80 columns once every feature's REST endpoints have stopped being read.
        reading = any(r.readers for r in self.rest.values())
        if reading:
            table.add_column("REST reads/min\n(last 5 min)", ratio=1)
        ramping = any(self.ramps.values())
        if ramping:
            table.add_column("ramp", ratio=2)
        guarded = any(self.guards.values())
        if guarded:
            table.add_column("guard", ratio=2)
        notes: list[Text] = []
        blocks: list[Text] = []
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
            stream = Text(health or "—", style="dim" if health in (None, "ok") else
                          "red" if parity.stream_problem() else "yellow")  # fmt: skip
            reads = reads_from(state.stage, state.percent)
            ramp = self.ramp_text(name, now)
            presence = self.guards.get(name)
            guard = safe(presence.describe(now)) if presence is not None else None
            if guard is not None:
                guard.stylize("cyan")
            rest = self.rest_text(name) if reading else None
            cells: list[str | Text] = [name, stage, reads, str(state.version), change, verdict, stream]
            extra = [(reading, rest), (ramping, ramp), (guarded, guard)]
            table.add_row(*cells, *(value or Text("—", style="dim") for shown, value in extra if shown))
            block = Text(name, style="bold")
            block.append("  ")
            block.append_text(stage)
            block.append(f" · clients read {reads} · version {state.version}")
            rows = (("last change", change), ("parity", verdict), ("stream", stream),
                    ("REST reads/min (last 5 min)", rest), ("ramp", ramp), ("guard", guard))  # fmt: skip
            for label, value in rows:
                if value is not None:
                    block.append(f"\n  {label}: ")
                    block.append_text(value)
            blocks.append(block)
        footer = Text(
            f"Redis {redact_url(self.settings.redis_url)} · prefix {self.settings.prefix} · "
            f"{len(self.workers)} backend worker(s) registered",
            style="dim",
        )
        problem = self.epoch.problem(Keys(self.settings.prefix))
        if problem:
            footer.append(
                f"\nStore reset: {problem}. Restore a backup (`thorcut restore FILE`) or check every stage; "
                "backend workers keep the stages they knew.",
                style="bold red",
            )
        if self.error:
            footer.append(f"\n{self.error}", style="bold red")
        if not fit_table(console, table, width):
            return Group(Text("thorcut cutover status", style="italic"), *blocks, *notes, footer)
        return Group(table, *notes, footer)


def read_snapshot(session: Session) -> Snapshot:
    store = session.store
    flags = store.read_all()
    parity, ramps, guards, rest = _stored_extras(session)
    return Snapshot(
        session.settings,
        flags,
        parity,
        store.live_workers(),
        store.worker_overrides(),
        datetime.now(UTC),
        store.epoch(),
        ramps=ramps,
        guards=guards,
        rest=rest,
    )


def _stored_extras(
    session: Session,
) -> tuple[dict[str, ParityRecord], dict[str, RampState | None], dict[str, GuardPresence | None], dict[str, RestReads]]:
    """Every feature's verdict, ramp, guard and REST reads, in one round trip. The ramp and guard
    modules are imported only when some feature has one, so that ``status`` starts no slower for them."""
    names, keys = session.settings.features, session.keys
    pipe = session.client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.parity(name))
    for name in names:
        pipe.hgetall(keys.ramp(name))
    for name in names:
        pipe.hgetall(keys.guard(name))
    now = time.time()
    windows = [Window.status(name, now) for name in names]
    for window in windows:
        queue(pipe, keys, window)
    # Without raise_on_error a REST count key of the wrong type reads as empty; the others still raise.
    raw = pipe.execute(raise_on_error=False)
    n = len(names)
    for reply in raw[: 3 * n]:
        if isinstance(reply, Exception):
            raise reply
    rest, at = {}, 3 * n
    for window in windows:
        rest[window.feature] = collect(window, raw[at : at + window.replies])
        at += window.replies
    parity = {name: ParityRecord.from_hash(d) for name, d in zip(names, raw[:n], strict=True)}
    ramps: dict[str, RampState | None] = dict.fromkeys(names)
    if any(raw[n : 2 * n]):
        from thorcut.flags.ramp import RampState

        ramps = {name: RampState.from_hash(name, d) for name, d in zip(names, raw[n : 2 * n], strict=True)}
    guards: dict[str, GuardPresence | None] = dict.fromkeys(names)
    if any(raw[2 * n : 3 * n]):
        from thorcut.flags.presence import GuardPresence

        guards = {name: GuardPresence.from_hash(name, d) for name, d in zip(names, raw[2 * n : 3 * n], strict=True)}
    return parity, ramps, guards, rest


#: How often ``status --watch`` re-reads everything, whatever the notifications say: verdicts,
#: worker registrations and their expiry are written with no notification (issue 9).
WATCH_REREAD_S = 0.5


@app.command()
def status(
    as_json: JsonOpt = False,
    watch: bool = typer.Option(
        False, "--watch", help="Keep showing the current state: redraw on every change, re-read twice a second "
        "(Ctrl-C to stop). With --json, one document per change."),
    watch_for: float | None = typer.Option(
        None, "--watch-for", parser=Seconds(minimum=0.0), metavar="SECONDS",
        help="With --watch: stop after this many seconds (exit 0)."),
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Show each feature's stage, where clients read from, parity verdict, last change and REST reads.

    Example: thorcut status --json
    """
    session = open_session(redis_url, timeout, config)
    if watch or watch_for is not None:
        _warn_persistence(persistence(session.client))
        _watch(session, as_json, watch_for)
        return
    snap = read_snapshot(session)
    persists, why = persistence(session.client)
    if as_json:
        print_json({**snap.to_dict(), "persistence": {"configured": persists, "detail": why}})
    else:
        out().print(snap)
    _warn_persistence((persists, why))


def _warn_persistence(found: tuple[bool | None, str]) -> None:
    """One line on stderr when the flag Redis would lose everything on a restart, or may."""
    persists, why = found
    if persists is not True:
        err().print(Text(f"Warning: {why}", style="yellow"), soft_wrap=True)


def _watch(session: Session, as_json: bool, watch_for: float | None) -> None:
    """Show the state until Ctrl-C (or ``watch_for`` seconds): at once on a ``{prefix}:changes``
    notification, and from a fresh read every :data:`WATCH_REREAD_S` — what other processes write
    without notifying (a verdict from a live ``diff`` or another tool, workers registering or
    lapsing) shows within a second. On a terminal one view is redrawn in place; elsewhere (and
    with ``--json``) a new view is printed each time what it shows changes. While Redis is away
    the last known state stays, marked as such."""
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
    changed.clear()
    snap = read_snapshot(session)
    console = out()
    in_place = not as_json and console.is_terminal
    deadline = None if watch_for is None else time.monotonic() + watch_for

    def show() -> None:
        if as_json:
            print_json(snap.to_dict())
        elif not in_place:
            console.print(snap)

    shown = (snap.signature(), snap.error)
    show()
    try:
        with Live(snap, console=console, refresh_per_second=1) if in_place else nullcontext() as live:
            while deadline is None or time.monotonic() < deadline:
                left = WATCH_REREAD_S if deadline is None else min(WATCH_REREAD_S, deadline - time.monotonic())
                changed.wait(max(left, 0))
                changed.clear()
                try:
                    new = read_snapshot(session)
                except (redis.ConnectionError, redis.TimeoutError):
                    snap.error = "Redis unreachable — showing the last known state; reconnecting…"
                else:
                    snap.__dict__.update(new.__dict__)  # new.error is ""
                now = (snap.signature(), snap.error)
                if now != shown:
                    shown = now
                    show()
                    if live is not None:
                        live.refresh()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop(timeout=0.5)
