"""A paper trading account: futures positions, fills and P&L, traded by deterministic random orders.

Pure Python, no database: :mod:`thor_trading.jobs` persists what this module computes. Like the
market (:mod:`thor_trading.market`), every draw is seeded with (seed, account, simulated time), so
a resumed process continues exactly as the last one would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from thor_trading.market import CONTRACTS, PRICE, cents, millis


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
