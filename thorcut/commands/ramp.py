"""``thorcut ramp``: raise a feature's percent step by step, judging each step's live traffic.

A new ramp starts from ``shadow`` (its first step passes the ``enable`` gate: a valid PASS, or
``--force --reason``) or from ``live`` below its first step. ``--resume`` takes over a ramp that was
interrupted (or whose process is gone) at its current step; ``--abort`` abandons one and leaves the
feature where it is. The loop itself is :mod:`thorcut.parity.ramp`; its state is
:mod:`thorcut.flags.ramp`.

Exits: 0 every step passed; 1 a step FAILed and the feature was rolled back to shadow; 2 bad input;
3 refused (another ramp runs, the gate, the feature changed by someone else, aborted); 4 Redis or
the backend unreachable; 5 ``--duration`` ended first (the ramp is left interrupted, to resume);
130 Ctrl-C (interrupted, to resume).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.text import Text

from thorcut.cli.options import ConfigOpt, ReasonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.cli.output import err, out, print_json
from thorcut.cli.session import Session, open_session
from thorcut.commands.parity import MAX_DURATION, MIN_DURATION, BackendOpt, HeaderOpt, UrlOpt, live_options
from thorcut.config import Settings, load_settings
from thorcut.errors import ExitCode, ParityFailed, Pending, Refused, ThorcutError, UsageError
from thorcut.flags.ramp import ACTIVE, RUNNING, Owner, RampState, RampStore, format_span, parse_hold, parse_steps
from thorcut.flags.stages import Stage, check_feature
from thorcut.flags.state import FlagState, check_text
from thorcut.flags.store import FlagStore
from thorcut.text import safe
from thorcut.values import redact_url

app = typer.Typer()

#: the audit entry's ``by`` of every change a ramp makes (who started it is in the reason)
OPERATOR = "ramp"
DEFAULT_HOLD = "5m"

FeatureArg = Annotated[str, typer.Argument(help="The feature to ramp (shadow, or live below the first step).")]
StepsOpt = Annotated[
    str | None,
    typer.Option("--steps", help="Percents to step through, rising, e.g. 10,25,50,100 (required for a new ramp)."),
]
HoldOpt = Annotated[
    str | None,
    typer.Option("--hold", help="How long each step is judged before the next: 90, 90s, 5m, 1h, 1m30s (default "
                 "5m, at most 7 days)."),
]  # fmt: skip
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Take over the feature's interrupted ramp at its current step.")
]
AbortOpt = Annotated[bool, typer.Option("--abort", help="Abandon the feature's ramp; the feature stays where it is.")]
DurationOpt = Annotated[
    float | None,
    typer.Option("--duration", help="Stop after this many seconds (0.1 to 604800), leaving the ramp "
                 "interrupted to resume (exit 5)."),
]  # fmt: skip
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print each event as one JSON line on stdout (NDJSON), the last one 'ended'.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Let the first step past the parity gate (needs --reason; audited).")
]


@app.command()
def ramp(
    feature: FeatureArg,
    steps: StepsOpt = None,
    hold: HoldOpt = None,
    resume: ResumeOpt = False,
    abort: AbortOpt = False,
    duration: DurationOpt = None,
    force: ForceOpt = False,
    reason: ReasonOpt = "",
    url: UrlOpt = None,
    backend_url: BackendOpt = None,
    header: HeaderOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Raise a feature's percent step by step, judging each step; a FAIL rolls it back to shadow.

    Example: thorcut ramp positions --steps 10,25,50,100 --hold 5m
    """
    wanted_steps, wanted_hold = _check_input(steps, hold, resume, abort, duration, force, reason)
    settings = load_settings({"redis_url": redis_url, "timeout": timeout, "backend_url": backend_url}, config=config)
    session = open_session(redis_url, timeout, config)
    check_feature(feature, session.settings.features)
    ramps = RampStore(session.client, session.keys)
    if abort:
        _abort(session, ramps, feature, as_json)
        return
    _run(session, settings, ramps, feature, wanted_steps, wanted_hold, resume=resume, duration=duration,
         force=force, reason=reason, url=url, header=header, as_json=as_json)  # fmt: skip


