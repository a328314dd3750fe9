"""Properties of the compare engine over generated JSON bodies (hypothesis)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thorcut.compare.engine import Comparator, Difference, Kind, Rules
from thorcut.manifest import Tolerance

SETTINGS = settings(max_examples=200, deadline=None)

# Keys that render bare, so a test can write the expected path without the engine's quoting rules.
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
NEW_KEY = "new_key_x"  # longer than any generated name
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)


def json_values(keys: st.SearchStrategy[str] = NAMES, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


ROW_VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(NAMES, SCALARS, max_size=2)
# Text that needs quoting in a path: separators, quotes, whitespace, a lone *, JSON literals.
TRICKY = st.text(alphabet='.[]"\\ *=a1\t', max_size=3) | st.sampled_from(["true", "null", "3", "-1e5", "NaN"])
TEXT_KEYS = st.text(max_size=4) | TRICKY
SYMBOLS = TEXT_KEYS | st.integers(-5, 99)
TOL = Tolerance(abs=1e-9)
STAR_TOL = Comparator(Rules(tolerance=(("*", TOL),)))
POSITIONS = Comparator(Rules(keyed_lists=(("positions", "symbol"),), tolerance=(("*", TOL),)))


@st.composite
def keyed_bodies(draw: st.DrawFn, symbols: st.SearchStrategy[Any] = SYMBOLS) -> Any:
    """A positions-like body: ``positions`` keyed by unique ``symbol`` values, plus other keys."""
    keys = draw(st.lists(symbols, unique_by=lambda v: (type(v), v), max_size=6))
    rows = [
        {"symbol": s, "quantity": draw(st.integers(-500, 500)), **draw(st.dictionaries(NAMES, ROW_VALUES, max_size=3))}
        for s in keys
    ]
    for r, s in zip(rows, keys, strict=True):
        r["symbol"] = s  # a generated "symbol" key must not overwrite the key
    others = draw(st.dictionaries(NAMES.filter(lambda k: k != "positions"), json_values(max_leaves=8), max_size=3))
    return {**others, "positions": rows}


def reordered(value: Any, rnd: random.Random, keyed: bool = True) -> Any:
    """A deep copy with every object's keys and (if ``keyed``) every ``positions`` list shuffled."""
    if type(value) is dict:
        items = list(value.items())
        rnd.shuffle(items)
        out = {}
        for k, v in items:
            copied = reordered(v, rnd, keyed)
            if keyed and k == "positions" and type(copied) is list:
                rnd.shuffle(copied)
            out[k] = copied
        return out
    if type(value) is list:
        return [reordered(v, rnd, keyed) for v in value]
    return value


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


# -- one change, found at its path --------------------------------------------------------------


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


@SETTINGS
@given(
    ws=json_values(TEXT_KEYS),
    rest=json_values(TEXT_KEYS),
    body=keyed_bodies(),
    rnd=st.randoms(use_true_random=False),
)
def test_every_reported_path_works_as_an_ignore_rule(ws: Any, rest: Any, body: Any, rnd: random.Random) -> None:
    keyed = (("positions", "symbol"),)
    other = reordered(body, rnd)
    for row in other["positions"][:2]:
        row["quantity"] += 1
    pairs = [(ws, rest), (ws, perturbed(ws, rnd)), (body, other)]
    pairs.append(({"x": ws, "positions": body["positions"]}, {"x": perturbed(ws, rnd), **other}))
    for a, b in pairs:
        full = Comparator(Rules(keyed_lists=keyed)).explain(a, b)
        paths = tuple(d.path for d in full)
        assert Comparator(Rules(ignore=paths, keyed_lists=keyed)).equal(a, b), paths
        for p in paths[:4]:  # ignoring one path hides it and what lies under it, nothing else
            left = [d for d in full if not (p == "" or d.path == p or d.path.startswith((f"{p}.", f"{p}[")))]
            assert Comparator(Rules(ignore=(p,), keyed_lists=keyed)).explain(a, b) == left, p


# -- tolerance boundaries ----------------------------------------------------------------------


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


def perturbed(value: Any, rnd: random.Random) -> Any:
    """A copy with small changes here and there: some invisible to the rules, some not."""
    roll = rnd.random()
    if type(value) is dict:
        out = {k: perturbed(v, rnd) for k, v in value.items()}
        if out and roll < 0.1:
            del out[rnd.choice(list(out))]
        return out
    if type(value) is list:
        out_list = [perturbed(v, rnd) for v in value]
        if roll < 0.2:
            rnd.shuffle(out_list)
        return out_list
    if roll > 0.3:
        return value
    if type(value) is bool:
        return int(value)
    if type(value) is int:
        return rnd.choice([float(value), value + 1, True if value == 1 else value])
    if type(value) is float and value == value:
        return rnd.choice([value + 1e-12, value * (1 + 1e-3), value + 1, int(value) if abs(value) < 1e15 else value])
    return rnd.choice([value, None])


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
