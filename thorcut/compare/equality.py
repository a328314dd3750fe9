"""The value rules: when two JSON values are the same, what a keyed list files an item under, and
the identity test behind :meth:`~thorcut.compare.engine.Comparator.equal`'s shortcut.

Pure. The rules themselves (``1 == 1.0``, ``true != 1``, NaN equals NaN, tolerance) are set out
in docs/compare.md, "Values" and "Speed".
"""

from __future__ import annotations

import io
import pickle
from fractions import Fraction
from typing import Any

from thorcut.manifest import Tolerance

#: The number types; bool is not one (``type()`` is exact, and ``type(True)`` is bool).
NUMBER = (int, float)
_FAMILY: dict[type, str] = {dict: "object", list: "array", str: "string", int: "number", float: "number",
                            bool: "boolean", type(None): "null"}  # fmt: skip
_INF = float("inf")


def family(value: Any) -> object:
    """Return the JSON type family of ``value`` (``"number"`` for int and float), or its type."""
    return _FAMILY.get(type(value), type(value))


def close(a: Any, b: Any, tol: Tolerance | None) -> bool:
    """Whether two unequal (``a != b``) int/float numbers are equal under the value rules."""
    if a != a or b != b:  # NaN equals NaN, and nothing else
        return bool(a != a and b != b)
    if tol is None or (not tol.abs and not tol.rel):
        return False
    try:
        if type(a) is int and type(b) is int:
            diff: Any = abs(a - b)
        else:
            fa, fb = float(a), float(b)
            if fa in (_INF, -_INF) or fb in (_INF, -_INF):
                return False
            # An int a float cannot hold exactly would be rounded by the subtraction.
            diff = abs(fa - fb) if fa == a and fb == b else abs(Fraction(a) - Fraction(b))
        bound = max(tol.abs, tol.rel * max(abs(a), abs(b))) if tol.rel else tol.abs
    except OverflowError:  # beyond float range: exact comparison only
        return False
    return bool(diff <= bound)


def same(a: Any, b: Any) -> bool:
    """Equality of two leaves of one type; beyond JSON types, identical also counts (a tuple
    holding NaN is not ``==`` to its copy), so the walk agrees with the identity shortcut."""
    return a is b or bool(a == b) or (type(a) not in _FAMILY and identical(a, b))


def typed_key(value: Any) -> Any:
    """Return the key a keyed list files ``value`` under, or None if it cannot be a key."""
    t = type(value)
    if t is str:
        return value
    if t is int or t is float:
        return None if value != value else (0, value)  # 1 and 1.0 are one key; NaN is none
    if t is bool:
        return (1, value)
    if value is None:
        return (2, 0)
    return None


def key_order(tk: Any) -> tuple[Any, ...]:
    """Sort key of a :func:`typed_key`: numbers, then booleans, null, strings."""
    return (3, tk) if type(tk) is str else tk


def identical(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same in type and value (False when it cannot tell).

    Equal pickles unpickle to one value, and pickle tells True, 1 and 1.0 apart (``==`` does not).
    """
    try:
        return _pickled(a) == _pickled(b)
    except (pickle.PicklingError, TypeError, RecursionError):  # not plain data, or too deep
        return False


class _PlainPickler(pickle.Pickler):
    """Pickles plain data only: every object that would need a reducer (a class instance, a
    subclass of dict or str, an enum) is refused, so equal bytes never hide a custom ``__eq__``."""

    def reducer_override(self, obj: Any) -> Any:
        raise TypeError(f"{type(obj).__name__} is not plain data")


def _pickled(value: Any) -> bytes:
    out = io.BytesIO()
    _PlainPickler(out, pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()
