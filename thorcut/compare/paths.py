"""The path language of the compare engine: writing the path of a difference
(``positions[symbol=ES].quantity``) and parsing a rule pattern, which is such a path plus the
wildcards ``[*]`` and ``*``.

Pure. The syntax is set out in docs/compare.md, "Paths" and "Rule patterns". Not the manifest's
dotted locators (:mod:`thorcut.compare.locators`), which only read values; that page says how the
two differ.
"""

from __future__ import annotations

import json
import re
from typing import Any

from thorcut.compare.equality import typed_key
from thorcut.errors import ConfigError

_BARE_KEY = re.compile(r'[^.\[\]"\\\s]+')
_BARE_FIELD = re.compile(r'[^.\[\]"\\\s=]+')
_BARE_VALUE = re.compile(r'[^\[\]"\\\s]+')
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SEGMENT = re.compile(
    rf"""\[(?:(?P<any>\*)|(?P<index>[0-9]+)|(?P<qkey>{_QUOTED})
          |(?P<field>{_BARE_FIELD.pattern}|{_QUOTED})=(?P<value>{_QUOTED}|{_BARE_VALUE.pattern}))\]
       |(?P<dot>\.)?(?P<bare>{_BARE_KEY.pattern})""",
    re.VERBOSE,
)

# -- writing a difference's path ---------------------------------------------------------------


def child_path(path: str, seg: tuple[Any, ...]) -> str:
    """Return the path of a child of ``path``; ``seg`` names it: (0, key), (1, index) or
    (2, field, key value) for an item of a keyed list."""
    if seg[0] == 0:
        return key_path(path, seg[1])
    if seg[0] == 1:
        return f"{path}[{seg[1]}]"
    return item_path(path, seg[1], seg[2])


def key_path(path: str, key: Any) -> str:
    """Return the path of object member ``key`` under ``path`` (dotted, or quoted in brackets)."""
    if type(key) is str and key != "*" and _BARE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(str(key), ensure_ascii=False)}]"


def item_path(path: str, field: str, value: Any) -> str:
    """Return the path of the item of the keyed list at ``path`` whose ``field`` is ``value``."""
    f = field if _BARE_FIELD.fullmatch(field) else json.dumps(field, ensure_ascii=False)
    if type(value) is str and _BARE_VALUE.fullmatch(value) and not _reads_as_literal(value):
        return f"{path}[{f}={value}]"
    return f"{path}[{f}={json.dumps(value, ensure_ascii=False)}]"


def _reads_as_literal(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- parsing a rule pattern --------------------------------------------------------------------

#: A parsed pattern segment: ("key", k) ("anykey",) ("index", i) ("anyitem",) or
#: ("keyed", field, typed key value) (:func:`~thorcut.compare.equality.typed_key`).
Segment = tuple[Any, ...]


def parse_pattern(pattern: str, what: str) -> list[Segment]:
    """Return the segments of ``pattern``; raise :class:`ConfigError` if it is malformed.

    ``what`` names the rule (``ignore``, ``tolerance``, ``keyed_lists``) in the error. The lone
    ``*`` (every path) is the caller's to handle: here it reads as one wildcard key.
    """
    segs: list[Segment] = []
    pos = 0
    while pos < len(pattern):
        m = _SEGMENT.match(pattern, pos)
        if m is None or (m["bare"] is not None and bool(m["dot"]) != (pos > 0)):
            raise ConfigError(
                f"{what} pattern {pattern!r} is malformed at character {pos + 1}; write dotted keys with "
                '[*] for any list item and * for any key, e.g. positions[*].updated_at or meta["a.b"]'
            )
        if m["bare"] is not None:
            segs.append(("anykey",) if m["bare"] == "*" else ("key", m["bare"]))
        elif m["any"]:
            segs.append(("anyitem",))
        elif m["index"] is not None:
            segs.append(("index", int(m["index"])))
        elif m["qkey"] is not None:
            segs.append(("key", json.loads(m["qkey"])))
        else:
            field = json.loads(m["field"]) if m["field"].startswith('"') else m["field"]
            raw = m["value"]
            value = json.loads(raw) if raw.startswith('"') or _reads_as_literal(raw) else raw
            tk = typed_key(value)
            if tk is None:
                raise ConfigError(f"{what} pattern {pattern!r}: {raw} cannot be a list key")
            segs.append(("keyed", field, tk))
        pos = m.end()
    return segs
