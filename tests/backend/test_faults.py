"""Fault injection: each mode makes the WebSocket side differ from REST in exactly its way."""

from __future__ import annotations

import copy
from typing import Any

import pytest


def _positions(seq: int = 10) -> dict[str, Any]:
    rows = [
        {"symbol": "CL", "quantity": 2, "last_price": 68.79, "unrealized_pnl": 130.0},
        {"symbol": "ES", "quantity": -1, "last_price": 5947.25, "unrealized_pnl": -37.5},
    ]
    return {"type": "positions", "feature": "positions", "key": "DU1234", "seq": seq, "ts": "",
            "data": {"account": "DU1234", "positions": rows}}  # fmt: skip


def _balance(seq: int = 10) -> dict[str, Any]:
    return {"type": "account_balance", "feature": "account_balance", "key": "DU1234", "seq": seq, "ts": "",
            "data": {"equity": 1000123.47, "cash": 999914.26, "margin_used": 25000.0}}  # fmt: skip


def test_every_message_type_of_the_feature_table_has_its_faults(thor_env: object) -> None:
    from thor_runner import faults
    from thor_trading.features import TYPE_FEATURE

    assert set(faults.DROPPED) == set(faults.PRICES) == set(TYPE_FEATURE)


def test_no_faults_sends_the_message_unchanged(thor_env: object) -> None:
    from thor_runner import faults

    msg = _positions()
    assert faults.ws(msg, "") == [msg]
    assert faults.ws(msg, "account_balance:drop_field") == [msg]  # another feature's fault


def test_drop_field_removes_the_named_path(thor_env: object) -> None:
    from thor_runner import faults

    (out,) = faults.ws(_positions(), "positions:drop_field")
    assert all("unrealized_pnl" not in row for row in out["data"]["positions"])
    (bal,) = faults.ws(_balance(), "account_balance:drop_field")
    assert "margin_used" not in bal["data"]


def test_round_price_rounds_to_one_decimal(thor_env: object) -> None:
    from thor_runner import faults

    (bal,) = faults.ws(_balance(), "account_balance:round_price")
    assert (bal["data"]["equity"], bal["data"]["cash"]) == (1000123.5, 999914.3)
    (pos,) = faults.ws(_positions(), "positions:round_price")
    assert [r["last_price"] for r in pos["data"]["positions"]] == [68.8, 5947.2]


def test_lag_seq_reorder_duplicate_and_skip(thor_env: object) -> None:
    from thor_runner import faults

    msg = _positions(seq=10)
    original = copy.deepcopy(msg)
    assert faults.ws(msg, "positions:lag_seq")[0]["seq"] == 9
    assert [r["symbol"] for r in faults.ws(msg, "positions:reorder")[0]["data"]["positions"]] == ["ES", "CL"]
    assert faults.ws(msg, "positions:duplicate") == [msg, msg]
    assert faults.ws(msg, "positions:skip_seq") == []  # 10 is a multiple of 5
    assert faults.ws(_positions(seq=11), "positions:skip_seq") == [_positions(seq=11)]
    assert msg == original  # the REST-side state is never mutated


@pytest.mark.parametrize("spec", ["positions", "positions:explode", "orders:reorder"])
def test_malformed_spec_is_rejected_naming_the_entry(thor_env: object, spec: str) -> None:
    from thor_runner import faults

    with pytest.raises(faults.FaultSpecError, match="bad entry"):
        faults.ws(_positions(), spec)


def test_thor_user_command_creates_user_account_and_token(thor_env: object) -> None:
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from thor_trading.auth import user_for_token

    out = io.StringIO()
    call_command("thor_user", "carol", "--password", "carol-pass", "--account", "DU7777", "--token", "ci", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "user carol owns account DU7777"
    token = lines[1].split()[1]
    assert user_for_token(token).username == "carol"
    with pytest.raises(CommandError, match="belongs to another user"):
        call_command("thor_user", "dave", "--password", "d-pass", "--account", "DU7777", stdout=io.StringIO())
