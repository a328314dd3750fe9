"""Who still reads a feature's REST endpoints, from the counts a backend keeps in Redis
(docs/contracts.md, "Retiring REST"); thorcut never asks the backend.

A backend counts each feature's REST reads per minute in ``{prefix}:rest:<feature>:<unix minute>``
(hash: client label -> count) and may keep each label's latest read in
``{prefix}:rest:<feature>:last`` (label -> Unix seconds) and the build id of the page it serves
in ``{prefix}:page:build``. A :class:`Window` names the minute buckets a question needs;
:func:`queue` adds their reads to a pipeline, so that a command asks in the round trip it makes
anyway, and :func:`collect` turns the replies into :class:`RestReads`. :func:`read_retirement`
answers ``thorcut retire`` and ``thorcut complete`` in one round trip; :class:`Retirement` is
the answer (:attr:`Retirement.ok`, :attr:`Retirement.reason`, :meth:`Retirement.unswitched`).

The readers of a window are the labels whose latest read is in it: by ``:last`` when the
backend keeps it (to the second), else by the minute buckets that overlap the window (to the
minute: a label read in any of them; last seen at the end of its latest bucket, marked
approximate). A reader's count is the sum of the buckets that overlap the window.

Nothing stored is trusted: labels need not be UTF-8 (they are read as bytes and decoded with
backslash escapes), a count that is not a whole number of at most 19 digits counts as 0, a time
that is not a finite number is ignored (the label is then known to the minute), a time in the
future is read as now, and a key of the wrong type reads as empty. No content of these keys
makes a reader fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from thorcut.clock import now_iso
from thorcut.flags.stages import Stage
from thorcut.flags.state import FlagState
from thorcut.redisconn import Keys

__all__ = [
    "MAX_WINDOW_S",
    "MIN_WINDOW_S",
    "OVERFLOW_LABEL",
    "STATUS_MINUTES",
    "WARN_WINDOW_S",
    "Reader",
    "RestReads",
    "Retirement",
    "Unswitched",
    "Window",
    "collect",
    "queue",
    "read_retirement",
    "span",
]

#: ``status`` shows reads per minute over this many minute buckets, the current one included.
STATUS_MINUTES = 5
#: ``complete`` warns of readers in this many seconds before it.
WARN_WINDOW_S = 300.0
#: The windows ``retire`` accepts: a second at least (``:last`` is to the second), a day at most
#: (the buckets expire a day after their minute).
MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 86400.0
#: The label a backend counts reads under once a minute's hash holds 100 labels.
OVERFLOW_LABEL = "other"
PAGE_PREFIX = "page/"

_MINUTE = 60
#: redis-py option: hand this reply back as bytes (labels need not be UTF-8; decoding them would raise).
_RAW: dict[str, Any] = {"NEVER_DECODE": []}
_MAX_COUNT = 2**63 - 1  # HINCRBY's range


# The value types are NamedTuples rather than dataclasses: ``status`` imports this module on every
# run, and five frozen dataclasses added some 3 ms to its start-up (docs/benchmarks.md, section 2).


class Window(NamedTuple):
    """The reads of ``feature`` from ``since`` to ``now`` (Unix seconds)."""

    feature: str
    since: float
    now: float

    @classmethod
    def last(cls, feature: str, seconds: float, now: float | None = None) -> Window:
        """The last ``seconds`` before ``now`` (default: the current time)."""
        now = time.time() if now is None else now
        return cls(feature, now - seconds, now)

    @classmethod
    def status(cls, feature: str, now: float | None = None) -> Window:
        """The :data:`STATUS_MINUTES` minute buckets up to the current (partial) one."""
        now = time.time() if now is None else now
        return cls(feature, (math.floor(now / _MINUTE) - STATUS_MINUTES + 1) * _MINUTE, now)

    @property
    def minutes(self) -> range:
        """The Unix minutes whose buckets overlap the window."""
        return range(math.floor(self.since / _MINUTE), math.floor(self.now / _MINUTE) + 1)

    @property
    def replies(self) -> int:
        """How many pipeline replies :func:`queue` adds for this window."""
        return len(self.minutes) + 1


def queue(pipe: Any, keys: Keys, window: Window) -> None:
    """Add the reads of ``window`` to the redis-py pipeline ``pipe`` (:attr:`Window.replies` of them,
    in the order :func:`collect` takes them): each overlapping minute's hash, then ``:last``."""
    for minute in window.minutes:
        pipe.execute_command("HGETALL", keys.rest(window.feature, minute), **_RAW)
    pipe.execute_command("HGETALL", keys.rest_last(window.feature), **_RAW)


