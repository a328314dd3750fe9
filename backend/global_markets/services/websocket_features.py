"""Which features are on WebSocket, for this process: the thorcut flag watcher, started once.

Every backend process (job runner and ASGI workers) runs one :class:`FlagWatcher`. Reads are in
memory (the heartbeat asks on every tick); ``WS_FEATURE_*`` in the environment (each feature's
``env_override`` in ``thor_trading.features``) wins, as in the original Thor system; a process
that never reached Redis treats every feature as ``off``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from django.conf import settings

from thor_trading.features import FEATURES, NAMES
from thorcut.flags import EffectiveFlag, FlagWatcher, Keys, broadcasts, connect

_lock = threading.Lock()
_watcher: FlagWatcher | None = None


def watcher() -> FlagWatcher:
    """Return this process's watcher, starting it on first use (waits up to 2 s for a first read)."""
    global _watcher
    with _lock:
        if _watcher is None:
            url = settings.THORCUT_REDIS_URL
            _watcher = FlagWatcher(
                lambda: connect(url, 2.0, check=False),
                Keys(settings.THORCUT_PREFIX),
                NAMES,
                # Every feature named ("" = none): given no names, the watcher would make its own.
                overrides={f.name: f.env_override or "" for f in FEATURES},
            )
            _watcher.add_listener(_export_version)
            _watcher.start(wait=2.0)
            for feature in NAMES:
                _export_version(feature, _watcher.get(feature))
        return _watcher


def _export_version(feature: str, flag: EffectiveFlag) -> None:
    from global_markets.metrics import FLAG_VERSION

    FLAG_VERSION.labels(feature).set(flag.state.version)


def stop() -> None:
    """Stop the watcher (tests; process exit does not need it)."""
    global _watcher
    with _lock:
        if _watcher is not None:
            _watcher.stop()
            _watcher = None


def is_broadcast(feature: str) -> bool:
    """Whether jobs should push ``feature`` (shadow, live or complete here)."""
    return broadcasts(watcher().stage(feature))


def on_change(listener: Callable[[str, EffectiveFlag], None]) -> None:
    watcher().add_listener(listener)


def flags_for_client(client_id: str) -> dict[str, dict[str, object]]:
    """The effective stage of every feature for one client, percent bucket applied."""
    flags = watcher().snapshot()
    return _features(flags, tuple(f.reads_websocket(client_id) for f in flags.values()))


def _features(flags: dict[str, EffectiveFlag], websocket: tuple[bool, ...]) -> dict[str, dict[str, object]]:
    return {
        feature: {
            "stage": f.stage.value,
            "percent": f.percent,
            "version": f.state.version,
            "source": "websocket" if on_ws else "rest",
            "override": f.override.value if f.override is not None else None,
        }
        for (feature, f), on_ws in zip(flags.items(), websocket, strict=True)
    }


#: The ``features`` JSON of a ``flags`` message, by (flags, which of them the client reads from
#: WebSocket): a change is pushed to every connected client, and the clients of one process fall
#: into a few such groups, so each group's text is encoded once, not once a client.
_encoded: dict[tuple[tuple[EffectiveFlag, ...], tuple[bool, ...]], str] = {}
_ENCODED_MAX = 256


def flags_message(client_id: str) -> str:
    """The ``flags`` message for one client, as JSON text: ``flags_for_client`` with its type and id."""
    flags = watcher().snapshot()
    websocket = tuple(f.reads_websocket(client_id) for f in flags.values())
    key = (tuple(flags.values()), websocket)
    features = _encoded.get(key)
    if features is None:
        if len(_encoded) >= _ENCODED_MAX:  # only old versions' groups: start again
            _encoded.clear()
        features = _encoded[key] = json.dumps(_features(flags, websocket), separators=(",", ":"))
    return '{"type":"flags","client":' + json.dumps(client_id) + ',"features":' + features + "}"
