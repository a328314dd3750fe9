"""The compare engine: are a WebSocket body and a REST body equal under a feature's noise rules?

Pure (no I/O). :class:`Comparator` takes two parsed JSON values (dict, list, str, int, float,
bool, None) and :class:`Rules`, and answers with :meth:`~Comparator.equal` (fast, a bool) or
:meth:`~Comparator.explain` (every :class:`Difference`, in path order).

**Values.** Numbers compare by value across int and float (``1 == 1.0``, ``-0.0 == 0.0``), never
across types: ``"1" != 1``, ``true != 1``, ``false != 0``, ``null != 0`` (all
:attr:`Kind.TYPE_CHANGED`), and a key holding ``null`` is not a missing key
(:attr:`Kind.MISSING_ON_WS` / :attr:`Kind.EXTRA_ON_WS`). bool is not a number. NaN equals NaN;
an infinity equals only itself. Object key order never matters; list order does, except in keyed
lists.

**Paths** are relative to the compared body: ``""`` is the root, object keys are dotted
(``equity``, ``greeks.delta``), list items are ``[i]`` (``bars[3].close``) and items of a keyed
list are ``[field=value]`` (``positions[symbol=ES].quantity``). A key that is empty, is ``*``, or
holds ``.``, ``[``, ``]``, ``"``, ``\\`` or whitespace is written as a JSON string in brackets
(``meta["a.b"].c``). A key value is written bare when it is a plain string (``[symbol=ES]``) and
as JSON otherwise: numbers, ``true``, ``null``, and strings that would read as one of those or
hold brackets, quotes or whitespace (``[id=3]`` is the number, ``[id="3"]`` the string).

**Rule patterns** use the same syntax, plus ``[*]`` for any list item (indexed or keyed), ``*``
as a whole segment for any one object key, and ``*`` alone for every path (a default). A path
copied from a report is therefore a valid pattern. Malformed patterns raise
:class:`~thorcut.errors.ConfigError`.

* ``ignore``: the matching subtree is dropped on both sides (a missing ignored key is no
  difference). Ignoring the items of a plain list (``bars[*]``) hides their contents, not a change
  in the list's length; ignore the list itself for that.
* ``tolerance``: two numbers at a matching path are equal when
  ``|a-b| <= max(abs, rel*max(|a|,|b|))`` (``|a-b|`` in floating point; integers too large for a
  float compare exactly). Patterns name number paths, not subtrees (``greeks.*`` covers the
  numbers directly under ``greeks``). The most specific matching pattern wins: segment by segment
  from the left, a literal beats a wildcard (so an exact path beats any wildcard, ``a.*`` beats
  ``*.b``) and ``*`` alone comes last; among equal patterns the first listed wins. An explicit
  ``Tolerance(0, 0)`` makes a path exact under a looser default.
* ``keyed_lists``: the list at a matching path is compared as a set of objects keyed by the field
  (same precedence as tolerance). A key absent on one side is one MISSING_ON_WS/EXTRA_ON_WS at
  ``list[field=value]`` holding the whole item (the value written is REST's when both sides have
  the item). Key values match by the value rules above (``1`` and ``1.0`` are the same key,
  ``"1"`` is not). If, on either side, an item is not an
  object, lacks the field, has a NaN, list or object as its key, or shares its key with another
  item, the whole list falls back to positional comparison (paths ``list[i]``); rules written with
  ``[field=value]`` then do not match its items, rules with ``[*]`` still do. The key field is
  used for matching even when an ignore rule hides it.

**Plain lists** of different lengths give one :attr:`Kind.LIST_LENGTH` difference at the list's
path (``ws``/``rest`` hold the two lengths) *and* the differences of the items both sides have.

**Order.** :meth:`Comparator.explain` lists differences in path order: object keys sorted, list
items by index (``bars[2]`` before ``bars[10]``), keyed items by key value (numbers, then
booleans, null, strings), a list's LIST_LENGTH before its items. ``limit`` keeps the first ones
in that order and stops the walk early.

**Speed.** :meth:`Comparator.equal` first tests whether the two values are identical in type and
value (equal :mod:`pickle` bytes: ``True``, ``1`` and ``1.0`` all differ, where ``==`` blurs
them); identical values are equal under any rules. For an object body each member is tested on
its own, so a noisy ignored ``as_of`` does not cost the shortcut for ``positions``. What is not
identical goes through the normalising walk. Pickle rather than :mod:`marshal` (as fast here):
marshal writes an object that is referenced elsewhere as a back-reference, so two identical
bodies could miss the shortcut for a reason no caller can see. Values of other than JSON types
are equal when of one type and ``==`` or identical. DeepDiff is the test and benchmark baseline
only; it is not imported.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final

from thorcut.errors import ConfigError
from thorcut.manifest import FeatureSpec, Tolerance


class _Missing:
    """The type of :data:`MISSING`; one instance, kept by copy and pickle."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


