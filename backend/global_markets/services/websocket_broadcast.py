"""Hand messages from the heartbeat thread to the channel layer without ever blocking it.

A :class:`Broadcaster` owns a bounded, thread-safe queue and ONE long-lived asyncio event loop in
a daemon thread. ``submit(message)`` (called from the heartbeat thread) only appends to the queue:
when the queue is full the message is dropped and counted, so the producer never waits. The loop
drains the queue in order and calls the channel layer's ``group_send(group, event)`` for each
message, every call bounded by ``send_timeout``; an error or a timeout (Redis down, or frozen by
SIGSTOP so that TCP still accepts but nothing answers) counts the message as *failed* and drops
it. After a failure a short circuit breaker opens: messages dequeued while it is open are dropped
as failed without a send attempt (so a dead Redis drains the queue quickly instead of leaving
minutes-old messages waiting), then one probe send is tried; its success closes the breaker.

Resuming (docs/contracts.md, "Resuming a stream"): every envelope it publishes (what the heartbeat
submitted, after fault injection, so exactly what was pushed) also goes, with the JSON text the
clients got, into its stream's history in Redis (:mod:`global_markets.services.stream_history`:
batched, pipelined, on its own task, so it never delays a send); ``heartbeat`` has none. A history
write that fails is counted (``history_failed``, ``thor_broadcast_dropped_total{reason="history"}``)
and logged once per streak; it never blocks and never opens the breaker (the push itself went out).
After messages were lost here (a failed send, the breaker, a full queue), the first thing sent
once Redis answers again is a ``thor.heal`` event on the heartbeat group (:data:`groups.HEAL`): it
makes every worker bring its clients back to the current state before anything newer reaches them.

Why not ``async_to_sync(layer.group_send)(...)`` per message, the usual idiom from plain threads:
from a thread without a running loop, ``async_to_sync`` creates (and closes) a new event loop for
each call, and channels_redis keeps its connection pools *per event loop*. Every send therefore
opens fresh Redis connections that are never reused (channels_redis issue #100, "connection
leak"), and pays loop creation plus a TCP/Redis handshake each time (issue #125, slow sends).
One loop that lives as long as the broadcaster keeps one pool and reuses its connections. For
the same reason the channel layer object is created *inside* that loop's thread: its pools
belong to the loop that first used them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from global_markets import groups
from global_markets.metrics import BROADCAST_DROPPED, BROADCAST_QUEUE_DEPTH, BROADCAST_QUEUED
from global_markets.services import stream_history

log = logging.getLogger("thor.broadcast")

#: Default queue bound: at ~20 messages per tick this is minutes of backlog, bounded memory.
QUEUE_SIZE = 10_000
#: Default bound on one group_send; well above a healthy Redis round trip (sub-millisecond).
SEND_TIMEOUT = 0.5
#: Circuit breaker: after a failure, skip sends for this long (doubling per failed probe, capped).
BREAKER_MIN = 0.1
BREAKER_MAX = 1.0

LayerFactory = Callable[[], Any]


def layer_from_config(config: dict[str, Any], socket_timeout: float | None = None) -> Any:
    """Build a channel layer from a ``CHANNEL_LAYERS`` entry (``{"BACKEND", "CONFIG"}``).

    With ``socket_timeout``, each Redis host gets socket (and connect) timeouts too, so a dead
    Redis also fails at the socket level, not only through the broadcaster's ``wait_for``.
    """
    kwargs = dict(config.get("CONFIG", {}))
    if socket_timeout is not None and "hosts" in kwargs:
        hosts = []
        for host in kwargs["hosts"]:
            if isinstance(host, str):
                host = {"address": host}
            elif isinstance(host, list | tuple):
                host = {"host": host[0], "port": host[1]}
            else:
                host = dict(host)
            host.setdefault("socket_timeout", socket_timeout)
            host.setdefault("socket_connect_timeout", socket_timeout)
            hosts.append(host)
        kwargs["hosts"] = hosts
    return import_string(config["BACKEND"])(**kwargs)


async def close_sentinels(layer: Any) -> None:
    """Close the connections to the Sentinels of ``layer``'s pools in the running loop.

    channels_redis 4.3 closes a layer's connections to the primary when its loop closes (``flush``),
    but not those its ``SentinelConnectionPool`` made to the Sentinels: they would be left to the
    garbage collector (an unclosed-socket ResourceWarning), once per leader term. Reads the layer's
    per-loop internals (both layers of channels_redis 4.3); anything else is left alone.
    """
    per_loop = getattr(layer, "_layers", None)
    loop_layer = per_loop.get(asyncio.get_running_loop()) if isinstance(per_loop, dict) else None
    clients = [getattr(shard, "_redis", None) for shard in getattr(loop_layer, "_shards", ())]
    clients += list(getattr(loop_layer, "_connections", {}).values())
    for client in clients:
        manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            with contextlib.suppress(Exception):  # already broken: nothing left to close
                await sentinel.aclose()


class Broadcaster:
    """Bounded queue + one asyncio loop thread that sends each message to its channel-layer group.

    ``layer_factory`` (called once, in the broadcaster's loop thread) builds the channel layer;
    by default it is ``CHANNEL_LAYERS["default"]`` from the settings, with socket timeouts. The
    history goes to ``history_url`` (default ``CHANNEL_REDIS_URL``), ``history_size`` envelopes per
    stream expiring after ``history_ttl`` seconds (default ``THOR_HISTORY_SIZE``/``THOR_HISTORY_TTL``);
    ``history=False`` keeps none.
    """

    def __init__(
        self,
        layer_factory: LayerFactory | None = None,
        *,
        maxsize: int = QUEUE_SIZE,
        send_timeout: float = SEND_TIMEOUT,
        name: str = "thor-broadcaster",
        history: bool = True,
        history_url: str | None = None,
        history_size: int | None = None,
        history_ttl: int | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1 (the queue is always bounded)")
        self._factory = layer_factory or (
            lambda: layer_from_config(settings.CHANNEL_LAYERS["default"], socket_timeout=send_timeout)
        )
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize)
        self.maxsize = maxsize
        self.send_timeout = send_timeout
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle = False
        self._stop_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._count_lock = threading.Lock()
        self.sent = 0
        self.dropped = 0  # queue full at submit()
        self.failed = 0  # send error/timeout, or skipped while the breaker was open
        self.in_flight = 0
        self.last_error: str = ""
        self._breaker_until = 0.0
        self._breaker_wait = BREAKER_MIN
        self._history_on = history
        self._history_url = history_url
        self._history_size = settings.THOR_HISTORY_SIZE if history_size is None else history_size
        self._history_ttl = settings.THOR_HISTORY_TTL if history_ttl is None else history_ttl
        self._history: stream_history.HistoryWriter | None = None
        self._history_failing = False
        self.history_written = 0
        self.history_failed = 0
        #: Messages were lost since the last heal event: send one before the next message.
        self._heal_needed = False
        self.heals = 0

    # -- producer side (any thread, never blocks) -------------------------------------------

    def submit(self, message: dict[str, Any]) -> bool:
        """Queue ``message`` for its group; return False (and count it) if the queue is full."""
        type_ = str(message.get("type", ""))
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._count_lock:
                self.dropped += 1
            self._heal_needed = True
            BROADCAST_DROPPED.labels(type_, "queue_full").inc()
            return False
        BROADCAST_QUEUED.labels(type_).inc()
        BROADCAST_QUEUE_DEPTH.set(self._queue.qsize())
        loop, wake = self._loop, self._wake
        if self._idle and loop is not None and wake is not None:
            # call_soon_threadsafe only appends a callback and writes a byte to the loop's
            # self-pipe (non-blocking; a full pipe is ignored), so this cannot block either.
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)
        return True

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> Broadcaster:
        """Start the loop thread; return once the loop (and the channel layer) are ready."""
        self._thread = threading.Thread(target=self._thread_main, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._loop is None:
            raise RuntimeError(f"broadcaster loop did not start: {self.last_error or 'timed out'}")
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then stop the loop; the rest is dropped."""
        if self._thread is None:
            return
        self._stop_deadline = time.monotonic() + timeout
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        self._thread.join(timeout + 2 * self.send_timeout + 1.0)
        self._thread = None
        BROADCAST_QUEUE_DEPTH.set(0)

    def __enter__(self) -> Broadcaster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far has been sent or dropped (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self._history
            if self._queue.empty() and self.in_flight == 0 and (history is None or not history.busy):
                return True
            time.sleep(0.002)
        return False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "failed": self.failed,
            "depth": self.depth,
            "maxsize": self.maxsize,
            "breaker_open": time.monotonic() < self._breaker_until,
            "last_error": self.last_error,
            "history_written": self.history_written,
            "history_failed": self.history_failed,
            "heals": self.heals,
        }

    # -- the loop thread ------------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.exception("broadcaster loop crashed")
        finally:
            self._loop = None
            self._ready.set()  # never leave start() waiting
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                # channels_redis wraps loop.close() to flush the layer's per-loop connections.
                loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # Created in this loop's thread: channels_redis keys its connection pools by event loop,
        # and wraps this loop's close() to close them (see _thread_main). Never call the layer's
        # flush() here: on the core layer it deletes every group in Redis.
        layer = self._factory()
        if self._history_on:
            self._history = stream_history.HistoryWriter(
                stream_history.client(self._history_url, self.send_timeout),
                size=self._history_size,
                ttl=self._history_ttl,
                timeout=self.send_timeout,
                on_failed=self._history_failed,
                on_written=self._history_written,
            )
            self._history.start()
        self._ready.set()
        try:
            await self._drain(layer)
        finally:
            if self._history is not None:
                left = (self._stop_deadline or time.monotonic()) - time.monotonic()
                await self._history.close(max(left, self.send_timeout))
            await close_sentinels(layer)

    async def _drain(self, layer: Any) -> None:
        assert self._wake is not None
        while True:
            self.in_flight = 1  # before get(): flush() must never see "empty and idle" mid-handoff
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                self.in_flight = 0
                if self._stop_deadline is not None:
                    return
                self._wake.clear()
                self._idle = True
                # Re-check after announcing idleness: a submit() between get_nowait() and
                # ``_idle = True`` did not wake us, but its message is visible now.
                if self._queue.empty() and self._stop_deadline is None:
                    await self._wake.wait()
                self._idle = False
                continue
            try:
                if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                    # Out of time: count what is queued now as dropped and end, even if a
                    # producer is still submitting.
                    self._fail(message, "stopped")
                    for _ in range(self._queue.qsize()):
                        with contextlib.suppress(queue.Empty):
                            self._fail(self._queue.get_nowait(), "stopped")
                    return
                await self._send(layer, message)
            finally:
                self.in_flight = 0
                BROADCAST_QUEUE_DEPTH.set(self._queue.qsize())

    async def _send(self, layer: Any, message: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self._breaker_until:
            self._fail(message, "redis_down")
            return
        event = groups.event(message)
        try:
            if self._heal_needed:
                # Before anything newer: every worker heals its clients from the database's state,
                # so the messages lost here never show as an unmarked jump.
                heal = layer.group_send(groups.HEARTBEAT, {"type": groups.HEAL})
                await asyncio.wait_for(heal, self.send_timeout)
                self._heal_needed = False
                self.heals += 1
            send = layer.group_send(groups.group_for(message), event)
            await asyncio.wait_for(send, self.send_timeout)
        except Exception as exc:  # TimeoutError, redis errors, serialization errors alike
            detail = str(exc) or f"no answer within {self.send_timeout}s"
            self.last_error = f"{type(exc).__name__}: {detail}"[:200]
            if self._breaker_until == 0.0 or now - self._breaker_until > BREAKER_MAX:
                log.warning("broadcast to Redis failed (%s); dropping messages until it answers", self.last_error)
            self._breaker_until = time.monotonic() + self._breaker_wait
            self._breaker_wait = min(self._breaker_wait * 2, BREAKER_MAX)
            self._fail(message, "timeout" if isinstance(exc, TimeoutError) else "error")
            return
        if self._breaker_until:
            log.warning("broadcast to Redis recovered")
        self._breaker_until = 0.0
        self._breaker_wait = BREAKER_MIN
        self.sent += 1
        type_, seq = message["type"], message.get("seq")
        if self._history is not None and type_ != "heartbeat" and type(seq) is int:
            self._history.add(type_, str(message.get("key")), seq, event["text"])

    def _fail(self, message: dict[str, Any], reason: str) -> None:
        with self._count_lock:
            self.failed += 1
        self._heal_needed = True
        BROADCAST_DROPPED.labels(str(message.get("type", "")), reason).inc()

    def _history_failed(self, entries: list[stream_history.Entry], exc: BaseException) -> None:
        """A history write failed: counted like a failed send, logged once per streak; pushes go on."""
        self.history_failed += len(entries)
        for type_, _, _, _ in entries:
            BROADCAST_DROPPED.labels(type_, "history").inc()
        if not self._history_failing:
            self._history_failing = True
            detail = str(exc) or f"no answer within {self.send_timeout}s"
            log.warning("stream history write to Redis failed (%s: %s); resumes answer with a resync until it works",
                        type(exc).__name__, detail[:200])  # fmt: skip

    def _history_written(self, count: int) -> None:
        self.history_written += count
        if self._history_failing:
            self._history_failing = False
            log.warning("stream history writes to Redis work again")