def _check_input(steps: str | None, hold: str | None, resume: bool, abort: bool, duration: float | None, force: bool,
                 reason: str) -> tuple[tuple[int, ...] | None, float | None]:  # fmt: skip
    """Refuse bad or clashing options before anything connects (exit 2)."""
    if resume and abort:
        raise UsageError("give --resume or --abort, not both")
    if abort and (steps is not None or hold is not None or duration is not None or force):
        raise UsageError("--abort takes no --steps, --hold, --duration or --force: it only abandons the ramp")
    wanted_steps = parse_steps(steps) if steps is not None else None
    wanted_hold = parse_hold(hold) if hold is not None else None
    if wanted_steps is None and not (resume or abort):
        raise UsageError("name the steps of a new ramp, e.g. --steps 10,25,50,100 --hold 5m (or --resume / --abort "
                         "the feature's interrupted ramp)")  # fmt: skip
    if duration is not None and not (math.isfinite(duration) and MIN_DURATION <= duration <= MAX_DURATION):
        raise UsageError(f"--duration must be a number of seconds from {MIN_DURATION:g} to {MAX_DURATION:.0f} "
                         f"(7 days), not {duration:g}; e.g. --duration 600")  # fmt: skip
    check_text(reason, "--reason")
    if force and not reason.strip():
        raise UsageError("--force needs --reason explaining why the parity gate is overridden")
    return wanted_steps, wanted_hold


# -- starting or resuming -------------------------------------------------------------------------


def _run(session: Session, settings: Settings, ramps: RampStore, feature: str, steps: tuple[int, ...] | None,
         hold: float | None, *, resume: bool, duration: float | None, force: bool, reason: str, url: str | None,
         header: list[str] | None, as_json: bool) -> None:  # fmt: skip
    import asyncio

    from thorcut.clock import now_iso
    from thorcut.compare.shadow import ShadowJudge
    from thorcut.parity.ramp import INTERRUPTED_EXIT, Ramp
    from thorcut.redisconn import translated

    opts = live_options(settings, [feature], url=url, headers=header, duration=None)
    store = replace(session.store, operator=OPERATOR)
    owner = Owner.here()
    operator = session.settings.operator

    def start(current: RampState | None) -> RampState:
        assert steps is not None
        flag = store.read(feature)
        index = _first_step(flag, steps)
        _gate(store, feature, flag, steps[index - 1], force)
        return RampState(feature, steps, hold if hold is not None else parse_hold(DEFAULT_HOLD), index, RUNNING,
                         why="waiting for the stream's first message", owner=owner, started_by=operator,
                         started_at=now_iso(), reason=reason, flag_version=flag.version)  # fmt: skip

    def take_over(current: RampState | None) -> RampState:
        assert current is not None  # the claim refuses a resume with nothing to resume
        if steps is not None and steps != current.steps:
            raise UsageError(f"the ramp of {feature} being resumed has --steps {_steps(current.steps)}; leave "
                             "--steps out (or abort it and start a new ramp to change them)")  # fmt: skip
        if hold is not None and hold != current.hold_s:
            raise UsageError(f"the ramp of {feature} being resumed has --hold {format_span(current.hold_s)}; leave "
                             "--hold out (or abort it and start a new ramp to change it)")  # fmt: skip
        flag = store.read(feature)
        version = _where_the_ramp_left_it(feature, flag, current)
        _gate(store, feature, flag, current.percent, force)
        return replace(current, owner=owner, status=RUNNING, why=f"resumed by {operator}", step_started=None,
                       next_due=None, flag_version=version)  # fmt: skip

    with translated(settings.redis_url):
        state, previous = ramps.claim(feature, take_over if resume else start, resume=resume)
    printer = _Printer(as_json)
    err().print(Text(f"judging {feature} live from {redact_url(opts.ws_url)} (REST {redact_url(opts.rest_base)})",
                     style="dim"), soft_wrap=True)  # fmt: skip
    judge = ShadowJudge(settings.manifest, [feature])
    runner = Ramp(store, ramps, state, judge, opts, settings.manifest.to_dict(), emit=printer.event, force=force,
                  resumed=resume)  # fmt: skip
    try:
        with translated(settings.redis_url):
            ending = asyncio.run(runner.run(duration, previous=previous))
    except ThorcutError as exc:
        printer.ended(feature, "", int(exc.exit_code))
        raise
    printer.ended(feature, ending.status, ending.code)
    if ending.code == ExitCode.OK:
        return
    resumable = f" — resume with `thorcut ramp {feature} --resume`"
    if ending.code == INTERRUPTED_EXIT:
        err().print(safe(f"{ending.message}{resumable}"), style="yellow", soft_wrap=True)
        raise typer.Exit(INTERRUPTED_EXIT)
    if ending.code == ExitCode.PARITY_FAIL:
        raise ParityFailed(ending.message)
    if ending.code == ExitCode.PENDING:
        raise Pending(ending.message + resumable)
    if ending.status == "interrupted":
        raise Refused(ending.message + f"; to go on, resume it: `thorcut ramp {feature} --resume`, or abandon it: "
                      f"`thorcut ramp {feature} --abort`")  # fmt: skip
    raise Refused(ending.message)


