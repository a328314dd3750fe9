"""A deterministic simulated futures market, world exchange hours, and a paper trading account.

Pure Python, no database: :mod:`thor_trading.jobs` persists what this module computes.

Determinism. Every random draw comes from a ``random.Random`` seeded with (seed, what, simulated
time in ms), never from a long-lived generator. The same seed stepped through the same simulated
times therefore gives the same prices, fills and balances, and a process that resumes from the
saved state (prices, bars, VWAP, positions, cash) continues exactly as the last one would have.

Simulated time. :class:`SimClock` moves ``THOR_TICK x THOR_SIM_SPEED`` seconds per heartbeat
tick: with the defaults (1 s ticks, speed 60) one tick is one simulated minute, so a demo sees
exchanges open and close within minutes. ``THOR_SIM_START`` (ISO 8601, UTC) fixes where a fresh
simulation starts; by default it starts at the current UTC minute. The futures feed trades around
the clock (a demo always moves); the market status feature reports each exchange's real-looking
session hours, without holidays.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
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


# --- exchange hours ------------------------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SessionStatus:
    is_open: bool
    session: str  # pre, regular, post, closed
    next_change: datetime


class Exchange:
    """An exchange's weekly session hours in its local time zone (no holidays).

    ``hours`` maps day ranges to sessions, e.g. ``{"mon-fri": "09:30-16:00 regular"}``; times not
    covered are ``closed``. Only ``regular`` counts as open.
    """

    def __init__(self, code: str, name: str, timezone: str, hours: dict[str, str]) -> None:
        self.code, self.name, self.timezone, self.zone = code, name, timezone, ZoneInfo(timezone)
        self.week: list[list[tuple[int, int, str]]] = [[] for _ in DAYS]
        for days, spec in hours.items():
            first, _, last = days.partition("-")
            for day in range(DAYS.index(first), DAYS.index(last or first) + 1):
                for part in spec.split(","):
                    span, session = part.split()
                    start, end = (int(t[:2]) * 3600 + int(t[3:]) * 60 for t in span.split("-"))
                    self.week[day].append((start, end, session))

    def session_at(self, at: datetime) -> str:
        local = at.astimezone(self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        return next((s for a, b, s in self.week[local.weekday()] if a <= second < b), "closed")

    def status(self, at: datetime) -> SessionStatus:
        """Open/closed state at ``at`` and the next time (UTC) the session changes."""
        current = self.session_at(at)
        day = at.astimezone(self.zone).date()
        for offset in range(9):
            d = day + timedelta(days=offset)
            bounds = sorted({0} | {t for a, b, _ in self.week[d.weekday()] for t in (a, b) if t < DAY_SECONDS})
            for second in bounds:
                local = datetime(d.year, d.month, d.day, second // 3600, second // 60 % 60, tzinfo=self.zone)
                change = local.astimezone(UTC)
                if change > at and self.session_at(change) != current:
                    return SessionStatus(current == "regular", current, change)
        return SessionStatus(current == "regular", current, at + timedelta(days=7))


EXCHANGES: dict[str, Exchange] = {
    e.code: e
    for e in (
        Exchange("CME", "CME Globex", "America/Chicago",
                 {"sun": "17:00-24:00 regular", "mon-thu": "00:00-16:00 regular, 17:00-24:00 regular",
                  "fri": "00:00-16:00 regular"}),
        Exchange("NYSE", "New York Stock Exchange", "America/New_York",
                 {"mon-fri": "04:00-09:30 pre, 09:30-16:00 regular, 16:00-20:00 post"}),
        Exchange("LSE", "London Stock Exchange", "Europe/London",
                 {"mon-fri": "07:00-08:00 pre, 08:00-16:30 regular, 16:30-17:15 post"}),
        Exchange("XETRA", "Xetra (Deutsche Boerse)", "Europe/Berlin",
                 {"mon-fri": "07:30-09:00 pre, 09:00-17:30 regular, 17:30-20:00 post"}),
        Exchange("TSE", "Tokyo Stock Exchange", "Asia/Tokyo",
                 {"mon-fri": "08:00-09:00 pre, 09:00-11:30 regular, 12:30-15:30 regular"}),
        Exchange("HKEX", "Hong Kong Exchanges", "Asia/Hong_Kong",
                 {"mon-fri": "09:00-09:30 pre, 09:30-12:00 regular, 13:00-16:00 regular, 16:00-16:10 post"}),
        Exchange("ASX", "Australian Securities Exchange", "Australia/Sydney",
                 {"mon-fri": "07:00-10:00 pre, 10:00-16:00 regular, 16:00-17:00 post"}),
    )
}  # fmt: skip


# --- the paper account ---------------------------------------------------------------------------


@dataclass
class Lot:
    quantity: int  # signed: short < 0
    avg_price: Decimal


@dataclass(frozen=True)
class Fill:
    symbol: str
    quantity: int  # signed: sell < 0
    price: Decimal
    realized: Decimal  # P&L this fill realized, commission included


@dataclass(frozen=True)
class PositionMark:
    symbol: str
    quantity: int
    avg_price: Decimal
    last_price: Decimal
    market_value: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True)
class Summary:
    cash: Decimal
    equity: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    margin_used: Decimal
    buying_power: Decimal


@dataclass
class PaperAccount:
    """A futures paper account that trades the simulated market by deterministic random orders.

    Futures accounting: fills move no cash, realized P&L (net of commission) settles into cash;
    equity = cash + unrealized P&L; margin = sum of |quantity| x the contract's margin; buying power =
    equity - margin (never below 0). Orders are drawn from (seed, account code, time), so each
    account trades differently and identically on every run; the book keeps 3 to 6 positions.
    """

    code: str
    seed: int
    cash: Decimal = Decimal("1000000.00")
    realized_pnl: Decimal = Decimal("0.00")
    positions: dict[str, Lot] = field(default_factory=dict)

    COMMISSION = Decimal("2.25")  # per contract per side
    MIN_POSITIONS, MAX_POSITIONS, MAX_QUANTITY = 3, 6, 20
    ORDER_CHANCE = 0.15  # per step

    def fill(self, symbol: str, quantity: int, price: Decimal) -> Fill:
        """Apply a fill (``quantity`` < 0 sells); return it with the P&L it realized."""
        mult = CONTRACTS[symbol].multiplier
        realized = -self.COMMISSION * abs(quantity)
        lot = self.positions.get(symbol)
        if lot is None or lot.quantity * quantity > 0:  # open or add: new weighted average price
            held = lot.quantity if lot else 0
            avg = (lot.avg_price * held if lot else Decimal(0)) + price * quantity
            self.positions[symbol] = Lot(held + quantity, (avg / (held + quantity)).quantize(PRICE))
        else:  # reduce, close or flip
            closed = min(abs(quantity), abs(lot.quantity))
            realized += (price - lot.avg_price) * closed * (1 if lot.quantity > 0 else -1) * mult
            remaining = lot.quantity + quantity
            if remaining == 0:
                del self.positions[symbol]
            elif remaining * lot.quantity < 0:  # flipped: the new side opens at the fill price
                self.positions[symbol] = Lot(remaining, price)
            else:
                lot.quantity = remaining
        realized = cents(realized)
        self.cash += realized
        self.realized_pnl += realized
        return Fill(symbol, quantity, price, realized)

    def open_book(self, prices: dict[str, Decimal]) -> list[Fill]:
        """The opening positions of a new account (4 of them, drawn from the account code)."""
        rng = random.Random(f"thor-book:{self.seed}:{self.code}")
        symbols = rng.sample(sorted(CONTRACTS), 4)
        return [self.fill(s, rng.randint(1, 5) * rng.choice((1, -1)), prices[s]) for s in sorted(symbols)]

    def step(self, now: datetime, prices: dict[str, Decimal]) -> list[Fill]:
        """Maybe trade at ``now``: open, add to, reduce or close a position; return the fills."""
        rng = random.Random(f"thor-orders:{self.seed}:{self.code}:{millis(now)}")
        if rng.random() >= self.ORDER_CHANCE:
            return []
        held = sorted(self.positions)
        reducible = [s for s in held if abs(self.positions[s].quantity) > 1]
        addable = [s for s in held if abs(self.positions[s].quantity) < self.MAX_QUANTITY]
        actions = [a for a, ok in (("open", len(held) < self.MAX_POSITIONS), ("close", len(held) > self.MIN_POSITIONS),
                                   ("add", bool(addable)), ("reduce", bool(reducible))) if ok]  # fmt: skip
        if not actions:
            return []
        action = rng.choice(actions)
        if action == "open":
            symbol = rng.choice(sorted(set(CONTRACTS) - set(held)))
            quantity = rng.randint(1, 5) * rng.choice((1, -1))
        else:
            symbol = rng.choice({"close": held, "add": addable, "reduce": reducible}[action])
            q = self.positions[symbol].quantity
            side = 1 if q > 0 else -1
            if action == "close":
                quantity = -q
            elif action == "add":
                quantity = side * rng.randint(1, min(3, self.MAX_QUANTITY - abs(q)))
            else:
                quantity = -side * rng.randint(1, abs(q) - 1)
        return [self.fill(symbol, quantity, prices[symbol])]

    def marks(self, prices: dict[str, Decimal]) -> list[PositionMark]:
        """Each position valued at ``prices``, by symbol."""
        out = []
        for symbol in sorted(self.positions):
            lot, c, last = self.positions[symbol], CONTRACTS[symbol], prices[symbol]
            value = cents(last * lot.quantity * c.multiplier)
            pnl = cents((last - lot.avg_price) * lot.quantity * c.multiplier)
            out.append(PositionMark(symbol, lot.quantity, lot.avg_price, last, value, pnl))
        return out

    def summary(self, prices: dict[str, Decimal]) -> Summary:
        """Cash, equity, P&L, margin and buying power at ``prices``."""
        unrealized = sum((m.unrealized_pnl for m in self.marks(prices)), Decimal("0.00"))
        margin = sum((abs(lot.quantity) * CONTRACTS[s].margin for s, lot in self.positions.items()), Decimal(0))
        equity = self.cash + unrealized
        return Summary(self.cash, equity, unrealized, self.realized_pnl, cents(margin),
                       max(Decimal("0.00"), equity - margin))  # fmt: skip
