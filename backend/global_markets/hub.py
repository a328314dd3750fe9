"""Per-process fan-out: one channel per event loop joins each group once for all local streams.

With one channel per connection, every group message is queued, deserialised and dispatched once
per consumer: at 500 clients that per-consumer work was most of a worker's CPU (docs/benchmarks.md,
fan-out). Here each event loop (one per worker process) has one hub channel that joins a group
when its first local stream needs it and leaves when the last one goes; the hub receives each
message once and hands the event, with its JSON text already encoded by the broadcaster, to the
streams that joined that group. Which group a message belongs to follows from the message itself
(:func:`groups.group_for`), and each stream still checks ownership and subscription itself.

The hub also watches its own path through the channel layer (docs/contracts.md, "Workers heal
themselves"). While it has members it sends its own channel a probe every ``THOR_LAYER_PROBE``
seconds (``{"type": "thor.probe", "n": <counter>}``: through Redis and back, like every push). The
path is *broken* when a probe has not come back within ``THOR_LAYER_PROBE_TIMEOUT`` seconds (and
neither has anything else in that time, and the loop itself was not the one late: a probe waiting
in line behind a backlog of pushes is not a broken path), when a probe is overtaken by a later one (it was lost: a
pub/sub connection dropped and re-made), or when the layer raises a connection error; connection
errors and timeouts also go to :mod:`global_markets.services.redis_health`, so an outage stays one
log line down and one up, and the "up" line waits for a probe to come back. While broken, pushes
are held (bounded; the heal below covers any it has to drop). The next probe that comes back heals
the path: every member stream is resumed from the last ``seq`` it sent its client
(:meth:`Member.heal`), then the held pushes go on. The job runner's broadcaster can ask for the
same: after its own sends failed and work again it sends ``{"type": "thor.heal"}`` on the
heartbeat group, which every hub (every stream joins that group) answers with a heal. Probes and
heal events are the hub's own: they never reach a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from django.conf import settings

from global_markets import groups
from global_markets.metrics import MESSAGES_DROPPED, PATH_BREAKS
from global_markets.send_queue import label
from global_markets.services import redis_health

log = logging.getLogger("thor.ws")

T = TypeVar("T")

#: Pushes held at most while the path is broken (the oldest go first; the heal covers them).
MAX_HELD = 10_000
#: Probes kept waiting at most (older ones are forgotten: the path is broken by then anyway).
MAX_OUTSTANDING = 64
#: Waits between attempts when subscribing meets a connection error (the layer re-connecting).
RETRY_DELAYS = (0.05, 0.2, 0.5)


class Member(Protocol):
    def deliver(self, event: dict[str, Any]) -> None: ...

    def heal(self) -> None: ...


async def retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, again after a short wait when it meets a connection error (a few times).

    Right after Redis came back, channels_redis may still be re-making its pub/sub connection, and a
    SUBSCRIBE in that moment fails with a connection error: a new stream must not fail for that.
    """
    for delay in RETRY_DELAYS:
        try:
            return await call()
        except redis_health.CONNECTION_ERRORS:
            await asyncio.sleep(delay)
    return await call()


