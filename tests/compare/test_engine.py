"""The compare engine: every kind of difference at its exact path, order and limit, keyed lists,
the fast path (values, paths and rules have their own test modules)."""

from __future__ import annotations

import copy
import json
import pickle
import re
import struct
import subprocess
import sys
from typing import Any

import pytest
from deepdiff import DeepDiff

from tests.compare.helpers import NAN, PLAIN, explain, one, row, rules
from thorcut.compare.engine import MISSING, Comparator, Difference, Kind
from thorcut.compare.rules import Rules
from thorcut.manifest import DEFAULT_MANIFEST, Tolerance
from thorcut.wire.jsonfast import loads

# -- kinds -------------------------------------------------------------------------------------


def test_equal_nested_bodies_have_no_differences() -> None:
    body = {"a": {"b": [1, {"c": "x", "d": None}], "e": True}, "f": 1.5}
    assert explain(PLAIN, body, copy.deepcopy(body)) == []


def test_dict_key_order_does_not_matter() -> None:
    assert explain(PLAIN, {"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"d": 3, "c": 2}, "a": 1}) == []


def test_changed_leaf_is_reported_at_its_path_with_both_values() -> None:
    assert one(PLAIN, {"equity": 1.5}, {"equity": 2.5}) == ("equity", Kind.CHANGED, 1.5, 2.5)


def test_key_only_in_rest_is_missing_on_ws() -> None:
    assert one(PLAIN, {}, {"cash": 1}) == ("cash", Kind.MISSING_ON_WS, MISSING, 1)


def test_key_only_on_ws_is_extra_on_ws() -> None:
    assert one(PLAIN, {"cash": 1}, {}) == ("cash", Kind.EXTRA_ON_WS, 1, MISSING)


def test_plain_lists_of_different_length_give_the_length_and_the_common_items() -> None:
    out = explain(PLAIN, {"bars": [1, 2, 3]}, {"bars": [1, 9]})
    assert [(d.path, d.kind, d.ws, d.rest) for d in out] == [
        ("bars", Kind.LIST_LENGTH, 3, 2),
        ("bars[1]", Kind.CHANGED, 2, 9),
    ]


# -- order, limit and the fast path ------------------------------------------------------------


def test_differences_are_in_path_order_with_numeric_indexes() -> None:
    ws = {"z": 1, "bars": list(range(12)), "a": {"y": 1, "b": 1}}
    rest = {"z": 2, "bars": [*range(10), 0, 0, 0], "a": {"y": 2, "b": 2}}
    paths = [d.path for d in explain(PLAIN, ws, rest)]
    assert paths == ["a.b", "a.y", "bars", "bars[10]", "bars[11]", "z"]


def test_limit_keeps_the_first_differences_in_order() -> None:
    ws = {"a": 1, "b": 1, "c": 1}
    rest = {"a": 2, "b": 2, "c": 2}
    assert [d.path for d in PLAIN.explain(ws, rest, limit=2)] == ["a", "b"]
    assert [d.path for d in PLAIN.explain(ws, rest, limit=1)] == ["a"]
    assert len(PLAIN.explain(ws, rest, limit=10)) == 3
    with pytest.raises(ValueError, match="limit"):
        PLAIN.explain(ws, rest, limit=0)


def _positions_line(n: int) -> bytes:
    rows = [{"symbol": f"S{i}", "quantity": i - 25, "avg_price": 100.25 + i, "last_price": 99.5 + i} for i in range(n)]
    return json.dumps({"account": "DU1234", "positions": rows, "as_of": "2026-11-24T14:30:00.123Z"}).encode()


def test_identical_bodies_are_judged_without_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    c = Comparator(Rules.from_spec(DEFAULT_MANIFEST.get("positions")))
    line = _positions_line(50)
    ws, rest = loads(line), loads(line)
    held = [row["symbol"] for row in rest["positions"]]  # leaves referenced elsewhere too
    noisy = {**loads(line), "as_of": "2026-11-24T14:30:01.000Z"}

    def no_walk(*args: Any) -> bool:
        raise AssertionError("walked")

    monkeypatch.setattr(Comparator, "_eq", no_walk)
    assert c.equal(ws, rest)
    assert c.equal(ws, copy.deepcopy(ws))
    assert rules(ignore=("as_of",)).equal(ws, noisy)  # a noisy ignored member keeps the shortcut
    assert held


# -- keyed lists -------------------------------------------------------------------------------

KEYED = rules(keyed_lists=(("positions", "symbol"),), tolerance=(("*", Tolerance(abs=1e-9)),))


def test_keyed_list_in_another_order_is_equal() -> None:
    ws = {"positions": [row("ES"), row("NQ"), row("CL")]}
    rest = {"positions": [row("CL"), row("ES"), row("NQ")]}
    assert explain(KEYED, ws, rest) == []
    assert [d.path for d in explain(PLAIN, ws, rest)] == [f"positions[{i}].symbol" for i in range(3)]


def test_keyed_item_missing_on_ws_holds_the_rest_item() -> None:
    ws = {"positions": [row("NQ")]}
    rest = {"positions": [row("ES"), row("NQ")]}
    assert one(KEYED, ws, rest) == ("positions[symbol=ES]", Kind.MISSING_ON_WS, MISSING, row("ES"))


def test_keyed_item_extra_on_ws_holds_the_ws_item() -> None:
    ws = {"positions": [row("ES"), row("NQ")]}
    rest = {"positions": [row("NQ")]}
    assert one(KEYED, ws, rest) == ("positions[symbol=ES]", Kind.EXTRA_ON_WS, row("ES"), MISSING)


def test_keyed_item_changed_inside() -> None:
    ws = {"positions": [row("ES", 1), row("NQ", 2)]}
    rest = {"positions": [row("NQ", 3), row("ES", 1)]}
    assert one(KEYED, ws, rest) == ("positions[symbol=NQ].quantity", Kind.CHANGED, 2, 3)


def test_keyed_items_are_listed_in_key_order() -> None:
    ws = {"positions": [row("NQ", 1), row("ES", 1), row("CL", 1)]}
    rest = {"positions": [row("ES", 2), row("CL", 2), row("NQ", 2)]}
    paths = [d.path for d in explain(KEYED, ws, rest)]
    assert paths == [f"positions[symbol={s}].quantity" for s in ("CL", "ES", "NQ")]


def test_key_values_are_matched_by_value_and_written_as_json() -> None:
    c = rules(keyed_lists=(("items", "id"),))
    ws = {"items": [{"id": 1, "v": 1}, {"id": 2, "v": 2}]}
    assert explain(c, ws, {"items": [{"id": 2.0, "v": 2}, {"id": 1, "v": 1}]}) == []
    ws = {"items": [{"id": 3, "v": 1}, {"id": "3", "v": 1}]}
    out = explain(c, ws, {"items": [{"id": "3", "v": 1}, {"id": 3, "v": 2}]})
    assert [d.path for d in out] == ["items[id=3].v"]
    out = explain(c, {"items": [{"id": "3"}, {"id": True}, {"id": None}, {"id": "a b"}]}, {"items": []})
    assert [d.path for d in out] == ["items[id=true]", "items[id=null]", 'items[id="3"]', 'items[id="a b"]']
    out = explain(c, {"items": [{"id": 10}, {"id": 9}, {"id": 2.5}, {"id": "1"}]}, {"items": []})
    assert [d.path for d in out] == ["items[id=2.5]", "items[id=9]", "items[id=10]", 'items[id="1"]']


@pytest.mark.parametrize(
    "items",
    [
        [row("ES"), {"quantity": 1}],  # an item lacks the key
        [row("ES"), row("ES", 2)],  # a key repeats
        [row("ES"), "cash"],  # an item is not an object
        [row("ES"), {"symbol": NAN}],  # a key that equals nothing
        [row("ES"), {"symbol": ["E", "S"]}],  # a key that is not a scalar
    ],
)
def test_list_that_cannot_be_keyed_falls_back_to_positions(items: list[Any]) -> None:
    ws = {"positions": items}
    rest = {"positions": items[::-1]}
    paths = {d.path for d in explain(KEYED, ws, rest)}
    assert paths
    assert all(re.match(r"positions\[[01]\]", p) for p in paths), paths
    assert explain(KEYED, ws, copy.deepcopy(ws)) == []


def test_positional_fallback_applies_when_only_one_side_cannot_be_keyed() -> None:
    ws = {"positions": [row("ES"), row("NQ")]}
    rest = {"positions": [row("NQ"), row("NQ")]}
    assert [d.path for d in explain(KEYED, ws, rest)] == ["positions[0].symbol"]


def test_keyed_lists_of_different_length_report_items_not_length() -> None:
    out = explain(KEYED, {"positions": [row("ES")]}, {"positions": [row("ES"), row("NQ"), row("CL")]})
    assert [(d.path, d.kind) for d in out] == [
        ("positions[symbol=CL]", Kind.MISSING_ON_WS),
        ("positions[symbol=NQ]", Kind.MISSING_ON_WS),
    ]


# -- results -----------------------------------------------------------------------------------


def test_difference_to_dict_keeps_null_and_missing_apart() -> None:
    missing = Difference("x", Kind.MISSING_ON_WS, MISSING, None).to_dict()
    assert missing == {"path": "x", "kind": "missing_on_ws", "ws": None, "rest": None,
                       "ws_missing": True, "rest_missing": False}  # fmt: skip
    json.dumps(missing)
    assert Difference("", Kind.CHANGED, 1, 2).to_dict()["ws_missing"] is False


def _nan() -> float:
    return float("nan")  # a new NaN object on each call


def _negative_nan() -> float:
    return -float("nan")  # the sign bit set


def _payload_nan() -> float:
    return float(struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0001))[0])


