"""The noise rules: what ignore, tolerance and keyed_lists patterns match, and which one wins
(docs/compare.md, "Rules")."""

from __future__ import annotations

import pytest

from tests.compare.helpers import NAN, PLAIN, explain, one, row, rules
from thorcut.compare.engine import Comparator, Kind
from thorcut.compare.rules import Rules
from thorcut.errors import ConfigError
from thorcut.manifest import DEFAULT_MANIFEST, Tolerance

# -- ignore ------------------------------------------------------------------------------------


def test_ignore_drops_a_key_present_on_one_side_or_both() -> None:
    c = rules(ignore=("as_of",))
    assert explain(c, {"as_of": "t1", "a": 1}, {"as_of": "t2", "a": 1}) == []
    assert explain(c, {"as_of": "t1", "a": 1}, {"a": 1}) == []
    assert one(c, {"as_of": "t1", "a": 1}, {"a": 2}) == ("a", Kind.CHANGED, 1, 2)


def test_ignore_list_wildcard_covers_plain_and_keyed_items() -> None:
    ws = {"positions": [row("ES", updated_at="t1"), row("NQ", updated_at="t1")], "bars": [{"t": 1}, {"t": 2}]}
    rest = {"positions": [row("NQ", updated_at="t2"), row("ES", updated_at="t2")], "bars": [{"t": 3}, {"t": 4}]}
    c = rules(ignore=("positions[*].updated_at", "bars[*].t"), keyed_lists=(("positions", "symbol"),))
    assert explain(c, ws, rest) == []
    partial = rules(ignore=("positions[*].updated_at",), keyed_lists=(("positions", "symbol"),))
    assert [d.path for d in explain(partial, ws, rest)] == ["bars[0].t", "bars[1].t"]


def test_ignore_key_wildcard_matches_any_one_key() -> None:
    c = rules(ignore=("*.ts",))
    assert explain(c, {"a": {"ts": 1, "v": 1}, "b": {"ts": 1}}, {"a": {"ts": 2, "v": 1}, "b": {"ts": 2}}) == []
    assert one(c, {"ts": 1}, {"ts": 2}) == ("ts", Kind.CHANGED, 1, 2)  # one segment deep, not the root key
    assert one(c, {"a": {"b": {"ts": 1}}}, {"a": {"b": {"ts": 2}}})[0] == "a.b.ts"


def test_ignore_star_alone_ignores_everything() -> None:
    assert explain(rules(ignore=("*",)), {"a": 1}, [2]) == []


def test_ignore_of_list_items_keeps_their_count_but_ignoring_the_list_hides_it() -> None:
    assert one(rules(ignore=("bars[*]",)), {"bars": [1, 2]}, {"bars": [3]}) == ("bars", Kind.LIST_LENGTH, 2, 1)
    assert explain(rules(ignore=("bars",)), {"bars": [1, 2]}, {"bars": [3]}) == []


def test_ignore_one_keyed_item_by_its_key() -> None:
    c = rules(ignore=("positions[symbol=ES].quantity",), keyed_lists=(("positions", "symbol"),))
    ws = {"positions": [row("ES", 1), row("NQ", 1)]}
    assert explain(c, ws, {"positions": [row("ES", 5), row("NQ", 1)]}) == []
    assert one(c, ws, {"positions": [row("ES", 1), row("NQ", 5)]})[0] == "positions[symbol=NQ].quantity"


# -- tolerance: which pattern wins -------------------------------------------------------------


def test_star_tolerance_applies_to_every_number() -> None:
    c = rules(tolerance=(("*", Tolerance(abs=1e-9)),))
    assert explain(c, {"a": [{"b": 1.0}], "c": 2}, {"a": [{"b": 1.0 + 1e-10}], "c": 2.0000000001}) == []
    assert explain(c, 1.0, 1.0 + 1e-10) == []
    assert one(c, {"c": 2}, {"c": 2.001})[0] == "c"
    assert one(PLAIN, {"c": 1.0}, {"c": 1.0 + 1e-10})[0] == "c"  # no tolerance: exact


