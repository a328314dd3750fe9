"""``thorcut diff`` and ``thorcut check``: pair WebSocket messages with REST by ``seq`` and judge.

``diff`` is for people (a live view while sampling, then every differing path); ``check`` is the
CI gate (a short report, JUnit, GitHub annotations, and the exit code). Both judge live traffic or
a recording (``--replay``, no network), and a live run stores its verdicts in Redis, where
``status`` shows them and ``enable`` gates on them.

Every outcome but PASS leaves through :mod:`thorcut.errors` (``ParityFailed`` exit 1, ``Pending``
exit 5, ``UsageError`` exit 2, ``Unreachable`` exit 4), so the CLI's one error boundary prints
``Error: <summary>`` and the exit code; the report itself goes to stdout first.

A live run reads the judged features' stages first: a feature that is ``off`` broadcasts
nothing, so sampling it would only wait to report "0 paired samples". Named off features are
refused at once (exit 2, naming ``thorcut shadow F``); with ``--all`` (or ``check``'s default of
every feature) they are skipped and said so, and if none is left the run is refused. If Redis
cannot be read for that, the run stops with exit 4 (its verdicts could not be stored either),
unless ``--no-store``, which judges what was asked without Redis.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from thorcut.cli.options import ConfigOpt, JsonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.cli.output import err, out, print_json
from thorcut.compare.shadow import FeatureReport, ShadowJudge
from thorcut.config import Settings, load_settings
from thorcut.errors import ParityFailed, Pending, RedisUnavailable, UsageError
from thorcut.flags.stages import check_feature
from thorcut.values import redact_url
from thorcut.verdict import Verdict

if TYPE_CHECKING:
    from thorcut.parity.live import LiveOptions

app = typer.Typer()

#: seconds added to the longest minimum window for the default --duration: the verdict's window
#: spans the first to the last event seen, which starts a little after the run does
WINDOW_MARGIN = 5.0

#: bounds of --duration (seconds) and --samples
MIN_DURATION, MAX_DURATION = 0.1, 7 * 86400.0
MAX_SAMPLES = 10**9

DurationOpt = Annotated[
    float | None,
    typer.Option(
        "--duration",
        help="Seconds to sample, 0.1 to 604800 (default: the longest minimum window + 5 s, so 65 s).",
    ),
]
ReplayOpt = Annotated[
    Path | None, typer.Option("--replay", help="Judge this recording instead of live traffic (no network).")
]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Also write a JUnit XML report here.")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="WebSocket URL (default: THORCUT_WS_URL, else the backend URL + /ws/stream/)."),
]
BackendOpt = Annotated[
    str | None, typer.Option("--backend-url", help="REST base URL (default: THORCUT_BACKEND_URL, else :8000).")
]
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", help="Extra 'Name: value' header for WebSocket and REST (repeatable)."),
]
SamplesOpt = Annotated[
    int | None, typer.Option("--samples", help="Paired samples needed for PASS, 1 to 10^9 (default 50).")
]
NoStoreOpt = Annotated[
    bool, typer.Option("--no-store", help="Do not write the verdicts to Redis (live runs write them by default).")
]


def _features(settings: Settings, names: list[str], all_: bool, *, default_all: bool) -> list[str]:
    if names and all_:
        raise UsageError("name features or give --all, not both")
    if all_ or (not names and default_all):
        return list(settings.features)
    if not names:
        raise UsageError(f"name a feature or give --all; features: {', '.join(settings.features)}")
    for name in names:
        check_feature(name, settings.features)
    return list(dict.fromkeys(names))


def _check_numbers(duration: float | None, samples: int | None) -> None:
    """Refuse a --duration or --samples that would never end, or mean nothing (exit 2)."""
    if duration is not None and not (math.isfinite(duration) and MIN_DURATION <= duration <= MAX_DURATION):
        raise UsageError(f"--duration must be a number of seconds from {MIN_DURATION:g} to {MAX_DURATION:.0f} "
                         f"(7 days), not {duration:g}; e.g. --duration 65 "
                         "(left out: the longest minimum window + 5 s)")  # fmt: skip
    if samples is not None and not 1 <= samples <= MAX_SAMPLES:
        shown = str(samples) if samples.bit_length() <= 64 else "a number that large"
        raise UsageError(f"--samples must be a whole number from 1 to {MAX_SAMPLES:,}, not {shown}; e.g. --samples 50")


def _broadcasting(settings: Settings, names: list[str], *, explicit: bool, timeout: float | None,
                  no_store: bool) -> list[str]:  # fmt: skip
    """The features of ``names`` worth sampling live: those not ``off`` in Redis.

    Named off features are refused (UsageError); with --all they are skipped and said so on
    stderr. Raises RedisUnavailable (exit 4) if the stages cannot be read, unless ``no_store``.
    """
    from thorcut.flags.stages import Stage
    from thorcut.flags.store import FlagStore
    from thorcut.redisconn import Keys, connect, translated

    try:
        client = connect(settings.redis_url, timeout or settings.timeout)
        with translated(settings.redis_url):
            stages = FlagStore(client, Keys(settings.prefix), settings.features).read_all()
    except RedisUnavailable as exc:
        if not no_store:
            raise RedisUnavailable(f"{exc} (a live check reads the features' stages and stores its verdicts "
                                   "there; --no-store judges without Redis)") from None  # fmt: skip
        err().print(f"[yellow]cannot read the features' stages ({exc}); judging {', '.join(names)} as asked[/]",
                    highlight=False)  # fmt: skip
        return names
    off = [n for n in names if stages[n].stage is Stage.OFF]
    if not off:
        return names
    hint = f"`thorcut shadow {off[0]}` starts broadcasting it" if len(off) == 1 else "`thorcut shadow F` starts one"
    if explicit:
        which = f"{off[0]} is" if len(off) == 1 else f"{', '.join(off)} are"
        raise UsageError(f"{which} off: the backend broadcasts nothing to judge — {hint} "
                         "(or judge a recording with --replay FILE)")  # fmt: skip
    left = [n for n in names if n not in off]
    if not left:
        raise UsageError(f"every feature is off: the backend broadcasts nothing to judge — {hint}")
    err().print(f"skipping {', '.join(off)}: off, nothing is broadcast ({hint})", highlight=False)
    return left


def _summary(reports: dict[str, FeatureReport]) -> str:
    """One line for the error boundary: "positions FAIL; 2 features PENDING (intraday, global_market)"."""
    fail = [n for n, r in reports.items() if r.verdict is Verdict.FAIL]
    pending = [n for n, r in reports.items() if r.verdict is Verdict.PENDING]
    parts = [f"{', '.join(fail)} FAIL"] if fail else []
    if len(pending) == 1:
        parts.append(f"{pending[0]} PENDING")
    elif pending:
        parts.append(f"{len(pending)} features PENDING ({', '.join(pending)})")
    return "; ".join(parts)


def live_options(settings: Settings, features: list[str], *, url: str | None, headers: list[str] | None,
                 duration: float | None, record: Path | None = None) -> LiveOptions:  # fmt: skip
    """The :class:`~thorcut.parity.live.LiveOptions` of a live run over ``features`` (diff, check,
    guard, ramp): the stream URL asking for them, REST, auth headers, the manifest's resume."""
    from thorcut.parity.live import LiveOptions
    from thorcut.wire.urls import auth_headers, rest_base, with_features, ws_url

    return LiveOptions(
        ws_url=with_features(ws_url(settings, url), features),
        rest_base=rest_base(settings),
        headers=auth_headers(settings, headers),
        duration=duration,
        record=record,
        rest_timeout=settings.timeout,
        resume=settings.manifest.stream.resume,
    )


