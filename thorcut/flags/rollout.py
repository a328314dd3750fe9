"""Which clients read from WebSocket: the sticky percent bucket and env overrides.

The backend decides per client with :func:`reads_websocket`; the frontend receives the result,
so the bucket is computed in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from thorcut.flags.stages import Stage

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def bucket(feature: str, client_id: str) -> int:
    """Return the client's stable bucket 0..99 for ``feature`` (a hash, so no state is kept)."""
    digest = hashlib.sha256(f"{feature}\x00{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def reads_websocket(stage: Stage, percent: int, feature: str, client_id: str) -> bool:
    """Return whether ``client_id`` renders ``feature`` from WebSocket at this stage and percent."""
    if stage is Stage.COMPLETE:
        return True
    if stage is Stage.LIVE:
        return bucket(feature, client_id) < percent
    return False


def broadcasts(stage: Stage) -> bool:
    """Return whether the backend pushes the feature over WebSocket at ``stage``."""
    return stage is not Stage.OFF


def reads_from(stage: Stage, percent: int) -> str:
    """Return where clients read from, for people (``status``)."""
    if stage is Stage.LIVE:
        if percent >= 100:
            return "WebSocket"
        if percent <= 0:
            return "REST"
        return f"WS {percent}% · REST {100 - percent}%"
    if stage is Stage.COMPLETE:
        return "WebSocket only"
    if stage is Stage.SHADOW:
        return "REST (WebSocket shadow)"
    return "REST"


def env_override(var: str, env: Mapping[str, str]) -> Stage | None:
    """Return the stage forced by ``var`` (``WS_FEATURE_*``): true → live at 100%, false → off.

    An unset or empty variable gives None; any other value is ignored (and reported by
    :func:`bad_override`) so a typo never takes a feature live.
    """
    raw = env.get(var, "").strip().lower()
    if raw in _TRUE:
        return Stage.LIVE
    if raw in _FALSE:
        return Stage.OFF
    return None


def bad_override(var: str, env: Mapping[str, str]) -> str | None:
    """Return the unrecognised value of ``var`` if it is set to something not true/false."""
    raw = env.get(var, "").strip()
    if raw and raw.lower() not in _TRUE | _FALSE:
        return raw
    return None
