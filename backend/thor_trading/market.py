"""A deterministic simulated futures market: contracts, prices, intraday bars and VWAP, simulated time.

Pure Python, no database: :mod:`thor_trading.jobs` persists what this module computes.

Determinism. Every random draw comes from a ``random.Random`` seeded with (seed, what, simulated
time in ms), never from a long-lived generator (the paper accounts of :mod:`thor_trading.paper`
draw the same way). The same seed stepped through the same simulated times therefore gives the
same prices, fills and balances, and a process that resumes from the saved state (prices, bars,
VWAP, positions, cash) continues exactly as the last one would have.

Simulated time. :class:`SimClock` moves ``THOR_TICK x THOR_SIM_SPEED`` seconds per heartbeat
tick: with the defaults (1 s ticks, speed 60) one tick is one simulated minute, so a demo sees
exchanges open and close within minutes. ``THOR_SIM_START`` (ISO 8601, UTC) fixes where a fresh
simulation starts; by default it starts at the current UTC minute. The futures feed trades around
the clock (a demo always moves); the market status feature reports each exchange's session hours
(:mod:`thor_trading.exchanges`).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

CENT, PRICE = Decimal("0.01"), Decimal("0.0001")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Contract:
    symbol: str
    name: str
    tick: Decimal
    multiplier: int
    margin: Decimal  # initial margin per contract, USD
    start: Decimal  # starting price
    daily_vol: float  # daily volatility, fraction of price
    volume_per_minute: int

    def to_ticks(self, price: Decimal) -> int:
        return int((Decimal(price) / self.tick).to_integral_value(ROUND_HALF_EVEN))

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick


CONTRACTS: dict[str, Contract] = {
    c.symbol: c
    for c in (
        Contract("ES", "E-mini S&P 500", Decimal("0.25"), 50, Decimal(15_000), Decimal("5950.00"), 0.010, 1200),
        Contract("NQ", "E-mini Nasdaq-100", Decimal("0.25"), 20, Decimal(21_000), Decimal("20850.00"), 0.013, 500),
        Contract("YM", "E-mini Dow", Decimal(1), 5, Decimal(11_000), Decimal(43_800), 0.009, 120),
        Contract("RTY", "E-mini Russell 2000", Decimal("0.1"), 50, Decimal(7_500), Decimal("2380.0"), 0.014, 150),
        Contract("CL", "Crude Oil", Decimal("0.01"), 1000, Decimal(6_000), Decimal("68.50"), 0.020, 600),
        Contract("GC", "Gold", Decimal("0.1"), 100, Decimal(11_000), Decimal("2650.0"), 0.010, 250),
    )
}
SYMBOLS = tuple(CONTRACTS)


def millis(at: datetime) -> int:
    """Milliseconds since the epoch, by integer arithmetic (a seed must not depend on float rounding)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


# --- the market ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trade:
    """What traded in one step: last ``price``, total ``volume``; open/high/low and the traded value."""

    price: Decimal
    volume: int
    open: Decimal
    high: Decimal
    low: Decimal
    value: Decimal  # sum of price x volume of the step's prints (for VWAP)