def _judge_live(settings: Settings, judge: ShadowJudge, *, duration: float | None, url: str | None,
                headers: list[str] | None, record: Path | None, live_view: bool) -> Any:  # fmt: skip
    from thorcut.parity.live import run_live
    from thorcut.parity.report import progress

    if duration is None:  # the window runs from the first to the last event: leave it room
        duration = max(s.thresholds.min_duration for s in judge.specs.values()) + WINDOW_MARGIN
    opts = live_options(settings, list(judge.specs), url=url, headers=headers, duration=duration, record=record)
    console = err()
    console.print(f"[dim]sampling {', '.join(judge.specs)} for {duration:g} s from "
                  f"{redact_url(opts.ws_url)} (REST {redact_url(opts.rest_base)})[/]", highlight=False)  # fmt: skip
    import asyncio  # only live runs: a replay starts 14 ms sooner without it

    if not live_view:
        return asyncio.run(run_live(judge, opts, settings.manifest.to_dict(),
                                    on_notice=lambda n: console.print(f"[yellow]{n}[/]", highlight=False)))  # fmt: skip
    from rich.live import Live

    with Live(progress(judge, 0, duration), console=console, refresh_per_second=4, transient=True) as view:
        return asyncio.run(
            run_live(judge, opts, settings.manifest.to_dict(),
                     on_tick=lambda j, elapsed: view.update(progress(j, elapsed, duration)),
                     on_notice=lambda n: view.console.print(f"[yellow]{n}[/]", highlight=False))
        )  # fmt: skip


