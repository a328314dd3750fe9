"""The ``/ws/stream/`` consumer: per-account, per-feature push of envelopes, never blocked by a slow client.

Protocol (the client's view; docs/contracts.md has the envelope):

- Query string: ``?features=positions,intraday`` chooses the features at connect (default: all);
  ``?client=<id>`` names the client for the sticky percent bucket (default ``user:<pk>``).
- Client commands (JSON text): ``{"action": "subscribe"|"unsubscribe", "features": [...]}`` →
  ``{"type": "subscribed", "features": [...]}``; ``{"action": "ping"}`` → ``{"type": "pong"}``;
  ``{"action": "flags"}`` → a ``flags`` message. A bad frame (binary, not JSON, JSON nested deeper
  than ``MAX_DEPTH``, not an object, unknown action or feature) gets ``{"type": "error", "error":
  "..."}`` and the connection stays.
- Server messages: ``flags`` on connect and on every flag change, then ``subscribed``, then the
  envelopes of the subscribed features plus ``heartbeat`` (always).
- Close codes: 4401 not authenticated (accepted first, so the client can read the code; a
  handshake refused before ``accept`` is only an HTTP 403), 4408 too slow (its send queue
  overflowed), 1009 frame larger than ``THOR_WS_MAX_MESSAGE``, 1011 an unexpected error in the
  server (the stream is cleaned up as on any disconnect, issue 10), 1007 a text frame that is not
  UTF-8 (the WebSocket protocol layer fails it before the consumer sees it, RFC 6455 §8.1; the
  same bytes in a binary frame get an error reply), 1000 a normal close.

Why a queue per connection: Channels dispatches one event at a time per consumer, and uvicorn's
``send`` waits while the socket's write buffer is over its high-water mark (TCP back-pressure). A
handler that awaited ``send`` would stall this consumer's channel-layer receive behind one slow
socket. So ``stream_message`` only serialises and ``put_nowait``\\ s into a bounded queue
(``THOR_WS_QUEUE`` messages) that one sender task drains; a full queue means the client has been
stuck for that many messages, so it is dropped with 4408 and counted, and nobody else notices.

Liveness: the server's WebSocket pings (uvicorn ``--ws-ping-interval``/``--ws-ping-timeout``) find
dead peers; ``{"action": "ping"}`` is for clients whose API cannot see protocol pings (browsers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import threading
import weakref
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from prometheus_client import Counter

from global_markets import groups
from global_markets.hub import hub
from global_markets.metrics import CONNECTIONS, MESSAGES_DROPPED, MESSAGES_SENT
from global_markets.services import redis_health, websocket_features
from thor_trading.messages import FEATURE_TYPES, TYPE_FEATURE
from thor_trading.models import Account

log = logging.getLogger("global_markets.consumers")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
#: Deepest JSON nesting a command may have (commands need 2). Checked before parsing, without
#: recursion: ``"[" * 1000`` used to raise RecursionError in ``json.loads`` and kill the
#: connection without a close frame or a disconnect (issue 10).
MAX_DEPTH = 32
#: Longest wait for a close frame to go out to a stuck socket before the consumer gives up on it.
CLOSE_TIMEOUT = 30.0

FEATURES: tuple[str, ...] = tuple(FEATURE_TYPES)
ACCOUNT_FEATURES = frozenset(TYPE_FEATURE[t] for t in groups.ACCOUNT_TYPES)
ACTIONS = ("subscribe", "unsubscribe", "ping", "flags")
CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_TYPE_LABELS = frozenset({*TYPE_FEATURE, "heartbeat", "flags", "subscribed", "pong", "error"})

BAD_FRAMES = Counter("thor_ws_bad_frames_total", "Client frames refused (error reply or close)", ["reason"])
SERVER_CLOSES = Counter("thor_ws_server_closes_total", "WebSocket connections the server closed", ["reason"])


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nested_deeper_than(text: str, limit: int) -> bool:
    """Return whether the JSON ``text`` nests arrays/objects deeper than ``limit`` (no recursion).

    Brackets inside strings do not count. Linear in ``len(text)``, and a text with no more than
    ``limit`` opening brackets (every real command) is answered by two ``str.count`` calls.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _label(type_: str) -> str:
    return type_ if type_ in _TYPE_LABELS else "other"


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


@functools.cache
def _sent_counter(type_: str) -> Any:
    """The labelled counter of ``type_``: ``labels()`` per message per client showed in profiles."""
    return MESSAGES_SENT.labels(_label(type_))


