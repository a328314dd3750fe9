"""What a parity run returns, live or replayed: the reports and the window they judged."""

from __future__ import annotations

from dataclasses import dataclass, field

from thorcut.clock import parse_iso
from thorcut.compare.shadow import FeatureReport


@dataclass
class RunResult:
    reports: dict[str, FeatureReport]
    window_s: float
    source: str
    frames: int = 0
    non_json: int = 0
    notices: list[str] = field(default_factory=list)
    rest_requests: int = 0
    resumes: dict[str, int] = field(default_factory=dict)  # what the resumes did (StreamHealth.resumes)


class Span:
    """The observation window: from the first to the last event time seen (ISO strings, as the
    recording holds them), so a live run and the replay of its recording judge the same window."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: str | None = None

    def see(self, at: str) -> None:
        # One ISO-8601 UTC format (``now_iso``), so text order is time order.
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at

    @property
    def seconds(self) -> float:
        start = parse_iso(self.first) if self.first else None
        end = parse_iso(self.last) if self.last else None
        return max(0.0, (end - start).total_seconds()) if start and end else 0.0
