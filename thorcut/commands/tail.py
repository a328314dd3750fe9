"""``thorcut tail``: follow the backend's WebSocket stream, one line per message, with its health."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

from thorcut.cli.options import ConfigOpt, Seconds
from thorcut.cli.output import reader_left
from thorcut.commands.tail_view import Filter, TailView
from thorcut.config import Settings, load_settings
from thorcut.errors import ExitCode, ThorcutError
from thorcut.flags.stages import Stage, check_feature
from thorcut.text import safe
from thorcut.wire.recording import RecordingWriter
from thorcut.wire.stream import Notice, StreamClient
from thorcut.wire.urls import auth_headers, with_features, ws_url

if TYPE_CHECKING:
    from thorcut.wire.asyncapi.validate import FrameChecker

app = typer.Typer()


async def run_tail(client: StreamClient, view: TailView, *, count: int | None, duration: float | None) -> None:
    """Feed ``client``'s frames to ``view`` until ``count`` frames were shown, ``duration`` passed or
    stdout's reader left."""
    task = asyncio.current_task()
    assert task is not None
    view.on_broken = task.cancel
    try:
        async with asyncio.timeout(duration) as limit:
            stream = client.frames()
            async with aclosing(stream):
                async for item in stream:
                    if isinstance(item, Notice):
                        view.notice(item, client.headers)
                        continue
                    view.frame(item)
                    if view.broken or (count is not None and view.shown >= count):
                        view.ended = time.monotonic()  # not the close handshake that follows
                        break
    except TimeoutError:
        if not limit.expired():
            raise
    except asyncio.CancelledError:
        if not view.broken:
            raise  # Ctrl-C: asyncio.run turns it into KeyboardInterrupt
        task.uncancel()
    finally:
        view.ended = view.ended or time.monotonic()
        view.on_broken = None  # a cancel now would outlive this coroutine
        view.flush()


def _warn_if_off(settings: Settings, features: list[str]) -> None:
    """Say on stderr when a feature asked for is ``off``: the backend broadcasts nothing for it.

    Best effort: the stage lives in Redis, which tail does not otherwise need, so an unreachable
    Redis (or one with no flags) stays silent and the tail goes on either way.
    """
    if not features:
        return
    import redis

    from thorcut.flags.store import FlagStore
    from thorcut.redisconn import Keys, connect

    try:
        client = connect(settings.redis_url, min(settings.timeout, 0.5))
        try:
            states = FlagStore(client, Keys(settings.prefix), settings.features).read_all()
        finally:
            client.close()
    except (ThorcutError, redis.RedisError, OSError):
        return
    console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    for name in features:
        if states[name].stage is Stage.OFF:
            console.print(
                safe(f"note: {name} is off — the backend broadcasts nothing for it, so no {name} message will "
                     f"arrive; run `thorcut shadow {name}` to start broadcasting (tailing anyway)"),
                style="yellow",
            )  # fmt: skip


FeatureOpt = Annotated[
    list[str] | None,
    typer.Option("--feature", "-f", show_default=False,
                 help="Only this feature's message types (repeatable); also asked of the server as ?features= "
                 "unless the URL names features."),
]  # fmt: skip
TypeOpt = Annotated[
    list[str] | None, typer.Option("--type", "-t", show_default=False, help="Only this message type (repeatable).")
]
KeyOpt = Annotated[str | None, typer.Option("--key", "-k", help="Only messages with this key (account, symbol…).")]
NdjsonOpt = Annotated[
    bool,
    typer.Option("--json", help='NDJSON on stdout, one object per frame: {"at", "msg"}, or for a frame that is not '
                 'JSON {"at", "raw", "error"[, "binary"]}. Notices and the summary go to stderr.'),
]  # fmt: skip
RecordOpt = Annotated[Path | None, typer.Option("--record", help="Also write the shown frames to this recording.")]
CountOpt = Annotated[int | None, typer.Option("--count", "-n", min=1, help="Stop after this many shown messages.")]
DurationOpt = Annotated[
    float | None,
    typer.Option("--duration", parser=Seconds(minimum=0.001, allow_minimum=True), metavar="SECONDS",
                 help="Stop after this many seconds."),
]  # fmt: skip
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", show_default=False,
                 help="WebSocket URL (else THORCUT_WS_URL, else the backend URL as ws(s)://…/ws/stream/)."),
]  # fmt: skip
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", show_default=False,
                 help="Handshake header 'Name: value' (repeatable; replaces THORCUT_TOKEN's bearer of that name)."),
]  # fmt: skip
ValidateOpt = Annotated[
    bool,
    typer.Option("--validate",
                 help="Check every shown frame against the stream's AsyncAPI document: --asyncapi, else the "
                 "/api/asyncapi.json of the stream's host (http(s) of the WebSocket URL), else, when it has none, "
                 "the one `thorcut asyncapi` generates from the manifest. Violations go to stderr (the first 20 in "
                 "full), are counted per message type in the summary, and make the exit code 1."),
]  # fmt: skip
AsyncApiOpt = Annotated[
    str | None,
    typer.Option("--asyncapi", metavar="FILE|URL", show_default=False,
                 help="The AsyncAPI 3 document --validate checks frames against (implies --validate)."),
]  # fmt: skip
HandshakeTimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", parser=Seconds(minimum=0.01, allow_minimum=True), metavar="SECONDS",
                 help="Seconds to wait for the handshake before exit 4 (default 2; THORCUT_TIMEOUT)."),
]  # fmt: skip


