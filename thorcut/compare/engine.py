"""The compare engine: are a WebSocket body and a REST body equal under a feature's noise rules?

Pure (no I/O). :class:`Comparator` takes two parsed JSON values (dict, list, str, int, float,
bool, None) and :class:`~thorcut.compare.rules.Rules`, and answers with
:meth:`~Comparator.equal` (fast, a bool) or :meth:`~Comparator.explain` (every
:class:`Difference`, in path order). What counts as equal, how paths are written and how rules
match: docs/compare.md. The value rules are in :mod:`.equality`, the path language in
:mod:`.paths`, the rules and their automaton in :mod:`.rules`; here are the two walks.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from thorcut.compare.equality import NUMBER, close, family, identical, key_order, same, typed_key
from thorcut.compare.paths import child_path
from thorcut.compare.rules import CompiledRules, Rules, State
from thorcut.manifest import Tolerance


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


@dataclass(frozen=True, eq=False)
class Difference:
    """One differing path, with the value on each side (:data:`MISSING` where absent).

    Two differences are equal when their paths and kinds are, and each side's value equals the
    other's under the engine's own value rules with no rules applied (no tolerance, lists by
    position; docs/compare.md, "Differences"): any NaN equals any NaN, ``1`` equals ``1.0`` and
    ``-0.0`` equals ``0.0``, ``True`` is not ``1``, None is not :data:`MISSING`, and objects and
    lists compare member by member. Whether two NaNs are one object never matters, so the answer
    is the same on every Python (a generated ``__eq__`` compares tuples before 3.13, where
    identity decides for NaN, and fields one by one from 3.13, where ``nan == nan`` is False).
    The hash is that of the path and kind alone: consistent with that equality, and defined even
    for a difference holding a list or an object.
    """

    path: str
    kind: Kind
    ws: Any
    rest: Any

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Difference):
            return NotImplemented
        return (
            self.path == other.path
            and self.kind == other.kind
            and _VALUES.equal(self.ws, other.ws)
            and _VALUES.equal(self.rest, other.rest)
        )

    def __hash__(self) -> int:
        return hash((self.path, self.kind))

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
        tk = typed_key(item.get(field, MISSING))
        if tk is None or tk in out:
            return None
        out[tk] = item
    return out


class Comparator:
    """Compares bodies under one set of :class:`Rules` (patterns compiled once, reused)."""

    def __init__(self, rules: Rules) -> None:
        """Compile ``rules``; raise :class:`~thorcut.errors.ConfigError` for a malformed pattern or
        tolerance."""
        self.rules = rules
        compiled = CompiledRules(rules)
        self._compiled = compiled  # holds the automaton's states
        self._tol = compiled.tol  # the "*" defaults, read where no state applies
        self._keyed = compiled.keyed
        self._all_ignored = compiled.all_ignored
        self._root = compiled.root

    # -- public ----------------------------------------------------------------------------

    def equal(self, ws: Any, rest: Any) -> bool:
        """Return True if ``ws`` and ``rest`` are equal under the rules (exactly ``explain() == []``)."""
        root = self._root
        if self._all_ignored or ws is rest or (root is not None and root.ignore):
            return True
        if type(ws) is dict and type(rest) is dict:
            return self._eq_top(ws, rest, root)
        return identical(ws, rest) or self._eq(ws, rest, root)

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

    def _eq_top(self, a: dict[Any, Any], b: dict[Any, Any], st: State | None) -> bool:
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
            elif not (v is w or (type(w) is tv and identical(v, w)) or self._eq(v, w, cst)):
                return False
        for k in b:
            if k not in a:
                cst = st.key(k) if st is not None else None
                if cst is None or not cst.ignore:
                    return False
        return True

    def _eq(self, a: Any, b: Any, st: State | None) -> bool:
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

    def _eq_keyed(self, ma: dict[Any, Any], mb: dict[Any, Any], field: str, st: State | None) -> bool:
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
        if ta in NUMBER and tb in NUMBER:  # bool is not in NUMBER: type() is exact
            return a == b or close(a, b, tol)
        return ta is tb and ta is not dict and ta is not list and same(a, b)

    def _eq_plain(self, a: Any, b: Any) -> bool:
        """The walk where no rule applies below (only the ``*`` defaults); the hot path."""
        ta, tb = type(a), type(b)
        if ta is not tb:
            return ta in NUMBER and tb in NUMBER and (a == b or close(a, b, self._tol))
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
                    if not ((tw is float or tw is int) and (v == w or close(v, w, self._tol))):
                        return False
                elif w is MISSING or not self._eq_plain(v, w):
                    return False
            return True
        if ta is list:
            return self._eq_list_plain(a, b, self._keyed)
        if ta is float or ta is int:
            return a == b or close(a, b, self._tol)
        return same(a, b)

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
                    tk = typed_key(v.get(field, MISSING))
                    if tk is None or tk != typed_key(w.get(field, MISSING)):
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

    def _diff(self, a: Any, b: Any, st: State | None, path: str, out: _Out) -> None:
        fa = family(a)
        if fa != family(b):
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
                for tk in sorted(ma.keys() | mb.keys(), key=key_order):
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

    def _child(self, v: Any, w: Any, cst: State | None, path: str, out: _Out, seg: tuple[Any, ...]) -> None:
        """Compare one child; ``seg`` names it: (0, key), (1, index) or (2, field, key value)."""
        if v is MISSING:
            out.add(child_path(path, seg), Kind.MISSING_ON_WS, MISSING, w)
        elif w is MISSING:
            out.add(child_path(path, seg), Kind.EXTRA_ON_WS, v, MISSING)
        elif (type(v) is list and type(w) is list) or not (v is w or self._eq(v, w, cst)):
            # A list goes straight to _diff, which skips its equal items itself.
            self._diff(v, w, cst, child_path(path, seg), out)


#: Compares the values two :class:`Difference` objects hold: the value rules, and no rule.
_VALUES: Final = Comparator(Rules())