#: Stands for "no such key" on one side of a :class:`Difference`; distinct from None (JSON null).
MISSING: Final = _Missing()


class Kind(StrEnum):
    """How one path differs."""

    CHANGED = "changed"  # same type family, different value (beyond tolerance)
    MISSING_ON_WS = "missing_on_ws"  # present in REST, absent on WebSocket (ws is MISSING)
    EXTRA_ON_WS = "extra_on_ws"  # present on WebSocket, absent in REST (rest is MISSING)
    TYPE_CHANGED = "type_changed"  # "1" vs 1, true vs 1, null vs 0, object vs list
    LIST_LENGTH = "list_length"  # plain list lengths differ; ws/rest hold the two lengths


@dataclass(frozen=True)
class Difference:
    """One differing path, with the value on each side (:data:`MISSING` where absent)."""

    path: str
    kind: Kind
    ws: Any
    rest: Any

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"path", "kind", "ws", "rest", "ws_missing", "rest_missing"}``, JSON-able.

        A missing side is ``None`` with its ``*_missing`` flag true, so ``null`` and "absent" stay
        apart; both flags are always present.
        """
        return {
            "path": self.path,
            "kind": self.kind.value,
            "ws": None if self.ws is MISSING else self.ws,
            "rest": None if self.rest is MISSING else self.rest,
            "ws_missing": self.ws is MISSING,
            "rest_missing": self.rest is MISSING,
        }


@dataclass(frozen=True)
class Rules:
    """A feature's noise rules (see the module docstring for the pattern syntax)."""

    ignore: tuple[str, ...] = ()
    tolerance: tuple[tuple[str, Tolerance], ...] = ()
    keyed_lists: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> Rules:
        """Return the rules of a manifest feature."""
        return cls(ignore=spec.ignore, tolerance=spec.tolerance, keyed_lists=spec.keyed_lists)


# -- values ------------------------------------------------------------------------------------

_NUMBER = (int, float)
_FAMILY: dict[type, str] = {dict: "object", list: "array", str: "string", int: "number", float: "number",
                            bool: "boolean", type(None): "null"}  # fmt: skip


def _family(value: Any) -> object:
    return _FAMILY.get(type(value), type(value))


def _close(a: Any, b: Any, tol: Tolerance | None) -> bool:
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


_INF = float("inf")


def _same(a: Any, b: Any) -> bool:
    """Equality of two leaves of one type; beyond JSON types, identical also counts (a tuple
    holding NaN is not ``==`` to its copy), so the walk agrees with the identity shortcut."""
    return a is b or bool(a == b) or (type(a) not in _FAMILY and _identical(a, b))


def _typed_key(value: Any) -> Any:
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


def _key_order(tk: Any) -> tuple[Any, ...]:
    return (3, tk) if type(tk) is str else tk


# -- paths -------------------------------------------------------------------------------------

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


def _reads_as_literal(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _key_path(path: str, key: Any) -> str:
    if type(key) is str and key != "*" and _BARE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(str(key), ensure_ascii=False)}]"


def _sub(path: str, seg: tuple[Any, ...]) -> str:
    if seg[0] == 0:
        return _key_path(path, seg[1])
    if seg[0] == 1:
        return f"{path}[{seg[1]}]"
    return _item_path(path, seg[1], seg[2])


def _item_path(path: str, field: str, value: Any) -> str:
    f = field if _BARE_FIELD.fullmatch(field) else json.dumps(field, ensure_ascii=False)
    if type(value) is str and _BARE_VALUE.fullmatch(value) and not _reads_as_literal(value):
        return f"{path}[{f}={value}]"
    return f"{path}[{f}={json.dumps(value, ensure_ascii=False)}]"


