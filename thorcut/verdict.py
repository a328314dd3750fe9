"""The parity verdict, and the one home of its stored record: the ``{prefix}:parity:<feature>``
hash of docs/contracts.md ("Stored verdicts") is built by :meth:`ParityRecord.judged` and read by
:meth:`ParityRecord.from_hash`, nowhere else; :func:`gate` is the evidence gate of ``enable``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from thorcut.clock import parse_iso


class Verdict(StrEnum):
    """The outcome of judging a feature's shadow traffic (docs/contracts.md, "The parity verdict")."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    PENDING = "PENDING"


#: The counts a verdict stores, each as its own field of the hash.
COUNTS = ("samples", "paired", "matched", "mismatched", "unpaired", "gaps", "missed", "resyncs", "resynced_missed",
          "duplicates", "out_of_order", "errors")  # fmt: skip


@dataclass(frozen=True)
class ParityRecord:
    """A stored verdict; ``verdict`` is None when none has been written yet. ``raw`` is the whole
    hash as stored (fields this thorcut does not know included)."""

    verdict: Verdict | None
    judged_at: str = ""
    counts: dict[str, int] | None = None
    raw: dict[str, str] | None = None

    @classmethod
    def judged(
        cls,
        verdict: Verdict,
        *,
        judged_at: str,
        source: str,
        reasons: Sequence[str],
        window: tuple[str | None, str | None, float],
        thresholds: Mapping[str, Any],
        health: Mapping[str, Any],
        rest_errors: Mapping[str, int],
        counts: Mapping[str, int],
        last_mismatch: Any = None,
    ) -> ParityRecord:
        """The record of a verdict just judged: ``window`` is (first event, last event, seconds);
        ``last_mismatch`` the newest mismatch example, if any."""
        start, end, seconds = window
        fields = {
            "verdict": verdict.value,
            "judged_at": judged_at,
            "source": source,
            "reasons": "; ".join(reasons),
            "window_start": start or "",
            "window_end": end or "",
            "window_s": f"{seconds:.3f}",
            "thresholds": json.dumps(dict(thresholds), sort_keys=True),
            "health": json.dumps(dict(health), sort_keys=True),
            "rest_errors": json.dumps(dict(rest_errors), sort_keys=True),
        }
        fields.update({k: str(v) for k, v in counts.items()})
        if last_mismatch is not None:
            fields["last_mismatch"] = json.dumps(last_mismatch, default=str)
        return cls.from_hash(fields)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> ParityRecord:
        """Build from the Redis hash; an unknown verdict string is treated as no verdict."""
        try:
            verdict: Verdict | None = Verdict(data.get("verdict", ""))
        except ValueError:
            verdict = None
        counts = {}
        for name in COUNTS:
            if data.get(name, "").isascii() and data.get(name, "").isdigit():  # "²".isdigit() is True
                counts[name] = int(data[name])
        return cls(verdict, data.get("judged_at", ""), counts, dict(data))

    def to_hash(self) -> dict[str, str]:
        """The fields to store in ``{prefix}:parity:<feature>``."""
        return dict(self.raw or {})

    def age(self, now: datetime | None = None) -> float | None:
        """Return seconds since the verdict was judged, or None if the time is missing."""
        at = parse_iso(self.judged_at) if self.judged_at else None
        if at is None:
            return None
        return ((now or datetime.now(UTC)) - at).total_seconds()

    def health(self) -> str | None:
        """Return a short stream-health summary from the counts, or None without a verdict: "ok", or
        what was seen (``1 gaps · 2 resyncs``; resyncs beside gaps, apart from them)."""
        if self.verdict is None:
            return None
        c = self.counts or {}
        seen = [f"{c[k]} {label}" for k, label in (("gaps", "gaps"), ("resyncs", "resyncs"), ("duplicates", "dup"),
                                                  ("out_of_order", "out of order")) if c.get(k)]  # fmt: skip
        return " · ".join(seen) if seen else "ok"

    def stream_problem(self) -> bool:
        """True when the stream lost or garbled versions (gaps, duplicates, out of order); resyncs
        alone are healed staleness, shown but not a problem."""
        c = self.counts or {}
        return any(c.get(k) for k in ("gaps", "duplicates", "out_of_order"))

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
