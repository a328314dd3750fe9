"""Each stream's recent envelopes, kept in Redis so that any worker can answer a ``resume``.

docs/contracts.md, "Resuming a stream": the broadcaster that publishes an envelope also adds its
JSON text, exactly as pushed, to a sorted set of its stream scored by ``seq``, on the channel
layer's Redis (``settings.CHANNEL_REDIS_URL``): ``<THORCUT_PREFIX>.thor:history:<type>:<key>``,
trimmed to the last ``THOR_HISTORY_SIZE`` envelopes and expiring ``THOR_HISTORY_TTL`` seconds after
the stream's last message. ``heartbeat`` has no history.

:class:`HistoryWriter` runs in the broadcaster's loop: ``add()`` only appends to a list, and one
task writes whatever has gathered meanwhile in ONE pipeline (a ZADD per envelope, then one trim and
one EXPIRE per stream), bounded by the send timeout. While a write is out the next batch gathers,
so a tick's twenty envelopes cost about one round trip, and a slow or frozen Redis costs the
history, never a push. :func:`read` is the resume's side: one pipeline of ZRANGEBYSCORE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from django.conf import settings

from thorcut.flags import parse_redis_url

#: A stream: (message type, key).
Stream = tuple[str, str]
#: One envelope to keep: (message type, history key, seq, JSON text as pushed).
Entry = tuple[str, str, int, str]
#: Envelopes waiting for a write at most; beyond, the oldest are dropped (and counted as failed).
MAX_PENDING = 10_000


def history_key(type_: str, key: str) -> str:
    """``<THORCUT_PREFIX>.thor:history:<type>:<key>`` (the channel layer's own prefix, then ``:history:``)."""
    return f"{settings.THORCUT_PREFIX}.thor:history:{type_}:{key}"


def client(url: str | None = None, timeout: float = 1.0) -> Any:
    """An asyncio Redis client of the channel layer's Redis, with socket timeouts (use in one loop).

    Through Sentinel when the URL names a service: each new connection goes to the current primary.
    """
    return parse_redis_url(url or settings.CHANNEL_REDIS_URL, "THOR_CHANNEL_REDIS_URL").async_client(timeout)


class HistoryWriter:
    """Batches ``add()``\\ ed envelopes into pipelined writes; ``on_failed(entries, exc)`` per failed batch."""

    def __init__(
        self,
        redis_client: Any,
        *,
        size: int,
        ttl: int,
        timeout: float,
        on_failed: Callable[[list[Entry], BaseException], None],
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self._client = redis_client
        self.size = max(1, size)
        self.ttl = max(1, ttl)
        self.timeout = timeout
        self._on_failed = on_failed
        self._on_written = on_written
        self._pending: list[Entry] = []
        self._writing = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def busy(self) -> bool:
        """Whether anything is waiting to be written or being written."""
        return bool(self._pending) or self._writing > 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add(self, type_: str, key: str, seq: int, text: str) -> None:
        """Keep one pushed envelope (call in the writer's loop; never waits)."""
        if len(self._pending) >= MAX_PENDING:
            dropped, self._pending = self._pending[: MAX_PENDING // 10], self._pending[MAX_PENDING // 10 :]
            self._on_failed(dropped, OverflowError("history backlog full"))
        self._pending.append((type_, history_key(type_, key), seq, text))
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Write what is left (waiting at most ``timeout`` seconds), then stop and close the client."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task}, timeout=max(0.0, timeout))
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Counted busy before the batch leaves the list: flush() (another thread) must never
            # see "nothing pending, nothing writing" mid-handoff.
            self._writing += 1
            batch, self._pending = self._pending, []
            try:
                if batch:
                    await self._write(batch, self.timeout)
            finally:
                self._writing -= 1
            if self._closing and not self._pending:
                return

    async def _write(self, batch: list[Entry], timeout: float) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for _, key, seq, text in batch:
                pipe.zadd(key, {text: seq})
            for key in dict.fromkeys(key for _, key, _, _ in batch):
                pipe.zremrangebyrank(key, 0, -self.size - 1)
                pipe.expire(key, self.ttl)
            await asyncio.wait_for(pipe.execute(), timeout)
        except asyncio.CancelledError:
            self._on_failed(batch, TimeoutError("stopped"))
            raise
        except Exception as exc:  # TimeoutError, redis errors alike: the history misses them, pushes go on
            self._on_failed(batch, exc)
        else:
            if self._on_written is not None:
                self._on_written(len(batch))


async def read(
    redis_client: Any, ranges: dict[Stream, tuple[int, int]], timeout: float
) -> dict[Stream, dict[int, str]]:
    """The kept envelopes of each stream with ``lo <= seq <= hi``: seq -> JSON text, in one pipeline."""
    if not ranges:
        return {}
    pipe = redis_client.pipeline(transaction=False)
    for (type_, key), (lo, hi) in ranges.items():
        pipe.zrangebyscore(history_key(type_, key), lo, hi, withscores=True)
    results = await asyncio.wait_for(pipe.execute(), timeout)
    out: dict[Stream, dict[int, str]] = {}
    for stream, rows in zip(ranges, results, strict=True):
        entries: dict[int, str] = {}
        for member, score in rows:
            text = member.decode("utf-8") if isinstance(member, bytes) else str(member)
            entries.setdefault(int(score), text)
        out[stream] = entries
    return out