# A parsed pattern segment: ("key", k) ("anykey",) ("index", i) ("anyitem",) ("keyed", field, tk)
_Seg = tuple[Any, ...]


def _parse(pattern: str, what: str) -> list[_Seg]:
    """Return the segments of ``pattern``; raise :class:`ConfigError` if it is malformed."""
    segs: list[_Seg] = []
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
            tk = _typed_key(value)
            if tk is None:
                raise ConfigError(f"{what} pattern {pattern!r}: {raw} cannot be a list key")
            segs.append(("keyed", field, tk))
        pos = m.end()
    return segs


# -- compiled rules ----------------------------------------------------------------------------


class _Node:
    """A node of the pattern trie; ``tol``/``keyed`` carry (rank, value) to pick the most specific."""

    __slots__ = ("any_item", "any_key", "ignore", "index", "keyed", "keyed_items", "keys", "tol")

    def __init__(self) -> None:
        self.keys: dict[str, _Node] = {}
        self.any_key: _Node | None = None
        self.index: dict[int, _Node] = {}
        self.keyed_items: dict[tuple[str, Any], _Node] = {}
        self.any_item: _Node | None = None
        self.ignore = False
        self.tol: tuple[tuple[Any, ...], Tolerance] | None = None
        self.keyed: tuple[tuple[Any, ...], str] | None = None

    def insert(self, segs: list[_Seg]) -> _Node:
        node = self
        for seg in segs:
            kind = seg[0]
            if kind == "key":
                node = node.keys.setdefault(seg[1], _Node())
            elif kind == "index":
                node = node.index.setdefault(seg[1], _Node())
            elif kind == "keyed":
                node = node.keyed_items.setdefault((seg[1], seg[2]), _Node())
            elif kind == "anykey":
                node.any_key = node = node.any_key or _Node()
            else:
                node.any_item = node = node.any_item or _Node()
        return node


_CACHE_CAP = 4096  # transitions remembered per state; keys under a wildcard may be unbounded


class _State:
    """The trie nodes matching one path, with what they decide there and cached transitions."""

    __slots__ = ("_index", "_items", "_keys", "ignore", "items_free", "keyed", "nodes", "owner", "tol")

    def __init__(self, owner: Comparator, nodes: tuple[_Node, ...]) -> None:
        self.owner = owner
        self.nodes = nodes
        self.ignore = any(n.ignore for n in nodes)
        tols = [n.tol for n in nodes if n.tol is not None]
        self.tol = max(tols, key=lambda t: t[0])[1] if tols else owner._tol
        keyeds = [n.keyed for n in nodes if n.keyed is not None]
        self.keyed = max(keyeds, key=lambda k: k[0])[1] if keyeds else owner._keyed
        self.items_free = not any(n.any_item or n.index or n.keyed_items for n in nodes)  # no rule below items
        self._keys: dict[str, _State | None] = {}
        self._index: dict[int, _State | None] = {}
        self._items: dict[tuple[str, Any], _State | None] = {}

    def key(self, k: str) -> _State | None:
        st = self._keys.get(k, self)
        if st is self:
            any_key = [n.any_key for n in self.nodes if n.any_key]
            st = self._remember(self._keys, k, [n.keys[k] for n in self.nodes if k in n.keys] + any_key)
        return st

    def index(self, i: int) -> _State | None:
        st = self._index.get(i, self)
        if st is self:
            any_item = [n.any_item for n in self.nodes if n.any_item]
            st = self._remember(self._index, i, [n.index[i] for n in self.nodes if i in n.index] + any_item)
        return st

    def item(self, field: str, tk: Any) -> _State | None:
        fk = (field, tk)
        st = self._items.get(fk, self)
        if st is self:
            any_item = [n.any_item for n in self.nodes if n.any_item]
            st = self._remember(
                self._items, fk, [n.keyed_items[fk] for n in self.nodes if fk in n.keyed_items] + any_item
            )
        return st

    def _remember(self, cache: dict[Any, _State | None], key: Any, nodes: list[_Node]) -> _State | None:
        st = self.owner._state(nodes)
        if len(cache) < _CACHE_CAP:
            cache[key] = st
        return st


