"""``thorcut retire``: whether a feature's REST endpoints can be deleted — it is ``complete`` and
nobody read them in the window (the counts a backend keeps: :mod:`thorcut.flags.restreads`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from thorcut.cli.options import STORE_OPTIONS, with_options
from thorcut.cli.output import err, out, print_json
from thorcut.cli.session import open_session
from thorcut.errors import ConfigError, Refused
from thorcut.flags.restreads import (
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    OVERFLOW_LABEL,
    Reader,
    Retirement,
    read_retirement,
    short,
    span,
)
from thorcut.flags.stages import check_feature
from thorcut.redisconn import translated
from thorcut.text import safe
from thorcut.values import parse_duration

app = typer.Typer()


class Window:
    """Parse ``--window``: a duration (``15m``, ``90s``, ``1h``, a number of seconds) from 1 s to 1 day."""

    __name__ = "duration"  # Typer names the parameter type after the parser

    def __call__(self, value: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(value, "it")
        except ConfigError as exc:
            # Click adds "Invalid value for '--window':" in front and exits 2.
            raise typer.BadParameter(str(exc).removeprefix("it ")) from None
        if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
            raise typer.BadParameter(
                f"must be from 1s to 1d (the counts are kept a day, and known to the second at best), not {value!r}"
            )
        return seconds


WindowOpt = Annotated[
    float,
    typer.Option(
        "--window",
        parser=Window(),
        metavar="DURATION",
        help="How far back to look for readers: 90s, 15m, 1h … from 1s to 1d.",
    ),
]


@app.command()
@with_options(*STORE_OPTIONS)
def retire(
    feature: Annotated[str, typer.Argument(help="The feature whose REST endpoints would be deleted.")],
    window: WindowOpt = "15m",  # type: ignore[assignment]  # parsed by Window
    **options: Any,
) -> None:
    """Say whether a feature's REST endpoints can be deleted: exit 0 only when it is complete and
    nobody read them in the window, else exit 3 naming the readers or the stage.

    Readers are the client labels a backend counted in Redis (page/BUILD, token/NAME, anonymous,
    a script's own name), to the second where it keeps each one's last read, else to the minute;
    page builds other than the one the backend serves now are marked as old.

    Example: thorcut retire positions --window 15m
    """
    as_json = options["as_json"]
    session = open_session(options["redis_url"], options["timeout"], options["config"])
    check_feature(feature, session.settings.features)
    with translated(session.settings.redis_url):
        retirement = read_retirement(session.client, session.keys, feature, window)
    if retirement.reads.resolution == "minute":
        err().print(
            safe(
                f"Note: no {session.keys.rest_last(feature)} hash (the backend keeps no time of each "
                "client's last read): readers are known to the minute, so every minute that overlaps the "
                "window counts and a client can show up to a minute after its last read."
            ),
            style="yellow",
            soft_wrap=True,
        )
    if as_json:
        print_json(retirement.to_dict())
    else:
        _show(retirement)
    if not retirement.ok:
        raise Refused(retirement.reason)


def _show(retirement: Retirement) -> None:
    console = out()
    within = span(retirement.window_s)
    head = Text(retirement.feature, style="bold")
    head.append(f" · {retirement.stage.value}")
    head.append(f" · REST reads in the last {within} (to the {retirement.reads.resolution})", style="dim")
    console.print(head)
    if not retirement.reads.readers:
        console.print(Text(f"  nobody read {retirement.feature}'s REST endpoints in the last {within}", style="dim"))
    for reader in retirement.reads.readers:
        console.print(_line(retirement, reader))
    build = retirement.current_build
    if build is None:
        console.print(
            Text("current page build: unknown (the backend sets none), so page builds are not told apart", style="dim")
        )
    else:
        console.print(Text("current page build: ", style="dim") + safe(short(build)))
    if retirement.ok:
        console.print(Text(f"OK: {retirement.reason} — its REST endpoints can be deleted.", style="green"))


def _line(retirement: Retirement, reader: Reader) -> Text:
    now = retirement.reads.window.now
    line = Text("  ") + safe(short(reader.label))
    line.append(f"  {reader.reads} read{'s' if reader.reads != 1 else ''}")
    line.append(f" · last read {reader.describe_seen(now)}", style="dim")
    old = retirement.old_page_build(reader)
    if old:
        line.append(" · old page build", style="bold yellow")
    elif old is False:
        line.append(" · current page build", style="dim")
    if reader.label == OVERFLOW_LABEL:
        line.append(" · reads past the backend's 100 labels in a minute, counted together", style="dim")
    return line