def _store(settings: Settings, reports: dict[str, FeatureReport], source: str, timeout: float | None) -> None:
    from thorcut.flags.store import FlagStore
    from thorcut.parity.report import mismatch_examples, parity_record
    from thorcut.redisconn import Keys, connect

    client = connect(settings.redis_url, timeout or settings.timeout)
    store = FlagStore(client, Keys(settings.prefix), settings.features, operator=settings.operator)
    for name, r in reports.items():
        store.record_parity(name, parity_record(r, source), mismatch_examples(r))


def _run(*, features: list[str], all_: bool, default_all: bool, duration: float | None, replay: Path | None,
         record: Path | None, samples: int | None, url: str | None, backend_url: str | None,
         headers: list[str] | None, junit: Path | None, as_json: bool, no_store: bool, redis_url: str | None,
         timeout: float | None, config: Path | None, command: str) -> None:  # fmt: skip
    from thorcut.parity.replay import replay as run_replay
    from thorcut.parity.report import github_annotations, render, to_json, write_junit

    _check_numbers(duration, samples)
    settings = load_settings({"redis_url": redis_url, "timeout": timeout, "backend_url": backend_url}, config=config)
    if replay is not None and (record is not None or url is not None):
        raise UsageError("--replay judges a recording; it cannot be combined with --record or --url")
    # A replay with no feature named judges the features the recording holds (docs/contracts.md, "Recordings").
    named = bool(features) or all_
    names = _features(settings, features, all_, default_all=default_all or (replay is not None and not named))
    started = time.monotonic()
    if replay is not None:
        judge = ShadowJudge(settings.manifest, names, min_paired=samples, strict_json=True)
        result = run_replay(judge, replay, named=named)
    else:
        names = _broadcasting(settings, names, explicit=bool(features), timeout=timeout, no_store=no_store)
        judge = ShadowJudge(settings.manifest, names, min_paired=samples)
        live_view = not as_json and sys.stderr.isatty() and command == "diff"
        result = _judge_live(settings, judge, duration=duration, url=url, headers=headers, record=record,
                             live_view=live_view)  # fmt: skip
    reports = result.reports
    summary = _summary(reports)
    meta = {"command": command, "source": result.source, "window_s": round(result.window_s, 3),
            "frames": result.frames, "non_json_frames": result.non_json, "rest_requests": result.rest_requests,
            "notices": result.notices, "resumes": result.resumes}  # fmt: skip
    if junit is not None:
        write_junit(junit, reports, f"thorcut {command}", time.monotonic() - started)
    stored = replay is None and not no_store
    if as_json:
        print_json(to_json(reports, stored=stored, **meta))
    else:
        where = replay.name if replay is not None else f"{result.window_s:.0f} s live"
        render(out(), reports, f"thorcut {command} · {where}", show_paths=command == "diff" or bool(summary))
        if result.non_json:
            out().print(f"{result.non_json} WebSocket frame(s) were not JSON (counted, not judged).", highlight=False)
        if result.resumes.get("sent") or result.resumes.get("healed"):
            from thorcut.compare.health import Resumes

            out().print(f"The stream was resumed: {Resumes(**result.resumes).text()}.", highlight=False)
    for line in github_annotations(reports):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if stored:
        _store(settings, reports, "live", timeout)
    if any(r.verdict is Verdict.FAIL for r in reports.values()):
        raise ParityFailed(summary)
    if summary:
        raise Pending(summary)


