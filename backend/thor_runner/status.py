"""What a job runner is doing, for observers (``run_jobs --stats-file``): its term, heartbeat, broadcaster."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from global_markets.services.websocket_broadcast import Broadcaster
from thor_runner.heartbeat import Heartbeat
from thor_runner.leader import Renewer
from thor_trading import fence

#: How many of the latest tick-lateness samples :class:`RunnerStatus` reports.
RECENT_LATENESS = 512


@dataclass
class Lead:
    """One term as leader, for :class:`RunnerStatus`."""

    term: fence.Term
    renewer: Renewer
    started: float
    heartbeat: Heartbeat | None = None
    broadcaster: Broadcaster | None = None

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "term": self.term.number,
            "for": round(time.monotonic() - self.started, 3),
            "fenced": self.term.reason if self.term.fenced.is_set() else "",
            "renewer": self.renewer.stats(),
        }
        if self.heartbeat is not None:
            out["heartbeat"] = self.heartbeat.stats()
            # The latest samples themselves (oldest first; one per tick run, so the last
            # ``ticks - t`` of them are the ticks run since an earlier snapshot with ``ticks == t``):
            # lets an observer take the percentiles of a window, e.g. a Redis outage.
            samples = list(getattr(self.heartbeat, "_lateness", ()))[-RECENT_LATENESS:]
            out["lateness_recent"] = [round(x, 6) for x in samples]
        if self.broadcaster is not None:
            out["broadcaster"] = self.broadcaster.stats()
        return out


@dataclass
class RunnerStatus:
    """What a job runner is doing: its current term (if leading), the last one, and counts."""

    token: str = ""
    terms: int = 0
    step_downs: Counter[str] = field(default_factory=Counter)
    lead: Lead | None = None
    last: dict[str, Any] | None = None  # the stats of the last term, as it ended

    def snapshot(self) -> dict[str, Any]:
        lead = self.lead
        current: dict[str, Any] | None = None
        with contextlib.suppress(RuntimeError):  # a deque or dict changed under us: next time
            current = lead.stats() if lead is not None else None
        return {
            "pid": os.getpid(),
            "time": time.time(),
            "token": self.token,
            "leader": lead is not None,
            "terms": self.terms,
            "step_downs": dict(self.step_downs),
            "current": current,
            "last": self.last,
        }
