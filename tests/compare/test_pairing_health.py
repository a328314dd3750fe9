"""Pairing by (type, key, seq) and stream health, as pure bookkeeping."""

from __future__ import annotations

from typing import Any

from thorcut.compare.health import Event, StreamHealth
from thorcut.compare.pairing import Pair, Pairer


class Log:
    def __init__(self) -> None:
        self.pairs: list[Pair] = []
        self.unpaired: list[tuple[str, str, int, str]] = []

    def pair(self, p: Pair) -> None:
        self.pairs.append(p)

    def lost(self, type_: str, key: str, seq: int, why: str) -> None:
        self.unpaired.append((type_, key, seq, why))


def pairer(keep: int = 64) -> tuple[Pairer, Log]:
    log = Log()
    return Pairer(log.pair, log.lost, keep=keep), log


def test_message_then_response_of_same_seq_pairs() -> None:
    p, log = pairer()
    assert p.ws("t", "k", 1, {"v": 1}) is False
    p.rest("t", "k", 1, 1, {"v": 2})
    assert [(x.seq, x.ws, x.rest) for x in log.pairs] == [(1, {"v": 1}, {"v": 2})]
    assert log.unpaired == []


def test_response_before_message_pairs_when_it_arrives() -> None:
    p, log = pairer()
    p.rest("t", "k", None, 3, "rest")
    assert p.ws("t", "k", 3, "ws") is True
    assert [(x.seq, x.ws, x.rest) for x in log.pairs] == [(3, "ws", "rest")]


def test_keys_and_types_never_pair_across() -> None:
    p, log = pairer()
    p.ws("t", "a", 1, "ws")
    p.rest("t", "b", 1, 1, "rest")
    p.rest("u", "a", 1, 1, "rest")
    assert log.pairs == []
    p.flush()
    assert log.unpaired == [("t", "a", 1, "rest_behind")]


def test_newer_response_makes_its_sample_unpaired() -> None:
    p, log = pairer()
    p.ws("t", "k", 1, "ws1")
    p.rest("t", "k", 1, 2, "rest2")
    assert log.unpaired == [("t", "k", 1, "rest_ahead")]
    assert p.ws("t", "k", 2, "ws2") is True  # the held response pairs the next message
    assert log.pairs[0].seq == 2


def test_older_response_leaves_the_sample_waiting() -> None:
    p, log = pairer()
    p.ws("t", "k", 5, "ws")
    p.rest("t", "k", 5, 4, "old")
    assert p.waiting("t", "k", 5)
    p.rest("t", "k", 5, 5, "new")
    assert [(x.seq, x.rest) for x in log.pairs] == [(5, "new")]


def test_memory_is_bounded_and_evictions_are_reported() -> None:
    p, log = pairer(keep=4)
    for seq in range(1, 11):
        p.ws("t", "k", seq, seq)
    assert [u[2] for u in log.unpaired] == [1, 2, 3, 4, 5, 6]
    assert all(u[3] == "evicted" for u in log.unpaired)
    for seq in range(100, 120):
        p.rest("t", "k", None, seq, seq)
    assert len(p.streams[("t", "k")].responses) == 4
    assert len(p.streams[("t", "k")].waiting) == 4


def test_duplicate_sample_does_not_pair_twice() -> None:
    p, log = pairer()
    p.ws("t", "k", 1, "a")
    p.ws("t", "k", 1, "b")
    p.rest("t", "k", 1, 1, "r")
    assert [(x.ws, x.rest) for x in log.pairs] == [("a", "r")]


def observe(h: StreamHealth, seqs: list[int], key: str = "k") -> list[Any]:
    return [h.observe("t", key, s)[0] for s in seqs]


def test_health_classifies_each_message() -> None:
    h = StreamHealth()
    assert observe(h, [1, 2, 5, 5, 3, 6]) == [Event.FIRST, Event.NEXT, Event.GAP, Event.DUPLICATE,
                                              Event.OUT_OF_ORDER, Event.NEXT]  # fmt: skip
    c = h.counters("t", "k")
    assert (c.messages, c.gaps, c.missed, c.duplicates, c.out_of_order) == (6, 1, 2, 1, 1)


def test_health_is_per_key_and_totals_sum() -> None:
    h = StreamHealth()
    observe(h, [1, 3], key="a")
    observe(h, [7, 8, 10], key="b")
    assert h.totals().gaps == 2
    assert h.totals(("other",)).messages == 0


def test_after_a_reconnect_neither_a_jump_nor_a_resent_state_counts() -> None:
    h = StreamHealth()
    observe(h, [1, 2, 3])
    h.reset_baseline()
    assert observe(h, [9, 10, 10]) == [Event.FIRST, Event.NEXT, Event.DUPLICATE]
    h.reset_baseline()
    assert observe(h, [10, 11]) == [Event.FIRST, Event.NEXT]  # the server sent its current state again
    c = h.counters("t", "k")
    assert (c.gaps, c.duplicates) == (0, 1)


def test_freshness_lag_from_ts_to_received() -> None:
    h = StreamHealth()
    h.observe("t", "k", 1, ts="2026-11-24T14:00:00.000Z", received=1795528800.250)
    h.observe("t", "k", 2, ts="not a time", received=1795528801.0)
    c = h.counters("t", "k")
    assert c.lag_samples == 1
    assert round(c.lag_ms_max) == 250


def test_a_null_body_pairs_like_any_other() -> None:
    """JSON null is a body like any other: it waits, pairs, and is given up (it once never paired)."""
    p, log = pairer()
    p.ws("t", "k", 1, None)
    p.rest("t", "k", 1, 1, None)
    p.ws("t", "k", 2, None)
    p.rest("t", "k", 2, 2, {"v": 1})
    p.ws("t", "k", 3, None)
    p.give_up("t", "k", 3)
    assert [(x.seq, x.ws, x.rest) for x in log.pairs] == [(1, None, None), (2, None, {"v": 1})]
    assert log.unpaired == [("t", "k", 3, "rest_behind")]
    assert not p.waiting("t", "k", 1)
