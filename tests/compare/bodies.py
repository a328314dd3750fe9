"""Generated JSON bodies for the compare engine's property tests (hypothesis)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=200, deadline=None)

# Keys that render bare, so a test can write the expected path without the engine's quoting rules.
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
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