# (one side's value in one difference, in the other, equal under the value rules?); each value is
# made by the call, so no two differences share a NaN object.
VALUE_PAIRS = [
    pytest.param(_nan, _nan, True, id="nan-nan"),
    pytest.param(lambda: json.loads("NaN"), _nan, True, id="parsed-nan"),
    pytest.param(lambda: loads(b"[NaN]")[0], _nan, True, id="wire-nan"),
    pytest.param(_negative_nan, _nan, True, id="negative-nan"),
    pytest.param(_payload_nan, _nan, True, id="payload-nan"),
    pytest.param(lambda: [1, _nan()], lambda: [1, _nan()], True, id="nan-in-list"),
    pytest.param(lambda: {"a": {"b": _nan()}}, lambda: {"a": {"b": _nan()}}, True, id="nan-in-object"),
    pytest.param(lambda: (_nan(),), lambda: (_nan(),), True, id="nan-in-tuple"),
    pytest.param(_nan, lambda: 1.0, False, id="nan-number"),
    pytest.param(_nan, lambda: None, False, id="nan-null"),
    pytest.param(lambda: 1, lambda: 1.0, True, id="int-float"),
    pytest.param(lambda: -0.0, lambda: 0.0, True, id="signed-zeros"),
    pytest.param(lambda: float("inf"), lambda: float("inf"), True, id="inf"),
    pytest.param(lambda: float("inf"), lambda: -float("inf"), False, id="inf-minus-inf"),
    pytest.param(lambda: True, lambda: 1, False, id="true-one"),
    pytest.param(lambda: False, lambda: 0.0, False, id="false-zero"),
    pytest.param(lambda: None, lambda: MISSING, False, id="null-missing"),
    pytest.param(lambda: MISSING, lambda: MISSING, True, id="missing"),
    pytest.param(lambda: "1", lambda: 1, False, id="string-number"),
    pytest.param(lambda: [1, 2], lambda: [2, 1], False, id="list-order"),
    pytest.param(lambda: {"a": 1, "b": [True]}, lambda: {"b": [True], "a": 1.0}, True, id="object"),
    pytest.param(lambda: {"a": 1}, lambda: [1], False, id="object-list"),
]


