"""The simulated market, exchange hours and paper account (pure Python, no database)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))

from thor_trading.exchanges import EXCHANGES
from thor_trading.market import CONTRACTS, Intraday, Market, SimClock, Trade, sim_step, trading_day
from thor_trading.paper import PaperAccount

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def run_market(seed: int, steps: int, step: timedelta = MINUTE) -> list[dict[str, Trade]]:
    market = Market(seed, at=START)
    return [market.step(START + step * (i + 1)) for i in range(steps)]


def run_account(seed: int, steps: int, code: str = "DU1234") -> tuple[PaperAccount, list[int], set[str]]:
    market, account = Market(seed, at=START), PaperAccount(code, seed)
    account.open_book(market.prices)
    sizes, kinds = [], set()
    for i in range(steps):
        now = START + MINUTE * (i + 1)
        market.step(now)
        before = {s: lot.quantity for s, lot in account.positions.items()}
        for f in account.step(now, market.prices):
            held = before.get(f.symbol, 0)
            after = account.positions[f.symbol].quantity if f.symbol in account.positions else 0
            kinds.add("open" if held == 0 else "close" if after == 0 else "add" if abs(after) > abs(held) else "reduce")
        sizes.append(len(account.positions))
    return account, sizes, kinds


def test_market_same_seed_same_steps_same_trades() -> None:
    assert run_market(7, 50) == run_market(7, 50)


def test_market_other_seed_other_walk() -> None:
    assert run_market(7, 20)[-1] != run_market(8, 20)[-1]


def test_market_resumed_from_saved_prices_continues_identically() -> None:
    market = Market(7, at=START)
    for i in range(10):
        market.step(START + MINUTE * (i + 1))
    resumed = Market(7, dict(market.prices), at=market.at)
    for i in range(10, 30):
        now = START + MINUTE * (i + 1)
        assert resumed.step(now) == market.step(now)


@pytest.mark.parametrize("step", [timedelta(seconds=3), MINUTE, timedelta(minutes=10)])
def test_market_prices_any_step_multiples_of_tick_size(step: timedelta) -> None:
    for trades in run_market(3, 200, step):
        for symbol, t in trades.items():
            tick = CONTRACTS[symbol].tick
            for price in (t.price, t.open, t.high, t.low):
                assert price % tick == 0, (symbol, price)
            assert t.low <= t.open <= t.high
            assert t.low <= t.price <= t.high
            assert t.volume > 0
            assert t.low <= t.value / t.volume <= t.high


def test_market_prices_decimal_places_match_contract() -> None:
    last = run_market(5, 100)[-1]
    assert last["YM"].price == last["YM"].price.to_integral_value()
    assert -last["CL"].price.as_tuple().exponent <= 2
    assert {s: c.multiplier for s, c in CONTRACTS.items()} == {"ES": 50, "NQ": 20, "YM": 5, "RTY": 50,
                                                              "CL": 1000, "GC": 100}  # fmt: skip


def test_sim_clock_speed_60_one_second_tick_moves_one_minute() -> None:
    clock = SimClock(START, sim_step(1.0, 60))
    assert clock.advance() == START + MINUTE
    assert clock.advance() == START + 2 * MINUTE
    assert sim_step(0.05, 60) == timedelta(seconds=3)


@pytest.mark.parametrize(
    ("market", "at", "is_open", "session", "next_change"),
    [
        ("NYSE", utc(2026, 11, 24, 15, 0), True, "regular", utc(2026, 11, 24, 21, 0)),  # 10:00 EST
        ("NYSE", utc(2026, 11, 24, 10, 0), False, "pre", utc(2026, 11, 24, 14, 30)),
        ("NYSE", utc(2026, 11, 24, 21, 30), False, "post", utc(2026, 11, 25, 1, 0)),
        ("NYSE", utc(2026, 7, 14, 13, 45), True, "regular", utc(2026, 7, 14, 20, 0)),  # EDT
        ("NYSE", utc(2026, 11, 28, 15, 0), False, "closed", utc(2026, 11, 30, 9, 0)),  # Saturday
        ("LSE", utc(2026, 11, 24, 8, 30), True, "regular", utc(2026, 11, 24, 16, 30)),
        ("XETRA", utc(2026, 11, 24, 7, 0), False, "pre", utc(2026, 11, 24, 8, 0)),  # 08:00 CET
        ("TSE", utc(2026, 11, 24, 3, 0), False, "closed", utc(2026, 11, 24, 3, 30)),  # lunch
        ("HKEX", utc(2026, 11, 24, 2, 0), True, "regular", utc(2026, 11, 24, 4, 0)),
        ("ASX", utc(2026, 11, 23, 23, 30), True, "regular", utc(2026, 11, 24, 5, 0)),  # AEDT
        ("CME", utc(2026, 11, 24, 22, 30), False, "closed", utc(2026, 11, 24, 23, 0)),  # daily halt
        ("CME", utc(2026, 11, 28, 12, 0), False, "closed", utc(2026, 11, 29, 23, 0)),  # weekend
        ("CME", utc(2026, 11, 25, 3, 0), True, "regular", utc(2026, 11, 25, 22, 0)),
    ],
)
def test_exchange_status_known_time_expected_session(
    market: str, at: datetime, is_open: bool, session: str, next_change: datetime
) -> None:
    status = EXCHANGES[market].status(at)
    assert (status.is_open, status.session, status.next_change) == (is_open, session, next_change)


def test_exchange_status_at_next_change_differs() -> None:
    at = utc(2026, 11, 23, 0, 0)
    for exchange in EXCHANGES.values():
        for _ in range(20):
            status = exchange.status(at)
            assert status.next_change > at
            assert exchange.session_at(status.next_change) != status.session
            assert exchange.session_at(status.next_change - timedelta(seconds=1)) == status.session
            at = status.next_change


def test_account_same_seed_same_steps_same_book() -> None:
    assert run_account(7, 300)[0] == run_account(7, 300)[0]


def test_account_many_steps_keeps_3_to_6_positions_and_trades_every_way() -> None:
    account, sizes, kinds = run_account(7, 1500)
    assert min(sizes) >= 3
    assert max(sizes) <= 6
    assert len(set(sizes)) > 1
    assert kinds == {"open", "add", "reduce", "close"}
    assert account.cash - PaperAccount("x", 0).cash == account.realized_pnl


def test_account_codes_seed_different_books() -> None:
    assert run_account(7, 100, "DU1234")[0].positions != run_account(7, 100, "DU5678")[0].positions


def test_account_fills_pnl_arithmetic_exact() -> None:
    account = PaperAccount("T1", 1)
    start = account.cash
    account.fill("ES", 2, Decimal("5000.00"))
    account.fill("ES", 1, Decimal("5003.00"))  # add: average (2 x 5000 + 5003) / 3
    assert account.positions["ES"].quantity == 3
    assert account.positions["ES"].avg_price == Decimal("5001.0000")
    fill = account.fill("ES", -1, Decimal("5011.00"))  # reduce: 10 points x 1 x 50, less commission
    assert fill.realized == Decimal("500.00") - Decimal("2.25")
    assert account.positions["ES"].avg_price == Decimal("5001.0000")
    account.fill("CL", -3, Decimal("70.00"))
    fill = account.fill("CL", 3, Decimal("69.50"))  # short closed 0.50 lower: 0.5 x 3 x 1000
    assert fill.realized == Decimal("1500.00") - Decimal("6.75")
    assert "CL" not in account.positions
    commissions = Decimal("2.25") * (2 + 1 + 1 + 3 + 3)
    assert account.realized_pnl == Decimal("500.00") + Decimal("1500.00") - commissions
    assert account.cash == start + account.realized_pnl

    prices = {"ES": Decimal("5021.00")}
    (mark,) = account.marks(prices)
    assert mark.unrealized_pnl == Decimal("2000.00")  # 20 points x 2 x 50
    assert mark.market_value == Decimal("502100.00")
    s = account.summary(prices)
    assert s.unrealized_pnl == Decimal("2000.00")
    assert s.equity == account.cash + Decimal("2000.00")
    assert s.margin_used == 2 * CONTRACTS["ES"].margin
    assert s.buying_power == s.equity - s.margin_used


def test_account_fill_through_zero_flips_at_fill_price() -> None:
    account = PaperAccount("T2", 1)
    account.fill("GC", 1, Decimal("2650.0"))
    fill = account.fill("GC", -3, Decimal("2651.0"))  # close 1 (+1.0 x 100), open 2 short
    assert fill.realized == Decimal("100.00") - Decimal("6.75")
    assert account.positions["GC"].quantity == -2
    assert account.positions["GC"].avg_price == Decimal("2651.0")
    assert account.marks({"GC": Decimal("2641.0")})[0].unrealized_pnl == Decimal("2000.00")


def test_intraday_minute_rolls_new_bar_and_trading_day_resets_vwap() -> None:
    intraday = Intraday()
    t = utc(2026, 11, 24, 22, 59, 50)  # 16:59:50 in Chicago: the trading day rolls at 17:00
    price = Decimal("100.00")
    intraday.update(t, {"ES": Trade(price, 10, price, price, price, price * 10)})
    intraday.update(t + timedelta(seconds=5), {"ES": Trade(Decimal("102.00"), 30, price, Decimal("103.00"),
                                                           price, Decimal("3060.00"))})  # fmt: skip
    bar, vwap = intraday.bars["ES"], intraday.vwaps["ES"]
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (price, Decimal("103.00"), price,
                                                                     Decimal("102.00"), 40)  # fmt: skip
    assert vwap.vwap == Decimal("101.5000")  # (1000 + 3060) / 40
    assert trading_day(t) != trading_day(t + timedelta(seconds=10))
    later = t + timedelta(seconds=10)
    intraday.update(later, {"ES": Trade(Decimal("99.00"), 5, Decimal("99.00"), Decimal("99.00"), Decimal("99.00"),
                                        Decimal("495.00"))})  # fmt: skip
    assert intraday.bars["ES"].start == utc(2026, 11, 24, 23, 0)
    assert intraday.bars["ES"].volume == 5
    assert (intraday.vwaps["ES"].vwap, intraday.vwaps["ES"].cum_volume) == (Decimal("99.0000"), 5)
