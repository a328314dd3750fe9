"""The path language: where a difference is reported, how keys are quoted, and patterns
(docs/compare.md, "Paths" and "Rule patterns")."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.compare.bodies import SETTINGS, TEXT_KEYS, json_values, keyed_bodies, perturbed, reordered
from tests.compare.helpers import PLAIN, explain, one, row, rules
from thorcut.compare.engine import Comparator, Kind
from thorcut.compare.equality import typed_key
from thorcut.compare.paths import child_path, item_path, key_path, parse_pattern
from thorcut.compare.rules import Rules
from thorcut.errors import ConfigError

# -- the paths of differences ------------------------------------------------------------------


def test_nested_paths_are_dotted_with_list_indexes() -> None:
    ws = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    rest = {"a": {"b": [{"c": 1}, {"c": 3}]}}
    assert one(PLAIN, ws, rest) == ("a.b[1].c", Kind.CHANGED, 2, 3)


def test_root_scalars_are_compared_at_the_empty_path() -> None:
    assert one(PLAIN, 1, 2) == ("", Kind.CHANGED, 1, 2)
    assert one(PLAIN, "1", 1) == ("", Kind.TYPE_CHANGED, "1", 1)
    assert explain(PLAIN, 3, 3.0) == []
    assert one(PLAIN, [1, 2], [1, 3]) == ("[1]", Kind.CHANGED, 2, 3)


def test_keys_that_are_not_plain_names_are_quoted() -> None:
    ws = {"a.b": 1, "meta": {"x y": {"c": 1}, "*": 1, "": 1}}
    rest = {"a.b": 2, "meta": {"x y": {"c": 2}, "*": 2, "": 2}}
    assert [d.path for d in explain(PLAIN, ws, rest)] == ['["a.b"]', 'meta[""]', 'meta["*"]', 'meta["x y"].c']


def test_a_written_path_parses_back_to_what_it_names() -> None:
    path = child_path(child_path(child_path("", (0, "positions")), (2, "symbol", "ES")), (0, "quantity"))
    assert path == "positions[symbol=ES].quantity"
    assert parse_pattern(path, "ignore") == [("key", "positions"), ("keyed", "symbol", "ES"), ("key", "quantity")]
    assert parse_pattern(child_path("bars", (1, 3)), "ignore") == [("key", "bars"), ("index", 3)]
    for key in ("a.b", "x y", "*", "", '"q"', "[0]", "ES"):
        assert parse_pattern(key_path("meta", key), "ignore") == [("key", "meta"), ("key", key)]
    for value in (3, 2.5, True, None, "3", "true", "a b", "ES"):
        assert parse_pattern(item_path("items", "id", value), "ignore")[1] == ("keyed", "id", typed_key(value))
    assert item_path("items", "a.b", 1) == 'items["a.b"=1]'
    assert parse_pattern('items["a.b"=1]', "ignore")[1] == ("keyed", "a.b", typed_key(1))


# -- patterns ----------------------------------------------------------------------------------


def test_a_reported_path_works_as_an_ignore_pattern() -> None:
    ws = {"meta": {"a.b": {"x y": [1, 2]}}, "positions": [row("ES", 1)]}
    rest = {"meta": {"a.b": {"x y": [1, 3]}}, "positions": [row("ES", 2)]}
    keyed = (("positions", "symbol"),)
    paths = [d.path for d in explain(rules(keyed_lists=keyed), ws, rest)]
    assert paths == ['meta["a.b"]["x y"][1]', "positions[symbol=ES].quantity"]
    assert explain(rules(ignore=tuple(paths), keyed_lists=keyed), ws, rest) == []


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
    for position in other["positions"][:2]:
        position["quantity"] += 1
    pairs = [(ws, rest), (ws, perturbed(ws, rnd)), (body, other)]
    pairs.append(({"x": ws, "positions": body["positions"]}, {"x": perturbed(ws, rnd), **other}))
    for a, b in pairs:
        full = Comparator(Rules(keyed_lists=keyed)).explain(a, b)
        paths = tuple(d.path for d in full)
        assert Comparator(Rules(ignore=paths, keyed_lists=keyed)).equal(a, b), paths
        for p in paths[:4]:  # ignoring one path hides it and what lies under it, nothing else
            left = [d for d in full if not (p == "" or d.path == p or d.path.startswith((f"{p}.", f"{p}[")))]
            assert Comparator(Rules(ignore=(p,), keyed_lists=keyed)).explain(a, b) == left, p


@pytest.mark.parametrize("pattern", ["a..b", "a.", ".a", "a[", "a[*", "[x", "a[]", "a[k=]", "a b", 'a["b]', "a.[0]"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        Comparator(Rules(ignore=(pattern,)))


def test_patterns_parse_wildcards_and_quoted_keys() -> None:
    segs = parse_pattern("positions[*].updated_at", "ignore")
    assert segs == [("key", "positions"), ("anyitem",), ("key", "updated_at")]
    assert parse_pattern("*.ts", "ignore") == [("anykey",), ("key", "ts")]
    assert parse_pattern('meta["*"]', "ignore") == [("key", "meta"), ("key", "*")]  # the key named *
    with pytest.raises(ConfigError, match=re.escape("tolerance pattern 'a..b' is malformed at character 2")):
        parse_pattern("a..b", "tolerance")