class Market:
    """Random walk of every contract, rounded to its tick size; ``prices`` resumes a saved state."""

    MAX_SUBSTEPS, SUBSTEP = 12, 5.0  # prints per step, and seconds of simulated time per print
    REVERSION_DAYS = 30.0  # weak pull back to the starting price, so long demos stay plausible

    def __init__(self, seed: int, prices: dict[str, Decimal] | None = None, at: datetime | None = None) -> None:
        self.seed = seed
        self.ticks = {s: c.to_ticks((prices or {}).get(s, c.start)) for s, c in CONTRACTS.items()}
        self.at = at

    @property
    def prices(self) -> dict[str, Decimal]:
        return {s: CONTRACTS[s].price(t) for s, t in self.ticks.items()}

    def step(self, now: datetime) -> dict[str, Trade]:
        """Advance to ``now`` and return each symbol's trade; the same seed and times give the same trades."""
        elapsed = (now - self.at).total_seconds() if self.at else 60.0
        elapsed = min(max(elapsed, 0.001), 3600.0)  # a long pause must not become one huge jump
        n = min(self.MAX_SUBSTEPS, max(1, round(elapsed / self.SUBSTEP)))
        dt = elapsed / n
        rng = random.Random(f"thor-market:{self.seed}:{millis(now)}")
        trades = {}
        for symbol, c in CONTRACTS.items():
            ticks, start = self.ticks[symbol], c.to_ticks(c.start)
            first, high, low, volume, value = None, ticks, ticks, 0, Decimal(0)
            for _ in range(n):
                sigma = ticks * c.daily_vol * math.sqrt(dt / DAY_SECONDS)
                drift = (start - ticks) * dt / (self.REVERSION_DAYS * DAY_SECONDS)
                ticks = max(1, ticks + round(drift + rng.normalvariate(0.0, sigma)))
                size = max(1, round(c.volume_per_minute * dt / 60 * rng.lognormvariate(0.0, 0.5)))
                first = ticks if first is None else first
                high, low = max(high, ticks), min(low, ticks)
                volume += size
                value += c.price(ticks) * size
            self.ticks[symbol] = ticks
            trades[symbol] = Trade(c.price(ticks), volume, c.price(first or ticks), c.price(high), c.price(low), value)
        self.at = now
        return trades


@dataclass
class Bar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass
class VwapState:
    vwap: Decimal
    cum_volume: int
    as_of: datetime


class Intraday:
    """The current one-minute bar and the session VWAP of each symbol, fed with each step's trades.

    The VWAP is kept rounded to 4 decimals (the stored precision) so that a resumed process
    continues from exactly the state it reads back. It resets when the CME trading day rolls.
    """

    def __init__(self, bars: dict[str, Bar] | None = None, vwaps: dict[str, VwapState] | None = None) -> None:
        self.bars = dict(bars or {})
        self.vwaps = dict(vwaps or {})

    def update(self, now: datetime, trades: dict[str, Trade]) -> None:
        start = now.replace(second=0, microsecond=0)
        for symbol, t in trades.items():
            bar = self.bars.get(symbol)
            if bar is None or bar.start != start:
                self.bars[symbol] = Bar(start, t.open, t.high, t.low, t.price, t.volume)
            else:
                bar.high, bar.low = max(bar.high, t.high), min(bar.low, t.low)
                bar.close, bar.volume = t.price, bar.volume + t.volume
            v = self.vwaps.get(symbol)
            if v is None or trading_day(v.as_of) != trading_day(now):
                v = self.vwaps[symbol] = VwapState(Decimal(0), 0, now)
            total = v.cum_volume + t.volume
            v.vwap = ((v.vwap * v.cum_volume + t.value) / total).quantize(PRICE, ROUND_HALF_EVEN)
            v.cum_volume, v.as_of = total, now


CHICAGO = ZoneInfo("America/Chicago")


def trading_day(at: datetime) -> date:
    """The CME trading day ``at`` belongs to: it starts at 17:00 Chicago time the evening before."""
    return (at.astimezone(CHICAGO) + timedelta(hours=7)).date()


# --- simulated time ------------------------------------------------------------------------------


class SimClock:
    """Simulated UTC time that moves ``step`` per heartbeat tick."""

    def __init__(self, now: datetime, step: timedelta) -> None:
        self.now, self.step = now, step

    def advance(self) -> datetime:
        self.now += self.step
        return self.now


def sim_step(tick_seconds: float, speed: float | None = None) -> timedelta:
    """Simulated time per tick: ``tick_seconds x speed`` (speed from ``THOR_SIM_SPEED``, default 60)."""
    if speed is None:
        speed = float(os.environ.get("THOR_SIM_SPEED") or 60)
    return max(timedelta(milliseconds=1), timedelta(milliseconds=round(tick_seconds * speed * 1000)))


def default_start() -> datetime:
    """Where a fresh simulation starts: ``THOR_SIM_START`` if set, else the current UTC minute."""
    text = os.environ.get("THOR_SIM_START")
    if text:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    return datetime.now(UTC).replace(second=0, microsecond=0)
