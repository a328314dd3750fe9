"""Fast, exact JSON parsing for frames, responses and recordings.

orjson parses a 7 KB positions payload about four times faster than :mod:`json`, but it turns an
integer beyond 64 bits into a float, which could hide a difference between two huge numbers. A
text holding a run of 19 or more digits is therefore parsed by :mod:`json`, which keeps every
integer exact (long decimal fractions take that path too; they are only slower).

:func:`loads` (WebSocket frames, REST responses) also falls back to :mod:`json` for what orjson
rejects but :mod:`json` accepts (``NaN``, ``Infinity``): a backend that sends them is compared,
not refused. :func:`loads_strict` (recordings, which are bad input when they are not JSON) accepts
only RFC 8259 JSON: no ``NaN``/``Infinity``, no number beyond the double range, and, given
``max_depth``, no nesting deeper than that (measured before parsing, so :mod:`json`'s recursion
never runs out). It parses with msgspec, which keeps integers of any size exact and refuses
numbers beyond the double range by itself, so it needs no digit scan; what msgspec refuses,
:mod:`json` decides (a lone surrogate escape such as ``"\\ud800"`` is JSON to both :mod:`json`
and RFC 8259), with the stricter hooks and its own error message.
"""

from __future__ import annotations

import json
from array import array
from itertools import accumulate
from typing import Any

import msgspec
import orjson

# Every digit becomes "0", so 19 zeros in a row mark 19 digits in a row. translate + find run at C
# speed: about 2 µs on 7 KB, where the regex \d{19} took 70 µs (it tries at every position).
_SCAN = bytes.maketrans(b"0123456789[", b"0000000000{")
_LONG_RUN = b"0" * 19
# The strict scan (loads_scanned) is one translate that keeps only what its checks read, mapped to
# a few classes, and drops the rest (digits, letters but "e", ".", "-", whitespace): ~1.8 KB of a
# 7 KB positions line are left, so count() and find() run over a quarter of the text.
#   [ {    -> "{"  their count bounds the nesting
#   , : ] } -> "," separators
#   "      -> '"'  ends a string, so that an "e" ending a key ("type":) is not followed by ","
#   e      -> "e"  "true" and "false" end in "e" and then, whitespace dropped, a separator (or the
#                  end of the text): a text without "e," cannot hold a bool (see loads_scanned)
# A number such as 1e5 keeps its "e" but never has a separator right after it ("e5," drops the
# digit, so it reads "e,": such text, like a string holding "e,", merely says "maybe").
_STRICT_SCAN = bytes.maketrans(b"[,:]}", b"{,,,,")
_STRICT_DROP = bytes(b for b in range(256) if b not in b'[{,:]}"e')
_STRICT_DECODE = msgspec.json.Decoder().decode

# For nesting: keep only quotes and brackets; "{[" count +1 and "]}" -1 as signed bytes.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_SIGNED = bytes.maketrans(b"{[]}", b"\x01\x01\xff\xff")


class NotJSON(ValueError):
    """Raised by :func:`loads_strict` for a text that is not one RFC 8259 JSON value."""


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raise :class:`ValueError` (``json.JSONDecodeError``) if it is not JSON."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_RUN not in raw.translate(_SCAN):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json decides, and gives the error message with line and column
    return json.loads(data)


def nesting(data: bytes) -> int:
    """Return how deep the arrays and objects of the JSON text ``data`` nest (0 for a scalar).

    Brackets inside strings do not count. Meant for text that may be hostile: it never recurses
    and runs at C speed but for one pass over the brackets.
    """
    if b"\\" in data:  # drop escapes first, so \" never reads as the end of a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    s = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in s:  # strings that hold brackets: drop them (what is left pairs up as quotes)
        import re

        s = re.sub(rb'"[^"]*"', b"", s)
    s = s.replace(b'"', b"")
    if not s:
        return 0
    return max(0, max(accumulate(array("b", s.translate(_SIGNED)))))


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotJSON(f"the number {text[:40]} is beyond the range of a double")
    return value


def loads_strict(data: bytes, *, max_depth: int | None = None) -> Any:
    """Parse one RFC 8259 JSON value exactly (integers of any size stay exact).

    Raises :class:`NotJSON` (a ValueError) for anything else: a syntax error, ``NaN`` or
    ``Infinity``, a number beyond the double range, or nesting deeper than ``max_depth``.
    """
    return loads_scanned(data, max_depth)[0]


def loads_scanned(data: bytes, max_depth: int | None = None) -> tuple[Any, bool]:
    """:func:`loads_strict`, and whether the text may hold a ``true`` or ``false``.

    False means it certainly holds none, so Python's ``==`` (which has ``True == 1``) tells its
    values apart exactly as JSON does. The answer comes from the scan the strict checks make
    anyway; True is only "maybe" (a string holding ``"e,"`` says True too).
    """
    scan = data.translate(_STRICT_SCAN, _STRICT_DROP)
    bools = b"e," in scan or scan.endswith(b"e")
    if max_depth is not None and scan.count(b"{") > max_depth:  # a cheap bound first
        depth = nesting(data)
        if depth > max_depth:
            raise NotJSON(f"nested {depth} deep, deeper than the limit of {max_depth}")
    try:
        return _STRICT_DECODE(data), bools
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass  # json decides (msgspec refuses some valid text, e.g. "\ud800"), with its message
    try:
        # Decoded here, strictly: json.loads(bytes) would guess UTF-16 or UTF-32 from zero bytes
        # and let UTF-8-encoded surrogates through ("surrogatepass"); RFC 8259 text is UTF-8.
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite), bools
    except NotJSON:
        raise
    except RecursionError:  # only without max_depth
        raise NotJSON("nested too deep") from None
    except UnicodeDecodeError as exc:
        raise NotJSON(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8 (UnicodeDecodeError)
        raise NotJSON(str(exc.args[0]) if exc.args else str(exc)) from None
