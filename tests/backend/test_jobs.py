"""The heartbeat jobs on a real database: seq counters, envelopes equal to REST, takeover, isolation.

The database is shared by the whole session (other tests write it too), so every assertion is
relative to the state found before the run, never to empty tables.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

Message = dict[str, Any]
ENVELOPE_KEYS = {"type", "feature", "key", "seq", "ts", "data"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def jobs(thor_env: dict[str, str], demo_users: dict[str, dict[str, str]]) -> list[Any]:
    """A fresh job set: its simulation resumes from whatever the database holds (a takeover)."""
    from thor_trading.jobs import build_jobs

    return build_jobs(7)


def run_tick(jobs: list[Any], tick: int) -> list[Message]:
    """What the heartbeat does on one tick: every due job, in order."""
    out: list[Message] = []
    for job in jobs:
        if tick % job.every == 0:
            out += job.run(tick)
    return out


def counters() -> dict[tuple[str, str], int]:
    from thor_trading.models import SeqCounter

    return {(c.type, c.key): c.seq for c in SeqCounter.objects.all()}


def rest_path(message: Message) -> str:
    key = message["key"]
    return {
        "account_balance": "/api/account/balance?account={}",
        "positions": "/api/account/positions?account={}",
        "intraday_bar": "/api/intraday/{}/bar",
        "vwap": "/api/intraday/{}/vwap",
        "market_status": "/api/markets/status?market={}",
    }[message["type"]].format(key)


@pytest.fixture
def tokens(demo_users: dict[str, dict[str, str]]) -> dict[str, str]:
    """Account code -> a bearer token of its owner."""
    return {u["account"]: u["token"] for u in demo_users.values()}


@pytest.fixture
def extra_account(thor_env: dict[str, str]) -> Iterator[str]:
    """A third account, deleted afterwards so other tests see only the demo accounts."""
    from thor_trading.models import Account
    from thor_trading.users import ensure_user

    code = f"DU{uuid.uuid4().int % 10**6:06d}"
    ensure_user(f"extra-{code}", "extra-pass", code)
    yield code
    Account.objects.filter(code=code).delete()


def test_job_interface_names_features_every_in_heartbeat_order(jobs: list[Any]) -> None:
    assert [(j.name, j.feature, j.every) for j in jobs] == [
        ("AccountBalanceJob", "account_balance", 1),
        ("PositionsJob", "positions", 1),
        ("IntradayJob", "intraday", 1),
        ("GlobalMarketJob", "global_market", 5),
    ]


def test_jobs_every_run_bumps_seq_by_exactly_one_per_type_key(jobs: list[Any]) -> None:
    last = counters()
    for tick in range(11):
        messages = run_tick(jobs, tick)
        pairs = [(m["type"], m["key"]) for m in messages]
        assert len(pairs) == len(set(pairs)), "one message per (type, key) per run"
        for m in messages:
            assert m["seq"] == last.get((m["type"], m["key"]), 0) + 1, m
        now = counters()
        assert {p: now[p] for p in pairs} == {(m["type"], m["key"]): m["seq"] for m in messages}
        last = now
    types = {m["type"] for m in run_tick(jobs, 0)}
    assert types == {"account_balance", "positions", "intraday_bar", "vwap", "market_status"}


def test_jobs_message_equals_rest_read_right_after(jobs: list[Any], tokens: dict[str, str]) -> None:
    from django.test import Client

    client = Client()
    any_token = tokens["DU1234"]
    for tick in range(3):
        for m in run_tick(jobs, tick * 5):
            if m["type"] in ("account_balance", "positions") and m["key"] not in tokens:
                continue  # an account another test created: no token here
            token = tokens.get(m["key"], any_token)
            resp = client.get(rest_path(m), HTTP_AUTHORIZATION=f"Bearer {token}")
            assert resp.status_code == 200, resp.content
            assert resp.json() == m


def test_jobs_envelope_shape_matches_design(jobs: list[Any]) -> None:
    from thor_trading.exchanges import EXCHANGES
    from thor_trading.market import CONTRACTS

    messages = run_tick(jobs, 0)
    feature_of = {"account_balance": "account_balance", "positions": "positions", "intraday_bar": "intraday",
                  "vwap": "intraday", "market_status": "global_market"}  # fmt: skip
    for m in messages:
        assert set(m) == ENVELOPE_KEYS
        assert m["feature"] == feature_of[m["type"]]
        assert isinstance(m["seq"], int)
        assert m["seq"] >= 1
        assert ISO_MS.match(m["ts"]), m["ts"]
        name = {"intraday_bar": "symbol", "vwap": "symbol", "market_status": "market"}.get(m["type"], "account")
        assert m["data"][name] == m["key"]
    by_type: dict[str, set[str]] = {}
    for m in messages:
        by_type.setdefault(m["type"], set()).add(m["key"])
    assert by_type["intraday_bar"] == by_type["vwap"] == set(CONTRACTS)
    assert by_type["market_status"] == set(EXCHANGES)
    assert {"DU1234", "DU5678"} <= by_type["account_balance"] == by_type["positions"]
    bar = next(m["data"] for m in messages if m["type"] == "intraday_bar")
    assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]


def test_jobs_takeover_resumes_state_and_continues_seq(jobs: list[Any]) -> None:
    from thor_trading.jobs import build_jobs

    for tick in range(1, 4):
        run_tick(jobs, tick)
    before = counters()
    old = jobs[0].simulation
    new_jobs = build_jobs(7)  # a new job runner; its heartbeat counts from 0 again
    messages = run_tick(new_jobs, 0)
    assert messages
    for m in messages:
        assert m["seq"] == before.get((m["type"], m["key"]), 0) + 1, m
    # Stepped once from the saved state, the new simulation is where the old one goes next.
    old.advance(4)
    new = new_jobs[0].simulation
    assert new.now == old.now
    assert new.prices == old.prices
    assert new.accounts == old.accounts
    assert new.intraday.bars == old.intraday.bars
    assert new.intraday.vwaps == old.intraday.vwaps


def test_jobs_same_tick_twice_advances_simulation_once_but_bumps_seq(jobs: list[Any]) -> None:
    balance_job = jobs[0]
    first = balance_job.run(41)
    at = balance_job.simulation.now
    second = balance_job.run(41)
    assert balance_job.simulation.now == at
    assert [m["seq"] for m in second] == [m["seq"] + 1 for m in first]
    assert [m["data"] for m in second] == [m["data"] for m in first]
    jobs[2].run(42)
    assert balance_job.simulation.now > at


def test_jobs_account_rows_hold_only_that_accounts_book(jobs: list[Any]) -> None:
    from thor_trading.models import Balance, Position

    sim = jobs[0].simulation
    for tick in range(30):
        before = counters()
        messages = run_tick(jobs, tick)
        after = counters()
        for code in ("DU1234", "DU5678"):
            marks = sim.accounts[code].marks(sim.prices)
            rows = Position.objects.filter(account__code=code).order_by("symbol")
            assert [(p.symbol, p.quantity, p.avg_price, p.unrealized_pnl) for p in rows] == [
                (m.symbol, m.quantity, m.avg_price, m.unrealized_pnl) for m in marks
            ]
            assert Balance.objects.get(account__code=code).cash == sim.accounts[code].cash
            for type_ in ("account_balance", "positions"):
                assert after[(type_, code)] == before.get((type_, code), 0) + 1
                (mine,) = [m for m in messages if m["type"] == type_ and m["key"] == code]
                assert mine["data"]["account"] == code
        positions = {m["key"]: m["data"]["positions"] for m in messages if m["type"] == "positions"}
        assert positions["DU1234"] != positions["DU5678"]


def test_jobs_new_account_first_run_creates_its_rows(jobs: list[Any], extra_account: str) -> None:
    from thor_trading.models import Balance, Position, PositionsSnapshot

    messages = run_tick(jobs, 0)
    mine = {m["type"]: m for m in messages if m["key"] == extra_account}
    assert set(mine) == {"account_balance", "positions"}
    held = len(mine["positions"]["data"]["positions"])
    assert 3 <= held <= 6  # the paper account always keeps 3 to 6 positions
    assert Position.objects.filter(account__code=extra_account).count() == held
    assert Balance.objects.get(account__code=extra_account).seq == mine["account_balance"]["seq"]
    assert PositionsSnapshot.objects.get(account__code=extra_account).seq == mine["positions"]["seq"]


def test_thor_seed_command_second_run_changes_nothing(thor_env: dict[str, str], demo_users: object) -> None:
    from django.core.management import call_command

    from thor_trading.models import Balance, IntradayBar, MarketSession

    call_command("thor_seed", verbosity=0)
    assert IntradayBar.objects.count() >= 6
    assert MarketSession.objects.count() >= 7
    assert Balance.objects.filter(account__code__in=["DU1234", "DU5678"]).count() == 2
    before = counters()
    call_command("thor_seed", verbosity=0)
    assert counters() == before
    call_command("thor_seed", "--force", verbosity=0)
    assert counters()[("intraday_bar", "ES")] == before[("intraday_bar", "ES")] + 1


def test_envelope_ts_is_wall_clock_time_of_the_write_not_simulated_time(thor_env: object, demo_users: object) -> None:
    from datetime import UTC, datetime

    from thor_trading.jobs import build_jobs

    before = datetime.now(UTC)
    for job in build_jobs(7):
        for message in job.run(0):
            ts = datetime.fromisoformat(message["ts"].replace("Z", "+00:00"))
            assert abs((ts - before).total_seconds()) < 60, (message["type"], message["ts"])


def test_positions_read_never_straddles_a_write(jobs: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A job commits between reading the snapshot and reading the rows: the message is still one
    state (thorcut check found REST serving seq N with rows of N+1 before this was fixed)."""
    from django.db.models import QuerySet

    from thor_trading import messages
    from thor_trading.models import Account

    positions_job = next(j for j in jobs if j.feature == "positions")
    positions_job.run(1)
    account = Account.objects.get(code="DU1234")
    real_order_by = QuerySet.order_by
    writes = []

    def order_by_after_a_write(self: QuerySet[Any], *fields: str) -> QuerySet[Any]:
        if self.model.__name__ == "Position" and not writes:
            writes.append(2)
            positions_job.run(2)  # commits new rows and seq N+1 in the middle of the read
        return real_order_by(self, *fields)

    monkeypatch.setattr(QuerySet, "order_by", order_by_after_a_write)
    torn_or_not = messages.positions_message(account)
    monkeypatch.undo()
    assert writes, "the write did not happen in the middle of the read"
    fresh = messages.positions_message(account)
    assert torn_or_not["seq"] == fresh["seq"]
    assert torn_or_not["data"] == fresh["data"]
