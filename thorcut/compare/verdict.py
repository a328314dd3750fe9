"""Parity verdicts as stored in ``{prefix}:parity:<feature>`` and the evidence gate on them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """The outcome of judging a feature's shadow traffic (docs/contracts.md, "The parity verdict")."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    PENDING = "PENDING"


def now_iso(now: datetime | None = None) -> str:
    """Return ``now`` (default: the current time) as ``2026-11-24T14:30:00.123Z``."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime | None:
    """Return the aware datetime of an ISO-8601 string, or None if it is not one."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITTEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_MILLIS = {f"{n:03d}Z": n * 1000 for n in range(1000)}  # "123Z" -> microseconds
_SECONDS: dict[str, int] = {}  # "2026-11-24T14:30:00." -> microseconds since the epoch


def iso_timestamp(text: str) -> float | None:
    """``parse_iso(text).timestamp()``, the same float, or None if ``text`` is not ISO-8601.

    The format :func:`now_iso` writes (``2026-11-24T14:30:00.123Z``) is read from a cache of its
    whole seconds: 0.15 µs, where ``parse_iso`` and ``timestamp()`` took 1.3 µs, twice for every
    WebSocket line of a replay. The float is the same because both divide the same integer count of
    microseconds by 10**6 (``timestamp()`` of an aware datetime is ``timedelta.total_seconds()``).
    """
    micros = _MILLIS.get(text[20:])
    if micros is not None:
        whole = _SECONDS.get(text[:20])
        if whole is not None:
            return (whole + micros) / 10**6
    value = parse_iso(text)
    if value is None:
        return None
    since = (value - _EPOCH) // timedelta(microseconds=1)
    if micros is not None and _WRITTEN.fullmatch(text):
        if len(_SECONDS) >= 4096:  # bounded: a recording spans any number of seconds
            _SECONDS.clear()
        _SECONDS[text[:20]] = since - micros
    return since / 10**6


@dataclass(frozen=True)
class ParityRecord:
    """A stored verdict; ``verdict`` is None when none has been written yet."""

    verdict: Verdict | None
    judged_at: str = ""
    counts: dict[str, int] | None = None
    raw: dict[str, str] | None = None

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ParityRecord:
        """Build from the Redis hash; an unknown verdict string is treated as no verdict."""
        try:
            verdict: Verdict | None = Verdict(data.get("verdict", ""))
        except ValueError:
            verdict = None
        counts = {}
        for name in (
            "samples",
            "paired",
            "matched",
            "mismatched",
            "unpaired",
            "gaps",
            "missed",
            "duplicates",
            "out_of_order",
            "errors",
        ):
            if data.get(name, "").isascii() and data.get(name, "").isdigit():  # "²".isdigit() is True
                counts[name] = int(data[name])
        return cls(verdict, data.get("judged_at", ""), counts, dict(data))

    def age(self, now: datetime | None = None) -> float | None:
        """Return seconds since the verdict was judged, or None if the time is missing."""
        at = parse_iso(self.judged_at) if self.judged_at else None
        if at is None:
            return None
        return ((now or datetime.now(UTC)) - at).total_seconds()

    def health(self) -> str | None:
        """Return a short stream-health summary from the counts, or None without a verdict."""
        if self.verdict is None:
            return None
        c = self.counts or {}
        bad = [f"{c[k]} {label}" for k, label in (("gaps", "gaps"), ("duplicates", "dup"),
                                                 ("out_of_order", "out of order")) if c.get(k)]  # fmt: skip
        return " · ".join(bad) if bad else "ok"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age(now)
        return {
            "verdict": self.verdict.value if self.verdict else None,
            "judged_at": self.judged_at or None,
            "age_s": round(age, 3) if age is not None else None,
            "counts": self.counts or {},
            "stream": self.health(),
        }


def gate(record: ParityRecord, validity: float, now: datetime | None = None) -> str | None:
    """Return None when ``record`` opens the ``enable`` gate, else the reason it does not."""
    if record.verdict is None:
        return "it has no parity verdict yet — run `thorcut diff` while it is in shadow"
    if record.verdict is not Verdict.PASS:
        return f"its parity verdict is {record.verdict.value}, not PASS"
    age = record.age(now)
    if age is None:
        return "its PASS verdict has no judged_at time"
    if age > validity:
        return f"its PASS verdict is {_human(age)} old; a verdict is valid for {_human(validity)}"
    if age < -60:  # a clock far ahead would keep a verdict valid for ever
        return "its PASS verdict is dated in the future; check the clocks"
    return None


def _human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
