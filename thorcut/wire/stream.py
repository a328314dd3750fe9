"""A WebSocket stream client that survives the network: frames in, connection notices between them.

:class:`StreamClient` connects to any WebSocket server (the reference backend's ``/ws/stream/`` is
one) and yields every frame as a :class:`Frame`, parsed as JSON when it is JSON and kept as text
when it is not, and a :class:`Notice` whenever the connection comes or goes. ``tail``, ``diff`` and
``check`` share it. Nothing here prints; URLs in notices and errors are redacted.

Connection policy:

* The first connection must succeed: a refusal, an unknown host, a timeout, a TLS failure or an
  HTTP status other than 101 raises :class:`BackendUnavailable` (exit 4) naming the cause.
* An authentication rejection (HTTP 401/403 at the handshake, or close code 4401 at any time)
  always raises :class:`BackendUnavailable`: retrying with the same token cannot help.
* Any other drop after a successful connection (close frame, reset, server restart, a frame over
  ``max_size`` that the library closes with 1009) yields ``Notice("disconnected")`` and, with
  ``reconnect``, retries forever with full-jitter exponential backoff ("Exponential Backoff And
  Jitter", AWS Architecture Blog, 2015), yielding ``Notice("reconnecting")`` before each wait.
  The backoff starts again from ``backoff_initial`` once a connection has proved itself (delivered
  a frame or stayed open for a second), so a server that accepts and at once closes again is not
  hammered.

Resuming (docs/contracts.md, "Resuming a stream"): given ``resume``, a function that returns the
last ``seq`` the caller holds per stream (``[{"type", "key", "seq"}, ...]``, or None for nothing to
resume), every reconnection first sends ``{"action": "resume", "since": [...]}`` (:func:`resume_frame`)
and says so in its ``Notice("connected", resume=N)``. What the server answers (the replayed
envelopes, ``resync``-marked ones, ``resumed`` or ``error``) are frames like any other: the caller
judges them.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import CLOSE_CODE_EXPLANATIONS, Close

from thorcut import __version__
from thorcut.errors import BackendUnavailable, UsageError
from thorcut.values import redact_url
from thorcut.wire.jsonfast import loads

MiB = 1024 * 1024
CLOSE_UNAUTHENTICATED = 4401  # the reference backend's "authentication required" (docs/contracts.md)
AUTH_HINT = "set THORCUT_TOKEN (sent as 'Authorization: Bearer …') or pass --header 'Name: value'"
#: A connection counts as established, for the backoff, after a frame or this many seconds.
PROVEN_AFTER = 1.0


@dataclass(frozen=True)
class Frame:
    """One WebSocket message as received."""

    received: float  # time.time() when received
    text: str  # the frame as text (binary frames: decoded with errors="replace")
    msg: Any  # parsed JSON, or None when it is not JSON
    error: str | None  # why it is not JSON ("not JSON: …", "binary frame …"), else None
    binary: bool = False


@dataclass(frozen=True)
class Notice:
    """A change of the connection: ``connected``, ``disconnected`` or ``reconnecting``."""

    kind: str
    detail: str  # human text; URLs redacted
    delay: float = 0.0  # "reconnecting": seconds until the next attempt
    attempt: int = 0  # "reconnecting": 1 for the first retry after a drop
    resume: int | None = None  # "connected": a resume naming this many streams was sent first (None: none)


#: What a caller holds to resume from: ``[{"type", "key", "seq"}, ...]``, or None (nothing to resume).
Since = Callable[[], list[dict[str, Any]] | None]


def resume_frame(since: list[dict[str, Any]]) -> str:
    """The ``resume`` command for ``since``, as sent: ``{"action":"resume","since":[...]}``.

    ASCII only (``\\u`` escapes): a key holding a lone surrogate is still sent, and the frame's
    size in bytes is its length, which :meth:`thorcut.compare.health.StreamHealth.since` keeps
    within ``FRAME_MAX``."""
    return json.dumps({"action": "resume", "since": since}, separators=(",", ":"))


def parse_frame(data: str | bytes, received: float) -> Frame:
    """Return the :class:`Frame` of a message's payload; never raises.

    A binary frame that holds UTF-8 JSON is parsed like a text frame (some servers send JSON that
    way) and keeps ``binary=True``; any other binary frame is reported as ``binary frame``.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Frame(received, data.decode("utf-8", "replace"), None, f"binary frame ({len(data)} bytes)", True)
        try:
            return Frame(received, text, loads(data), None, True)
        except (ValueError, RecursionError):
            return Frame(received, text, None, f"binary frame ({len(data)} bytes)", True)
    try:
        return Frame(received, data, loads(data), None)
    except ValueError as exc:
        return Frame(received, data, None, f"not JSON: {exc}")
    except RecursionError:  # json's fallback on absurdly deep nesting
        return Frame(received, data, None, "not JSON: nested too deeply")


def describe_close(exc: ConnectionClosed, max_size: int | None = None) -> str:
    """Return why a connection ended, e.g. ``server closed 1012 (service restart)``."""

    def code(close: Close) -> str:
        meaning = CLOSE_CODE_EXPLANATIONS.get(close.code, "private use" if close.code >= 4000 else "unknown")
        text = f"{close.code} ({meaning})"
        return f"{text}: {close.reason}" if close.reason else text

    if exc.rcvd is not None and (exc.sent is None or exc.rcvd_then_sent):
        return f"server closed {code(exc.rcvd)}"
    if exc.sent is not None:
        if exc.sent.code == 1009:
            limit = f" over {max_size / MiB:g} MiB" if max_size else ""
            return f"frame{limit} refused: closed 1009 (message too big)"
        return f"closed by thorcut with {code(exc.sent)}"
    return "connection lost (no close frame)"


