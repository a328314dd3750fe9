"""Feature names, stages and the stage machine (docs/contracts.md, "Stages")."""

from __future__ import annotations

from enum import StrEnum

from thorcut.errors import UsageError


class Stage(StrEnum):
    """Where a feature is in its cutover."""

    OFF = "off"
    SHADOW = "shadow"
    LIVE = "live"
    COMPLETE = "complete"


#: Allowed transitions: (from, to) pairs. `live -> live` is a percent change.
TRANSITIONS: frozenset[tuple[Stage, Stage]] = frozenset(
    {
        (Stage.OFF, Stage.SHADOW),
        (Stage.SHADOW, Stage.OFF),
        (Stage.SHADOW, Stage.LIVE),
        (Stage.LIVE, Stage.LIVE),
        (Stage.LIVE, Stage.COMPLETE),
        (Stage.LIVE, Stage.SHADOW),
        (Stage.COMPLETE, Stage.SHADOW),
    }
)

#: The command that performs each target stage, for messages that say how to get there.
_HOW = {
    Stage.OFF: "off",
    Stage.SHADOW: "shadow (from off) or disable (from live/complete)",
    Stage.LIVE: "enable (from shadow)",
    Stage.COMPLETE: "complete (from live)",
}


def check_feature(name: str, known: tuple[str, ...]) -> str:
    """Return ``name`` if it is a known feature; raise :class:`UsageError` listing the valid ones."""
    if name not in known:
        raise UsageError(f"unknown feature {name!r}; valid features: {', '.join(known)}")
    return name


def allowed(src: Stage, dst: Stage) -> bool:
    """Return whether the stage machine allows ``src -> dst``."""
    return (src, dst) in TRANSITIONS


def route_hint(dst: Stage) -> str:
    """Return how a feature reaches ``dst``, for refusal messages."""
    return _HOW[dst]
