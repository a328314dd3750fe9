"""The compare engine: every kind of difference at its exact path, the noise rules, the fast path."""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest
from deepdiff import DeepDiff

from thorcut.compare.engine import MISSING, Comparator, Difference, Kind, Rules
from thorcut.errors import ConfigError
from thorcut.jsonfast import loads
from thorcut.manifest import DEFAULT_MANIFEST, Tolerance

PLAIN = Comparator(Rules())
NAN, INF = float("nan"), float("inf")


def explain(c: Comparator, ws: Any, rest: Any) -> list[Difference]:
    """explain(), after checking that equal() and compare() agree with it."""
    out = c.explain(ws, rest)
    assert c.equal(ws, rest) is (out == [])
    assert c.compare(ws, rest) == out
    return out


def one(c: Comparator, ws: Any, rest: Any) -> tuple[str, Kind, Any, Any]:
    out = explain(c, ws, rest)
    assert len(out) == 1, out
    d = out[0]
    return d.path, d.kind, d.ws, d.rest


def rules(**kw: Any) -> Comparator:
    return Comparator(Rules(**kw))


def row(symbol: str, quantity: float = 1, **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "quantity": quantity, "avg_price": 100.25, **extra}


# -- kinds and paths ---------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("ws", "rest"),
    [("1", 1), (True, 1), (1, True), (False, 0), (True, 1.0), (None, 0), (0, None), (None, False),
     ({}, []), ([], {}), ("", None), ("1.0", 1.0), ([1], 1)],
)  # fmt: skip
def test_values_of_different_types_are_type_changed(ws: Any, rest: Any) -> None:
    assert one(PLAIN, {"x": ws}, {"x": rest}) == ("x", Kind.TYPE_CHANGED, ws, rest)


def test_null_is_not_a_missing_key() -> None:
    assert one(PLAIN, {"x": None}, {}) == ("x", Kind.EXTRA_ON_WS, None, MISSING)
    assert one(PLAIN, {}, {"x": None}) == ("x", Kind.MISSING_ON_WS, MISSING, None)


@pytest.mark.parametrize(("ws", "rest"), [(1, 1.0), (10.0, 10), (-0.0, 0), (0.0, -0.0), (2**53, float(2**53))])
def test_numbers_compare_by_value_across_int_and_float(ws: Any, rest: Any) -> None:
    assert explain(PLAIN, {"q": [ws]}, {"q": [rest]}) == []


def test_int_beyond_float_precision_is_not_rounded_to_equal() -> None:
    assert one(PLAIN, {"q": 2**53 + 1}, {"q": float(2**53)}) == ("q", Kind.CHANGED, 2**53 + 1, float(2**53))
    tol = rules(tolerance=(("*", Tolerance(abs=0.5)),))
    assert explain(tol, {"q": 2**53 + 1}, {"q": float(2**53)}) != []  # |a-b| is 1, not the 0.0 of float maths


def test_booleans_compare_as_booleans() -> None:
    assert one(PLAIN, {"open": True}, {"open": False}) == ("open", Kind.CHANGED, True, False)


def test_nan_equals_nan_and_infinities_equal_only_themselves() -> None:
    assert explain(PLAIN, {"x": NAN}, {"x": float("nan")}) == []
    assert explain(PLAIN, {"x": INF}, {"x": float("inf")}) == []
    assert one(PLAIN, {"x": NAN}, {"x": 1.0})[:2] == ("x", Kind.CHANGED)
    assert one(PLAIN, {"x": INF}, {"x": -INF})[:2] == ("x", Kind.CHANGED)
    loose = rules(tolerance=(("*", Tolerance(abs=1e300, rel=1.0)),))
    assert one(loose, {"x": INF}, {"x": 1e308})[:2] == ("x", Kind.CHANGED)


def test_strings_compare_exactly() -> None:
    loose = rules(tolerance=(("*", Tolerance(abs=1.0)),))
    assert one(loose, {"s": "ES"}, {"s": "es"}) == ("s", Kind.CHANGED, "ES", "es")


def test_nested_paths_are_dotted_with_list_indexes() -> None:
    ws = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    rest = {"a": {"b": [{"c": 1}, {"c": 3}]}}
    assert one(PLAIN, ws, rest) == ("a.b[1].c", Kind.CHANGED, 2, 3)


