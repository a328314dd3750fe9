"""Stream health per (type, key): gaps, resyncs, duplicates, out-of-order messages and freshness lag.

Pure bookkeeping (no I/O). ``seq`` is the per-(type, key) version of the envelope (docs/contracts.md): the next
message of a stream should carry ``last + 1``. Anything else is classified and counted:

* ``seq > last + 1``: a **gap**; ``missed`` grows by the number of versions skipped. When the
  message is marked ``"resync": true`` (the server had no history to replay and sent the current
  state instead), the jump is a **resync**, not a gap: counted apart, ``resynced_missed`` grows by
  the versions skipped (docs/contracts.md, "Resuming a stream": "Resyncs are counted apart from gaps").
* ``seq`` seen before (among the recent ``window`` seqs): a **duplicate**.
* ``seq < last`` and not seen: **out of order** (it arrived after a newer one).

The first message of a stream sets ``last`` and is never a gap or a resync, marked or not.

**Across a reconnect** the caller says which of two things happened:

* :meth:`StreamHealth.begin_resume`: it sent the server a ``resume`` with :meth:`StreamHealth.since`
  (the last ``seq`` held per stream), so every stream keeps its baseline: the envelopes the server
  replays are the next versions, a marked jump is a resync and an unmarked jump is a gap. Until the
  server's ``{"type": "resumed"}`` (:meth:`StreamHealth.resume_answered`) a stream's *first*
  message on the new connection may run ahead of the replay (an envelope pushed before the server
  read the resume): such a jump is held (:attr:`Event.AHEAD`) and the versions it skipped are
  counted as a gap only if the replay does not bring them by the ``resumed`` (or as a resync if
  the server marks the stream ``resync``); a version sent again meanwhile is :attr:`Event.RESENT`,
  not a duplicate. A resume the server refuses (``error``,
  :meth:`StreamHealth.resume_refused`), or leaves unanswered for :data:`RESUME_WAIT` seconds of
  traffic, falls back to a new baseline, as below.
* :meth:`StreamHealth.reset_baseline` (no resume): each stream starts afresh. What was sent while
  disconnected is not a loss of the stream but of the connection, and a version seen before the
  drop and sent again after it is not a duplicate.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from thorcut.clock import iso_timestamp

#: Seconds of traffic (from the first message after the reconnect) after which a resume that got
#: neither ``resumed`` nor ``error`` is given up: the server does not know the command.
RESUME_WAIT = 10.0
#: The contract's bounds of a resume's ``since`` (docs/contracts.md, "The `resume` command").
SINCE_MAX = 1000
KEY_MAX = 64
SEQ_MAX = 2**63 - 1
#: The longest frame a client may send the reference backend (``THOR_WS_MAX_MESSAGE``; over it the
#: connection is closed with 1009): a resume naming more streams than fit names the first that do.
FRAME_MAX = 65536
#: ``{"action":"resume","since":[]}`` around the entries (the resume frame's own bytes).
_FRAME_WRAPPER = 30


class Event(StrEnum):
    """How one message relates to the stream's history."""

    FIRST = "first"
    NEXT = "next"
    GAP = "gap"
    RESYNC = "resync"  # a jump marked "resync": true (or, with a resync's skipped > 0, see observe)
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    AHEAD = "ahead"  # an unmarked jump while a resume is answered: a gap only if the replay leaves it
    RESENT = "resent"  # a version seen before, sent again around a reconnect or resume: not a duplicate


@dataclass
class Counters:
    """Health counters of one (type, key) stream, or totals over several."""

    messages: int = 0
    gaps: int = 0
    missed: int = 0
    resyncs: int = 0
    resynced_missed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    lag_ms_max: float = 0.0
    lag_ms_sum: float = 0.0
    lag_samples: int = 0

    def add(self, other: Counters) -> None:
        self.messages += other.messages
        self.gaps += other.gaps
        self.missed += other.missed
        self.resyncs += other.resyncs
        self.resynced_missed += other.resynced_missed
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
            "resyncs": self.resyncs,
            "resynced_missed": self.resynced_missed,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "lag_ms_mean": round(self.lag_ms_mean, 1),
            "lag_ms_max": round(self.lag_ms_max, 1),
        }