def _first_step(flag: FlagState, steps: tuple[int, ...]) -> int:
    """The step (1-based) a new ramp starts at, given the feature as stored; refuse what cannot ramp."""
    name = flag.feature
    if flag.stage is Stage.OFF:
        raise Refused(f"{name} is off: nothing is broadcast, so nothing can be judged — a ramp starts from "
                      f"shadow: run `thorcut shadow {name}`, let parity reach PASS (`thorcut diff {name}`), then "
                      "ramp it")  # fmt: skip
    if flag.stage is Stage.COMPLETE:
        raise Refused(f"{name} is complete: every client already reads WebSocket; there is nothing to ramp")
    if flag.stage is Stage.SHADOW:
        return 1
    above = [i for i, p in enumerate(steps, 1) if p > flag.percent]
    if not above:
        raise Refused(f"{name} is already live at {flag.percent} %, at or above the last step ({steps[-1]} %); "
                      "there is nothing to ramp")  # fmt: skip
    return above[0]


def _gate(store: FlagStore, feature: str, flag: FlagState, percent: int, force: bool) -> None:
    """Refuse now (exit 3) a first step the parity gate would refuse (it is checked again when taken)."""
    if (flag.stage, flag.percent) == (Stage.LIVE, percent):
        return
    store.change(feature, Stage.LIVE, percent=percent, reason="ramp", force=force, dry_run=True)


def _where_the_ramp_left_it(feature: str, flag: FlagState, current: RampState) -> int:
    """The feature's version a resumed ramp goes on from: the one the ramp left, or the change it
    made just before it stopped (its state not yet written). Refuse (exit 3) when someone else
    changed the feature since: resuming would override them."""
    if flag.version == current.flag_version:
        return flag.version
    own = flag.updated_by == OPERATOR and flag.reason.startswith(f"ramp step {current.step}:")
    if flag.version == current.flag_version + 1 and own and (flag.stage, flag.percent) == (Stage.LIVE, current.percent):
        return flag.version
    at = f"live at {flag.percent} %" if flag.stage is Stage.LIVE else flag.stage.value
    by = f" by {flag.updated_by}" if flag.updated_by else ""
    raise Refused(f"{feature} was changed{by} since its ramp stopped (now {at}, version {flag.version}); "
                  f"resuming would override that — abandon the ramp (`thorcut ramp {feature} --abort`) and start "
                  "a new one")  # fmt: skip