def test_root_scalars_are_compared_at_the_empty_path() -> None:
    assert one(PLAIN, 1, 2) == ("", Kind.CHANGED, 1, 2)
    assert one(PLAIN, "1", 1) == ("", Kind.TYPE_CHANGED, "1", 1)
    assert explain(PLAIN, 3, 3.0) == []
    assert one(PLAIN, [1, 2], [1, 3]) == ("[1]", Kind.CHANGED, 2, 3)


def test_plain_lists_of_different_length_give_the_length_and_the_common_items() -> None:
    out = explain(PLAIN, {"bars": [1, 2, 3]}, {"bars": [1, 9]})
    assert [(d.path, d.kind, d.ws, d.rest) for d in out] == [
        ("bars", Kind.LIST_LENGTH, 3, 2),
        ("bars[1]", Kind.CHANGED, 2, 9),
    ]


def test_keys_that_are_not_plain_names_are_quoted() -> None:
    ws = {"a.b": 1, "meta": {"x y": {"c": 1}, "*": 1, "": 1}}
    rest = {"a.b": 2, "meta": {"x y": {"c": 2}, "*": 2, "": 2}}
    assert [d.path for d in explain(PLAIN, ws, rest)] == ['["a.b"]', 'meta[""]', 'meta["*"]', 'meta["x y"].c']


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


def test_identical_bodies_holding_a_bool_where_the_other_has_a_number_are_not_equal() -> None:
    # Python's == says {"x": [True]} == {"x": [1]}; the identity shortcut must not.
    assert one(PLAIN, {"x": [True], "y": "s"}, {"x": [1], "y": "s"}) == ("x[0]", Kind.TYPE_CHANGED, True, 1)
    assert not PLAIN.equal([True], [1])
    assert not PLAIN.equal({"x": {"y": 1}}, {"x": {"y": True}})


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


def test_values_beyond_json_compare_by_type_and_value() -> None:
    u = uuid.UUID(int=1)
    assert one(PLAIN, {"id": u}, {"id": str(u)})[:2] == ("id", Kind.TYPE_CHANGED)
    assert explain(PLAIN, {"t": (NAN,)}, {"t": (float("nan"),)}) == []
    assert one(PLAIN, {"t": (1,)}, {"t": (2,)})[:2] == ("t", Kind.CHANGED)


# -- ignore ------------------------------------------------------------------------------------


def test_ignore_drops_a_key_present_on_one_side_or_both() -> None:
    c = rules(ignore=("as_of",))
    assert explain(c, {"as_of": "t1", "a": 1}, {"as_of": "t2", "a": 1}) == []
    assert explain(c, {"as_of": "t1", "a": 1}, {"a": 1}) == []
    assert one(c, {"as_of": "t1", "a": 1}, {"a": 2}) == ("a", Kind.CHANGED, 1, 2)


def test_ignore_list_wildcard_covers_plain_and_keyed_items() -> None:
    ws = {"positions": [row("ES", updated_at="t1"), row("NQ", updated_at="t1")], "bars": [{"t": 1}, {"t": 2}]}
    rest = {"positions": [row("NQ", updated_at="t2"), row("ES", updated_at="t2")], "bars": [{"t": 3}, {"t": 4}]}
    c = rules(ignore=("positions[*].updated_at", "bars[*].t"), keyed_lists=(("positions", "symbol"),))
    assert explain(c, ws, rest) == []
    partial = rules(ignore=("positions[*].updated_at",), keyed_lists=(("positions", "symbol"),))
    assert [d.path for d in explain(partial, ws, rest)] == ["bars[0].t", "bars[1].t"]


def test_ignore_key_wildcard_matches_any_one_key() -> None:
    c = rules(ignore=("*.ts",))
    assert explain(c, {"a": {"ts": 1, "v": 1}, "b": {"ts": 1}}, {"a": {"ts": 2, "v": 1}, "b": {"ts": 2}}) == []
    assert one(c, {"ts": 1}, {"ts": 2}) == ("ts", Kind.CHANGED, 1, 2)  # one segment deep, not the root key
    assert one(c, {"a": {"b": {"ts": 1}}}, {"a": {"b": {"ts": 2}}})[0] == "a.b.ts"


def test_ignore_star_alone_ignores_everything() -> None:
    assert explain(rules(ignore=("*",)), {"a": 1}, [2]) == []


def test_ignore_of_list_items_keeps_their_count_but_ignoring_the_list_hides_it() -> None:
    assert one(rules(ignore=("bars[*]",)), {"bars": [1, 2]}, {"bars": [3]}) == ("bars", Kind.LIST_LENGTH, 2, 1)
    assert explain(rules(ignore=("bars",)), {"bars": [1, 2]}, {"bars": [3]}) == []