class Reader(NamedTuple):
    """A client label that read the feature's REST endpoints in a window."""

    label: str
    #: reads in the minute buckets that overlap the window ("count" in JSON)
    reads: int
    #: Unix seconds of its latest read (when ``approximate``: the end of its latest minute bucket,
    #: or now if that minute is the current one)
    last_seen: float
    approximate: bool
    #: the Unix minute of its latest bucket, when ``approximate``
    minute: int | None = None

    @property
    def build(self) -> str | None:
        """The page build of a ``page/<build>`` label, else None."""
        return self.label[len(PAGE_PREFIX) :] if self.label.startswith(PAGE_PREFIX) else None

    def describe_seen(self, now: float) -> str:
        """When it last read, for people: ``12 s ago (2026-11-24T14:30:05.123Z)``, or where only the
        minute is known ``in the minute from 2026-11-24T14:30Z (at most 70 s ago)``."""
        if self.approximate and self.minute is not None:
            start = datetime.fromtimestamp(self.minute * _MINUTE, UTC)
            return f"in the minute from {start:%Y-%m-%dT%H:%M}Z (at most {_seconds(now - start.timestamp())} ago)"
        return f"{_seconds(now - self.last_seen)} ago ({now_iso(datetime.fromtimestamp(self.last_seen, UTC))})"

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "label": self.label,
            "count": self.reads,
            "last_seen": now_iso(datetime.fromtimestamp(self.last_seen, UTC)),
            "last_seen_age_s": round(max(now - self.last_seen, 0.0), 3),
            "last_seen_approximate": self.approximate,
        }


class RestReads(NamedTuple):
    """Who read a feature's REST endpoints in a window, most recent first."""

    window: Window
    readers: tuple[Reader, ...]
    #: every read counted in the overlapping minute buckets
    total: int
    #: "second" when the backend keeps ``:last``, else "minute"
    resolution: str

    @property
    def per_minute(self) -> float:
        """Reads per minute over the window's buckets (the current one partial)."""
        return round(self.total / len(self.window.minutes), 1)


def collect(window: Window, raw: Sequence[Any]) -> RestReads:
    """Return the reads of ``window`` from the :attr:`Window.replies` replies that :func:`queue`
    added (bytes or text; an exception, as a pipeline run without ``raise_on_error`` gives for a
    key of the wrong type, reads as an empty hash)."""
    buckets, last = raw[:-1], _hash(raw[-1])
    counts: dict[str, int] = {}
    latest: dict[str, int] = {}  # label -> its latest minute
    total = 0
    for minute, reply in zip(window.minutes, buckets, strict=True):
        for key, value in _hash(reply).items():
            label, n = _text(key), _count(value)
            counts[label] = counts.get(label, 0) + n
            latest[label] = minute
            total += n
    seen: dict[str, float] = {}
    for key, value in last.items():
        at = _time(value)
        if at is not None:
            label = _text(key)
            seen[label] = max(seen.get(label, 0.0), min(at, window.now))
    readers = []
    for label in counts.keys() | seen.keys():
        if label in seen:
            if seen[label] >= window.since:
                readers.append(Reader(label, counts.get(label, 0), seen[label], False))
        else:  # not in ``:last``: known to the minute
            end = min(float((latest[label] + 1) * _MINUTE), window.now)
            readers.append(Reader(label, counts[label], end, True, latest[label]))
    readers.sort(key=lambda r: (-r.last_seen, r.label))
    return RestReads(window, tuple(readers), total, "second" if seen else "minute")


class Unswitched(NamedTuple):
    """The readers ``complete`` does not move to WebSocket, by kind (see :meth:`Retirement.unswitched`)."""

    #: page builds other than the current one (still open in some tab)
    old_pages: tuple[Reader, ...]
    #: page builds, when the current build is unknown
    pages: tuple[Reader, ...]
    #: every other label: tokens, anonymous, named scripts, ``other``
    clients: tuple[Reader, ...]

    def __bool__(self) -> bool:
        return bool(self.old_pages or self.pages or self.clients)