def test_most_specific_tolerance_wins() -> None:
    c = rules(
        tolerance=(
            ("positions[symbol=ES].avg_price", Tolerance(abs=1.0)),
            ("*", Tolerance(abs=10.0)),
            ("positions[*].avg_price", Tolerance()),
        ),
        keyed_lists=(("positions", "symbol"),),
    )
    ws = {"positions": [row("ES", 1), row("NQ", 1)]}
    es_moved = {"positions": [{**row("ES", 1), "avg_price": 100.75}, row("NQ", 1)]}
    nq_moved = {"positions": [row("ES", 1), {**row("NQ", 1), "avg_price": 100.75}]}
    assert explain(c, ws, es_moved) == []  # the exact path: 1.0
    assert one(c, ws, nq_moved)[0] == "positions[symbol=NQ].avg_price"  # [*] beats "*": exact
    assert explain(c, ws, {"positions": [row("ES", 5), row("NQ", 9)]}) == []  # quantity: "*" only


@pytest.mark.parametrize("order", [1, -1])
def test_a_literal_further_left_is_more_specific(order: int) -> None:
    c = rules(tolerance=(("*.b", Tolerance()), ("a.*", Tolerance(abs=1.0)))[::order])
    assert explain(c, {"a": {"b": 1}}, {"a": {"b": 2}}) == []
    assert one(c, {"x": {"b": 1}}, {"x": {"b": 2}})[0] == "x.b"


def test_the_first_of_two_equal_patterns_wins() -> None:
    c = rules(tolerance=(("a", Tolerance(abs=1.0)), ("a", Tolerance())))
    assert explain(c, {"a": 1}, {"a": 2}) == []


def test_an_exact_tolerance_overrides_a_looser_default() -> None:
    c = rules(tolerance=(("*", Tolerance(abs=1.0)), ("seq", Tolerance())))
    assert one(c, {"seq": 1, "v": 1}, {"seq": 2, "v": 2}) == ("seq", Kind.CHANGED, 1, 2)


# -- keyed lists: which pattern applies --------------------------------------------------------


def test_keyed_list_patterns_take_wildcards_and_star_alone() -> None:
    nested = rules(keyed_lists=(("accounts[*].positions", "symbol"),))
    ws = {"accounts": [{"positions": [row("ES"), row("NQ")]}]}
    rest = {"accounts": [{"positions": [row("NQ"), row("ES")]}]}
    assert explain(nested, ws, rest) == []
    every = rules(keyed_lists=(("*", "symbol"),))
    assert explain(every, ws, rest) == []
    assert explain(every, [row("ES"), row("NQ")], [row("NQ"), row("ES")]) == []
    assert one(every, [row("ES", 1)], [row("ES", 2)])[0] == "[symbol=ES].quantity"


def test_keyed_list_patterns_override_the_star_default() -> None:
    c = rules(keyed_lists=(("*", "id"), ("positions", "symbol")))
    ws = {"positions": [row("ES", id=1), row("NQ", id=2)]}
    rest = {"positions": [row("NQ", id=1), row("ES", id=2)]}
    assert [d.path for d in explain(c, ws, rest)] == ["positions[symbol=ES].id", "positions[symbol=NQ].id"]


# -- rules from the manifest -------------------------------------------------------------------


def test_default_positions_rules_from_the_manifest() -> None:
    c = Comparator(Rules.from_spec(DEFAULT_MANIFEST.get("positions")))
    body = {"account": "DU1234", "positions": [row("ES"), row("NQ")], "as_of": "2026-11-24T14:30:00.123Z"}
    reordered = {**body, "positions": [row("NQ"), row("ES", 1.0000000001)]}
    assert explain(c, body, reordered) == []
    assert one(c, body, {**body, "positions": [row("NQ"), row("ES", 2)]})[0] == "positions[symbol=ES].quantity"


def test_rules_from_spec_copies_the_noise_rules() -> None:
    spec = DEFAULT_MANIFEST.get("positions")
    r = Rules.from_spec(spec)
    assert (r.ignore, r.tolerance, r.keyed_lists) == (spec.ignore, spec.tolerance, spec.keyed_lists)
    assert r.keyed_lists == (("positions", "symbol"),)


# -- bad rules ---------------------------------------------------------------------------------


def test_bad_tolerances_and_key_fields_are_refused() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        Comparator(Rules(tolerance=(("a", Tolerance(abs=-1.0)),)))
    with pytest.raises(ConfigError, match=">= 0"):
        Comparator(Rules(tolerance=(("a", Tolerance(rel=NAN)),)))
    with pytest.raises(ConfigError, match="key field"):
        Comparator(Rules(keyed_lists=(("positions", ""),)))
    with pytest.raises(ConfigError, match="cannot be a list key"):
        Comparator(Rules(ignore=("a[id=NaN]",)))
