"""Deciding one change, without I/O: the stage machine and the parity gate applied to a
:class:`Request` and the state read from the store give a :class:`Plan`, or a refusal (exit 3).
The store (:mod:`.store`) reads, plans, and commits the plan atomically."""

from __future__ import annotations

from dataclasses import dataclass

from thorcut.errors import EvidenceRefused, TransitionRefused
from thorcut.flags.stages import Stage, allowed, route_hint
from thorcut.flags.state import FlagState
from thorcut.verdict import ParityRecord, gate


@dataclass(frozen=True)
class Request:
    """One wanted change, before it is checked against the stored state."""

    feature: str
    to: Stage
    percent: int | None = None
    rollback: bool = False  # `disable`: only live|complete → shadow; never turns a feature on


@dataclass(frozen=True)
class Plan:
    """A checked change: the state before and after, and what let it through the gate."""

    before: FlagState
    after: FlagState
    forced: bool = False
    evidence: str | None = None  # the judged_at of the PASS verdict the change relies on

    @property
    def changes(self) -> bool:
        return (self.before.stage, self.before.percent) != (self.after.stage, self.after.percent)


def plan_change(r: Request, before: FlagState, parity: ParityRecord, *, force: bool, validity: float) -> Plan:
    """Return the state after ``r``; raise if the stage machine or the gate refuses it.

    ``validity`` is how long a PASS verdict opens the gate (seconds). Decided on the state the store
    read in this attempt; its script's compare-and-set on ``version`` makes sure the commit happens
    only if that state is still the stored one, so a refusal or a no-op is never based on a stale
    read (and writes nothing).
    """
    if r.rollback and before.stage is Stage.OFF:
        raise TransitionRefused(
            f"{r.feature} is off: nothing is broadcast and every client reads REST, so there is nothing "
            "to roll back — a rollback never turns a feature on. To start broadcasting it, run "
            f"`thorcut shadow {r.feature}`"
        )
    if before.stage == r.to and r.to is not Stage.LIVE:
        return Plan(before, before)
    if before.stage is Stage.OFF and r.to is Stage.LIVE:
        raise TransitionRefused(
            f"{r.feature} is off; it cannot go to live from there — run `thorcut shadow {r.feature}` first, "
            "let parity reach PASS (`thorcut diff`/`check`), then enable it"
        )
    if not allowed(before.stage, r.to):
        raise TransitionRefused(
            f"{r.feature} is {before.stage.value}; it cannot go to {r.to.value} from there "
            f"(reach {r.to.value} with: {route_hint(r.to)})"
        )
    percent = {Stage.OFF: 0, Stage.SHADOW: 0, Stage.COMPLETE: 100}.get(r.to)
    if percent is None:  # live: keep the current percent unless a new one is given
        percent = r.percent if r.percent is not None else (before.percent if before.stage is Stage.LIVE else 100)
    if (before.stage, before.percent) == (r.to, percent):
        return Plan(before, before)  # live at the same percent: nothing to write
    after = FlagState(r.feature, r.to, percent, before.version + 1)
    plan = Plan(before, after)
    if r.to is Stage.LIVE:
        why = gate(parity, validity)
        if why is None:
            return Plan(before, after, evidence=parity.judged_at)
        if not force:
            raise EvidenceRefused(
                f"refusing to enable {r.feature}: {why}. "
                "Override with --force --reason TEXT (recorded in the audit log)"
            )
        return Plan(before, after, forced=True)
    return plan