def auth_rejected(url: str, how: str) -> BackendUnavailable:
    return BackendUnavailable(f"WebSocket at {redact_url(url)} rejected the credentials ({how}) — {AUTH_HINT}")


def connect_error(url: str, exc: BaseException, timeout: float) -> BackendUnavailable | UsageError:
    """Return the thorcut error for a failed connection attempt (auth, refusal, DNS, TLS, HTTP)."""
    where = f"WebSocket at {redact_url(url)}"
    fix = "start the backend, or set THORCUT_WS_URL / --url"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return auth_rejected(url, f"HTTP {status} at the handshake")
        return BackendUnavailable(f"{where} answered HTTP {status} instead of a WebSocket upgrade — check the path")
    if isinstance(exc, InvalidURI):
        return UsageError(f"{redact_url(url)} is not a valid WebSocket URL")
    if isinstance(exc, TimeoutError):
        return BackendUnavailable(f"{where} did not complete the handshake within {timeout:g} s — {fix} (--timeout)")
    if isinstance(exc, ConnectionRefusedError):
        return BackendUnavailable(f"{where} refused the connection — {fix}")
    if isinstance(exc, socket.gaierror):
        return BackendUnavailable(f"{where}: cannot resolve the host ({exc.strerror}) — {fix}")
    if isinstance(exc, ssl.SSLError):
        return BackendUnavailable(f"{where}: TLS failed ({exc.reason or exc}) — check the certificate or use ws://")
    if isinstance(exc, InvalidHandshake):
        return BackendUnavailable(f"{where}: the WebSocket handshake failed ({exc}) — is this a WebSocket endpoint?")
    if isinstance(exc, OSError):
        return BackendUnavailable(f"{where} cannot be reached ({exc.strerror or exc}) — {fix}")
    return BackendUnavailable(f"{where} cannot be reached ({type(exc).__name__}: {exc}) — {fix}")


class StreamClient:
    """Connect to ``url`` with ``headers`` and iterate :meth:`frames`; see the module docstring."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        max_size: int = 4 * MiB,
        open_timeout: float = 5.0,
        reconnect: bool = True,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        rng: random.Random | None = None,
        resume: Since | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.max_size = max_size
        self.open_timeout = open_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.rng = rng or random.Random()
        self.resume = resume
        self.connects = 0  # successful connections so far (1 + reconnections)

    def backoff(self, attempt: int) -> float:
        """Return the wait before retry ``attempt`` (1, 2, …): uniform in [0, min(max, initial·2^(n-1))]."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt - 1, 62))
        return self.rng.uniform(0, ceiling)

    async def _open(self) -> ClientConnection:
        return await connect(
            self.url,
            additional_headers=self.headers,
            compression=None,
            open_timeout=self.open_timeout,
            max_size=self.max_size,
            close_timeout=0.25,  # a tail that ends must not wait on a peer that never answers the close
            user_agent_header=f"thorcut/{__version__}",
        )

    async def _resume(self, ws: ClientConnection) -> tuple[ConnectionClosed | None, int | None]:
        """On a reconnection, send the resume first; return the drop if that failed, and how many
        streams the resume named (None: none was sent)."""
        if self.connects < 2 or self.resume is None:
            return None, None
        since = self.resume()
        if since is None:
            return None, None
        try:
            await ws.send(resume_frame(since))
        except ConnectionClosed as closed:
            return closed, None
        return None, len(since)

    async def frames(self) -> AsyncGenerator[Frame | Notice, None]:
        """Yield frames and notices until the caller stops (or, without ``reconnect``, a drop).

        Raises :class:`BackendUnavailable` when the first connection fails or the credentials are
        rejected, :class:`UsageError` for a malformed URL.
        """
        attempt = 0
        while True:
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = connect_error(self.url, exc, self.open_timeout)
                auth = isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403)
                if self.connects == 0 or auth or isinstance(error, UsageError) or not self.reconnect:
                    raise error from None
                attempt += 1
                delay = self.backoff(attempt)
                yield Notice("reconnecting", str(error), delay, attempt)
                await asyncio.sleep(delay)
                continue
            self.connects += 1
            opened, proven = time.monotonic(), False
            try:
                drop, resumed = await self._resume(ws)
                if drop is None:
                    yield Notice("connected", redact_url(self.url), resume=resumed)
                while drop is None:
                    try:
                        data = await ws.recv()
                    except ConnectionClosed as closed:
                        drop = closed
                        break
                    if not proven:
                        proven, attempt = True, 0
                    yield parse_frame(data, time.time())
            finally:
                await ws.close()
            if drop.rcvd is not None and drop.rcvd.code == CLOSE_UNAUTHENTICATED:
                raise auth_rejected(self.url, f"close code {CLOSE_UNAUTHENTICATED}")
            if not proven and time.monotonic() - opened >= PROVEN_AFTER:
                attempt = 0
            yield Notice("disconnected", describe_close(drop, self.max_size))
            if not self.reconnect:
                return
            attempt += 1
            delay = self.backoff(attempt)
            yield Notice("reconnecting", "after the drop", delay, attempt)
            await asyncio.sleep(delay)
