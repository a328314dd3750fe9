"""Properties of the compare engine over generated JSON bodies (hypothesis)."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.compare.bodies import SETTINGS, json_values, keyed_bodies, perturbed, reordered
from thorcut.compare.engine import Comparator, Difference, Kind
from thorcut.compare.rules import Rules
from thorcut.manifest import Tolerance

NEW_KEY = "new_key_x"  # longer than any generated name
TOL = Tolerance(abs=1e-9)
STAR_TOL = Comparator(Rules(tolerance=(("*", TOL),)))
POSITIONS = Comparator(Rules(keyed_lists=(("positions", "symbol"),), tolerance=(("*", TOL),)))


def nodes(value: Any, segs: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path segments, value) in ``value``, the root first."""
    yield segs, value
    if type(value) is dict:
        for k, v in value.items():
            yield from nodes(v, (*segs, k))
    elif type(value) is list:
        for i, v in enumerate(value):
            yield from nodes(v, (*segs, i))


def render(segs: tuple[Any, ...]) -> str:
    path = ""
    for s in segs:
        path = f"{path}[{s}]" if type(s) is int else (f"{path}.{s}" if path else s)
    return path


def at(value: Any, segs: tuple[Any, ...]) -> Any:
    for s in segs:
        value = value[s]
    return value


def replaced(value: Any, segs: tuple[Any, ...], new: Any) -> Any:
    if not segs:
        return new
    out = copy.deepcopy(value)
    at(out, segs[:-1])[segs[-1]] = new
    return out


def changed_value(v: Any) -> Any:
    """A value of ``v``'s type family that differs from it beyond any tolerance used here."""
    if type(v) is bool:
        return not v
    if type(v) is str:
        return v + "x"
    if v == v and abs(v) < 1e15:
        return v + 1
    return 0


def other_type(v: Any) -> Any:
    """A value of another type family that Python's == may still call equal to ``v``."""
    t = type(v)
    return {bool: int, int: str, float: str, str: lambda _: 0, type(None): lambda _: 0,
            dict: lambda _: [], list: lambda _: {}}[t](v)  # fmt: skip


# -- equal to itself ---------------------------------------------------------------------------


@SETTINGS
@given(body=keyed_bodies(), rnd=st.randoms(use_true_random=False))
def test_a_body_equals_itself_and_a_reordered_copy(body: Any, rnd: random.Random) -> None:
    assert POSITIONS.equal(body, body)
    assert POSITIONS.explain(body, body) == []
    copied = reordered(body, rnd)
    assert POSITIONS.equal(body, copied)
    assert POSITIONS.explain(body, copied) == []
    assert POSITIONS.explain(copied, body) == []


@SETTINGS
@given(value=json_values(st.text(max_size=4)), rnd=st.randoms(use_true_random=False))
def test_any_json_value_equals_a_copy_with_keys_reordered(value: Any, rnd: random.Random) -> None:
    copied = reordered(value, rnd, keyed=False)
    assert STAR_TOL.equal(value, copied)
    assert STAR_TOL.compare(value, copied) == []


# -- one change, found at its path -------------------------------------------------------------


@SETTINGS
@given(value=json_values(), data=st.data())
def test_a_single_change_is_found_at_its_exact_path(value: Any, data: st.DataObject) -> None:
    candidates = list(nodes(value))
    segs, target = data.draw(st.sampled_from(candidates))
    ops = ["type"]
    if target is not None and type(target) not in (dict, list):
        ops.append("value")
    if segs and type(at(value, segs[:-1])) is dict:
        ops.append("delete")
    if type(target) is dict:
        ops.append("add")
    if type(target) is list:
        ops.append("append")
    op = data.draw(st.sampled_from(ops))
    path = render(segs)
    if op == "value":
        new = replaced(value, segs, changed_value(target))
        expected = (path, Kind.CHANGED)
    elif op == "type":
        new = replaced(value, segs, other_type(target))
        expected = (path, Kind.TYPE_CHANGED)
    elif op == "delete":
        new = copy.deepcopy(value)
        del at(new, segs[:-1])[segs[-1]]
        expected = (path, Kind.EXTRA_ON_WS)  # value is the WebSocket side below
    elif op == "add":
        new = replaced(value, segs, {**target, NEW_KEY: 1})
        expected = (render((*segs, NEW_KEY)), Kind.MISSING_ON_WS)
    else:
        new = replaced(value, segs, [*target, 0])
        expected = (path, Kind.LIST_LENGTH)
    out = STAR_TOL.compare(value, new)
    assert [(d.path, d.kind) for d in out] == [expected]
    assert not STAR_TOL.equal(value, new)
    swapped = STAR_TOL.compare(new, value)  # the same change seen from the other side
    flip = {Kind.EXTRA_ON_WS: Kind.MISSING_ON_WS, Kind.MISSING_ON_WS: Kind.EXTRA_ON_WS}
    assert [(d.path, d.kind) for d in swapped] == [(expected[0], flip.get(expected[1], expected[1]))]
    if op == "append":
        assert (out[0].ws, out[0].rest) == (len(target), len(target) + 1)