def test_ignore_one_keyed_item_by_its_key() -> None:
    c = rules(ignore=("positions[symbol=ES].quantity",), keyed_lists=(("positions", "symbol"),))
    ws = {"positions": [row("ES", 1), row("NQ", 1)]}
    assert explain(c, ws, {"positions": [row("ES", 5), row("NQ", 1)]}) == []
    assert one(c, ws, {"positions": [row("ES", 1), row("NQ", 5)]})[0] == "positions[symbol=NQ].quantity"


def test_a_reported_path_works_as_an_ignore_pattern() -> None:
    ws = {"meta": {"a.b": {"x y": [1, 2]}}, "positions": [row("ES", 1)]}
    rest = {"meta": {"a.b": {"x y": [1, 3]}}, "positions": [row("ES", 2)]}
    keyed = (("positions", "symbol"),)
    paths = [d.path for d in explain(rules(keyed_lists=keyed), ws, rest)]
    assert paths == ['meta["a.b"]["x y"][1]', "positions[symbol=ES].quantity"]
    assert explain(rules(ignore=tuple(paths), keyed_lists=keyed), ws, rest) == []


# -- tolerance ---------------------------------------------------------------------------------


def test_absolute_tolerance_holds_at_its_bound_and_not_beyond() -> None:
    c = rules(tolerance=(("price", Tolerance(abs=0.5)),))
    assert explain(c, {"price": 1.0}, {"price": 1.5}) == []
    assert explain(c, {"price": 1.5}, {"price": 1.0}) == []
    beyond = math.nextafter(1.5, 2.0)
    assert one(c, {"price": 1.0}, {"price": beyond}) == ("price", Kind.CHANGED, 1.0, beyond)


def test_absolute_tolerance_on_integers() -> None:
    c = rules(tolerance=(("q", Tolerance(abs=3)),))
    assert explain(c, {"q": 100}, {"q": 103}) == []
    assert one(c, {"q": 100}, {"q": 104}) == ("q", Kind.CHANGED, 100, 104)


def test_relative_tolerance_is_relative_to_the_larger_magnitude() -> None:
    c = rules(tolerance=(("v", Tolerance(rel=0.25)),))
    assert explain(c, {"v": 100.0}, {"v": 75.0}) == []  # 25 <= 0.25 * 100
    assert explain(c, {"v": -75}, {"v": -100}) == []
    below = math.nextafter(75.0, 0.0)
    assert one(c, {"v": 100.0}, {"v": below}) == ("v", Kind.CHANGED, 100.0, below)


def test_tolerance_uses_the_larger_of_abs_and_rel() -> None:
    c = rules(tolerance=(("v", Tolerance(abs=2.0, rel=0.01)),))
    assert explain(c, {"v": 1.0}, {"v": 3.0}) == []  # abs wins
    assert explain(c, {"v": 1000.0}, {"v": 1010.0}) == []  # rel wins
    assert one(c, {"v": 1000.0}, {"v": 1010.5})[1] == Kind.CHANGED


def test_star_tolerance_applies_to_every_number() -> None:
    c = rules(tolerance=(("*", Tolerance(abs=1e-9)),))
    assert explain(c, {"a": [{"b": 1.0}], "c": 2}, {"a": [{"b": 1.0 + 1e-10}], "c": 2.0000000001}) == []
    assert explain(c, 1.0, 1.0 + 1e-10) == []
    assert one(c, {"c": 2}, {"c": 2.001})[0] == "c"
    assert one(PLAIN, {"c": 1.0}, {"c": 1.0 + 1e-10})[0] == "c"  # no tolerance: exact


def test_most_specific_tolerance_wins() -> None:
    c = rules(
        tolerance=(
            ("positions[symbol=ES].avg_price", Tolerance(abs=1.0)),
            ("*", Tolerance(abs=10.0)),
            ("positions[*].avg_price", Tolerance()),
        ),
        keyed_lists=(("positions", "symbol"),),
    )
    ws = {"positions": [row("ES", 1), row("NQ", 1)]}
    es_moved = {"positions": [{**row("ES", 1), "avg_price": 100.75}, row("NQ", 1)]}
    nq_moved = {"positions": [row("ES", 1), {**row("NQ", 1), "avg_price": 100.75}]}
    assert explain(c, ws, es_moved) == []  # the exact path: 1.0
    assert one(c, ws, nq_moved)[0] == "positions[symbol=NQ].avg_price"  # [*] beats "*": exact
    assert explain(c, ws, {"positions": [row("ES", 5), row("NQ", 9)]}) == []  # quantity: "*" only


