"""Channel-layer group names and the event format between the broadcaster and consumers.

Account features (``ACCOUNT_TYPES`` of ``thor_trading.features``) go only to that account's group,
so no connection ever receives another account's balance or positions; market-wide types have one
group each.

Two more event types travel the channel layer but never reach a client: :data:`PROBE`, a worker's
probe of its own path (each hub sends them to its own channel, :mod:`global_markets.hub`), and
:data:`HEAL`, the job runner's broadcaster telling every worker, on the heartbeat group, that its
sends failed and work again (so every worker brings its clients back to the current state).
"""

from __future__ import annotations

import json
from typing import Any

from thor_trading.features import ACCOUNT_TYPES, TYPE_FEATURE

HEARTBEAT = "thor.heartbeat"
EVENT = "stream.message"  # the consumer's handler is ``stream_message``
PROBE = "thor.probe"  # {"type": PROBE, "n": <counter>}: a hub's probe of its own path
HEAL = "thor.heal"  # {"type": HEAL}: on the heartbeat group, from the broadcaster after failed sends
ROUTE = "route"  # the key under which the hub puts an event's :func:`route` before handing it on

#: What a stream needs of an event: (type, feature, key, seq, JSON text, (type, key)).
Route = tuple[str, str | None, str, Any, str, tuple[str, str]]


def account_group(account: str) -> str:
    return f"thor.acct.{account}"


def type_group(type_: str) -> str:
    return f"thor.type.{type_}"


def group_for(message: dict[str, Any]) -> str:
    """Return the group a message goes to."""
    if message["type"] == "heartbeat":
        return HEARTBEAT
    if message["type"] in ACCOUNT_TYPES:
        return account_group(message["key"])
    return type_group(message["type"])


def event(message: dict[str, Any]) -> dict[str, Any]:
    """Wrap a message as a channel-layer event, with its JSON text encoded once here.

    A group send reaches hundreds of consumers per worker; each would otherwise encode the same
    envelope again (``docs/benchmarks.md``, fan-out).
    """
    return {"type": EVENT, "message": message, "text": json.dumps(message, separators=(",", ":"))}


def route(event: dict[str, Any]) -> Route | None:
    """What every stream needs of ``event``, worked out once per event (by the hub), not once per stream.

    The hub hands one event to hundreds of streams of its worker: whatever each would read and
    compute again (the feature, the text, the stream's ``(type, key)``) is computed here once.
    None when the event carries no message.
    """
    message = event.get("message")
    if not isinstance(message, dict):
        return None
    type_ = str(message.get("type"))
    key = message.get("key")
    key = key if isinstance(key, str) else str(key)
    text = event.get("text")
    if not isinstance(text, str):
        text = json.dumps(message, separators=(",", ":"))
    return type_, message.get("feature") or TYPE_FEATURE.get(type_), key, message.get("seq"), text, (type_, key)
