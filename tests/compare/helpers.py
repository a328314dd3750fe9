"""What the compare tests share: a comparator without rules, and checked ways to call one."""

from __future__ import annotations

from typing import Any

from thorcut.compare.engine import Comparator, Difference, Kind
from thorcut.compare.rules import Rules

PLAIN = Comparator(Rules())
NAN, INF = float("nan"), float("inf")


def explain(c: Comparator, ws: Any, rest: Any) -> list[Difference]:
    """explain(), after checking that equal() and compare() agree with it."""
    out = c.explain(ws, rest)
    assert c.equal(ws, rest) is (out == [])
    assert c.compare(ws, rest) == out
    return out


def one(c: Comparator, ws: Any, rest: Any) -> tuple[str, Kind, Any, Any]:
    out = explain(c, ws, rest)
    assert len(out) == 1, out
    d = out[0]
    return d.path, d.kind, d.ws, d.rest


def rules(**kw: Any) -> Comparator:
    return Comparator(Rules(**kw))


def row(symbol: str, quantity: float = 1, **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "quantity": quantity, "avg_price": 100.25, **extra}
