"""``thorcut.wire.jsonfast``: :func:`~thorcut.wire.jsonfast.loads` keeps big integers exact, and the
recording reader's strict JSON (:func:`thorcut.wire.jsonfast.loads_strict`) agrees with :mod:`json`.

The reader parses with msgspec for speed and hands what msgspec refuses to :mod:`json`. Whatever
the route, the answer must be the one RFC 8259 gives, which here is :mod:`json` with NaN/Infinity
and numbers beyond the double range refused: the same value (integers of any size exact, the same
float bits) for JSON text, a :class:`NotJSON` for anything else. Texts come from three sources:
values laid out by ``json.dumps``, JSON-looking strings of the characters that matter to a parser,
and arbitrary bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thorcut.wire.jsonfast import NotJSON, loads, loads_strict

PROPS = settings(max_examples=400, deadline=None)


def _reference(data: bytes) -> tuple[str, Any]:
    """What RFC 8259 says of ``data``: ("value", v) or ("error", None)."""

    def no_constant(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError(text)
        return value

    try:  # RFC 8259 text is UTF-8 (json.loads(bytes) would also guess UTF-16 and pass surrogates)
        return "value", json.loads(data.decode("utf-8"), parse_constant=no_constant, parse_float=finite)
    except (ValueError, RecursionError):
        return "error", None


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0 nor True; -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return bool(a.hex() == b.hex())
    return bool(a == b)


def _agrees(data: bytes) -> None:
    kind, expected = _reference(data)
    if kind == "error":
        with pytest.raises(NotJSON):
            loads_strict(data)
        return
    assert _same(loads_strict(data), expected), data[:200]


NUMBERS = (
    st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
    | st.sampled_from([5e-324, 1.7976931348623157e308])
)
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=12)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@PROPS
@given(value=VALUES, ascii_only=st.booleans(), spaced=st.booleans())
def test_json_text_reads_as_the_same_value(value: Any, ascii_only: bool, spaced: bool) -> None:
    seps = (", ", ": ") if spaced else (",", ":")
    data = json.dumps(value, ensure_ascii=ascii_only, separators=seps).encode("utf-8", "surrogatepass")
    _agrees(data)


JSONISH = st.text(alphabet='{}[]":,0123456789.eE+-truefalsnNaIfiy \\u\t\n\u00e9d8\x01', max_size=60)


@PROPS
@given(text=JSONISH)
def test_json_looking_text_reads_or_is_refused_as_json_would(text: str) -> None:
    _agrees(text.encode("utf-8", "surrogatepass"))


@PROPS
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_read_or_are_refused_as_json_would(data: bytes) -> None:
    _agrees(data)


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',  # a lone surrogate escape: JSON by the RFC's grammar; msgspec refuses it, json reads it
        '"\\udc00\\ud800"',
        '"\\ud83d\\ude00"',
        "1" * 4300,  # the longest integer Python converts by default
        "1" * 4301,  # one digit more: refused, not rounded
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "1.7976931348623157e308",
        "1.7976931348623159e308",  # rounds to infinity: beyond the double range
        "1e400",
        "-1e400",
        "1e-400",  # underflows to 0.0: a double, so JSON
        "NaN",
        "-Infinity",
        "\ufeff1",  # a byte-order mark: RFC 8259 lets a parser refuse it, and a line of a recording has none
        "[1,]",
        "01",
        "-0",
        '{"a": 1, "a": 2}',  # duplicate names: the last one wins, as json says
    ],
)
def test_edge_texts(text: str) -> None:
    _agrees(text.encode("utf-8", "surrogatepass"))


def test_text_that_is_not_utf8_is_refused() -> None:
    # invalid bytes, a surrogate encoded in UTF-8, a cut sequence, UTF-16 and UTF-32 (which
    # json.loads(bytes) would otherwise detect and read)
    for data in (b'"\xff"', b'"\xed\xa0\x80"', b'["\xc3"]', "[1]".encode("utf-16-le"), "[1]".encode("utf-32-be")):
        with pytest.raises(NotJSON):
            loads_strict(data)


def test_jsonfast_keeps_big_integers_exact_and_reports_errors() -> None:
    assert loads("123456789012345678901234567890") == 123456789012345678901234567890
    assert loads(b'{"a": 18446744073709551616}')["a"] == 2**64
    assert loads(b'{"a": 1.5, "b": true}') == {"a": 1.5, "b": True}
    assert loads("[1.0]")[0] == 1.0
    assert isinstance(loads("[1]")[0], int)
    with pytest.raises(ValueError, match="line 1 column 2"):
        loads("{bad")