@pytest.mark.parametrize("order", [1, -1])
def test_a_literal_further_left_is_more_specific(order: int) -> None:
    c = rules(tolerance=(("*.b", Tolerance()), ("a.*", Tolerance(abs=1.0)))[::order])
    assert explain(c, {"a": {"b": 1}}, {"a": {"b": 2}}) == []
    assert one(c, {"x": {"b": 1}}, {"x": {"b": 2}})[0] == "x.b"


def test_the_first_of_two_equal_patterns_wins() -> None:
    c = rules(tolerance=(("a", Tolerance(abs=1.0)), ("a", Tolerance())))
    assert explain(c, {"a": 1}, {"a": 2}) == []


def test_an_exact_tolerance_overrides_a_looser_default() -> None:
    c = rules(tolerance=(("*", Tolerance(abs=1.0)), ("seq", Tolerance())))
    assert one(c, {"seq": 1, "v": 1}, {"seq": 2, "v": 2}) == ("seq", Kind.CHANGED, 1, 2)


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


def test_keyed_list_patterns_take_wildcards_and_star_alone() -> None:
    nested = rules(keyed_lists=(("accounts[*].positions", "symbol"),))
    ws = {"accounts": [{"positions": [row("ES"), row("NQ")]}]}
    rest = {"accounts": [{"positions": [row("NQ"), row("ES")]}]}
    assert explain(nested, ws, rest) == []
    every = rules(keyed_lists=(("*", "symbol"),))
    assert explain(every, ws, rest) == []
    assert explain(every, [row("ES"), row("NQ")], [row("NQ"), row("ES")]) == []
    assert one(every, [row("ES", 1)], [row("ES", 2)])[0] == "[symbol=ES].quantity"


def test_keyed_list_patterns_override_the_star_default() -> None:
    c = rules(keyed_lists=(("*", "id"), ("positions", "symbol")))
    ws = {"positions": [row("ES", id=1), row("NQ", id=2)]}
    rest = {"positions": [row("NQ", id=1), row("ES", id=2)]}
    assert [d.path for d in explain(c, ws, rest)] == ["positions[symbol=ES].id", "positions[symbol=NQ].id"]


def test_default_positions_rules_from_the_manifest() -> None:
    c = Comparator(Rules.from_spec(DEFAULT_MANIFEST.get("positions")))
    body = {"account": "DU1234", "positions": [row("ES"), row("NQ")], "as_of": "2026-11-24T14:30:00.123Z"}
    reordered = {**body, "positions": [row("NQ"), row("ES", 1.0000000001)]}
    assert explain(c, body, reordered) == []
    assert one(c, body, {**body, "positions": [row("NQ"), row("ES", 2)]})[0] == "positions[symbol=ES].quantity"


def test_rules_from_spec_copies_the_noise_rules() -> None:
    spec = DEFAULT_MANIFEST.get("positions")
    r = Rules.from_spec(spec)
    assert (r.ignore, r.tolerance, r.keyed_lists) == (spec.ignore, spec.tolerance, spec.keyed_lists)
    assert r.keyed_lists == (("positions", "symbol"),)


# -- malformed rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["a..b", "a.", ".a", "a[", "a[*", "[x", "a[]", "a[k=]", "a b", 'a["b]', "a.[0]"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        Comparator(Rules(ignore=(pattern,)))


def test_bad_tolerances_and_key_fields_are_refused() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        Comparator(Rules(tolerance=(("a", Tolerance(abs=-1.0)),)))
    with pytest.raises(ConfigError, match=">= 0"):
        Comparator(Rules(tolerance=(("a", Tolerance(rel=NAN)),)))
    with pytest.raises(ConfigError, match="key field"):
        Comparator(Rules(keyed_lists=(("positions", ""),)))
    with pytest.raises(ConfigError, match="cannot be a list key"):
        Comparator(Rules(ignore=("a[id=NaN]",)))


# -- results -----------------------------------------------------------------------------------


def test_difference_to_dict_keeps_null_and_missing_apart() -> None:
    missing = Difference("x", Kind.MISSING_ON_WS, MISSING, None).to_dict()
    assert missing == {"path": "x", "kind": "missing_on_ws", "ws": None, "rest": None,
                       "ws_missing": True, "rest_missing": False}  # fmt: skip
    json.dumps(missing)
    assert Difference("", Kind.CHANGED, 1, 2).to_dict()["ws_missing"] is False


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
