"""The wait for workers' acknowledgements (``--wait``): has every live backend worker applied a change?

Each :class:`~thorcut.flags.watcher.FlagWatcher` acknowledges every version it applies under
``{prefix}:ack:<feature>:<version>`` and keeps itself registered in ``{prefix}:workers``.
:func:`wait_for_acks` polls those acknowledgements for one change until every worker registered
when the wait began has one, or the time is up; the command only prints the :class:`AckWait`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from thorcut.flags.store import FlagStore, Outcome

#: Why nothing was waited for: the change changed nothing, was a dry run, or no worker is registered.
Skipped = Literal["unchanged", "dry_run", "no_workers"]

#: How often the acknowledgements are read while waiting (seconds).
POLL = 0.002


@dataclass(frozen=True)
class AckWait:
    """What the wait for one change saw. Its :meth:`to_dict` is the ``wait`` item of ``--json``."""

    feature: str
    version: int
    #: The workers registered when the wait began (empty when it was skipped before reading them).
    workers: list[str] = field(default_factory=list)
    #: Workers still registered at the deadline that had not acknowledged: the wait timed out.
    missing: list[str] = field(default_factory=list)
    #: Milliseconds until every worker had acknowledged (or, at the deadline, every silent one had
    #: left); None when skipped or timed out.
    ms: float | None = None
    skipped: Skipped | None = None
    #: Worker -> when it applied the change, in ms relative to the moment the wait began (the change
    #: had returned). A worker may apply it before the reply reaches us (the notification is
    #: published inside the commit), so values can be < 0. Set only when every worker acknowledged.
    ack_ms: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "feature": self.feature,
            "version": self.version,
            "workers": list(self.workers),
            "missing": list(self.missing),
            "ms": self.ms,
            "skipped": self.skipped,
        }
        if self.ack_ms is not None:
            doc["ack_ms"] = dict(self.ack_ms)
        return doc


def wait_for_acks(store: FlagStore, outcome: Outcome, seconds: float, *, poll: float = POLL) -> AckWait:
    """Poll the acknowledgements of ``outcome``'s version until every live worker has one, or
    ``seconds`` pass.

    A change that changed nothing, or a dry run, has nothing to acknowledge: skipped without
    reading Redis. A worker whose registration lapses during the wait is not waited for; one still
    registered at the deadline is ``missing``.
    """
    feature, version = outcome.after.feature, outcome.after.version
    if not outcome.changed or outcome.dry_run:
        return AckWait(feature, version, skipped="dry_run" if outcome.dry_run else "unchanged")
    start_wall, start = time.time(), time.perf_counter()
    deadline = start + seconds
    workers = store.live_workers()
    if not workers:
        return AckWait(feature, version, skipped="no_workers")
    while True:
        acks = store.acks(feature, version)
        missing = [w for w in workers if w not in acks]
        if not missing:
            ack_ms = {w: round((acks[w] - start_wall) * 1000, 2) for w in workers}
            return AckWait(feature, version, workers, ms=_ms_since(start), ack_ms=ack_ms)
        if time.perf_counter() >= deadline:
            alive = set(store.live_workers())
            still = [w for w in missing if w in alive]
            return AckWait(feature, version, workers, still, ms=None if still else _ms_since(start))
        time.sleep(poll)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
