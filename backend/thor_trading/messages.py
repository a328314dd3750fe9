"""Message builders: one envelope format for WebSocket messages and REST responses.

Each builder reads the state row(s) and returns ``{"type", "feature", "key", "seq", "ts", "data"}``
(docs/contracts.md, "The message envelope"). REST views and jobs call the same builder on the same row,
so for one ``seq`` both sides carry the same ``data``; only fault injection makes them differ.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from thor_trading.features import TYPE_FEATURE
from thor_trading.models import Account, Balance, IntradayBar, MarketSession, PositionsSnapshot, Vwap

#: how often positions_message reads again when a job commits in the middle of its read
POSITIONS_READ_ATTEMPTS = 20


class TornRead(RuntimeError):
    """The state kept changing under a multi-row read (a writer far faster than the reader)."""


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def num(value: Decimal) -> float:
    return float(value)


def envelope(type_: str, key: str, seq: int, ts: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """``ts`` is the wall-clock time the state was written (simulated times live in ``data``)."""
    return {"type": type_, "feature": TYPE_FEATURE[type_], "key": key, "seq": seq, "ts": iso(ts), "data": data}


def balance_message(account: Account) -> dict[str, Any]:
    b = Balance.objects.get(account=account)
    data = {
        "account": account.code,
        "currency": account.currency,
        "cash": num(b.cash),
        "equity": num(b.equity),
        "unrealized_pnl": num(b.unrealized_pnl),
        "realized_pnl": num(b.realized_pnl),
        "margin_used": num(b.margin_used),
        "buying_power": num(b.buying_power),
        "as_of": iso(b.as_of),
    }
    return envelope("account_balance", account.code, b.seq, b.written_at or b.as_of, data)


def positions_message(account: Account) -> dict[str, Any]:
    """The positions rows and the snapshot's ``seq`` of one state.

    They are separate rows, so a read can straddle a job's commit (PostgreSQL's READ COMMITTED
    gives each statement its own snapshot): ``thorcut check`` caught REST serving seq N with some
    rows of N+1. Every write bumps the snapshot's seq in the same transaction as the rows, so when
    the seq is the same before and after reading the rows, the rows are state N's; else read again.
    """
    for _ in range(POSITIONS_READ_ATTEMPTS):
        snap = PositionsSnapshot.objects.get(account=account)
        rows = [
            {
                "symbol": p.symbol,
                "quantity": p.quantity,
                "avg_price": num(p.avg_price),
                "last_price": num(p.last_price),
                "market_value": num(p.market_value),
                "unrealized_pnl": num(p.unrealized_pnl),
            }
            for p in account.positions.order_by("symbol")
        ]
        if PositionsSnapshot.objects.filter(account=account, seq=snap.seq).exists():
            break
    else:
        raise TornRead(f"positions of {account.code} changed under {POSITIONS_READ_ATTEMPTS} reads in a row")
    data = {"account": account.code, "positions": rows, "as_of": iso(snap.as_of)}
    return envelope("positions", account.code, snap.seq, snap.written_at or snap.as_of, data)


def bar_message(symbol: str) -> dict[str, Any]:
    bar = IntradayBar.objects.get(symbol=symbol)
    data = {
        "symbol": symbol,
        "start": iso(bar.start),
        "open": num(bar.open),
        "high": num(bar.high),
        "low": num(bar.low),
        "close": num(bar.close),
        "volume": bar.volume,
    }
    return envelope("intraday_bar", symbol, bar.seq, bar.written_at or bar.start, data)


def vwap_message(symbol: str) -> dict[str, Any]:
    v = Vwap.objects.get(symbol=symbol)
    data = {"symbol": symbol, "vwap": num(v.vwap), "cum_volume": v.cum_volume, "as_of": iso(v.as_of)}
    return envelope("vwap", symbol, v.seq, v.written_at or v.as_of, data)


def market_status_message(market: str) -> dict[str, Any]:
    m = MarketSession.objects.get(market=market)
    data = {
        "market": m.market,
        "name": m.name,
        "timezone": m.timezone,
        "is_open": m.is_open,
        "session": m.session,
        "next_change": iso(m.next_change),
    }
    return envelope("market_status", m.market, m.seq, m.written_at or m.as_of, data)


def current_message(type_: str, key: str) -> dict[str, Any]:
    """The current envelope of the stream ``(type_, key)``: what REST answers for it now.

    Raises ``ObjectDoesNotExist`` (of the model) when the stream has no state, and ``KeyError``
    for a type that is not a feature's. A resume's ``resync`` answers are built here.
    """
    if type_ == "account_balance":
        return balance_message(Account.objects.get(code=key))
    if type_ == "positions":
        return positions_message(Account.objects.get(code=key))
    return _KEYED[type_](key)


_KEYED = {"intraday_bar": bar_message, "vwap": vwap_message, "market_status": market_status_message}