class Retirement(NamedTuple):
    """Whether a feature's REST endpoints can be deleted: it is ``complete`` and nobody read them."""

    stage: Stage
    reads: RestReads
    #: the build of the page the backend serves now (``{prefix}:page:build``), None if unknown
    current_build: str | None

    @property
    def feature(self) -> str:
        return self.reads.window.feature

    @property
    def window_s(self) -> float:
        return self.reads.window.now - self.reads.window.since

    @property
    def ok(self) -> bool:
        return self.stage is Stage.COMPLETE and not self.reads.readers

    def old_page_build(self, reader: Reader) -> bool | None:
        """Whether ``reader`` is a page build other than the current one; None when it is no page
        or the current build is unknown."""
        if reader.build is None or self.current_build is None:
            return None
        return reader.build != self.current_build

    def unswitched(self) -> Unswitched:
        """The readers that the ``flags`` push does not switch to WebSocket: old page builds (or
        every page build, when the current one is unknown) and every label that is not a page."""
        pages = [r for r in self.reads.readers if r.build is not None]
        return Unswitched(
            tuple(r for r in pages if self.old_page_build(r)),
            tuple(pages) if self.current_build is None else (),
            tuple(r for r in self.reads.readers if r.build is None),
        )

    @property
    def reason(self) -> str:
        """One sentence: why the endpoints can or cannot be deleted."""
        name, readers, within = self.feature, self.reads.readers, span(self.window_s)
        if self.ok:
            return f"{name} is complete and nobody read its REST endpoints in the last {within}"
        parts = []
        if self.stage is not Stage.COMPLETE:
            parts.append(f"{name} is {self.stage.value}, not complete: clients still poll its REST endpoints")
        if readers:
            who = f"{len(readers)} client{'s' if len(readers) != 1 else ''}"
            parts.append(f"{who} read {name}'s REST endpoints in the last {within}: {self.names()}")
        return "; ".join(parts)

    def names(self, limit: int = 10) -> str:
        """The readers' labels (old page builds marked), at most ``limit`` of them."""
        shown = []
        for r in self.reads.readers[:limit]:
            note = " (old page build)" if self.old_page_build(r) else ""
            shown.append(short(r.label) + note)
        more = len(self.reads.readers) - limit
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        now = self.reads.window.now
        readers = []
        for r in self.reads.readers:
            row = r.to_dict(now)
            row["kind"] = "page" if r.build is not None else "client"
            row["old_page_build"] = self.old_page_build(r)
            readers.append(row)
        return {
            "feature": self.feature,
            "stage": self.stage.value,
            "window_s": self.window_s,
            "readers": readers,
            "current_page_build": self.current_build,
            "resolution": self.reads.resolution,
            "ok": self.ok,
            "reason": self.reason,
        }


def read_retirement(client: Any, keys: Keys, feature: str, seconds: float, now: float | None = None) -> Retirement:
    """Read ``feature``'s stage, the current page build and who read its REST endpoints in the last
    ``seconds``, in one round trip. Raises redis-py's connection errors."""
    window = Window.last(feature, seconds, now)
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("HGETALL", keys.flag(feature), **_RAW)
    pipe.execute_command("GET", keys.page_build, **_RAW)
    queue(pipe, keys, window)
    raw = pipe.execute(raise_on_error=False)
    flag = {_text(k): _text(v) for k, v in _hash(raw[0]).items()}
    build = _text(raw[1]) if isinstance(raw[1], bytes | str) and raw[1] else None
    return Retirement(FlagState.from_hash(feature, flag).stage, collect(window, raw[2:]), build)


def span(seconds: float) -> str:
    """A window's length for people: ``15 min``, ``5 s``, ``1 h``, ``90 s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def short(label: str, limit: int = 80) -> str:
    """``label`` cut to ``limit`` characters, saying how long it was."""
    return label if len(label) <= limit else f"{label[: limit - 1]}… ({len(label)} characters)"


def _seconds(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _hash(reply: Any) -> Mapping[Any, Any]:
    return reply if isinstance(reply, Mapping) else {}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _count(value: bytes | str) -> int:
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
    if not (raw.isdigit() and len(raw) <= 19):
        return 0
    return min(int(raw), _MAX_COUNT)


def _time(value: bytes | str) -> float | None:
    try:
        at = float(value)
    except (ValueError, TypeError):
        return None
    return at if math.isfinite(at) and at >= 0 else None
