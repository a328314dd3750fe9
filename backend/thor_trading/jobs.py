"""The heartbeat's jobs: advance the simulation, write the state rows, return the envelopes.

``build_jobs(seed)`` returns, in the order the heartbeat runs them::

    AccountBalanceJob   feature account_balance  every 1   one account_balance message per account
    PositionsJob        feature positions        every 1   one positions message per account
    IntradayJob         feature intraday         every 1   intraday_bar + vwap per symbol
    GlobalMarketJob     feature global_market    every 5   one market_status message per exchange

All four share one :class:`~thor_trading.simulation.Simulation` (market, intraday bars/VWAP, one paper account per
``Account`` row). ``job.run(tick)`` first calls ``simulation.advance(tick)``, which steps the
simulation once per distinct tick whichever job asks first, then writes the job's state rows and
bumps each (type, key) seq counter in one transaction, and after the commit builds the envelopes
with :mod:`thor_trading.messages`, the builders REST uses, so a message and a REST read of the
same state carry the same ``seq`` and ``data`` (docs/contracts.md, "The message envelope").

Takeover: a new ``Simulation`` resumes from the database (simulated time, prices, bars,
VWAP, each account's cash and positions) and the seq counters live there too, so a job runner
that replaces a dead one continues every seq without a repeat. Each job transaction first checks
the runner's fencing token (``thor_trading.fence``), so a replaced runner that has not noticed yet
cannot commit another write. The jobs are synchronous (Django ORM): run them in a thread, outside
any transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from django.db import connection, transaction
from django.db.models import F, Model
from django.utils import timezone

from thor_trading import fence, messages
from thor_trading.exchanges import EXCHANGES
from thor_trading.market import CONTRACTS
from thor_trading.models import (
    Balance,
    IntradayBar,
    MarketSession,
    Position,
    PositionsSnapshot,
    SeqCounter,
    Vwap,
)
from thor_trading.simulation import Simulation

Message = dict[str, Any]


def bump_many(type_: str, keys: Iterable[str]) -> dict[str, int]:
    """Increment the seq counter of each (``type_``, key) and return key -> new seq.

    The bulk form of :meth:`SeqCounter.bump`, with the same contract: call it inside the
    transaction that writes the state. The first statement is an UPDATE, so the transaction
    holds the write lock (SQLite) or the rows' locks (PostgreSQL) until it commits.

    Every job transaction starts here, so this is where the leader's fencing token is checked
    (:func:`thor_trading.fence.check`, itself an UPDATE): a runner whose term has been
    superseded gets :class:`~thor_trading.fence.Fenced` and its transaction writes nothing.
    """
    assert transaction.get_connection().in_atomic_block, "bump seq inside the state's transaction"
    fence.check()
    keys = list(keys)
    counters = SeqCounter.objects.filter(type=type_, key__in=keys)
    if counters.update(seq=F("seq") + 1) < len(keys):
        have = set(counters.values_list("key", flat=True))
        SeqCounter.objects.bulk_create([SeqCounter(type=type_, key=k, seq=1) for k in keys if k not in have])
    return dict(counters.values_list("key", "seq"))


def _upsert(model: type[Model], rows: list[Any], fields: list[str]) -> None:
    """Save ``rows`` (instances with or without a pk) in at most two statements.

    Updates go through one ``executemany`` of a plain UPDATE: ``bulk_update`` builds a CASE
    expression per field and row, which costs milliseconds of Python on every tick.
    """
    new, old = [r for r in rows if r.pk is None], [r for r in rows if r.pk is not None]
    if new:
        model.objects.bulk_create(new)
    if old:
        meta, qn = model._meta, connection.ops.quote_name
        columns = [meta.get_field(f) for f in fields]
        assignments = ", ".join(f"{qn(c.column)} = %s" for c in columns)
        sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608
        params = [[c.get_db_prep_save(getattr(r, c.attname), connection) for c in columns] + [r.pk]
                  for r in old]  # fmt: skip
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


class _Job(ABC):
    name: ClassVar[str]
    feature: ClassVar[str]
    every: ClassVar[int] = 1

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation

    def run(self, tick: int) -> list[Message]:
        """Advance the simulation for ``tick``, write this job's state, return its envelopes."""
        self.simulation.advance(tick)
        return self.write()

    @abstractmethod
    def write(self) -> list[Message]:
        """Write this job's state in one transaction (seq bumped inside it); return the envelopes."""

    def __repr__(self) -> str:
        return f"<{self.name} every {self.every}>"


class AccountBalanceJob(_Job):
    name, feature = "AccountBalanceJob", "account_balance"

    def write(self) -> list[Message]:
        sim, now, wall = self.simulation, self.simulation.now, timezone.now()
        rows = sim.account_rows
        with transaction.atomic():
            seqs = bump_many("account_balance", rows)
            existing = {b.account_id: b for b in Balance.objects.filter(account__in=rows.values())}
            balances = []
            for code, account in rows.items():
                s = sim.accounts[code].summary(sim.prices)
                b = existing.get(account.pk) or Balance(account=account)
                b.cash, b.equity, b.unrealized_pnl, b.realized_pnl = s.cash, s.equity, s.unrealized_pnl, s.realized_pnl
                b.margin_used, b.buying_power, b.as_of, b.seq = s.margin_used, s.buying_power, now, seqs[code]
                b.written_at = wall
                balances.append(b)
            _upsert(Balance, balances, ["cash", "equity", "unrealized_pnl", "realized_pnl", "margin_used",
                                        "buying_power", "as_of", "seq", "written_at"])  # fmt: skip
        return [messages.balance_message(account) for account in rows.values()]


