"""Per-process fan-out: one channel per event loop joins each group once for all local streams.

With one channel per connection, every group message is queued, deserialised and dispatched once
per consumer: at 500 clients that per-consumer work was most of a worker's CPU (docs/benchmarks.md,
fan-out). Here each event loop (one per worker process) has one hub channel that joins a group
when its first local stream needs it and leaves when the last one goes; the hub receives each
message once and hands the event, with its JSON text already encoded by the broadcaster, to the
streams that joined that group. Which group a message belongs to follows from the message itself
(:func:`groups.group_for`), and each stream still checks ownership and subscription itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Protocol

from global_markets import groups
from global_markets.services import redis_health

log = logging.getLogger("thor.ws")


class Member(Protocol):
    def deliver(self, event: dict[str, Any]) -> None: ...


class LoopHub:
    """The hub of one event loop."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def join(self, group: str, member: Member) -> None:
        async with self._lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel("thor.hub.")
                self._task = asyncio.create_task(self._run(self.channel))
            members = self.members.setdefault(group, set())
            first = not members
            members.add(member)
            if first:
                try:
                    await self.layer.group_add(group, self.channel)
                except BaseException:  # not subscribed: the next member to join must try again
                    members.discard(member)
                    if not members:
                        del self.members[group]
                    raise

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

    async def _run(self, channel: str) -> None:
        while True:
            try:
                event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the layer reconnects on its own; do not spin
                if not redis_health.failed(exc):  # an outage is logged once, not per receive
                    log.exception("hub receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            message = event.get("message") if event.get("type") == groups.EVENT else None
            if not isinstance(message, dict) or "type" not in message:
                continue
            for member in tuple(self.members.get(groups.group_for(message), ())):
                try:
                    member.deliver(event)
                except Exception:  # one stream's bug must not starve the others
                    log.exception("delivering to a stream failed")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHub] = weakref.WeakKeyDictionary()


def hub(layer: Any) -> LoopHub:
    """Return the running loop's hub (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = LoopHub(layer)
    return found
