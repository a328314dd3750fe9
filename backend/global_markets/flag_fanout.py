"""This process's open streams, so the flag watcher thread can push ``flags`` to all of them.

One listener per process (not one per connection) is registered with the watcher. It runs in the
watcher thread, so it only schedules: one ``call_soon_threadsafe`` per event loop, and a change
that lands while that loop's fan-out is still pending is folded into it (the fan-out reads the
flags when it runs, so clients get the newest state, once).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Protocol

from global_markets.services import websocket_features


class Stream(Protocol):
    """What the fan-out needs of a stream (``consumers.StreamConsumer``)."""

    loop: asyncio.AbstractEventLoop | None

    def push_flags(self) -> None: ...


class FlagFanOut:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()
        self._pending: set[asyncio.AbstractEventLoop] = set()
        self._watcher: object = None

    def add(self, stream: Stream) -> None:
        with self._lock:
            self._streams.add(stream)

    def discard(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

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
            loops = {s.loop for s in self._streams if s.loop is not None} - self._pending
            self._pending |= loops
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._fan_out, loop)
            except RuntimeError:  # that loop is closed; its streams are gone
                with self._lock:
                    self._pending.discard(loop)

    def _fan_out(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._pending.discard(loop)
            streams = [s for s in self._streams if s.loop is loop]
        for stream in streams:
            stream.push_flags()


#: The process's one fan-out.
live = FlagFanOut()