@SETTINGS
@given(
    body=keyed_bodies(st.from_regex(r"[A-Z]{1,4}", fullmatch=True) | st.integers(0, 99)),
    data=st.data(),
    rnd=st.randoms(use_true_random=False),
)
def test_a_single_change_in_a_keyed_list_is_found_by_key(body: Any, data: st.DataObject, rnd: random.Random) -> None:
    rows = body["positions"]
    ws = copy.deepcopy(body)
    op = data.draw(st.sampled_from(["quantity", "drop", "add"] if rows else ["add"]))
    if op == "add":
        ws["positions"].append({"symbol": "NEWSYM", "quantity": 1})
        expected = ("positions[symbol=NEWSYM]", Kind.EXTRA_ON_WS)
    else:
        i = data.draw(st.integers(0, len(rows) - 1))
        symbol = rows[i]["symbol"]
        if op == "quantity":
            ws["positions"][i]["quantity"] += 1
            expected = (f"positions[symbol={symbol}].quantity", Kind.CHANGED)
        else:
            del ws["positions"][i]
            expected = (f"positions[symbol={symbol}]", Kind.MISSING_ON_WS)
    rest = reordered(body, rnd)
    assert [(d.path, d.kind) for d in POSITIONS.compare(ws, rest)] == [expected]


# -- the fast path agrees with the explanation -------------------------------------------------

SMALL_KEYS = st.sampled_from(["a", "b", "k", "x"])
RULE_SETS = [
    Rules(),
    Rules(tolerance=(("*", Tolerance(abs=1e-9)),)),
    Rules(
        ignore=("*.b", "a[*].x"),
        tolerance=(("a", Tolerance(rel=0.1)), ("*", Tolerance(abs=1e-6)), ("x[*]", Tolerance())),
        keyed_lists=(("*", "k"),),
    ),
    Rules(keyed_lists=(("a", "k"), ("x[*]", "a")), ignore=("a[k=1]",)),
]


@SETTINGS
@given(
    a=json_values(SMALL_KEYS),
    b=json_values(SMALL_KEYS),
    rnd=st.randoms(use_true_random=False),
    rules=st.sampled_from(RULE_SETS),
)
def test_equal_is_true_exactly_when_explain_is_empty(a: Any, b: Any, rnd: random.Random, rules: Rules) -> None:
    c = Comparator(rules)
    for ws, rest in ((a, b), (a, perturbed(a, rnd)), (perturbed(a, rnd), a)):
        full = c.explain(ws, rest)
        assert c.equal(ws, rest) is (full == [])
        assert c.compare(ws, rest) == full
        assert c.explain(ws, rest, limit=2) == full[:2]
        assert len({d.path for d in full}) == len(full)  # one difference per path


# -- differences compare by the value rules -----------------------------------------------------


def rebuilt(value: Any) -> Any:
    """An equal copy in which every float is a new object (pickle keeps no float by identity), so
    no NaN in it is the same object as one in ``value``."""
    return pickle.loads(pickle.dumps(value))


@SETTINGS
@given(a=json_values(SMALL_KEYS), b=json_values(SMALL_KEYS), rules=st.sampled_from(RULE_SETS))
def test_the_differences_of_copies_equal_the_differences_of_the_originals(a: Any, b: Any, rules: Rules) -> None:
    c = Comparator(rules)
    full = c.explain(a, b)
    again = c.explain(rebuilt(a), rebuilt(b))
    assert again == full  # NaN included, whichever object holds it
    assert [hash(d) for d in again] == [hash(d) for d in full]
    plain = Comparator(Rules())
    for d, e in zip(full, again, strict=True):
        assert plain.equal(d.ws, e.ws)
        assert plain.equal(d.rest, e.rest)
        swapped = Difference(d.path, d.kind, d.rest, d.ws)
        assert (swapped == d) is plain.equal(d.ws, d.rest)  # equal only when the sides are
