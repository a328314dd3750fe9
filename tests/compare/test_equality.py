"""The value rules: type families, numbers across int and float, NaN and infinities, bools, the
tolerance formula, values beyond JSON (docs/compare.md, "Values")."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.compare.bodies import SETTINGS
from tests.compare.helpers import INF, NAN, PLAIN, explain, one, rules
from thorcut.compare.engine import MISSING, Comparator, Difference, Kind
from thorcut.compare.equality import identical, key_order, typed_key
from thorcut.compare.rules import Rules
from thorcut.manifest import Tolerance

# -- types -------------------------------------------------------------------------------------


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


def test_booleans_compare_as_booleans() -> None:
    assert one(PLAIN, {"open": True}, {"open": False}) == ("open", Kind.CHANGED, True, False)


def test_strings_compare_exactly() -> None:
    loose = rules(tolerance=(("*", Tolerance(abs=1.0)),))
    assert one(loose, {"s": "ES"}, {"s": "es"}) == ("s", Kind.CHANGED, "ES", "es")


def test_identical_bodies_holding_a_bool_where_the_other_has_a_number_are_not_equal() -> None:
    # Python's == says {"x": [True]} == {"x": [1]}; the identity shortcut must not.
    assert one(PLAIN, {"x": [True], "y": "s"}, {"x": [1], "y": "s"}) == ("x[0]", Kind.TYPE_CHANGED, True, 1)
    assert not PLAIN.equal([True], [1])
    assert not PLAIN.equal({"x": {"y": 1}}, {"x": {"y": True}})


def test_values_beyond_json_compare_by_type_and_value() -> None:
    u = uuid.UUID(int=1)
    assert one(PLAIN, {"id": u}, {"id": str(u)})[:2] == ("id", Kind.TYPE_CHANGED)
    assert explain(PLAIN, {"t": (NAN,)}, {"t": (float("nan"),)}) == []
    assert one(PLAIN, {"t": (1,)}, {"t": (2,)})[:2] == ("t", Kind.CHANGED)


# -- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ws", "rest"), [(1, 1.0), (10.0, 10), (-0.0, 0), (0.0, -0.0), (2**53, float(2**53))])
def test_numbers_compare_by_value_across_int_and_float(ws: Any, rest: Any) -> None:
    assert explain(PLAIN, {"q": [ws]}, {"q": [rest]}) == []


def test_int_beyond_float_precision_is_not_rounded_to_equal() -> None:
    assert one(PLAIN, {"q": 2**53 + 1}, {"q": float(2**53)}) == ("q", Kind.CHANGED, 2**53 + 1, float(2**53))
    tol = rules(tolerance=(("*", Tolerance(abs=0.5)),))
    assert explain(tol, {"q": 2**53 + 1}, {"q": float(2**53)}) != []  # |a-b| is 1, not the 0.0 of float maths


def test_nan_equals_nan_and_infinities_equal_only_themselves() -> None:
    assert explain(PLAIN, {"x": NAN}, {"x": float("nan")}) == []
    assert explain(PLAIN, {"x": INF}, {"x": float("inf")}) == []
    assert one(PLAIN, {"x": NAN}, {"x": 1.0})[:2] == ("x", Kind.CHANGED)
    assert one(PLAIN, {"x": INF}, {"x": -INF})[:2] == ("x", Kind.CHANGED)
    loose = rules(tolerance=(("*", Tolerance(abs=1e300, rel=1.0)),))
    assert one(loose, {"x": INF}, {"x": 1e308})[:2] == ("x", Kind.CHANGED)


# -- the tolerance formula ---------------------------------------------------------------------


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


@SETTINGS
@given(k=st.integers(-(2**30), 2**30), t=st.integers(0, 2**20), sign=st.sampled_from([1, -1]))
def test_absolute_tolerance_is_honoured_at_its_bound(k: int, t: int, sign: int) -> None:
    # Multiples of 1/1024 this small are exact floats, so a, b and |a-b| carry no rounding.
    a, tol = k / 1024, t / 1024
    c = Comparator(Rules(tolerance=(("v", Tolerance(abs=tol)),)))
    at_bound, beyond = a + sign * tol, a + sign * (t + 1) / 1024
    assert c.compare({"v": a}, {"v": at_bound}) == []
    assert c.compare({"v": at_bound}, {"v": a}) == []
    assert c.compare({"v": a}, {"v": beyond}) == [Difference("v", Kind.CHANGED, a, beyond)]


@SETTINGS
@given(m=st.integers(1, 2**30), r=st.integers(1, 1023), sign=st.sampled_from([1, -1]), as_int=st.booleans())
def test_relative_tolerance_is_honoured_at_its_bound(m: int, r: int, sign: int, as_int: bool) -> None:
    rel = r / 1024
    a: float = sign * m if as_int else float(sign * m)
    at_bound = a - a * rel  # |a-b| == rel * |a|, and |a| is the larger magnitude
    beyond = at_bound - sign / 1024
    c = Comparator(Rules(tolerance=(("*", Tolerance(rel=rel)),)))
    assert c.compare([a], [at_bound]) == []
    assert c.compare([at_bound], [a]) == []
    assert c.compare([a], [beyond]) == [Difference("[0]", Kind.CHANGED, a, beyond)]


# -- keys of keyed lists and the identity test -------------------------------------------------


def test_list_keys_are_one_for_one_and_one_point_zero_and_apart_for_bools_null_and_strings() -> None:
    assert typed_key(1) == typed_key(1.0)
    assert len({typed_key(v) for v in (1, 0, True, False, None, "1")}) == 6
    assert [typed_key(v) for v in (NAN, [1], {"a": 1})] == [None, None, None]  # cannot be keys


def test_list_keys_sort_numbers_then_booleans_null_strings() -> None:
    keys = sorted((typed_key(v) for v in ("a", None, True, 10, "B", 2.5)), key=key_order)
    assert keys == [typed_key(v) for v in (2.5, 10, True, None, "B", "a")]


def test_identical_tells_types_apart_and_refuses_what_is_not_plain_data() -> None:
    assert identical({"a": [1, "x", None]}, {"a": [1, "x", None]})
    assert not identical(1, 1.0)
    assert not identical(True, 1)
    assert not identical(uuid.UUID(int=1), uuid.UUID(int=1))  # a class instance: cannot tell