class _LiveConsumers:
    """This process's open streams, so the flag watcher thread can push ``flags`` to all of them.

    One listener per process (not one per connection) is registered with the watcher. It runs in
    the watcher thread, so it only schedules: one ``call_soon_threadsafe`` per event loop, and a
    change that lands while that loop's fan-out is still pending is folded into it (the fan-out
    reads the flags when it runs, so clients get the newest state, once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consumers: weakref.WeakSet[StreamConsumer] = weakref.WeakSet()
        self._pending: set[asyncio.AbstractEventLoop] = set()
        self._watcher: object = None

    def add(self, consumer: StreamConsumer) -> None:
        with self._lock:
            self._consumers.add(consumer)

    def discard(self, consumer: StreamConsumer) -> None:
        with self._lock:
            self._consumers.discard(consumer)

    def ensure_listener(self) -> None:
        """Register :meth:`on_flag_change` with this process's watcher (blocking: run in a thread)."""
        watcher = websocket_features.watcher()  # the first call may wait up to 2 s for Redis
        with self._lock:
            if self._watcher is watcher:
                return
            self._watcher = watcher
        websocket_features.on_change(self.on_flag_change)

    def on_flag_change(self, feature: str, flag: object) -> None:
        """Watcher thread: schedule one fan-out on every loop that has streams."""
        with self._lock:
            loops = {c.loop for c in self._consumers if c.loop is not None} - self._pending
            self._pending |= loops
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._fan_out, loop)
            except RuntimeError:  # that loop is closed; its consumers are gone
                with self._lock:
                    self._pending.discard(loop)

    def _fan_out(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._pending.discard(loop)
            consumers = [c for c in self._consumers if c.loop is loop]
        for consumer in consumers:
            consumer.push_flags()


live = _LiveConsumers()
_background: set[asyncio.Task[None]] = set()  # closing tasks, kept alive until they finish


@database_sync_to_async
def _owned_accounts(user_id: int) -> frozenset[str]:
    return frozenset(Account.objects.filter(owner_id=user_id).values_list("code", flat=True))


class StreamConsumer(AsyncWebsocketConsumer):
    """One client's stream: auth, subscriptions, flags, and a bounded queue to a single sender task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client_id = ""
        self.accounts: frozenset[str] = frozenset()
        self.features: set[str] = set()
        self.joined: set[str] = set()
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=max(1, settings.THOR_WS_QUEUE))
        self.max_message: int = settings.THOR_WS_MAX_MESSAGE
        self.sender: asyncio.Task[None] | None = None
        self.closing = False
        self.counted = False
        self.cleaned_up = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the consumer; an exception anywhere in it closes 1011 and cleans up, exactly once.

        Without this, an exception escaping a handler ended the ASGI app mid-connection: the server
        reset the TCP connection with no close frame, ``disconnect`` never ran, and the stream
        stayed counted in ``thor_ws_connections`` and joined to its groups (issue 10).
        """
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            if not redis_health.failed(exc):  # Redis down: one line per outage, not one per client
                log.exception("websocket stream %s failed; closing it with 1011", self.client_id or scope.get("client"))
            SERVER_CLOSES.labels("internal_error").inc()
            self.closing = True
            with contextlib.suppress(Exception):  # already closed, or the peer is gone
                await send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})
        finally:
            with contextlib.suppress(Exception):
                await self._clean_up()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Skip Channels' per-event ``close_old_connections`` (a thread hop) on the hot paths.

        Stream events and client frames never touch the ORM; only connect/disconnect do.
        """
        kind = message.get("type")
        if kind == groups.EVENT:
            await self.stream_message(message)
        elif kind == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            self.closing = True
            SERVER_CLOSES.labels("unauthenticated").inc()
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        self.loop = asyncio.get_running_loop()
        params = parse_qs(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        errors = []
        client = (params.get("client") or [""])[-1]
        self.client_id = client if CLIENT_ID.fullmatch(client) else f"user:{user.pk}"
        if client and client != self.client_id:
            errors.append("invalid client id (1-128 of A-Z a-z 0-9 . _ : @ -); using " + self.client_id)
        wanted = list(FEATURES)
        if "features" in params:
            wanted = [f.strip() for value in params["features"] for f in value.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in FEATURES]
        if unknown:
            errors.append(self._unknown_features(unknown))
        self.accounts = await _owned_accounts(user.pk)
        await asyncio.to_thread(live.ensure_listener)
        await self._set_features({f for f in wanted if f in FEATURES})
        await self.accept()
        CONNECTIONS.inc()
        self.counted = True
        live.add(self)
        self.sender = asyncio.create_task(self._send_loop())
        self.push_flags()
        self._reply({"type": "subscribed", "features": self._subscribed()})
        for error in errors:
            self._reply({"type": "error", "error": error})

    async def disconnect(self, code: int) -> None:
        await self._clean_up()

    async def _clean_up(self) -> None:
        """Forget this stream everywhere: flags fan-out, sender, queue, groups, the gauge. Idempotent."""
        self.closing = True
        live.discard(self)
        if self.sender is not None:
            self.sender.cancel()
        while not self.queue.empty():
            type_, _ = self.queue.get_nowait()
            MESSAGES_DROPPED.labels(_label(type_), "disconnected").inc()
        if self.counted:
            self.counted = False
            CONNECTIONS.dec()
        await self._leave_all()
        self.cleaned_up = True

    # -- outbound ----------------------------------------------------------------------------

    async def stream_message(self, event: dict[str, Any]) -> None:
        """Channel-layer event sent to this stream's own channel (groups arrive via the hub)."""
        self.deliver(event)

    def deliver(self, event: dict[str, Any]) -> None:
        """Forward the envelope if subscribed and owned; never waits for the socket."""
        message = event.get("message")
        if not isinstance(message, dict):
            return
        type_ = str(message.get("type"))
        if type_ != "heartbeat":
            if (message.get("feature") or TYPE_FEATURE.get(type_)) not in self.features:
                return  # joined for a sibling type (e.g. balance for positions) but not asked for
            if type_ in groups.ACCOUNT_TYPES and message.get("key") not in self.accounts:
                MESSAGES_DROPPED.labels(_label(type_), "not_owner").inc()  # defence in depth
                return
        text = event.get("text")
        self._enqueue(type_, text if isinstance(text, str) else _dumps(message))

    def push_flags(self) -> None:
        """Queue this client's current flags (percent bucket applied to its client id)."""
        flags = websocket_features.flags_for_client(self.client_id)
        self._reply({"type": "flags", "client": self.client_id, "features": flags})

    def _reply(self, payload: dict[str, Any]) -> None:
        self._enqueue(str(payload["type"]), _dumps(payload))

    def _enqueue(self, type_: str, text: str) -> None:
        if self.closing:
            MESSAGES_DROPPED.labels(_label(type_), "closing").inc()
            return
        try:
            self.queue.put_nowait((type_, text))
        except asyncio.QueueFull:
            self._drop_slow(type_)

    def _drop_slow(self, type_: str) -> None:
        """The queue is full: the socket has not drained for THOR_WS_QUEUE messages. Cut it loose."""
        dropped = [type_]
        while not self.queue.empty():
            dropped.append(self.queue.get_nowait()[0])
        for t in dropped:
            MESSAGES_DROPPED.labels(_label(t), "too_slow").inc()
        SERVER_CLOSES.labels("too_slow").inc()
        log.warning("dropping slow websocket client %s (%s, %d queued messages)", self.client_id,
                    self.scope.get("client"), len(dropped))  # fmt: skip
        self._shutdown(CLOSE_TOO_SLOW, "too slow")

    async def _send_loop(self) -> None:
        """The only writer to the socket: waits out TCP back-pressure so nothing else has to."""
        try:
            while True:
                type_, text = await self.queue.get()
                await self.send(text_data=text)
                _sent_counter(type_).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send; the disconnect event cleans up
            log.debug("websocket send failed for %s: %s", self.client_id, type(exc).__name__)
            self.closing = True

    def _shutdown(self, code: int, reason: str) -> None:
        """Stop sending, leave every group and close with ``code``, without blocking the caller."""
        if self.closing:
            return
        self.closing = True
        live.discard(self)
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _close(self, code: int, reason: str) -> None:
        # Cancel the sender first: it may be parked in uvicorn's drain, and the legacy websockets
        # protocol allows only one drain waiter at a time (the close frame needs one too).
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
        await self._leave_all()
        try:
            # The close frame waits behind unread data, and a peer that never reads never gets
            # it: bound the wait. Legacy uvicorn then closes the socket on its own timeouts.
            await asyncio.wait_for(self.close(code=code, reason=reason), CLOSE_TIMEOUT)
        except TimeoutError:
            # websockets-sansio waits for a writable socket before even queueing the close frame,
            # and reports no disconnect meanwhile: end this consumer anyway (see stream_stop).
            with contextlib.suppress(Exception):
                await self.channel_layer.send(self.channel_name, {"type": "stream.stop", "code": code})
        except Exception as exc:  # the peer is already gone: nothing more to do here
            log.debug("closing %s with %d: %s", self.client_id, code, type(exc).__name__)

    async def stream_stop(self, event: dict[str, Any]) -> None:
        """Our own event (from :meth:`_close`): the close never went out, so stop without it."""
        await self.disconnect(int(event.get("code", CLOSE_TOO_SLOW)))
        raise StopConsumer

    # -- inbound -----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A client frame: a command, or a bad frame that gets an error reply (never a crash)."""
        if self.closing:
            return
        if text_data is not None:
            size = len(text_data) if text_data.isascii() else len(text_data.encode("utf-8"))
        else:
            size = len(bytes_data or b"")
        if size > self.max_message:
            BAD_FRAMES.labels("too_large").inc()
            SERVER_CLOSES.labels("too_large").inc()
            self._shutdown(CLOSE_TOO_BIG, "message too big")
            return
        if text_data is None:
            return self._bad("binary", "binary frames are not supported: send JSON text")
        if nested_deeper_than(text_data, MAX_DEPTH):
            return self._bad("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            command = json.loads(text_data)
        except RecursionError:  # not reachable after the depth check; kept as the last line of defence
            return self._bad("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        except ValueError:  # malformed, or an integer of more than 4300 digits
            return self._bad("not_json", "malformed JSON")
        if not isinstance(command, dict):
            return self._bad("not_object", 'a command is a JSON object such as {"action": "ping"}')
        action = command.get("action")
        if action == "ping":
            return self._reply({"type": "pong"})
        if action == "flags":
            return self.push_flags()
        if action in ("subscribe", "unsubscribe"):
            return await self._subscription(action, command.get("features"))
        known = ", ".join(ACTIONS)
        shown = repr(action[:64]) if isinstance(action, str) else f"of type {type(action).__name__}"
        return self._bad("unknown_action", f"unknown action {shown}; known actions: {known}")

    async def _subscription(self, action: str, names: object) -> None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return self._bad("bad_features", f'"{action}" needs "features": a list of feature names')
        unknown = [n for n in names if n not in FEATURES]
        if unknown:  # a command applies whole or not at all
            return self._bad("unknown_feature", self._unknown_features(unknown))
        if action == "subscribe":
            await self._set_features(self.features | set(names))
        else:
            await self._set_features(self.features - set(names))
        if not self.closing:
            self._reply({"type": "subscribed", "features": self._subscribed()})

    def _bad(self, reason: str, error: str) -> None:
        BAD_FRAMES.labels(reason).inc()
        self._reply({"type": "error", "error": error})

    @staticmethod
    def _unknown_features(names: list[str]) -> str:
        shown = ", ".join(repr(n[:64]) for n in names[:8])
        return f"unknown feature(s) {shown}; known features: {', '.join(FEATURES)}"

    # -- groups ------------------------------------------------------------------------------

    def _subscribed(self) -> list[str]:
        return [f for f in FEATURES if f in self.features]

    async def _set_features(self, features: set[str]) -> None:
        """Join exactly the groups ``features`` need: own accounts, market-wide types, heartbeat."""
        self.features = set(features)
        wanted: set[str] = set()
        if self.features & ACCOUNT_FEATURES:
            wanted |= {groups.account_group(code) for code in self.accounts}
        for feature in self.features:
            wanted |= {groups.type_group(t) for t in FEATURE_TYPES[feature] if t not in groups.ACCOUNT_TYPES}
        for group in sorted(self.joined - wanted):
            self.joined.discard(group)
            await hub(self.channel_layer).leave(group, self)
        # Heartbeat last: once it flows, the subscriptions sent before it on the same Redis
        # connection are in force too.
        for group in [*sorted(wanted - self.joined), groups.HEARTBEAT]:
            if self.closing:
                break
            if group not in self.joined:
                self.joined.add(group)
                await hub(self.channel_layer).join(group, self)
        if self.closing:  # closed while we were joining: undo
            await self._leave_all()

    async def _leave_all(self) -> None:
        joined, self.joined = self.joined, set()
        for group in sorted(joined):
            await hub(self.channel_layer).leave(group, self)
