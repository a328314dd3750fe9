"""Stream health per (type, key): gaps, duplicates, out-of-order messages and freshness lag.

Pure bookkeeping (no I/O). ``seq`` is the per-(type, key) version of the envelope (docs/contracts.md): the next
message of a stream should carry ``last + 1``. Anything else is classified and counted:

* ``seq > last + 1``: a **gap**; ``missed`` grows by the number of versions skipped.
* ``seq`` seen before (among the recent ``window`` seqs): a **duplicate**.
* ``seq < last`` and not seen: **out of order** (it arrived after a newer one).

The first message of a stream sets ``last`` and is never a gap, and neither is the first message
after a reconnect (call :meth:`StreamHealth.reset_baseline`): what was sent while disconnected is
not a loss of the stream but of the connection, and the caller says so itself. For the same reason
a version seen before the reconnect and sent again after it is not a duplicate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from thorcut.clock import iso_timestamp


class Event(StrEnum):
    """How one message relates to the stream's history."""

    FIRST = "first"
    NEXT = "next"
    GAP = "gap"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


@dataclass
class Counters:
    """Health counters of one (type, key) stream, or totals over several."""

    messages: int = 0
    gaps: int = 0
    missed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    lag_ms_max: float = 0.0
    lag_ms_sum: float = 0.0
    lag_samples: int = 0

    def add(self, other: Counters) -> None:
        self.messages += other.messages
        self.gaps += other.gaps
        self.missed += other.missed
        self.duplicates += other.duplicates
        self.out_of_order += other.out_of_order
        self.lag_ms_max = max(self.lag_ms_max, other.lag_ms_max)
        self.lag_ms_sum += other.lag_ms_sum
        self.lag_samples += other.lag_samples

    @property
    def lag_ms_mean(self) -> float:
        return self.lag_ms_sum / self.lag_samples if self.lag_samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "gaps": self.gaps,
            "missed": self.missed,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "lag_ms_mean": round(self.lag_ms_mean, 1),
            "lag_ms_max": round(self.lag_ms_max, 1),
        }


@dataclass
class _Stream:
    last: int | None = None
    recent: deque[int] = field(default_factory=deque)
    seen: set[int] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)


class StreamHealth:
    """Track every (type, key) stream; :meth:`observe` classifies one message."""

    def __init__(self, window: int = 256) -> None:
        self.window = window
        self.streams: dict[tuple[str, str], _Stream] = {}

    def observe(self, type_: str, key: str, seq: int, *, ts: str | None = None, received: float | None = None
                ) -> tuple[Event, int]:  # fmt: skip
        """Record a message; return its :class:`Event` and, for a gap, how many seqs were skipped.

        ``ts`` (the envelope's ISO time) and ``received`` (Unix seconds) give the freshness lag.
        """
        s = self.streams.get((type_, key))
        if s is None:
            s = self.streams[(type_, key)] = _Stream()
        c = s.counters
        c.messages += 1
        if ts and received is not None:
            sent = iso_timestamp(ts)  # parse_iso(ts).timestamp(), 1 µs less
            if sent is not None:
                lag = max(0.0, (received - sent) * 1000)
                c.lag_ms_sum += lag
                c.lag_samples += 1
                c.lag_ms_max = max(c.lag_ms_max, lag)
        skipped = 0
        if seq in s.seen:
            c.duplicates += 1
            return Event.DUPLICATE, 0
        if s.last is None:
            event = Event.FIRST
        elif seq == s.last + 1:
            event = Event.NEXT
        elif seq > s.last + 1:
            event, skipped = Event.GAP, seq - s.last - 1
            c.gaps += 1
            c.missed += skipped
        else:
            c.out_of_order += 1
            event = Event.OUT_OF_ORDER
        s.seen.add(seq)
        s.recent.append(seq)
        if len(s.recent) > self.window:
            s.seen.discard(s.recent.popleft())
        if s.last is None or seq > s.last:
            s.last = seq
        return event, skipped

    def reset_baseline(self) -> None:
        """After a reconnect: each stream starts afresh. Versions sent while disconnected are not a
        gap, and a version seen before the drop is not a duplicate (servers commonly send the
        current state again to a new connection)."""
        for s in self.streams.values():
            s.last = None
            s.seen.clear()
            s.recent.clear()

    def counters(self, type_: str, key: str) -> Counters:
        s = self.streams.get((type_, key))
        return s.counters if s else Counters()

    def totals(self, types: tuple[str, ...] | None = None) -> Counters:
        """Sum over every stream, or over the streams whose type is in ``types``."""
        out = Counters()
        for (type_, _), s in self.streams.items():
            if types is None or type_ in types:
                out.add(s.counters)
        return out