@dataclass
class Resumes:
    """What the resumes of a run did: sent by thorcut, and the server's answers to them."""

    sent: int = 0  # resume commands sent (one per reconnect with something to resume)
    answered: int = 0  # "resumed" replies to them
    refused: int = 0  # answered with "error": judged from a new baseline instead
    unanswered: int = 0  # neither within RESUME_WAIT s of traffic (or before the next reconnect)
    healed: int = 0  # "resumed" with "healed": true, sent unasked after the server healed itself
    replayed: int = 0  # envelopes replayed, as the "resumed" replies say (healed ones included)
    resynced: int = 0  # streams sent as their current state marked "resync", as they say

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def text(self) -> str:
        """One line: ``resumes 1 sent, 1 answered (3 replayed, 1 resynced)``, then what else happened."""
        text = f"resumes {self.sent} sent, {self.answered} answered"
        text += f" ({self.replayed} replayed, {self.resynced} resynced)"
        for name in ("refused", "unanswered", "healed"):
            if getattr(self, name):
                text += f", {getattr(self, name)} {name}"
        return text


@dataclass(frozen=True)
class Reply:
    """A ``{"type": "resumed", "replayed": N, "resynced": M[, "healed": true]}`` message."""

    replayed: int
    resynced: int
    healed: bool

    @classmethod
    def parse(cls, msg: Any) -> Reply | None:
        """The reply ``msg`` is, or None if it is not one (wrong type, counts that are not counts)."""
        if not isinstance(msg, dict) or msg.get("type") != "resumed":
            return None
        replayed, resynced = msg.get("replayed", 0), msg.get("resynced", 0)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (replayed, resynced)):
            return None
        return cls(replayed, resynced, msg.get("healed") is True)


@dataclass(frozen=True)
class Held:
    """What became of a jump held while a resume was answered (:attr:`Event.AHEAD`)."""

    type: str
    key: str
    seq: int  # the message that jumped
    missing: int  # versions before it that the replay did not bring: a gap if > 0


@dataclass
class _Stream:
    last: int | None = None
    recent: deque[int] = field(default_factory=deque)
    seen: set[int] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)
    # While a resume is answered (StreamHealth._resuming): the stream was held when it was sent,
    # ``fresh`` until its first message on the new connection, and a jump held ahead of the replay.
    resuming: bool = False
    fresh: bool = False
    ahead: tuple[int, int, int] | None = None  # (first skipped, jumping seq, skipped ones received since)


