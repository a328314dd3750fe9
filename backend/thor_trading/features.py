"""The features of this backend: one table, which every other module of the backend reads.

A feature is one piece of the page that moves from REST polling to WebSocket push on its own
(docs/contracts.md, "The features"): the message types that carry it, the REST endpoints that
serve the same state, what its messages are keyed by, and the environment variable that forces it
on or off in one process. Message builders, routing, the consumer, the URLs, the OpenAPI
description, the flag watcher and fault injection all take these facts from here.

thorcut's built-in manifest and the page's ``frontend/src/types.ts`` describe the same features
from the outside; ``tests/test_feature_table.py`` fails when the three disagree.

Plain Python on purpose (no Django): that test reads this table without setting Django up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One REST endpoint: the message type it serves and the URL of one key (thorcut's format)."""

    type: str
    path: str  # ``{key}`` stands for the message key, in the path or in the query

    @property
    def route(self) -> str:
        """The path without its query: what the URL router matches."""
        return self.path.partition("?")[0]

    @property
    def key_in_path(self) -> bool:
        return "{key}" in self.route


@dataclass(frozen=True)
class Feature:
    name: str
    types: tuple[str, ...]
    rest: tuple[Endpoint, ...]
    #: What the message key is, and the name of the REST parameter that carries it.
    key: str
    #: ``WS_FEATURE_*``: forces the feature live or off in one process (docs/contracts.md).
    env_override: str | None = None


FEATURES: tuple[Feature, ...] = (
    Feature(
        "account_balance",
        types=("account_balance",),
        rest=(Endpoint("account_balance", "/api/account/balance?account={key}"),),
        key="account",
        env_override="WS_FEATURE_ACCOUNT_BALANCE",
    ),
    Feature(
        "positions",
        types=("positions",),
        rest=(Endpoint("positions", "/api/account/positions?account={key}"),),
        key="account",
        env_override="WS_FEATURE_POSITIONS",
    ),
    Feature(
        "intraday",
        types=("intraday_bar", "vwap"),
        rest=(Endpoint("intraday_bar", "/api/intraday/{key}/bar"), Endpoint("vwap", "/api/intraday/{key}/vwap")),
        key="symbol",
        env_override="WS_FEATURE_INTRADAY",
    ),
    Feature(
        "global_market",
        types=("market_status",),
        rest=(Endpoint("market_status", "/api/markets/status?market={key}"),),
        key="market",
        env_override="WS_FEATURE_GLOBAL_MARKET",
    ),
)

#: The feature names, in display order.
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
#: message type -> feature name
TYPE_FEATURE: dict[str, str] = {t: f.name for f in FEATURES for t in f.types}
#: feature name -> its message types
FEATURE_TYPES: dict[str, tuple[str, ...]] = {f.name: f.types for f in FEATURES}
#: The message types keyed by an account: only that account's owner may receive them.
ACCOUNT_TYPES: frozenset[str] = frozenset(t for f in FEATURES if f.key == "account" for t in f.types)
