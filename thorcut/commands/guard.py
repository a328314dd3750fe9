"""``thorcut guard``: keep judging live features and roll one back the moment it fails parity.

A thin shell over :class:`thorcut.parity.guard.Guard`: it resolves the settings, the flag store
(operator ``guard``, so the audit log says ``by`` = ``guard``) and the backend's URLs as ``diff``
does, then shows the guard's events: for people on stderr, and with ``--json`` as NDJSON on
stdout (one event a line: ``started``, ``guarding``, ``released``, ``notice``, ``rolled_back``,
``ended``; docs/contracts.md).

Exit: 1 if anything was rolled back (``ParityFailed`` naming the feature and cause), else 0 when
``--duration`` ends; Ctrl-C prints the summary, then 1 if anything was rolled back, else 130; 2
for bad input (an unknown feature, a bad ``--duration``); 4 if Redis, or the backend's WebSocket
at the start, cannot be reached (a later drop is reconnected and resumed, never a rollback).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from thorcut.cli.options import ConfigOpt, RedisUrlOpt, TimeoutOpt
from thorcut.cli.output import err
from thorcut.commands.parity import (
    MAX_DURATION,
    MIN_DURATION,
    BackendOpt,
    HeaderOpt,
    UrlOpt,
    _check_numbers,
    _features,
    live_options,
)
from thorcut.errors import ParityFailed, ThorcutError, UsageError
from thorcut.text import safe
from thorcut.values import redact_url

app = typer.Typer()

#: the audit log's ``by`` of the guard's rollbacks
OPERATOR = "guard"

DurationOpt = Annotated[
    float | None,
    typer.Option("--duration", help="Seconds to guard, 0.1 to 604800 (default: until Ctrl-C)."),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Stream the events as NDJSON on stdout, one a line.")]


def _check_duration(duration: float | None) -> None:
    try:
        _check_numbers(duration, None)
    except UsageError:
        raise UsageError(f"--duration must be a number of seconds from {MIN_DURATION:g} to {MAX_DURATION:.0f} "
                         f"(7 days), not {duration:g}; e.g. --duration 3600 (left out: until Ctrl-C)"
                         ) from None  # fmt: skip


class Show:
    """Shows each event: NDJSON on stdout with ``--json``, and a line for people on stderr."""

    def __init__(self, as_json: bool, duration: float | None, where: str) -> None:
        self.as_json = as_json
        self.duration = duration
        self.where = where
        self.console = err()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        self._people(event)

    def _people(self, event: dict[str, Any]) -> None:
        kind, say = event["event"], self.console.print
        if kind == "started":
            guarding = event["guarding"]
            span = f"for {self.duration:g} s" if self.duration is not None else "until Ctrl-C"
            what = f"guarding {', '.join(guarding)} (live)" if guarding else "guarding nothing yet"
            say(f"[dim]{what} {span} from {self.where}[/]", highlight=False)
        elif kind == "guarding":
            say(f"guarding {event['feature']}: it is live now", highlight=False)
        elif kind == "released":
            say(f"no longer guarding {event['feature']}: someone moved it to {event['stage']}", highlight=False)
        elif kind == "notice":
            say(safe(event["text"]), style="yellow", highlight=False)
        elif kind == "rolled_back":
            say(safe(f"rolled back {event['feature']} → shadow (version {event['version']}, audit entry "
                     f"{event['audit_entry']}): {event['cause']} — {event['latency_ms']:.0f} ms after the faulty "
                     "frame"), style="bold red", highlight=False)  # fmt: skip

    def waiting(self, name: str, stage: str) -> None:
        self.console.print(f"{name} is {stage}: watching; guarding starts when it is live", highlight=False)


@app.command()
def guard(
    features: Annotated[
        list[str] | None, typer.Argument(help="Features to guard (judged while live or complete).", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Guard every feature.")] = False,
    duration: DurationOpt = None,
    url: UrlOpt = None,
    backend_url: BackendOpt = None,
    header: HeaderOpt = None,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Judge live features' traffic and roll a feature back to shadow the moment it fails parity.

    Example: thorcut guard positions account_balance --duration 3600
    """
    _guard(list(features or []), all_, duration, url, backend_url, header, as_json, redis_url, timeout, config)


def _guard(names: list[str], all_: bool, duration: float | None, url: str | None, backend_url: str | None,
           headers: list[str] | None, as_json: bool, redis_url: str | None, timeout: float | None,
           config: Path | None) -> None:  # fmt: skip
    import asyncio

    from thorcut.cli.session import open_session
    from thorcut.compare.shadow import ShadowJudge
    from thorcut.config import load_settings
    from thorcut.parity.guard import GUARDED, Guard
    from thorcut.redisconn import translated

    _check_duration(duration)
    settings = load_settings({"redis_url": redis_url, "timeout": timeout, "backend_url": backend_url}, config=config)
    names = _features(settings, names, all_, default_all=False)
    opts = live_options(settings, names, url=url, headers=headers, duration=duration)
    session = open_session(redis_url, timeout, config)
    store = replace(session.store, operator=OPERATOR)
    show = Show(as_json, duration, f"{redact_url(opts.ws_url)} (REST {redact_url(opts.rest_base)})")
    guard = Guard(store, ShadowJudge(settings.manifest, names), opts, settings.manifest.to_dict(), emit=show)
    started = time.monotonic()
    interrupted = False
    try:
        with translated(settings.redis_url):
            states = guard.begin()
            for name in names:
                if states[name].stage not in GUARDED:
                    show.waiting(name, states[name].stage.value)
            asyncio.run(guard.run(duration))
    except KeyboardInterrupt:  # Ctrl-C: the summary, then 130 (1 if anything was rolled back)
        interrupted = True
    except ThorcutError as exc:
        show({"event": "ended", "rolled_back": [r.feature for r in guard.rolled_back], "exit_code": int(exc.exit_code)})
        raise
    rolled = guard.rolled_back
    code = 1 if rolled else 130 if interrupted else 0
    show({"event": "ended", "rolled_back": [r.feature for r in rolled], "exit_code": code})
    elapsed = time.monotonic() - started
    how = "interrupted" if interrupted else "ended"
    if rolled:
        show.console.print(f"guard {how} after {elapsed:.0f} s; rolled back {', '.join(r.feature for r in rolled)}",
                           highlight=False)  # fmt: skip
        raise ParityFailed("guard rolled back " + "; ".join(f"{r.feature} ({r.cause})" for r in rolled))
    show.console.print(f"guard {how} after {elapsed:.0f} s; nothing rolled back ({', '.join(names)})",
                       highlight=False)  # fmt: skip
    if interrupted:
        raise KeyboardInterrupt