class StreamHealth:
    """Track every (type, key) stream; :meth:`observe` classifies one message."""

    def __init__(self, window: int = 256) -> None:
        self.window = window
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.resumes = Resumes()
        self._resuming = False  # a resume was sent and is not answered yet
        self._resume_clock: float | None = None  # when the first message after it arrived

    @property
    def resuming(self) -> bool:
        """A resume was sent and neither answered, refused nor given up yet."""
        return self._resuming

    def observe(self, type_: str, key: str, seq: int, *, ts: str | None = None, received: float | None = None,
                resync: bool = False, clock: float | None = None) -> tuple[Event, int]:  # fmt: skip
        """Record a message; return its :class:`Event` and, for a gap or a resync, how many seqs were skipped.

        ``ts`` (the envelope's ISO time) and ``received`` (Unix seconds) give the freshness lag;
        ``resync``: the message was marked ``"resync": true``. ``clock`` (default ``received``) is
        the time that gives up an unanswered resume after :data:`RESUME_WAIT` seconds.

        While a resume is answered, a marked message of a stream whose jump was held counts that
        jump as one resync with its own: it is :attr:`Event.RESYNC` (or :attr:`Event.RESENT` with
        the versions skipped, when the message itself was seen already).
        """
        if self._resuming:
            self._tick(received if clock is None else clock)
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
        pending = self._resuming and s.resuming
        healed = 0  # a held jump that this marked message turns into a resync: its missing versions
        if pending and resync and s.ahead is not None:
            first, jumped, got = s.ahead
            healed, s.ahead = jumped - first - got, None
        fresh, s.fresh = s.fresh, False
        skipped = 0
        if seq in s.seen:
            if pending:
                event, skipped = Event.RESENT, healed
                if healed:
                    c.resyncs += 1
                    c.resynced_missed += healed
                return event, skipped
            c.duplicates += 1
            return Event.DUPLICATE, 0
        if s.last is None:
            event = Event.FIRST
        elif seq == s.last + 1:
            event = Event.NEXT
        elif seq > s.last + 1:
            skipped = seq - s.last - 1
            if resync:
                event = Event.RESYNC
            elif pending and fresh:  # perhaps pushed before the server read the resume: wait for the replay
                event, s.ahead = Event.AHEAD, (s.last + 1, seq, 0)
            else:
                event = Event.GAP
                c.gaps += 1
                c.missed += skipped
        elif pending and s.ahead is not None and s.ahead[0] <= seq < s.ahead[1]:
            event = Event.NEXT  # replayed behind the message that ran ahead of it
            s.ahead = (s.ahead[0], s.ahead[1], s.ahead[2] + 1)
        else:
            c.out_of_order += 1
            event = Event.OUT_OF_ORDER
        if healed:
            skipped += healed
            event = Event.RESYNC if event in (Event.NEXT, Event.RESYNC) else event
            if event is not Event.RESYNC:  # an odd marked message (out of order, first): the heal still counts
                c.resyncs += 1
                c.resynced_missed += healed
        if event is Event.RESYNC:
            c.resyncs += 1
            c.resynced_missed += skipped
        s.seen.add(seq)
        s.recent.append(seq)
        if len(s.recent) > self.window:
            s.seen.discard(s.recent.popleft())
        if s.last is None or seq > s.last:
            s.last = seq
        return event, skipped

    # -- reconnects ----------------------------------------------------------------------------

    def since(self, types: frozenset[str] | set[str] | tuple[str, ...] | None = None,
              limit: int = SINCE_MAX) -> list[dict[str, Any]]:  # fmt: skip
        """The ``since`` of a resume: the last ``seq`` held per stream, ``[{"type", "key", "seq"}]``
        sorted by type and key, for the streams of ``types`` (None: all) the contract accepts (a key
        of 1 to 64 characters, a seq up to 2^63 - 1), at most ``limit`` of them and no more than fit
        one frame of ``FRAME_MAX`` bytes as :func:`thorcut.wire.stream.resume_frame` writes it (a
        stream left out is answered with its current state, marked ``resync``)."""
        out: list[dict[str, Any]] = []
        room = FRAME_MAX - _FRAME_WRAPPER + 1  # the first entry has no comma before it
        for (type_, key), s in sorted(self.streams.items()):
            if s.last is None or (types is not None and type_ not in types):
                continue
            if 1 <= len(key) <= KEY_MAX and s.last <= SEQ_MAX:
                entry = {"type": type_, "key": key, "seq": s.last}
                room -= len(json.dumps(entry, separators=(",", ":"))) + 1  # ASCII: bytes = characters
                if room < 0:
                    break
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def begin_resume(self) -> None:
        """After a reconnect on which a resume was sent: every stream keeps its baseline (module docstring)."""
        if self._resuming:
            self._give_up()
        self.resumes.sent += 1
        self._resuming, self._resume_clock = True, None
        for s in self.streams.values():
            s.resuming, s.fresh, s.ahead = s.last is not None, s.last is not None, None

    def resume_answered(self, reply: Reply) -> list[Held]:
        """Take a ``resumed`` message. Answering the resume sent (not ``healed``), it ends it: a jump
        held ahead of the replay whose skipped versions did not all arrive is a gap now. Returns the
        held jumps, with how many versions each still misses."""
        self.resumes.replayed += reply.replayed
        self.resumes.resynced += reply.resynced
        if reply.healed:
            self.resumes.healed += 1
            return []
        if not self._resuming:
            return []  # a reply to no resume of ours (a second one, or a server's own)
        self.resumes.answered += 1
        held = []
        for (type_, key), s in self.streams.items():
            if s.ahead is not None:
                first, jumped, got = s.ahead
                missing = jumped - first - got
                held.append(Held(type_, key, jumped, missing))
                if missing:
                    s.counters.gaps += 1
                    s.counters.missed += missing
        self._end()
        return held

    def resume_refused(self) -> bool:
        """The server answered the resume with ``error``: fall back to a new baseline for this
        connection. Returns False (and does nothing) when no resume was waiting for an answer."""
        if not self._resuming:
            return False
        self.resumes.refused += 1
        self._fall_back()
        return True

    def reset_baseline(self) -> None:
        """After a reconnect with no resume: each stream starts afresh. Versions sent while
        disconnected are not a gap, and a version seen before the drop is not a duplicate (servers
        commonly send the current state again to a new connection)."""
        if self._resuming:
            self._give_up()
        for s in self.streams.values():
            s.last = None
            s.seen.clear()
            s.recent.clear()

    def _tick(self, now: float | None) -> None:
        if now is None:
            return
        if self._resume_clock is None:
            self._resume_clock = now
        elif now - self._resume_clock > RESUME_WAIT:
            self._give_up()

    def _give_up(self) -> None:
        self.resumes.unanswered += 1
        self._fall_back()

    def _fall_back(self) -> None:
        """The resume brings nothing more: as if the baseline had been reset at the reconnect. A
        held jump is no gap, and a stream with no message since starts afresh."""
        for s in self.streams.values():
            if s.resuming and s.fresh:
                s.last = None
                s.seen.clear()
                s.recent.clear()
        self._end()

    def _end(self) -> None:
        self._resuming, self._resume_clock = False, None
        for s in self.streams.values():
            s.resuming, s.fresh, s.ahead = False, False, None

    # -- counts --------------------------------------------------------------------------------

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