class LoopHub:
    """The hub of one event loop."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self.broken = False
        self.heals = 0
        self._outstanding: dict[int, float] = {}  # probe n -> monotonic time it was sent
        self._seen: int | None = None  # the newest probe that came back
        self._heard = 0.0  # when the last event of any kind came in (monotonic)
        self._held: list[dict[str, Any]] = []

    async def join(self, group: str, member: Member) -> None:
        async with self._lock:
            if self.channel is None:
                channel: str = await retrying(lambda: self.layer.new_channel("thor.hub."))
                self.channel = channel
                self._task = asyncio.create_task(self._run(channel))
            channel = self.channel
            members = self.members.setdefault(group, set())
            first = not members
            members.add(member)
            if first:
                try:
                    await retrying(lambda: self.layer.group_add(group, channel))
                except BaseException:  # not subscribed: the next member to join must try again
                    members.discard(member)
                    if not members:
                        del self.members[group]
                    raise
            if self._prober is None:
                self._prober = asyncio.create_task(self._probe_loop(channel))

    async def leave(self, group: str, member: Member) -> None:
        async with self._lock:
            members = self.members.get(group)
            if not members or member not in members:
                return
            members.discard(member)
            if not members and self.channel is not None:
                del self.members[group]
                with contextlib.suppress(Exception):  # Redis gone: the subscription dies with it
                    await self.layer.group_discard(group, self.channel)
            if not self.members and self._prober is not None:
                self._prober.cancel()  # nobody to heal: a worker without clients does not probe
                self._prober = None
                self._outstanding.clear()
                self._seen = None
                self.broken = False
                self._held.clear()

    # -- receiving -----------------------------------------------------------------------------

    async def _run(self, channel: str) -> None:
        while True:
            try:
                event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the layer reconnects on its own; do not spin
                if redis_health.failed(exc):  # an outage is logged once, not per receive
                    self._break("layer_error", None)
                else:
                    log.exception("hub receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self._heard = time.monotonic()
            kind = event.get("type")
            if kind == groups.EVENT:
                message = event.get("message")
                if not isinstance(message, dict) or "type" not in message:
                    continue
                if self.broken:
                    self._hold(event, message)
                else:
                    self._dispatch(event, message)
            elif kind == groups.PROBE:
                self._probe_back(event.get("n"))
            elif kind == groups.HEAL:
                self._heal("the job runner's sends failed and work again")

    def _dispatch(self, event: dict[str, Any], message: dict[str, Any]) -> None:
        event[groups.ROUTE] = groups.route(event)  # once here, not once per member
        for member in tuple(self.members.get(groups.group_for(message), ())):
            try:
                member.deliver(event)
            except Exception:  # one stream's bug must not starve the others
                log.exception("delivering to a stream failed")

    def _hold(self, event: dict[str, Any], message: dict[str, Any]) -> None:
        if len(self._held) >= MAX_HELD:
            dropped, self._held = self._held[: MAX_HELD // 2], self._held[MAX_HELD // 2 :]
            for old in dropped:
                MESSAGES_DROPPED.labels(label(str(old["message"].get("type"))), "path_broken").inc()
        self._held.append(event)

    # -- the path's health -----------------------------------------------------------------------

    async def _probe_loop(self, channel: str) -> None:
        every = max(0.01, float(settings.THOR_LAYER_PROBE))
        timeout = max(every, float(settings.THOR_LAYER_PROBE_TIMEOUT))
        redis_health.outage.watch()
        n = 0
        try:
            while True:
                n += 1
                self._outstanding[n] = time.monotonic()
                while len(self._outstanding) > MAX_OUTSTANDING:
                    del self._outstanding[next(iter(self._outstanding))]
                try:
                    await asyncio.wait_for(self.layer.send(channel, {"type": groups.PROBE, "n": n}), timeout)
                except asyncio.CancelledError:
                    raise
                except TimeoutError:
                    self._outstanding.pop(n, None)
                    self._break("probe_timeout", TimeoutError(f"the channel layer took no probe within {timeout:g} s"))
                except Exception as exc:
                    self._outstanding.pop(n, None)
                    self._break("layer_error", exc)
                planned = time.monotonic() + every
                await asyncio.sleep(every)
                if time.monotonic() - planned > every:
                    continue  # this loop was starved itself: a late probe proves nothing now
                oldest = next(iter(self._outstanding.values()), None)
                now = time.monotonic()
                # Overdue while pushes still come in is a backlog (the probe waits in line behind
                # them), not a broken path: only silence as well breaks it.
                if not self.broken and oldest is not None and now - oldest > timeout and now - self._heard > timeout:
                    self._break("probe_timeout", TimeoutError(f"a probe did not come back within {timeout:g} s"))
        finally:
            redis_health.outage.unwatch()

    def _probe_back(self, n: object) -> None:
        if type(n) is not int:
            return
        sent_at = self._outstanding.pop(n, None)
        if sent_at is None:
            return  # counted lost already, or from before the hub last stopped probing
        lost = [m for m in self._outstanding if m < n]
        for m in lost:
            del self._outstanding[m]
        first = self._seen is None
        self._seen = n
        redis_health.outage.path_works(sent_at)
        if lost and not first and not self.broken:
            self._break("probe_lost", None)
        if self.broken:
            self._heal(f"probe {n} came back")

    def _break(self, why: str, exc: BaseException | None) -> None:
        if exc is not None and not redis_health.failed(exc):
            log.warning("probing the channel layer failed (%s: %s)", type(exc).__name__, exc)
        if not self.broken:
            self.broken = True
            PATH_BREAKS.labels(why).inc()
            log.info("this worker's channel-layer path broke (%s); holding pushes until it heals", why)

    def _heal(self, why: str) -> None:
        """Resume every member from what it last sent, then hand on what was held meanwhile."""
        was_broken, self.broken = self.broken, False
        held, self._held = self._held, []
        members: set[Member] = set().union(*self.members.values())
        self.heals += 1
        log.info("healing %d streams of this worker (%s%s)", len(members), why, "; the path was broken" * was_broken)
        for member in members:
            try:
                member.heal()
            except Exception:
                log.exception("healing a stream failed")
        for event in held:
            self._dispatch(event, event["message"])


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHub] = weakref.WeakKeyDictionary()


def hub(layer: Any) -> LoopHub:
    """Return the running loop's hub (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = LoopHub(layer)
    return found
