"""A replay's fast test for equal pairs agrees with the compare engine (issue 9).

A replay decides a pair equal with Python's ``==`` when neither line may hold a bool (the strict
scan of :func:`thorcut.wire.jsonfast.loads_scanned` says so), since ``==`` blurs only ``True == 1`` and
``False == 0`` where JSON does not. Here that is checked against :class:`Comparator` on generated
values built to collide: ``1``, ``1.0`` and ``true`` side by side, integers beyond 64 bits and their
float neighbours, objects with their keys in another order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.parity.build import envelope
from thorcut.clock import iso_timestamp, parse_iso
from thorcut.compare.engine import Comparator
from thorcut.compare.pairing import Pair, Pairer
from thorcut.compare.rules import Rules
from thorcut.compare.shadow import ShadowJudge
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.parity.replay import replay
from thorcut.wire.jsonfast import loads_scanned

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ENGINE = Comparator(Rules())

# Values that == takes for one another (or nearly): the engine tells the bools apart.
CLOSE = [0, 1, -1, 0.0, 1.0, -0.0, True, False, None, 2**53 + 1, float(2**53), 2**64 + 1, float(2**64), "1", "true"]
SCALARS = (
    st.sampled_from(CLOSE)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='ae,:]}"\\ tru1', max_size=5)  # strings that look like the scan's marks
)
KEYS = st.text(alphabet="abet_", max_size=3)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=16
)
SWAPS = {v: [w for w in CLOSE if not isinstance(w, str) and w == v] for v in CLOSE if not isinstance(v, str)}


def twin(value: Any, data: st.DataObject) -> Any:
    """A value like ``value``: each object's keys in another order, numbers and bools swapped for
    ones that ``==`` calls equal (so the pair is often ``==`` but not the same JSON)."""
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: twin(value[k], data) for k in keys}
    if isinstance(value, list):
        return [twin(v, data) for v in value]
    if not isinstance(value, str) and value in SWAPS and data.draw(st.booleans()):
        return data.draw(st.sampled_from(SWAPS[value]))
    return value


def holds_bool(value: Any) -> bool:
    if isinstance(value, dict):
        return any(holds_bool(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_bool(v) for v in value)
    return isinstance(value, bool)


def text(value: Any, data: st.DataObject) -> bytes:
    seps = data.draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", " :  ")]))
    return json.dumps(value, separators=seps, ensure_ascii=data.draw(st.booleans())).encode()


@SETTINGS
@given(value=VALUES, data=st.data())
def test_the_scan_never_misses_a_bool(value: Any, data: st.DataObject) -> None:
    for whole in (value, {"v": value}, [value, 0]):  # the bool last in the text, or followed by "}" or ","
        parsed, maybe_bool = loads_scanned(text(whole, data) + data.draw(st.sampled_from([b"", b"\n", b" \r\n"])), 128)
        assert parsed == whole
        if holds_bool(value):
            assert maybe_bool


@SETTINGS
@given(value=VALUES, data=st.data())
def test_equal_by_the_fast_test_is_equal_to_the_engine(value: Any, data: st.DataObject) -> None:
    other = twin(value, data)
    ws, ws_bool = loads_scanned(text(value, data), 128)
    rest, rest_bool = loads_scanned(text(other, data), 128)
    if not ws_bool and not rest_bool and ws == rest:
        assert ENGINE.compare(ws, rest) == []
    if not holds_bool(value) and not holds_bool(other):  # the cases == decides must agree both ways
        assert (ws == rest) == (ENGINE.compare(ws, rest) == [])


@SETTINGS
@given(value=VALUES, data=st.data())
def test_a_replay_judges_a_pair_as_the_engine_does(tmp_path: Path, value: Any, data: st.DataObject) -> None:
    other = twin(value, data) if data.draw(st.booleans()) else data.draw(VALUES)
    at = "2026-11-24T14:00:00.000Z"
    lines = [
        {"thorcut_recording": 1},
        {"at": at, "src": "ws", "msg": envelope("account_balance", "DU1234", 1, value)},
        {"at": at, "src": "rest", "feature": "account_balance", "url": "/api/account/balance?account=DU1234",
         "status": 200, "elapsed_ms": 1.0, "body": envelope("account_balance", "DU1234", 1, other)},
    ]  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(text(line, data) + b"\n" for line in lines))
    judge = ShadowJudge(DEFAULT_MANIFEST, ["account_balance"], strict_json=True)
    counts = replay(judge, path).reports["account_balance"].counts
    engine = Comparator(Rules.from_spec(DEFAULT_MANIFEST.get("account_balance")))
    equal = engine.compare(loads_scanned(text(value, data))[0], loads_scanned(text(other, data))[0]) == []
    assert (counts["matched"], counts["mismatched"]) == ((1, 0) if equal else (0, 1))


def test_a_response_that_paired_is_got_again_for_a_later_copy_of_its_message() -> None:
    pairs: list[Pair] = []
    p = Pairer(pairs.append, lambda *a: None)
    got = []

    def again() -> Any:
        got.append(1)
        return {"v": 2}

    p.ws("t", "k", 1, {"v": 1})
    p.rest("t", "k", None, 1, {"v": 2}, again)
    assert not got  # the first pair used the body it was given
    assert p.ws("t", "k", 1, {"v": 3}) is True  # e.g. resent after a reconnect
    assert got == [1]
    assert [(x.ws, x.rest) for x in pairs] == [({"v": 1}, {"v": 2}), ({"v": 3}, {"v": 2})]


@settings(max_examples=200, deadline=None)
@given(micros=st.integers(0, 300 * 365 * 86400 * 10**6), text_=st.text(max_size=26))
def test_iso_timestamp_is_parse_iso_timestamp(micros: int, text_: str) -> None:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    written = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    for s in (written, written, written[:-1], written.replace("Z", "+02:00"), text_):
        value = parse_iso(s)
        assert iso_timestamp(s) == (value.timestamp() if value is not None else None)
