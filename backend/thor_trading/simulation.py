"""The simulation the jobs share: market, intraday bars/VWAP and one paper account per ``Account`` row.

It is stepped once per heartbeat tick, whichever job asks first, and resumes from the database
(simulated time, prices, bars, VWAP, each account's cash and positions): a job runner that takes
over continues exactly where the last one stopped. Reading saved state is all it does with the
database; the jobs (:mod:`thor_trading.jobs`) write it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max

from thor_trading.market import CONTRACTS, Bar, Intraday, Market, SimClock, VwapState, default_start, sim_step
from thor_trading.models import Account, Balance, IntradayBar, MarketSession, Position, PositionsSnapshot, Vwap
from thor_trading.paper import Lot, PaperAccount


class Simulation:
    """Market, intraday bars/VWAP and paper accounts, stepped once per heartbeat tick.

    ``step`` is the simulated time per tick (default ``THOR_TICK x THOR_SIM_SPEED``); ``start`` is
    where a simulation with no saved state begins (default :func:`market.default_start`).
    """

    def __init__(self, seed: int, *, step: timedelta | None = None, start: datetime | None = None) -> None:
        self.seed = seed
        self.step = step or sim_step(settings.THOR_TICK)
        self.start = start
        self.market: Market | None = None
        self.clock: SimClock | None = None
        self.intraday = Intraday()
        self.accounts: dict[str, PaperAccount] = {}
        self.account_rows: dict[str, Account] = {}
        self.tick: int | None = None
        self._lock = threading.Lock()

    @property
    def now(self) -> datetime:
        assert self.clock is not None, "advance() first"
        return self.clock.now

    @property
    def prices(self) -> dict[str, Any]:
        assert self.market is not None, "advance() first"
        return self.market.prices

    def advance(self, tick: int) -> bool:
        """Step once for ``tick`` (a repeated tick is a no-op); return whether it stepped."""
        with self._lock:
            if self.market is not None and tick == self.tick:
                return False
            if self.market is None:
                self._resume()
            assert self.clock is not None
            assert self.market is not None
            now = self.clock.advance()
            self.intraday.update(now, self.market.step(now))
            self._sync_accounts()
            for account in self.accounts.values():
                account.step(now, self.market.prices)
            self.tick = tick
            return True

    def _resume(self) -> None:
        """Load the last saved state; without any, start fresh at ``start``."""
        latest = [
            model.objects.aggregate(at=Max("as_of"))["at"]
            for model in (Vwap, Balance, PositionsSnapshot, MarketSession)
        ]
        saved = [at for at in latest if at is not None]
        now = max(saved) if saved else (self.start or default_start())
        bars = {b.symbol: Bar(b.start, b.open, b.high, b.low, b.close, b.volume)
                for b in IntradayBar.objects.filter(symbol__in=CONTRACTS)}  # fmt: skip
        vwaps = {v.symbol: VwapState(v.vwap, v.cum_volume, v.as_of) for v in Vwap.objects.filter(symbol__in=CONTRACTS)}
        self.intraday = Intraday(bars, vwaps)
        self.market = Market(self.seed, {s: b.close for s, b in bars.items()}, at=now)
        self.clock = SimClock(now, self.step)

    def _sync_accounts(self) -> None:
        """Simulate every Account row: load new ones from their saved state (or open a book), drop gone ones."""
        assert self.market is not None
        rows = {a.code: a for a in Account.objects.only("id", "code", "currency")}
        for code in set(self.accounts) - set(rows):
            del self.accounts[code]
        for code, row in rows.items():
            if code not in self.accounts:
                self.accounts[code] = self._load_account(row)
        self.account_rows = rows

    def _load_account(self, row: Account) -> PaperAccount:
        assert self.market is not None
        account = PaperAccount(row.code, self.seed)
        balance = Balance.objects.filter(account=row).first()
        lots = {p.symbol: Lot(p.quantity, p.avg_price) for p in Position.objects.filter(account=row)}
        if balance is None and not lots:
            account.open_book(self.market.prices)
            return account
        if balance is not None:
            account.cash, account.realized_pnl = balance.cash, balance.realized_pnl
        account.positions = lots
        return account