class _Enough(Exception):
    """Raised inside :meth:`Comparator.explain` once ``limit`` differences are found."""


class _Out:
    __slots__ = ("diffs", "limit")

    def __init__(self, limit: int | None) -> None:
        self.diffs: list[Difference] = []
        self.limit = limit

    def add(self, path: str, kind: Kind, ws: Any, rest: Any) -> None:
        self.diffs.append(Difference(path, kind, ws, rest))
        if self.limit is not None and len(self.diffs) >= self.limit:
            raise _Enough


def _keyed_map(items: list[Any], field: str) -> dict[Any, Any] | None:
    """Return ``{typed key: item}``, or None if ``items`` cannot be keyed by ``field``."""
    out: dict[Any, Any] = {}
    for item in items:
        if type(item) is not dict:
            return None
        tk = _typed_key(item.get(field, MISSING))
        if tk is None or tk in out:
            return None
        out[tk] = item
    return out


class Comparator:
    """Compares bodies under one set of :class:`Rules` (patterns compiled once, reused)."""

    def __init__(self, rules: Rules) -> None:
        """Compile ``rules``; raise :class:`ConfigError` for a malformed pattern or tolerance."""
        self.rules = rules
        self._tol: Tolerance | None = None  # the "*" defaults
        self._keyed: str | None = None
        self._all_ignored = False
        self._states: dict[tuple[int, ...], _State] = {}
        root = _Node()
        has_rules = False
        for pattern in rules.ignore:
            if pattern == "*":
                self._all_ignored = True
            else:
                root.insert(_parse(pattern, "ignore")).ignore = has_rules = True
        for i, (pattern, tol) in enumerate(rules.tolerance):
            if not (tol.abs >= 0 and tol.rel >= 0):  # also refuses NaN
                raise ConfigError(f"tolerance for {pattern!r} must have abs and rel >= 0, not {tol}")
            if pattern == "*":
                self._tol = self._tol or tol
                continue
            segs = _parse(pattern, "tolerance")
            node, rank = root.insert(segs), (_rank(segs), -i)
            if node.tol is None or rank > node.tol[0]:
                node.tol = (rank, tol)
            has_rules = True
        for i, (pattern, field) in enumerate(rules.keyed_lists):
            if not field:
                raise ConfigError(f"keyed list {pattern!r} needs a key field name")
            if pattern == "*":
                self._keyed = self._keyed or field
                continue
            segs = _parse(pattern, "keyed_lists")
            node, rank = root.insert(segs), (_rank(segs), -i)
            if node.keyed is None or rank > node.keyed[0]:
                node.keyed = (rank, field)
            has_rules = True
        self._root = self._state([root]) if has_rules else None

    def _state(self, nodes: list[_Node]) -> _State | None:
        if not nodes:
            return None
        unique = tuple(dict.fromkeys(nodes))
        ident = tuple(id(n) for n in unique)
        st = self._states.get(ident)
        if st is None:
            st = self._states[ident] = _State(self, unique)
        return st

    # -- public ----------------------------------------------------------------------------

    def equal(self, ws: Any, rest: Any) -> bool:
        """Return True if ``ws`` and ``rest`` are equal under the rules (exactly ``explain() == []``)."""
        root = self._root
        if self._all_ignored or ws is rest or (root is not None and root.ignore):
            return True
        if type(ws) is dict and type(rest) is dict:
            return self._eq_top(ws, rest, root)
        return _identical(ws, rest) or self._eq(ws, rest, root)

    def explain(self, ws: Any, rest: Any, limit: int | None = None) -> list[Difference]:
        """Return the differences between ``ws`` and ``rest`` in path order, at most ``limit``.

        The list is empty iff :meth:`equal` is True. Raises ValueError if ``limit`` is below 1.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be None or at least 1, not {limit}")
        root = self._root
        if self._all_ignored or (root is not None and root.ignore):
            return []
        out = _Out(limit)
        with suppress(_Enough):
            self._diff(ws, rest, root, "", out)
        return out.diffs

    def compare(self, ws: Any, rest: Any) -> list[Difference]:
        """Return ``[]`` if the bodies are equal, else every difference (:meth:`explain`)."""
        return [] if self.equal(ws, rest) else self.explain(ws, rest)

    # -- the equality walk (no paths, stops at the first difference) -------------------------

    def _eq_top(self, a: dict[Any, Any], b: dict[Any, Any], st: _State | None) -> bool:
        """The root object: each container child is first tested for identity (one pickle pass
        over the body when all are identical, and a noisy ignored key does not force a walk)."""
        for k, v in a.items():
            cst = st.key(k) if st is not None else None
            if cst is not None and cst.ignore:
                continue
            w = b.get(k, MISSING)
            if w is MISSING:
                return False
            tv = type(v)
            if tv is not dict and tv is not list:
                if not self._leaf_eq(v, w, self._tol if cst is None else cst.tol):
                    return False
            elif not (v is w or (type(w) is tv and _identical(v, w)) or self._eq(v, w, cst)):
                return False
        for k in b:
            if k not in a:
                cst = st.key(k) if st is not None else None
                if cst is None or not cst.ignore:
                    return False
        return True

    def _eq(self, a: Any, b: Any, st: _State | None) -> bool:
        if st is None:
            return self._eq_plain(a, b)
        ta = type(a)
        if ta is dict:
            if type(b) is not dict:
                return False
            for k, v in a.items():
                cst = st.key(k)
                if cst is not None and cst.ignore:
                    continue
                w = b.get(k, MISSING)
                if w is MISSING or not (v is w or self._eq(v, w, cst)):
                    return False
            for k in b:
                if k not in a:
                    cst = st.key(k)
                    if cst is None or not cst.ignore:
                        return False
            return True
        if ta is list:
            if type(b) is not list:
                return False
            field = st.keyed
            if st.items_free:
                return self._eq_list_plain(a, b, field)
            if field is not None:
                ma, mb = _keyed_map(a, field), _keyed_map(b, field)
                if ma is not None and mb is not None:
                    return self._eq_keyed(ma, mb, field, st)
            if len(a) != len(b):
                return False
            for i, (v, w) in enumerate(zip(a, b, strict=True)):
                cst = st.index(i)
                if (cst is None or not cst.ignore) and not (v is w or self._eq(v, w, cst)):
                    return False
            return True
        return self._leaf_eq(a, b, st.tol)

    def _eq_keyed(self, ma: dict[Any, Any], mb: dict[Any, Any], field: str, st: _State | None) -> bool:
        if st is None:  # no rule below the items
            eq = self._eq_plain
            return len(ma) == len(mb) and all(v is (w := mb.get(tk, MISSING)) or eq(v, w) for tk, v in ma.items())
        for tk, v in ma.items():
            cst = st.item(field, tk)
            if cst is not None and cst.ignore:
                continue
            w = mb.get(tk, MISSING)
            if w is MISSING or not (v is w or self._eq(v, w, cst)):
                return False
        for tk in mb:
            if tk not in ma:
                cst = st.item(field, tk)
                if cst is None or not cst.ignore:
                    return False
        return True

    def _leaf_eq(self, a: Any, b: Any, tol: Tolerance | None) -> bool:
        ta, tb = type(a), type(b)
        if ta in _NUMBER and tb in _NUMBER:  # bool is not in _NUMBER: type() is exact
            return a == b or _close(a, b, tol)
        return ta is tb and ta is not dict and ta is not list and _same(a, b)

    def _eq_plain(self, a: Any, b: Any) -> bool:
        """The walk where no rule applies below (only the ``*`` defaults); the hot path."""
        ta, tb = type(a), type(b)
        if ta is not tb:
            return ta in _NUMBER and tb in _NUMBER and (a == b or _close(a, b, self._tol))
        if ta is dict:
            if len(a) != len(b):
                return False
            for k, v in a.items():
                w = b.get(k, MISSING)
                if v is w:
                    continue
                tv, tw = type(v), type(w)
                if tv is str or tv is bool:
                    if tv is not tw or v != w:
                        return False
                elif tv is float or tv is int:
                    if not ((tw is float or tw is int) and (v == w or _close(v, w, self._tol))):
                        return False
                elif w is MISSING or not self._eq_plain(v, w):
                    return False
            return True
        if ta is list:
            return self._eq_list_plain(a, b, self._keyed)
        if ta is float or ta is int:
            return a == b or _close(a, b, self._tol)
        return _same(a, b)

    def _eq_list_plain(self, a: list[Any], b: list[Any], field: str | None) -> bool:
        """Lists whose items no rule reaches, keyed by ``field`` (None: plain)."""
        eq = self._eq_plain
        if field is not None:
            if len(a) == len(b):
                # While keys line up (compared exactly, as keyed matching does), keyed and
                # positional comparison pair the same items, so either decides.
                for v, w in zip(a, b, strict=True):
                    if type(v) is not dict or type(w) is not dict:
                        break
                    tk = _typed_key(v.get(field, MISSING))
                    if tk is None or tk != _typed_key(w.get(field, MISSING)):
                        break
                    if not (v is w or eq(v, w)):
                        return False
                else:
                    return True
            ma, mb = _keyed_map(a, field), _keyed_map(b, field)
            if ma is not None and mb is not None:
                return self._eq_keyed(ma, mb, field, None)
        if len(a) != len(b):
            return False
        return all(v is w or eq(v, w) for v, w in zip(a, b, strict=True))

    # -- the explaining walk (paths, in order; skips equal subtrees with the equality walk) ---

    def _diff(self, a: Any, b: Any, st: _State | None, path: str, out: _Out) -> None:
        fa = _family(a)
        if fa != _family(b):
            out.add(path, Kind.TYPE_CHANGED, a, b)
        elif fa == "object":
            try:
                keys = sorted(a.keys() | b.keys())
            except TypeError:  # not JSON (keys of mixed types): any stable order
                keys = sorted(a.keys() | b.keys(), key=repr)
            for k in keys:
                cst = st.key(k) if st is not None else None
                if cst is not None and cst.ignore:
                    continue
                self._child(a.get(k, MISSING), b.get(k, MISSING), cst, path, out, (0, k))
        elif fa == "array":
            field = st.keyed if st is not None else self._keyed
            ma = mb = None
            if field is not None:
                ma, mb = _keyed_map(a, field), _keyed_map(b, field)
            if field is not None and ma is not None and mb is not None:
                for tk in sorted(ma.keys() | mb.keys(), key=_key_order):
                    cst = st.item(field, tk) if st is not None else None
                    if cst is not None and cst.ignore:
                        continue
                    v, w = ma.get(tk, MISSING), mb.get(tk, MISSING)
                    if v is w or (type(v) is dict and type(w) is dict and self._eq(v, w, cst)):
                        continue  # the common case, without building the item's path
                    self._child(v, w, cst, path, out, (2, field, (v if w is MISSING else w)[field]))
                return
            if len(a) != len(b):
                out.add(path, Kind.LIST_LENGTH, len(a), len(b))
            for i, (v, w) in enumerate(zip(a, b, strict=False)):
                cst = st.index(i) if st is not None else None
                if cst is None or not cst.ignore:
                    self._child(v, w, cst, path, out, (1, i))
        elif not self._leaf_eq(a, b, st.tol if st is not None else self._tol):
            out.add(path, Kind.CHANGED, a, b)

    def _child(self, v: Any, w: Any, cst: _State | None, path: str, out: _Out, seg: tuple[Any, ...]) -> None:
        """Compare one child; ``seg`` names it: (0, key), (1, index) or (2, field, key value)."""
        if v is MISSING:
            out.add(_sub(path, seg), Kind.MISSING_ON_WS, MISSING, w)
        elif w is MISSING:
            out.add(_sub(path, seg), Kind.EXTRA_ON_WS, v, MISSING)
        elif (type(v) is list and type(w) is list) or not (v is w or self._eq(v, w, cst)):
            # A list goes straight to _diff, which skips its equal items itself.
            self._diff(v, w, cst, _sub(path, seg), out)


def _identical(a: Any, b: Any) -> bool:
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


def _rank(segs: list[_Seg]) -> tuple[int, ...]:
    """Specificity: patterns matching one path have as many segments; literals beat wildcards."""
    return tuple(0 if s[0] in ("anykey", "anyitem") else 1 for s in segs)
