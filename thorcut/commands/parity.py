"""``thorcut diff`` and ``thorcut check``: pair WebSocket messages with REST by ``seq`` and judge.

``diff`` is for people (a live view while sampling, then every differing path); ``check`` is the
CI gate (a short report, JUnit, GitHub annotations, and the exit code). Both judge live traffic or
a recording (``--replay``, no network), and a live run stores its verdicts in Redis, where
``status`` shows them and ``enable`` gates on them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from thorcut.compare.shadow import FeatureReport, ShadowJudge
from thorcut.config import Settings, load_settings, redact_url
from thorcut.errors import ExitCode, UsageError
from thorcut.features import check_feature
from thorcut.options import ConfigOpt, JsonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.output import err, out, print_json

app = typer.Typer()

#: seconds added to the longest minimum window for the default --duration: the verdict's window
#: spans the first to the last event seen, which starts a little after the run does
WINDOW_MARGIN = 5.0

DurationOpt = Annotated[
    float | None,
    typer.Option(
        "--duration",
        min=0.1,
        help="Seconds to sample (default: the longest minimum window + 5 s, so 65 s).",
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
    int | None, typer.Option("--samples", min=1, help="Paired samples needed for PASS (default 50).")
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


def _judge_live(settings: Settings, judge: ShadowJudge, *, duration: float | None, url: str | None,
                headers: list[str] | None, record: Path | None, live_view: bool) -> Any:  # fmt: skip
    from thorcut.backend import auth_headers, rest_base, with_features, ws_url
    from thorcut.report import progress
    from thorcut.shadowrun import LiveOptions, run_live

    if duration is None:  # the window runs from the first to the last event: leave it room
        duration = max(s.thresholds.min_duration for s in judge.specs.values()) + WINDOW_MARGIN
    opts = LiveOptions(
        ws_url=with_features(ws_url(settings, url), list(judge.specs)),
        rest_base=rest_base(settings),
        headers=auth_headers(settings, headers),
        duration=duration,
        record=record,
        rest_timeout=settings.timeout,
    )
    console = err()
    console.print(f"[dim]sampling {', '.join(judge.specs)} for {duration:g} s from "
                  f"{redact_url(opts.ws_url)} (REST {redact_url(opts.rest_base)})[/]", highlight=False)  # fmt: skip
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
    from thorcut.redisconn import Keys, connect
    from thorcut.report import mismatch_examples, parity_fields

    client = connect(settings.redis_url, timeout or settings.timeout)
    store = FlagStore(client, Keys(settings.prefix), settings.features, operator=settings.operator)
    for name, r in reports.items():
        store.record_parity(name, parity_fields(r, source), mismatch_examples(r))


def _run(*, features: list[str], all_: bool, default_all: bool, duration: float | None, replay: Path | None,
         record: Path | None, samples: int | None, url: str | None, backend_url: str | None,
         headers: list[str] | None, junit: Path | None, as_json: bool, no_store: bool, redis_url: str | None,
         timeout: float | None, config: Path | None, command: str) -> None:  # fmt: skip
    from thorcut.report import exit_code, github_annotations, render, to_json, write_junit
    from thorcut.shadowrun import replay as run_replay

    settings = load_settings({"redis_url": redis_url, "timeout": timeout, "backend_url": backend_url}, config=config)
    names = _features(settings, features, all_, default_all=default_all)
    if replay is not None and (record is not None or url is not None):
        raise UsageError("--replay judges a recording; it cannot be combined with --record or --url")
    judge = ShadowJudge(settings.manifest, names, min_paired=samples)
    started = time.monotonic()
    if replay is not None:
        result = run_replay(judge, replay)
    else:
        live_view = not as_json and sys.stderr.isatty() and command == "diff"
        result = _judge_live(settings, judge, duration=duration, url=url, headers=headers, record=record,
                             live_view=live_view)  # fmt: skip
    reports = result.reports
    code = exit_code(reports)
    meta = {"command": command, "source": result.source, "window_s": round(result.window_s, 3),
            "frames": result.frames, "non_json_frames": result.non_json, "rest_requests": result.rest_requests,
            "notices": result.notices}  # fmt: skip
    if junit is not None:
        write_junit(junit, reports, f"thorcut {command}", time.monotonic() - started)
    stored = replay is None and not no_store
    if as_json:
        print_json(to_json(reports, stored=stored, **meta))
    else:
        where = replay.name if replay is not None else f"{result.window_s:.0f} s live"
        render(out(), reports, f"thorcut {command} · {where}", show_paths=command == "diff" or code != ExitCode.OK)
        if result.non_json:
            out().print(f"{result.non_json} WebSocket frame(s) were not JSON (counted, not judged).", highlight=False)
    for line in github_annotations(reports):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if stored:
        _store(settings, reports, "live", timeout)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


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
    from rich.table import Table

    from thorcut.backend import auth_headers, rest_base, with_features, ws_url
    from thorcut.output import safe
    from thorcut.shadowrun import learn_noise

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