def _steps(steps: tuple[int, ...]) -> str:
    return ",".join(str(p) for p in steps)


# -- aborting -------------------------------------------------------------------------------------


def _abort(session: Session, ramps: RampStore, feature: str, as_json: bool) -> None:
    operator = session.settings.operator
    here = Owner.here()
    before = ramps.read(feature)
    was = ramps.abort(feature, f"aborted by {operator} ({here})")
    flag = session.store.read(feature)
    where = f"live at {flag.percent} %" if flag.stage is Stage.LIVE else flag.stage.value
    running = before is not None and was in ACTIVE and not before.owner_gone(ramps.now())
    if as_json:
        print_json({"event": "aborted", "feature": feature, "was": was,
                    "index": before.index if before else None, "percent": before.percent if before else None,
                    "owner": {"host": before.owner.host, "pid": before.owner.pid} if before and before.owner else None,
                    "owner_running": running, "stage": flag.stage.value, "stage_percent": flag.percent})  # fmt: skip
        return
    step = f" at step {before.step} ({before.percent} %)" if before else ""
    text = f"aborted the ramp of {feature} (it was {was}{step}); {feature} stays {where}"
    if flag.stage is Stage.LIVE:
        text += f" — `thorcut disable {feature}` rolls it back"
    if running and before is not None and before.owner is not None:
        text += f". Its process ({before.owner}) stops within a second."
    out().print(safe(text), soft_wrap=True)


# -- output ---------------------------------------------------------------------------------------


class _Printer:
    """The ramp's events: NDJSON on stdout with ``--json``; a line on stderr for people either way."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = err()

    def event(self, event: dict[str, Any]) -> None:
        if self.as_json:
            print_json(event)
        line = _human(event)
        if line is not None:
            self.console.print(line, soft_wrap=True)

    def ended(self, feature: str, status: str, code: int) -> None:
        if self.as_json:
            print_json({"event": "ended", "feature": feature, "status": status or None, "exit_code": code})


def _styled(text: str, style: str) -> Text:
    line = safe(text)
    line.stylize(style)
    return line


def _human(e: dict[str, Any]) -> Text | None:
    kind, name = e["event"], e["feature"]
    if kind == "started":
        path = " → ".join(f"{p} %" for p in e["steps"])
        how = "resuming" if e["resumed"] else "ramping"
        return safe(f"{how} {name}: {path}, each step held {format_span(e['hold_s'])}, from step "
                    f"{e['index']}/{len(e['steps'])}")  # fmt: skip
    if kind == "notice":
        return Text.assemble(("stream ", "dim"), _styled(e["text"], "yellow"))
    if kind == "step":
        text = safe(f"step {e['index']}/{e['of']}: {name} live at {e['percent']} % (version {e['version']}), "
                    f"judging it for {format_span(e['hold_s'])}")  # fmt: skip
        if e["forced"]:
            text.append(" — FORCED past the parity gate (recorded)", style="bold yellow")
        return text
    if kind == "holding":
        return _styled(f"holding at {e['percent']} % (step {e['index']}) after {format_span(e['window_s'])}: "
                       f"{e['why']}", "yellow")  # fmt: skip
    if kind == "passed":
        return _styled(f"step {e['index']} passed at {e['percent']} %: {e['paired']} pairs over "
                       f"{format_span(e['window_s'])}", "green")  # fmt: skip
    if kind == "rolled_back":
        return _styled(f"rolled {name} back to shadow at {e['percent']} % (step {e['index']}): {e['cause']} — "
                       f"audit entry {e['audit_entry']}, {e['latency_ms']:.0f} ms after the faulty message",
                       "bold red")  # fmt: skip
    if kind == "done":
        return _styled(f"ramp of {name} done: live at {e['percent']} % after {len(e['steps'])} steps in "
                       f"{format_span(e.get('elapsed_s', 0.0))}", "bold green")  # fmt: skip
    return None  # "interrupted": the error line (or the Ctrl-C summary) says it