class PositionsJob(_Job):
    name, feature = "PositionsJob", "positions"

    def write(self) -> list[Message]:
        sim, now, wall = self.simulation, self.simulation.now, timezone.now()
        rows = sim.account_rows
        with transaction.atomic():
            seqs = bump_many("positions", rows)
            existing = {(p.account_id, p.symbol): p for p in Position.objects.filter(account__in=rows.values())}
            snaps = {s.account_id: s for s in PositionsSnapshot.objects.filter(account__in=rows.values())}
            positions, snapshots = [], []
            for code, account in rows.items():
                for m in sim.accounts[code].marks(sim.prices):
                    p = existing.pop((account.pk, m.symbol), None) or Position(account=account, symbol=m.symbol)
                    p.quantity, p.avg_price, p.last_price = m.quantity, m.avg_price, m.last_price
                    p.market_value, p.unrealized_pnl = m.market_value, m.unrealized_pnl
                    positions.append(p)
                snap = snaps.get(account.pk) or PositionsSnapshot(account=account)
                snap.as_of, snap.seq, snap.written_at = now, seqs[code], wall
                snapshots.append(snap)
            if existing:  # closed since the last run
                Position.objects.filter(pk__in=[p.pk for p in existing.values()]).delete()
            _upsert(Position, positions, ["quantity", "avg_price", "last_price", "market_value", "unrealized_pnl"])
            _upsert(PositionsSnapshot, snapshots, ["as_of", "seq", "written_at"])
        return [messages.positions_message(account) for account in rows.values()]


class IntradayJob(_Job):
    name, feature = "IntradayJob", "intraday"

    def write(self) -> list[Message]:
        intraday, now, wall = self.simulation.intraday, self.simulation.now, timezone.now()
        symbols = list(CONTRACTS)
        with transaction.atomic():
            bar_seqs, vwap_seqs = bump_many("intraday_bar", symbols), bump_many("vwap", symbols)
            bar_rows = {b.symbol: b for b in IntradayBar.objects.filter(symbol__in=symbols)}
            vwap_rows = {v.symbol: v for v in Vwap.objects.filter(symbol__in=symbols)}
            bars, vwaps = [], []
            for symbol in symbols:
                bar, v = intraday.bars[symbol], intraday.vwaps[symbol]
                row = bar_rows.get(symbol) or IntradayBar(symbol=symbol)
                row.start, row.open, row.high, row.low, row.close = bar.start, bar.open, bar.high, bar.low, bar.close
                row.volume, row.seq, row.written_at = bar.volume, bar_seqs[symbol], wall
                bars.append(row)
                vrow = vwap_rows.get(symbol) or Vwap(symbol=symbol)
                vrow.vwap, vrow.cum_volume, vrow.as_of, vrow.seq = v.vwap, v.cum_volume, now, vwap_seqs[symbol]
                vrow.written_at = wall
                vwaps.append(vrow)
            _upsert(IntradayBar, bars, ["start", "open", "high", "low", "close", "volume", "seq", "written_at"])
            _upsert(Vwap, vwaps, ["vwap", "cum_volume", "as_of", "seq", "written_at"])
        out = []
        for symbol in symbols:
            out += [messages.bar_message(symbol), messages.vwap_message(symbol)]
        return out


class GlobalMarketJob(_Job):
    name, feature, every = "GlobalMarketJob", "global_market", 5

    def write(self) -> list[Message]:
        now, wall = self.simulation.now, timezone.now()
        with transaction.atomic():
            seqs = bump_many("market_status", EXCHANGES)
            existing = {m.market: m for m in MarketSession.objects.filter(market__in=EXCHANGES)}
            rows = []
            for code, exchange in EXCHANGES.items():
                status = exchange.status(now)
                row = existing.get(code) or MarketSession(market=code)
                row.name, row.timezone, row.is_open = exchange.name, exchange.timezone, status.is_open
                row.session, row.next_change, row.as_of, row.seq = status.session, status.next_change, now, seqs[code]
                row.written_at = wall
                rows.append(row)
            _upsert(MarketSession, rows, ["name", "timezone", "is_open", "session", "next_change", "as_of", "seq",
                                          "written_at"])  # fmt: skip
        return [messages.market_status_message(code) for code in EXCHANGES]


def build_jobs(seed: int, simulation: Simulation | None = None) -> list[_Job]:
    """The four jobs over one shared simulation (new unless given), in the order the heartbeat runs them."""
    sim = simulation or Simulation(seed)
    return [AccountBalanceJob(sim), PositionsJob(sim), IntradayJob(sim), GlobalMarketJob(sim)]
