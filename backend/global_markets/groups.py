"""Channel-layer group names and the event format between the broadcaster and consumers.

Account features (``ACCOUNT_TYPES`` of ``thor_trading.features``) go only to that account's group,
so no connection ever receives another account's balance or positions; market-wide types have one
group each.
"""

from __future__ import annotations

import json
from typing import Any

from thor_trading.features import ACCOUNT_TYPES

HEARTBEAT = "thor.heartbeat"
EVENT = "stream.message"  # the consumer's handler is ``stream_message``


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
