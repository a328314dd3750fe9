"""Channel-layer Redis outages in the logs: one line when it goes, one when it is back (issue 10).

While the channel-layer Redis was unreachable, channels_redis logged a traceback from its receive
task every second and every connecting stream logged its own: 19 tracebacks in one outage. Now
every connection error seen by the stream consumer, the hub or channels_redis goes through
:func:`failed`; the first one of an outage logs one WARNING line, and the second line (with how
long it was away and how many errors were folded into the first) comes when it is back. Errors
that are not connection errors are not ours to hide.

"Back" means the layer's own path works again, not merely that Redis answers a PING: a PING
answered before channels_redis had re-made its pub/sub connection declared the outage over while
new streams still failed to subscribe (a CI flake). So while a worker's hub probes its path
through the channel layer (:mod:`global_markets.hub`, :meth:`Outage.watch`), only a probe sent
after the outage began and come back through the layer ends it (:meth:`Outage.path_works`); a
process without a probing hub falls back to pinging Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import redis.exceptions
from django.conf import settings

from thorcut.flags import parse_redis_url

log = logging.getLogger("global_markets.redis")

#: What an unreachable or frozen Redis raises (redis-py's own classes, and the OS's).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
#: Seconds between pings while Redis is away.
PROBE_EVERY = 0.5
#: The loggers whose connection-error tracebacks are folded into the outage line.
NOISY_LOGGERS = ("channels_redis.pubsub", "channels_redis.core")


def shown_url(url: str) -> str:
    """``url`` with its secrets hidden (log lines never hold a credential), Sentinel URLs too."""
    return parse_redis_url(url, "THOR_CHANNEL_REDIS_URL").shown


class Outage:
    """This process's view of the channel-layer Redis: reachable, or away since when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.folded = 0
        self.outages = 0
        self.watchers = 0  # hubs probing the layer's path: they, not a PING, tell when it is back
        self._probes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return str(settings.CHANNEL_REDIS_URL)

    def failed(self, exc: BaseException) -> bool:
        """Record ``exc`` if it is a connection error; return whether it was (then do not log it)."""
        if not isinstance(exc, CONNECTION_ERRORS):
            return False
        with self._lock:
            first = self.since is None
            if first:
                self.since = time.monotonic()
                self.folded = 0
                self.outages += 1
            else:
                self.folded += 1
        if first:
            log.warning("channel-layer Redis at %s is unreachable (%s: %s): no pushes to WebSocket clients, "
                        "new streams closed with 1011, until it is back", shown_url(self.url),
                        type(exc).__name__, exc)  # fmt: skip
            self._start_probe()
        return True

    def healed(self) -> None:
        """Redis answered again: log the second line of the outage (no-op when there was none)."""
        with self._lock:
            since, folded, self.since = self.since, self.folded, None
        if since is not None:
            log.warning("channel-layer Redis at %s is reachable again after %.1f s (%d more errors not logged)",
                        shown_url(self.url), time.monotonic() - since, folded)  # fmt: skip

    def watch(self) -> None:
        """A hub starts probing the layer's path: from now on its probes end outages."""
        with self._lock:
            self.watchers += 1

    def unwatch(self) -> None:
        with self._lock:
            self.watchers = max(0, self.watchers - 1)

    def path_works(self, sent_at: float) -> None:
        """A probe sent at ``sent_at`` (monotonic) came back through the layer: an older outage is over."""
        since = self.since
        if since is not None and since < sent_at:
            self.healed()

    def _start_probe(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: the next outage line waits for a loop's error
            return
        task = loop.create_task(self._probe())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self) -> None:
        # Through the Sentinels when the URL names a service: after a failover it pings the new primary.
        client = parse_redis_url(self.url, "THOR_CHANNEL_REDIS_URL").async_client(1.0)
        try:
            while self.since is not None:
                await asyncio.sleep(PROBE_EVERY)
                with contextlib.suppress(Exception):  # still away (or frozen: the ping times out)
                    await client.ping()
                    if not self.watchers:  # else the hub's probe says when the layer's path is back
                        self.healed()
        finally:
            await client.aclose()


outage = Outage()


def failed(exc: BaseException) -> bool:
    """Module shortcut for :meth:`Outage.failed` on this process's tracker."""
    return outage.failed(exc)


class FoldOutageErrors(logging.Filter):
    """Drop a record whose exception is a Redis connection error, after recording it as an outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not outage.failed(exc)


def install() -> None:
    """Put :class:`FoldOutageErrors` on channels_redis's loggers (once per process)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, FoldOutageErrors) for f in logger.filters):
            logger.addFilter(FoldOutageErrors())
