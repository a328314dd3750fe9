"""The ``/ws/stream/`` consumer: per-account, per-feature push of envelopes, never blocked by a slow client.

One :class:`StreamConsumer` per connection puts the parts together: the protocol
(:mod:`global_markets.protocol`: what a client may send and what it gets), the stream's send queue
(:mod:`global_markets.send_queue`), the process's flag fan-out (:mod:`global_markets.flag_fanout`)
and the per-loop hub that joins channel-layer groups for it (:mod:`global_markets.hub`). An
account's balance and positions reach only that account's owner.

Resuming (docs/contracts.md, "Resuming a stream"): the consumer keeps, per stream, the last ``seq``
it sent its client (one dict update per delivery). A ``resume`` from the client, or a heal when the
hub found its path broken and healed (from those last seqs), is answered by
:mod:`global_markets.resume`; while one is being answered, pushes to this client are held and
handed on after it, each stream's dropped when its ``seq`` is one the resume already sent (only
right after a resume: the duplicates and gaps of fault injection are not the consumer's to hide).
The answer never overflows the send queue: it becomes resyncs, or waits for the socket to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from global_markets import groups, protocol, resume
from global_markets.flag_fanout import live
from global_markets.hub import RETRY_DELAYS, hub
from global_markets.metrics import (
    BAD_FRAMES,
    CONNECTIONS,
    MESSAGES_DROPPED,
    RESUME_ENVELOPES,
    RESUMES,
    SERVER_CLOSES,
)
from global_markets.protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHENTICATED,
    BadFrame,
)
from global_markets.send_queue import SendQueue, label
from global_markets.services import redis_health, websocket_features
from thor_trading.features import ACCOUNT_TYPES, FEATURE_TYPES, NAMES, TYPE_FEATURE
from thor_trading.models import Account

Stream = tuple[str, str]

log = logging.getLogger("global_markets.consumers")

#: Longest wait for a close frame to go out to a stuck socket before the consumer gives up on it.
CLOSE_TIMEOUT = 30.0
#: Longest wait for room in the send queue while sending a resume's answer (then: too slow).
RESUME_ROOM_WAIT = 10.0

ACCOUNT_FEATURES = frozenset(TYPE_FEATURE[t] for t in ACCOUNT_TYPES)

_background: set[asyncio.Task[None]] = set()  # closing tasks, kept alive until they finish


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


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
        self.outbox = SendQueue(settings.THOR_WS_QUEUE, self._write, self._too_slow)
        self.max_message: int = settings.THOR_WS_MAX_MESSAGE
        self.counted = False
        self.cleaned_up = False
        self.dispatched = False  # the consumer got its first ASGI message (the channel was made)
        #: The last seq sent this client per stream (what a heal resumes from).
        self.sent: dict[Stream, Any] = {}
        #: Per stream, the seq a resume sent: pushes up to it are not sent again (until a newer one).
        self._floor: dict[Stream, int] = {}
        #: Pushes held while a resume is answered (None: not holding), and how many resumes hold them.
        self._held: list[dict[str, Any]] | None = None
        self._holds = 0
        self.held_max = max(16, int(settings.THOR_WS_QUEUE))
        self._resume_lock = asyncio.Lock()
        self._heal_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def closing(self) -> bool:
        return self.outbox.closed

    # -- lifecycle -------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the consumer; an exception anywhere in it closes 1011 and cleans up, exactly once.

        Without this, an exception escaping a handler ended the ASGI app mid-connection: the server
        reset the TCP connection with no close frame, ``disconnect`` never ran, and the stream
        stayed counted in ``thor_ws_connections`` and joined to its groups (issue 10).
        """
        try:
            for delay in (*RETRY_DELAYS, None):
                try:
                    await super().__call__(scope, receive, send)
                    break
                except redis_health.CONNECTION_ERRORS:
                    # Channels makes the stream's own channel (a SUBSCRIBE) before anything else:
                    # right after Redis came back that may meet the layer still re-connecting.
                    # Nothing was read from the client yet, so trying again is safe.
                    if self.dispatched or delay is None:
                        raise
                    await asyncio.sleep(delay)
        except Exception as exc:
            if not redis_health.failed(exc):  # Redis down: one line per outage, not one per client
                log.exception("websocket stream %s failed; closing it with 1011", self.client_id or scope.get("client"))
            SERVER_CLOSES.labels("internal_error").inc()
            self.outbox.close()
            with contextlib.suppress(Exception):  # already closed, or the peer is gone
                await send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})
        finally:
            with contextlib.suppress(Exception):
                await self._clean_up()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Skip Channels' per-event ``close_old_connections`` (a thread hop) on the hot paths.

        Stream events and client frames never touch the ORM; only connect/disconnect do.
        """
        self.dispatched = True
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
            self.outbox.close()
            SERVER_CLOSES.labels("unauthenticated").inc()
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        self.loop = asyncio.get_running_loop()
        greeting = protocol.read_greeting(self.scope.get("query_string", b""), user.pk)
        self.client_id = self.outbox.name = greeting.client_id
        self.accounts = await _owned_accounts(user.pk)
        await asyncio.to_thread(live.ensure_listener)
        # Pushes may reach this stream as soon as it joins a group: hold them until the greeting
        # (flags, subscribed) is queued, so they come after it as the protocol says.
        self._begin_hold()
        await self._set_features(greeting.features)
        await self.accept()
        CONNECTIONS.inc()
        self.counted = True
        live.add(self)
        self.outbox.start()
        self.push_flags()
        self._reply({"type": "subscribed", "features": self._subscribed()})
        for error in greeting.errors:
            self._reply({"type": "error", "error": error})
        self._end_hold()

    async def disconnect(self, code: int) -> None:
        await self._clean_up()

    async def _clean_up(self) -> None:
        """Forget this stream everywhere: flags fan-out, sender, queue, groups, the gauge. Idempotent."""
        self.outbox.close()
        live.discard(self)
        for task in tuple(self._tasks):
            task.cancel()
        self.outbox.cancel()
        self.outbox.discard("disconnected")
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
        """Forward the envelope if subscribed and owned; never waits for the socket.

        The hot path of the fan-out (once per message per client): what the event carries was
        worked out once by the hub (:func:`groups.route`); here only this client's checks remain.
        """
        route = event.get(groups.ROUTE) or groups.route(event)
        if route is None:
            return
        type_, feature, key, seq, text, stream = route
        if type_ != "heartbeat":
            if feature not in self.features:
                return  # joined for a sibling type (e.g. balance for positions) but not asked for
            if type_ in ACCOUNT_TYPES and key not in self.accounts:
                MESSAGES_DROPPED.labels(label(type_), "not_owner").inc()  # defence in depth
                return
            if self._held is not None:
                return self._hold(event)
            if self._floor and self._resumed_already(stream, seq):
                return
            self.sent[stream] = seq
        elif self._held is not None:
            return self._hold(event)
        self.outbox.put(type_, text)

    def _resumed_already(self, stream: Stream, seq: Any) -> bool:
        """Whether a resume already sent this stream's ``seq`` (the first newer push lifts the floor)."""
        floor = self._floor.get(stream)
        if floor is None:
            return False
        if type(seq) is int and seq <= floor:
            MESSAGES_DROPPED.labels(label(stream[0]), "resumed").inc()
            return True
        del self._floor[stream]
        return False

    def _hold(self, event: dict[str, Any]) -> None:
        """Keep a push until the resume being answered is sent (bounded: a heal covers what overflows)."""
        held = self._held
        assert held is not None
        if len(held) >= self.held_max:
            for old in held:
                MESSAGES_DROPPED.labels(label(str(old["message"].get("type"))), "held_overflow").inc()
            held.clear()
            self.heal()  # reads the state after these pushes: nothing of them is lost
        held.append(event)

    def _begin_hold(self) -> None:
        self._holds += 1
        if self._held is None:
            self._held = []

    def _end_hold(self) -> None:
        self._holds -= 1
        if self._holds == 0 and self._held is not None:
            held, self._held = self._held, None
            for event in held:
                try:
                    self.deliver(event)
                except Exception:
                    log.exception("delivering a held push failed")

    # -- resume and heal -------------------------------------------------------------------------

    def heal(self) -> None:
        """The hub's path broke and healed: bring the client to the current state of what it was sent.

        Pushes are held from this moment; one heal already waiting covers this one too.
        """
        if self.closing or not self.counted or self._heal_pending:
            return
        self._heal_pending = True
        self._begin_hold()
        task = asyncio.get_running_loop().create_task(self._resume(None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, since: dict[Stream, int] | None) -> None:
        """Answer a client's resume (``since``) or a heal (``None``: from the last seqs sent), pushes held meanwhile."""
        healed = since is None
        if not healed:
            self._begin_hold()
        try:
            async with self._resume_lock:
                if since is None:
                    self._heal_pending = False  # a heal asked from now on must read the state again
                    since = {stream: seq for stream, seq in self.sent.items() if type(seq) is int}
                request = resume.Request(self._types(), self.accounts, since, named_only=healed, room=self.outbox.room)
                answer = await resume.answer(request)
                for type_, text in answer.messages:
                    await self.outbox.put_wait(type_, text, RESUME_ROOM_WAIT)
                self.sent.update(answer.sent)
                self._floor.update(answer.sent)
                reply: dict[str, Any] = {"type": "resumed", "replayed": answer.replayed, "resynced": answer.resynced}
                if healed:
                    reply["healed"] = True
                await self.outbox.put_wait("resumed", _dumps(reply), RESUME_ROOM_WAIT)
                RESUMES.labels("healed" if healed else "client").inc()
                RESUME_ENVELOPES.labels("replayed").inc(answer.replayed)
                RESUME_ENVELOPES.labels("resynced").inc(answer.resynced)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not redis_health.failed(exc):
                log.exception("resuming websocket stream %s failed", self.client_id)
            if not healed:
                self._reply({"type": "error", "error": "resume failed: the server could not read the streams' "
                                                       "state; send it again"})  # fmt: skip
        finally:
            self._end_hold()

    def _types(self) -> frozenset[str]:
        return frozenset(t for feature in self.features for t in FEATURE_TYPES[feature])

    def push_flags(self) -> None:
        """Queue this client's current flags (percent bucket applied to its client id)."""
        self.outbox.put("flags", websocket_features.flags_message(self.client_id))

    def _reply(self, payload: dict[str, Any]) -> None:
        self.outbox.put(str(payload["type"]), _dumps(payload))

    async def _write(self, text: str) -> None:
        await self.send(text_data=text)

    def _too_slow(self, dropped: int) -> None:
        """The send queue overflowed: the socket has not drained for THOR_WS_QUEUE messages."""
        SERVER_CLOSES.labels("too_slow").inc()
        log.warning("dropping slow websocket client %s (%s, %d queued messages)", self.client_id,
                    self.scope.get("client"), dropped)  # fmt: skip
        self._shutdown(CLOSE_TOO_SLOW, "too slow")

    def _shutdown(self, code: int, reason: str) -> None:
        """Stop sending, leave every group and close with ``code``, without blocking the caller."""
        if self.closing:
            return
        self.outbox.close()
        live.discard(self)
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _close(self, code: int, reason: str) -> None:
        # Stop the sender first: it may be parked in uvicorn's drain, and the legacy websockets
        # protocol allows only one drain waiter at a time (the close frame needs one too).
        await self.outbox.stop()
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
        if protocol.frame_size(text_data, bytes_data) > self.max_message:
            BAD_FRAMES.labels("too_large").inc()
            SERVER_CLOSES.labels("too_large").inc()
            self._shutdown(CLOSE_TOO_BIG, "message too big")
            return
        command = protocol.read_command(text_data)
        if isinstance(command, BadFrame):
            return self._bad(command)
        action = command["action"]
        if action == "ping":
            return self._reply({"type": "pong"})
        if action == "flags":
            return self.push_flags()
        if action == "resume":
            since = protocol.read_since(command.get("since"))
            if isinstance(since, BadFrame):
                return self._bad(since)
            return await self._resume(since)
        names = protocol.read_features(action, command.get("features"))
        if isinstance(names, BadFrame):
            return self._bad(names)
        await self._subscription(action, names)

    async def _subscription(self, action: str, names: list[str]) -> None:
        if action == "subscribe":
            await self._set_features(self.features | set(names))
        else:
            await self._set_features(self.features - set(names))
        if not self.closing:
            self._reply({"type": "subscribed", "features": self._subscribed()})

    def _bad(self, frame: BadFrame) -> None:
        BAD_FRAMES.labels(frame.reason).inc()
        self._reply({"type": "error", "error": frame.error})

    # -- groups ------------------------------------------------------------------------------

    def _subscribed(self) -> list[str]:
        return [f for f in NAMES if f in self.features]

    async def _set_features(self, features: set[str]) -> None:
        """Join exactly the groups ``features`` need: own accounts, market-wide types, heartbeat."""
        self.features = set(features)
        wanted: set[str] = set()
        if self.features & ACCOUNT_FEATURES:
            wanted |= {groups.account_group(code) for code in self.accounts}
        for feature in self.features:
            wanted |= {groups.type_group(t) for t in FEATURE_TYPES[feature] if t not in ACCOUNT_TYPES}
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