@pytest.mark.parametrize(("make_a", "make_b", "equal"), VALUE_PAIRS)
@pytest.mark.parametrize("side", ["ws", "rest"])
def test_differences_compare_their_values_by_the_value_rules_not_by_identity(
    make_a: Any, make_b: Any, equal: bool, side: str
) -> None:
    def diff(value: Any, path: str = "x", kind: Kind = Kind.CHANGED) -> Difference:
        return Difference(path, kind, value, 7) if side == "ws" else Difference(path, kind, 7, value)

    a, b = make_a(), make_b()
    assert PLAIN.equal(a, b) is equal  # the engine's own answer
    assert (diff(a) == diff(b)) is equal
    assert (diff(b) == diff(a)) is equal
    assert (diff(a) != diff(b)) is not equal
    assert diff(a) == diff(make_a())  # equal to a copy made apart
    assert diff(a) != diff(make_a(), path="y")
    assert diff(a) != diff(make_a(), kind=Kind.TYPE_CHANGED)
    if equal:
        assert hash(diff(a)) == hash(diff(b))
        assert len({diff(a), diff(b)}) == 1
    assert diff(a) != (diff(a).path, diff(a).kind, diff(a).ws, diff(a).rest)


def test_reports_of_separately_parsed_bodies_with_nan_are_equal() -> None:
    ws, rest = b'{"x": NaN, "y": [NaN, 1], "z": true}', b'{"x": 1, "y": [NaN, NaN, 2], "z": NaN}'
    first = PLAIN.explain(loads(ws), loads(rest))
    again = PLAIN.explain(loads(ws), loads(rest))
    assert len(first) == 4
    assert first == again
    assert first == [
        Difference("x", Kind.CHANGED, _nan(), 1),
        Difference("y", Kind.LIST_LENGTH, 2, 3),
        Difference("y[1]", Kind.CHANGED, 1.0, _nan()),
        Difference("z", Kind.TYPE_CHANGED, True, _nan()),
    ]
    assert set(first) == set(again)


