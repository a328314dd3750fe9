"""Fault injection for parity testing: make one feature's WebSocket side drift from REST.

``THOR_FAULTS="positions:reorder,account_balance:drop_field"`` — off by default. Each mode changes
what the *WebSocket* builder sends; REST always serves the true state, so thorcut's diff must
find the difference (or, for ``reorder``, accept it under the keyed-list rule).

| mode | what the WebSocket side does |
|---|---|
| ``drop_field`` | drops one field per type (see ``DROPPED``) |
| ``round_price`` | rounds the type's price fields to one decimal |
| ``lag_seq`` | sends ``seq - 1`` (the data is the new state's) |
| ``reorder`` | reverses every list in ``data`` (positions) |
| ``duplicate`` | sends every message twice |
| ``skip_seq`` | never sends messages whose ``seq`` is a multiple of 5 (gaps) |
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from thor_trading.features import NAMES

MODES = ("drop_field", "round_price", "lag_seq", "reorder", "duplicate", "skip_seq")

#: message type -> field of ``data`` (or of each row of ``data.positions``) that drop_field removes
DROPPED = {
    "account_balance": "margin_used",
    "positions": "positions[*].unrealized_pnl",
    "intraday_bar": "volume",
    "vwap": "cum_volume",
    "market_status": "next_change",
}
PRICES = {
    "account_balance": ("equity", "cash"),
    "positions": ("positions[*].last_price",),
    "intraday_bar": ("close", "high", "low", "open"),
    "vwap": ("vwap",),
    "market_status": (),
}


class FaultSpecError(ValueError):
    """THOR_FAULTS is malformed."""


@lru_cache(maxsize=8)
def parse(spec: str) -> dict[str, str]:
    """Return feature -> mode from ``"feature:mode,…"``; raise FaultSpecError naming the bad part."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        feature, _, mode = part.partition(":")
        if feature not in NAMES or mode not in MODES:
            raise FaultSpecError(
                f"THOR_FAULTS: bad entry {part!r}; use feature:mode with mode one of {', '.join(MODES)}"
            )
        out[feature] = mode
    return out


def _apply(data: dict[str, Any], path: str, fn: Any) -> None:
    if path.startswith("positions[*]."):
        field = path.split(".", 1)[1]
        for row in data.get("positions", []):
            if field in row:
                fn(row, field)
    elif path in data:
        fn(data, path)


def ws(message: dict[str, Any], spec: str) -> list[dict[str, Any]]:
    """Return the WebSocket messages to send for ``message`` under the fault ``spec``."""
    mode = parse(spec).get(message["feature"]) if spec else None
    if mode is None:
        return [message]
    if mode == "duplicate":
        return [message, message]
    if mode == "skip_seq":
        return [] if message["seq"] % 5 == 0 else [message]
    out = copy.deepcopy(message)
    data, type_ = out["data"], out["type"]
    if mode == "drop_field":
        _apply(data, DROPPED[type_], lambda d, k: d.pop(k))
    elif mode == "round_price":
        for path in PRICES[type_]:
            _apply(data, path, lambda d, k: d.__setitem__(k, round(d[k], 1)))
    elif mode == "lag_seq":
        out["seq"] -= 1
    elif mode == "reorder":
        for k, v in data.items():
            if isinstance(v, list):
                data[k] = list(reversed(v))
    return [out]
