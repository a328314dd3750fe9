"""A stream's outbound messages: a bounded queue and the one task that writes them to the socket.

Why a queue per connection: Channels dispatches one event at a time per consumer, and uvicorn's
``send`` waits while the socket's write buffer is over its high-water mark (TCP back-pressure). A
handler that awaited ``send`` would stall the consumer's channel-layer receive behind one slow
socket. So the consumer only serialises and :meth:`SendQueue.put`\\ s into a bounded queue
(``THOR_WS_QUEUE`` messages) that one sender task drains; a full queue means the client has been
stuck for that many messages, so it is cut loose (the consumer closes it with 4408) and counted,
and nobody else notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from global_markets.metrics import MESSAGES_DROPPED, MESSAGES_SENT
from thor_trading.features import TYPE_FEATURE

log = logging.getLogger("global_markets.consumers")

#: Every type the server sends; any other ``type`` is labelled "other", so clients cannot grow the metrics.
_TYPE_LABELS = frozenset({*TYPE_FEATURE, "heartbeat", "flags", "subscribed", "pong", "error", "resumed"})


def label(type_: str) -> str:
    return type_ if type_ in _TYPE_LABELS else "other"


@functools.cache
def _sent_counter(type_: str) -> Any:
    """The labelled counter of ``type_``: ``labels()`` per message per client showed in profiles."""
    return MESSAGES_SENT.labels(label(type_))


class SendQueue:
    """``put`` never waits; ``send(text)`` is awaited by one task; ``on_overflow(dropped)`` on a full queue."""

    def __init__(
        self, maxsize: int, send: Callable[[str], Awaitable[None]], on_overflow: Callable[[int], None]
    ) -> None:
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=max(1, maxsize))
        self._send = send
        self._on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.name = ""  # whose queue, in log lines (the client id, once known)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def close(self) -> None:
        """Refuse every later message (each is dropped and counted)."""
        self.closed = True

    def put(self, type_: str, text: str) -> None:
        if self.closed:
            MESSAGES_DROPPED.labels(label(type_), "closing").inc()
            return
        try:
            self._queue.put_nowait((type_, text))
        except asyncio.QueueFull:
            # The socket has not drained for THOR_WS_QUEUE messages: drop them all, cut it loose.
            MESSAGES_DROPPED.labels(label(type_), "too_slow").inc()
            self._on_overflow(1 + self.discard("too_slow"))

    def room(self) -> int:
        """How many more messages fit right now."""
        return self._queue.maxsize - self._queue.qsize()

    async def put_wait(self, type_: str, text: str, timeout: float) -> None:
        """Like :meth:`put`, but wait up to ``timeout`` seconds for room (a resume's answer).

        A resume may answer for more streams than the queue holds at once: it waits for the socket
        to drain instead of overflowing it. Still no room after ``timeout``: the client is too slow.
        """
        if self.closed:
            MESSAGES_DROPPED.labels(label(type_), "closing").inc()
            return
        try:
            self._queue.put_nowait((type_, text))
        except asyncio.QueueFull:
            try:
                await asyncio.wait_for(self._queue.put((type_, text)), timeout)
            except TimeoutError:
                self.put(type_, text)  # still full: overflows, as a live message would

    def discard(self, reason: str) -> int:
        """Drop (and count) every queued message; return how many there were."""
        dropped = 0
        while not self._queue.empty():
            type_, _ = self._queue.get_nowait()
            MESSAGES_DROPPED.labels(label(type_), reason).inc()
            dropped += 1
        return dropped

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Cancel the sender and wait until it has ended (it may be parked in uvicorn's drain)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """The only writer to the socket: waits out TCP back-pressure so nothing else has to."""
        try:
            while True:
                type_, text = await self._queue.get()
                await self._send(text)
                _sent_counter(type_).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send; the disconnect event cleans up
            log.debug("websocket send failed for %s: %s", self.name, type(exc).__name__)
            self.closed = True