def test_missing_is_one_falsy_sentinel_that_survives_copy_and_pickle() -> None:
    assert repr(MISSING) == "<missing>"
    assert not MISSING
    assert MISSING is not None
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert type(MISSING)() is MISSING


def test_engine_does_not_import_deepdiff() -> None:
    code = "import sys, thorcut.compare.engine; print('deepdiff' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- cross-check against DeepDiff --------------------------------------------------------------

_DD_KIND = {
    "values_changed": Kind.CHANGED,
    "type_changes": Kind.TYPE_CHANGED,
    "dictionary_item_added": Kind.MISSING_ON_WS,  # DeepDiff(t1=ws, t2=rest): added = only in REST
    "dictionary_item_removed": Kind.EXTRA_ON_WS,
    "iterable_item_added": Kind.LIST_LENGTH,
    "iterable_item_removed": Kind.LIST_LENGTH,
}


def _from_deepdiff(report: DeepDiff) -> set[tuple[str, Kind]]:
    out = set()
    for kind, entries in report.items():
        for dd_path in entries:
            parts = re.findall(r"\['([^']*)'\]|\[(\d+)\]", dd_path)
            if kind.startswith("iterable_item"):
                parts = parts[:-1]  # an added/removed tail item is the list's length
            path = ""
            for key, index in parts:
                path = f"{path}[{index}]" if index else (f"{path}.{key}" if path else key)
            out.add((path, _DD_KIND[kind]))
    return out


CROSS_CHECK = [
    ({"a": 1, "b": "x"}, {"a": 2, "b": "x"}),
    ({"a": {"b": [1, 2, {"c": None}]}}, {"a": {"b": [1, 3, {"c": 0}]}}),
    ({"flag": True, "n": 1}, {"flag": 1, "n": "1"}),
    ({"bars": [{"close": 1.5}, {"close": 2.5}, {"close": 3.5}]}, {"bars": [{"close": 1.5}, {"close": 2.0}]}),
    ({"x": 1, "y": {"z": [1]}}, {"y": {"z": [1, 2]}, "w": None}),
    ({"m": {"k": [1, 2]}}, {"m": {"k": {"0": 1}}}),
    ({"equity": 1000.25, "cash": 10.0}, {"equity": 1000.25, "cash": 10.0}),
]


@pytest.mark.parametrize(("ws", "rest"), CROSS_CHECK)
def test_same_differing_paths_as_deepdiff(ws: Any, rest: Any) -> None:
    ours = {(d.path, d.kind) for d in explain(PLAIN, ws, rest)}
    assert ours == _from_deepdiff(DeepDiff(ws, rest))
