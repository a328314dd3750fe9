"""A feature's noise rules (:class:`Rules`: ignore, tolerance, keyed lists) and the automaton
they compile to, which tells the compare engine, path by path, what applies there.

Pure. How patterns match and which one wins is set out in docs/compare.md, "Rules".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thorcut.compare.paths import Segment, parse_pattern
from thorcut.errors import ConfigError
from thorcut.manifest import FeatureSpec, Tolerance


@dataclass(frozen=True)
class Rules:
    """A feature's noise rules; the patterns are paths with wildcards (docs/compare.md)."""

    ignore: tuple[str, ...] = ()
    tolerance: tuple[tuple[str, Tolerance], ...] = ()
    keyed_lists: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> Rules:
        """Return the rules of a manifest feature."""
        return cls(ignore=spec.ignore, tolerance=spec.tolerance, keyed_lists=spec.keyed_lists)


class CompiledRules:
    """:class:`Rules` compiled once: the ``*`` defaults, and the automaton over the other patterns.

    ``root`` is the state of the empty path, None when no pattern other than ``*`` is given (then
    only the defaults apply, everywhere). A state's transitions lead to the state of a child path,
    or to None where no pattern reaches any more.
    """

    def __init__(self, rules: Rules) -> None:
        """Compile ``rules``; raise :class:`ConfigError` for a malformed pattern or tolerance."""
        self.tol: Tolerance | None = None  # the "*" defaults
        self.keyed: str | None = None
        self.all_ignored = False
        self._states: dict[tuple[int, ...], State] = {}
        root = _Node()
        has_rules = False
        for pattern in rules.ignore:
            if pattern == "*":
                self.all_ignored = True
            else:
                root.insert(parse_pattern(pattern, "ignore")).ignore = has_rules = True
        for i, (pattern, tol) in enumerate(rules.tolerance):
            if not (tol.abs >= 0 and tol.rel >= 0):  # also refuses NaN
                raise ConfigError(f"tolerance for {pattern!r} must have abs and rel >= 0, not {tol}")
            if pattern == "*":
                self.tol = self.tol or tol
                continue
            segs = parse_pattern(pattern, "tolerance")
            node, rank = root.insert(segs), (_rank(segs), -i)
            if node.tol is None or rank > node.tol[0]:
                node.tol = (rank, tol)
            has_rules = True
        for i, (pattern, field) in enumerate(rules.keyed_lists):
            if not field:
                raise ConfigError(f"keyed list {pattern!r} needs a key field name")
            if pattern == "*":
                self.keyed = self.keyed or field
                continue
            segs = parse_pattern(pattern, "keyed_lists")
            node, rank = root.insert(segs), (_rank(segs), -i)
            if node.keyed is None or rank > node.keyed[0]:
                node.keyed = (rank, field)
            has_rules = True
        self.root: State | None = self._state([root]) if has_rules else None

    def _state(self, nodes: list[_Node]) -> State | None:
        if not nodes:
            return None
        unique = tuple(dict.fromkeys(nodes))
        ident = tuple(id(n) for n in unique)
        st = self._states.get(ident)
        if st is None:
            st = self._states[ident] = State(self, unique)
        return st


def _rank(segs: list[Segment]) -> tuple[int, ...]:
    """Specificity: patterns matching one path have as many segments; literals beat wildcards."""
    return tuple(0 if s[0] in ("anykey", "anyitem") else 1 for s in segs)


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

    def insert(self, segs: list[Segment]) -> _Node:
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


class State:
    """The trie nodes matching one path, with what they decide there and cached transitions.

    ``ignore``: the path is ignored; ``tol``: the tolerance of a number there; ``keyed``: the key
    field of a list there (None: compared by position); ``items_free``: no pattern reaches below
    the items of a list there. :meth:`key`, :meth:`index` and :meth:`item` step to a child.
    """

    __slots__ = ("_index", "_items", "_keys", "ignore", "items_free", "keyed", "nodes", "owner", "tol")

    def __init__(self, owner: CompiledRules, nodes: tuple[_Node, ...]) -> None:
        self.owner = owner
        self.nodes = nodes
        self.ignore = any(n.ignore for n in nodes)
        tols = [n.tol for n in nodes if n.tol is not None]
        self.tol = max(tols, key=lambda t: t[0])[1] if tols else owner.tol
        keyeds = [n.keyed for n in nodes if n.keyed is not None]
        self.keyed = max(keyeds, key=lambda k: k[0])[1] if keyeds else owner.keyed
        self.items_free = not any(n.any_item or n.index or n.keyed_items for n in nodes)  # no rule below items
        self._keys: dict[str, State | None] = {}
        self._index: dict[int, State | None] = {}
        self._items: dict[tuple[str, Any], State | None] = {}

    def key(self, k: str) -> State | None:
        """The state of object member ``k``."""
        st = self._keys.get(k, self)
        if st is self:
            any_key = [n.any_key for n in self.nodes if n.any_key]
            st = self._remember(self._keys, k, [n.keys[k] for n in self.nodes if k in n.keys] + any_key)
        return st

    def index(self, i: int) -> State | None:
        """The state of item ``i`` of a list compared by position."""
        st = self._index.get(i, self)
        if st is self:
            any_item = [n.any_item for n in self.nodes if n.any_item]
            st = self._remember(self._index, i, [n.index[i] for n in self.nodes if i in n.index] + any_item)
        return st

    def item(self, field: str, tk: Any) -> State | None:
        """The state of the item of a keyed list whose ``field`` has the typed key ``tk``."""
        fk = (field, tk)
        st = self._items.get(fk, self)
        if st is self:
            any_item = [n.any_item for n in self.nodes if n.any_item]
            st = self._remember(
                self._items, fk, [n.keyed_items[fk] for n in self.nodes if fk in n.keyed_items] + any_item
            )
        return st

    def _remember(self, cache: dict[Any, State | None], key: Any, nodes: list[_Node]) -> State | None:
        st = self.owner._state(nodes)
        if len(cache) < _CACHE_CAP:
            cache[key] = st
        return st
