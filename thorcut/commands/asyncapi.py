"""``thorcut asyncapi``: the AsyncAPI 3.0 document of the backend's WebSocket stream, from the manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from thorcut.cli.options import ConfigOpt, Seconds
from thorcut.config import Settings, load_settings
from thorcut.errors import UsageError
from thorcut.text import safe

app = typer.Typer()

OpenApiOpt = Annotated[
    str | None,
    typer.Option("--openapi", metavar="FILE|URL", show_default=False,
                 help="Take each message type's data schema from this OpenAPI 3 document (e.g. "
                 "http://127.0.0.1:8000/api/openapi.json): the 200 response of the type's REST path, at the "
                 "manifest's body locator."),
]  # fmt: skip
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", metavar="URL", show_default=False,
                 help="List the backend at this URL (http(s):// or ws(s)://) as the document's server; "
                 "credentials and query are left out."),
]  # fmt: skip
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the document to FILE, not stdout.")
]
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", show_default=False,
                 help="Header 'Name: value' for fetching --openapi (repeatable; replaces THORCUT_TOKEN's bearer "
                 "of that name)."),
]  # fmt: skip
FetchTimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", parser=Seconds(minimum=0.01, allow_minimum=True), metavar="SECONDS",
                 help="Seconds to wait for --openapi's URL before exit 4 (default 2; THORCUT_TIMEOUT)."),
]  # fmt: skip


def stream_path(settings: Settings) -> str:
    """The stream's path: that of ``THORCUT_WS_URL`` / ``ws_url`` when set, else ``/ws/stream/``."""
    from thorcut.values import check_url
    from thorcut.wire.urls import WS_PATH

    settings.require("ws_url")
    if not settings.ws_url:
        return WS_PATH
    check_url(settings.ws_url, "THORCUT_WS_URL / ws_url", ("ws", "wss"), "WebSocket URL")
    return urlsplit(settings.ws_url).path or "/"


def manifest_document(settings: Settings, *, server: str | None = None,
                      openapi: Any = None, source: str = "") -> tuple[dict[str, Any], tuple[str, ...]]:  # fmt: skip
    """The AsyncAPI document of ``settings``' manifest (its data schemas read from the OpenAPI
    document ``openapi`` when given), and the notes on what could not be described."""
    from thorcut import __version__
    from thorcut.flags.stages import Stage
    from thorcut.wire.asyncapi import document, from_openapi

    options: dict[str, Any] = {"server": server, "ws_path": stream_path(settings), "version": __version__,
                               "stages": [s.value for s in Stage]}  # fmt: skip
    if openapi is None:
        return document(settings.manifest, **options), ()
    return from_openapi(openapi, manifest=settings.manifest, source=source, **options)


@app.command()
def asyncapi(
    openapi: OpenApiOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
    header: HeaderOpt = None,
    timeout: FetchTimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the AsyncAPI 3.0 document of the WebSocket stream (JSON), generated from the manifest.

    One channel (the stream's path) with every feature's message types, the server's own messages
    (heartbeat, flags, subscribed, pong, resumed, error) and the client's commands (subscribe,
    unsubscribe, resume, ping, flags) with their replies. data is any JSON value unless --openapi
    gives its schemas, so REST and WebSocket payloads are described once. Notes on what could not
    be described go to stderr.
    Exit 0; 2 for a bad --openapi document (not JSON, not OpenAPI 3, no path for a message type's
    REST path) or --server URL; 4 when --openapi's URL cannot be reached or rejects the token.

    Example: thorcut asyncapi --openapi http://127.0.0.1:8000/api/openapi.json --output asyncapi.json
    """
    settings = load_settings({"timeout": timeout}, config=config)
    doc = None
    if openapi is not None:
        from thorcut.wire.asyncapi.sources import read_document
        from thorcut.wire.urls import auth_headers

        doc = read_document(openapi, what="the OpenAPI document", option="--openapi", timeout=settings.timeout,
                            headers=auth_headers(settings, header))  # fmt: skip
    described, notes = manifest_document(settings, server=server, openapi=doc,
                                         source=f"the OpenAPI document {_shown(openapi or '')}")  # fmt: skip
    for note in notes:
        typer.echo(safe(f"note: {note}").plain, err=True)
    text = json.dumps(described, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output} (--output): {exc.strerror or exc}") from None
    typer.echo(f"wrote {output}", err=True)


def _shown(source: str) -> str:
    from thorcut.values import redact_url

    return redact_url(source) if "://" in source else source