@app.command()
def diff(
    feature: Annotated[str | None, typer.Argument(help="The feature to compare.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Compare every feature.")] = False,
    duration: DurationOpt = None,
    samples: SamplesOpt = None,
    record: Annotated[Path | None, typer.Option("--record", help="Write what was seen to this recording.")] = None,
    replay: ReplayOpt = None,
    learn_noise: Annotated[
        bool, typer.Option("--learn-noise", help="Read REST twice per seq and propose ignore rules for what differs.")
    ] = False,
    url: UrlOpt = None,
    backend_url: BackendOpt = None,
    header: HeaderOpt = None,
    junit: JunitOpt = None,
    no_store: NoStoreOpt = False,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Pair each WebSocket message with the REST response of the same seq and show every difference.

    Exit 0 when every feature is PASS, 1 on FAIL, 5 while PENDING, 4 if the backend is unreachable.

    Example: thorcut diff positions --duration 60
    """
    if learn_noise:
        settings = load_settings({"timeout": timeout, "backend_url": backend_url}, config=config)
        names = _features(settings, [feature] if feature else [], all_, default_all=False)
        _learn_noise(settings, names, duration or 10.0, url, header, as_json)
        return
    _run(features=[feature] if feature else [], all_=all_, default_all=False, duration=duration, replay=replay,
         record=record, samples=samples, url=url, backend_url=backend_url, headers=header, junit=junit,
         as_json=as_json, no_store=no_store, redis_url=redis_url, timeout=timeout, config=config,
         command="diff")  # fmt: skip


@app.command()
def check(
    features: Annotated[list[str] | None, typer.Argument(help="Features to judge (default: all).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Judge every feature.")] = False,
    duration: DurationOpt = None,
    replay: ReplayOpt = None,
    samples: SamplesOpt = None,
    url: UrlOpt = None,
    backend_url: BackendOpt = None,
    header: HeaderOpt = None,
    junit: JunitOpt = None,
    no_store: NoStoreOpt = False,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The CI shadow-parity gate: exit 0 all PASS, 1 any FAIL, 5 any PENDING, 4 unreachable, 2 bad input.

    With GITHUB_ACTIONS=true it also prints ::error annotations for failing features.

    Example: thorcut check --all --replay shadow.jsonl --junit parity.xml
    """
    _run(features=list(features or []), all_=all_, default_all=True, duration=duration, replay=replay, record=None,
         samples=samples, url=url, backend_url=backend_url, headers=header, junit=junit, as_json=as_json,
         no_store=no_store, redis_url=redis_url, timeout=timeout, config=config, command="check")  # fmt: skip


def _learn_noise(settings: Settings, names: list[str], duration: float, url: str | None,
                 headers: list[str] | None, as_json: bool) -> None:  # fmt: skip
    import asyncio

    from rich.table import Table

    from thorcut.parity.noise import learn_noise
    from thorcut.text import safe
    from thorcut.wire.urls import auth_headers, rest_base, with_features, ws_url

    result = asyncio.run(
        learn_noise(settings.manifest, names, with_features(ws_url(settings, url), names), rest_base(settings),
                    auth_headers(settings, headers), duration, settings.timeout)
    )  # fmt: skip
    if as_json:
        print_json(result)
        return
    for name in names:
        r = result[name]
        console = out()
        if not r["paths"]:
            console.print(f"{name}: no field differed between two reads of the same seq "
                          f"({r['compared']} read pairs compared).", highlight=False)  # fmt: skip
            continue
        table = Table(title=f"{name}: fields that differ between two REST reads of the same seq",
                      title_justify="left")  # fmt: skip
        table.add_column("path")
        table.add_column("differed", justify="right")
        for path, count in r["paths"].items():
            table.add_row(safe(path), f"{count}/{r['compared']}")
        console.print(table)
        console.print("Add to thorcut.toml to ignore them:", highlight=False)
        console.print(safe(r["toml"]), highlight=False)