@app.command()
def tail(
    feature: FeatureOpt = None,
    type_: TypeOpt = None,
    key: KeyOpt = None,
    as_json: NdjsonOpt = False,
    record: RecordOpt = None,
    count: CountOpt = None,
    duration: DurationOpt = None,
    url: UrlOpt = None,
    header: HeaderOpt = None,
    timeout: HandshakeTimeoutOpt = None,
    validate: ValidateOpt = False,
    asyncapi: AsyncApiOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Follow the WebSocket stream: one line per message with its seq, age and health.

    Filters combine (all must match). heartbeat, flags and other control messages show while no
    --feature/--type/--key leaves them out (e.g. --type heartbeat); frames that are not JSON always
    show. Gaps, resyncs, duplicates and reconnections appear inline; after a reconnect the stream is
    resumed from the last seq seen (unless the manifest says [stream] resume = false). A summary
    goes to stderr at the end. --validate checks each shown frame against the stream's AsyncAPI
    document and counts what breaks it (with --json: under "violation" in the frame's object, and a
    last line {"validation": {...}}).
    Exit 0 at the end (--count, --duration, Ctrl-C), 1 if --validate found a frame that breaks the
    document, 2 for bad input (a --asyncapi document that cannot be read or used), 4 if the server
    cannot be reached or rejects the token.

    Example: thorcut tail --feature positions --count 10
    """
    settings = load_settings({"timeout": timeout}, config=config)
    wanted = [check_feature(f, settings.features) for f in dict.fromkeys(feature or [])]
    target = with_features(ws_url(settings, url), wanted)
    headers = auth_headers(settings, header)
    _warn_if_off(settings, wanted)
    filt = Filter(
        types=frozenset(type_) if type_ else None,
        feature_types=frozenset(t for f in wanted for t in settings.manifest.get(f).types) if wanted else None,
        key=key,
    )
    wants = validate or asyncapi is not None
    checker, against = _checker(settings, asyncapi, headers, target) if wants else (None, "")
    recorder = RecordingWriter(record, settings.manifest.to_dict()) if record is not None else None
    view = TailView(settings, filt, as_json=as_json, recorder=recorder, checker=checker, checked_against=against)
    resume = view.resume_since if settings.manifest.stream.resume else None
    client = StreamClient(target, headers, open_timeout=settings.timeout, resume=resume)
    try:
        asyncio.run(run_tail(client, view, count=count, duration=duration))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a tail ends
    except BrokenPipeError:
        view.broken = True
    except ThorcutError:  # e.g. the token was revoked mid-run (4401): say what was seen, then why it ended
        if view.shown:
            view.summary()
        raise
    finally:
        if recorder is not None:
            recorder.close()
    if view.broken:
        reader_left()
    view.summary()
    if view.violations:
        raise typer.Exit(int(ExitCode.PARITY_FAIL))  # a check ran and found differences


def _checker(settings: Settings, source: str | None, headers: dict[str, str], stream: str) -> tuple[FrameChecker, str]:
    """The checker of ``--validate`` and what it checks against: ``source``, else ``/api/asyncapi.json``
    of the host that serves ``stream`` (the WebSocket URL, so ``--url`` and THORCUT_WS_URL are
    followed), else (that host answers 404) the document generated from the manifest."""
    from thorcut.commands.asyncapi import manifest_document
    from thorcut.values import redact_url
    from thorcut.wire.asyncapi.sources import is_url, read_document
    from thorcut.wire.asyncapi.validate import FrameChecker

    console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    if source is not None:
        doc = read_document(source, what="the AsyncAPI document", option="--asyncapi", headers=headers,
                            timeout=settings.timeout)  # fmt: skip
        against = redact_url(source) if is_url(source) else source
    else:
        parts = urlsplit(stream)
        url = urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/api/asyncapi.json", "", ""))
        doc = read_document(url, what="the AsyncAPI document", option="--url / THORCUT_WS_URL", headers=headers,
                            timeout=settings.timeout, missing_ok=True)  # fmt: skip
        against = redact_url(url)
        if doc is None:
            console.print(safe(f"note: {against} answered 404: the backend serves no AsyncAPI document, so frames "
                               "are checked against the one generated from the manifest (`thorcut asyncapi`), "
                               "whose data is not described"), style="yellow")  # fmt: skip
            doc, against = manifest_document(settings)[0], "the document generated from the manifest"
    assert doc is not None
    checker = FrameChecker(doc, source=against)
    for note in checker.notes:
        console.print(safe(f"note: {note}"), style="yellow")
    console.print(safe(f"validating every shown frame against {against}"), style="dim")
    return checker, against
