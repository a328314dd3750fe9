"""Stream health across resyncs and resumes (docs/contracts.md, "Resuming a stream"): a jump marked
``"resync": true`` is a resync, counted apart from gaps; after a reconnect with a resume every
stream keeps its baseline, replayed envelopes are the next versions, and an envelope pushed before
the server read the resume waits for the replay instead of counting as a gap at once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thorcut.compare.health import (
    FRAME_MAX,
    KEY_MAX,
    RESUME_WAIT,
    SEQ_MAX,
    SINCE_MAX,
    Event,
    Held,
    Reply,
    StreamHealth,
)
from thorcut.compare.shadow import judge
from thorcut.manifest import Thresholds
from thorcut.verdict import Verdict
from thorcut.wire.stream import resume_frame

ANSWER = Reply(replayed=0, resynced=0, healed=False)


def feed(h: StreamHealth, items: list[Any], key: str = "k") -> list[tuple[Event, int]]:
    """Observe ``items``: a seq, or ``(seq, True)`` for one marked resync."""
    out = []
    for item in items:
        seq, marked = item if isinstance(item, tuple) else (item, False)
        out.append(h.observe("t", key, seq, resync=marked))
    return out


def events(h: StreamHealth, items: list[Any], key: str = "k") -> list[Event]:
    return [e for e, _ in feed(h, items, key)]


def counts(h: StreamHealth, key: str = "k") -> tuple[int, int, int, int, int, int]:
    c = h.counters("t", key)
    return c.gaps, c.missed, c.resyncs, c.resynced_missed, c.duplicates, c.out_of_order


# -- resyncs on one connection ----------------------------------------------------------------------


def test_a_marked_jump_is_a_resync_and_an_unmarked_one_a_gap() -> None:
    h = StreamHealth()
    assert feed(h, [1, 2, (6, True), 7, 10]) == [(Event.FIRST, 0), (Event.NEXT, 0), (Event.RESYNC, 3),
                                                 (Event.NEXT, 0), (Event.GAP, 2)]  # fmt: skip
    assert counts(h) == (1, 2, 1, 3, 0, 0)
    assert h.totals().to_dict() | {"lag_ms_mean": 0} == {
        "messages": 5, "gaps": 1, "missed": 2, "resyncs": 1, "resynced_missed": 3, "duplicates": 0,
        "out_of_order": 0, "lag_ms_mean": 0, "lag_ms_max": 0.0,
    }  # fmt: skip


def test_the_first_envelope_is_never_a_gap_or_a_resync_and_a_mark_without_a_jump_is_nothing() -> None:
    h = StreamHealth()
    assert events(h, [(40, True), (41, True), (41, True), (39, True)]) == [
        Event.FIRST, Event.NEXT, Event.DUPLICATE, Event.OUT_OF_ORDER,
    ]  # fmt: skip
    assert counts(h) == (0, 0, 0, 0, 1, 1)


def test_totals_add_resyncs_over_streams() -> None:
    h = StreamHealth()
    feed(h, [1, (3, True)], key="a")
    feed(h, [1, (5, True), 9], key="b")
    t = h.totals()
    assert (t.resyncs, t.resynced_missed, t.gaps, t.missed) == (2, 4, 1, 3)


# -- resuming after a reconnect ---------------------------------------------------------------------


def test_a_resume_keeps_the_baseline_replays_are_next_marked_jumps_resyncs_unmarked_gaps() -> None:
    h = StreamHealth()
    feed(h, [1, 2, 3], key="a")
    feed(h, [7], key="b")
    assert h.since() == [{"type": "t", "key": "a", "seq": 3}, {"type": "t", "key": "b", "seq": 7}]
    h.begin_resume()
    assert events(h, [4, 5], key="a") == [Event.NEXT, Event.NEXT]  # replayed
    assert feed(h, [(12, True)], key="b") == [(Event.RESYNC, 4)]  # its history was gone
    assert h.resume_answered(Reply(2, 1, False)) == []
    assert feed(h, [6, 9], key="a") == [(Event.NEXT, 0), (Event.GAP, 2)]  # after the answer: live again
    assert counts(h, "a") == (1, 2, 0, 0, 0, 0)
    assert counts(h, "b") == (0, 0, 1, 4, 0, 0)
    assert h.resumes.to_dict() == {"sent": 1, "answered": 1, "refused": 0, "unanswered": 0, "healed": 0,
                                   "replayed": 2, "resynced": 1}  # fmt: skip


def test_without_a_resume_the_baseline_resets_as_before() -> None:
    h = StreamHealth()
    feed(h, [1, 2, 3])
    h.reset_baseline()
    assert events(h, [9, 10, 3]) == [Event.FIRST, Event.NEXT, Event.OUT_OF_ORDER]
    assert counts(h) == (0, 0, 0, 0, 0, 1)


def test_an_envelope_pushed_before_the_replay_waits_for_it() -> None:
    """Held 10; the server pushes 15 before it reads the resume, then replays 11..15: no gap, no duplicate."""
    h = StreamHealth()
    feed(h, [9, 10])
    h.begin_resume()
    assert feed(h, [15, 16, 11, 12, 13, 14, 15, 16]) == [
        (Event.AHEAD, 4), (Event.NEXT, 0), (Event.NEXT, 0), (Event.NEXT, 0), (Event.NEXT, 0), (Event.NEXT, 0),
        (Event.RESENT, 0), (Event.RESENT, 0),
    ]  # fmt: skip
    assert h.resume_answered(Reply(6, 0, False)) == [Held("t", "k", 15, 0)]
    assert counts(h) == (0, 0, 0, 0, 0, 0)
    assert events(h, [16, 17]) == [Event.DUPLICATE, Event.NEXT]  # answered: a copy is a duplicate again


def test_a_jump_ahead_that_the_replay_leaves_is_a_gap_when_the_resume_is_answered() -> None:
    h = StreamHealth()
    feed(h, [10])
    h.begin_resume()
    assert events(h, [15, 11]) == [Event.AHEAD, Event.NEXT]
    assert counts(h) == (0, 0, 0, 0, 0, 0)
    assert h.resume_answered(Reply(1, 0, False)) == [Held("t", "k", 15, 3)]
    assert counts(h) == (1, 3, 0, 0, 0, 0)


def test_a_jump_ahead_that_the_server_resyncs_is_one_resync() -> None:
    h = StreamHealth()
    feed(h, [10])
    h.begin_resume()
    assert feed(h, [15, (15, True)]) == [(Event.AHEAD, 4), (Event.RESENT, 4)]
    h.resume_answered(Reply(0, 1, False))
    assert counts(h) == (0, 0, 1, 4, 0, 0)
    h2 = StreamHealth()
    feed(h2, [10])
    h2.begin_resume()
    assert feed(h2, [15, (18, True)]) == [(Event.AHEAD, 4), (Event.RESYNC, 6)]  # 11..14 and 16..17
    h2.resume_answered(Reply(0, 1, False))
    assert counts(h2) == (0, 0, 1, 6, 0, 0)


def test_only_the_first_message_of_a_stream_may_run_ahead() -> None:
    h = StreamHealth()
    feed(h, [10])
    h.begin_resume()
    assert feed(h, [11, 14]) == [(Event.NEXT, 0), (Event.GAP, 2)]  # the replay began: a jump now is a loss
    assert counts(h) == (1, 2, 0, 0, 0, 0)


def test_a_refused_resume_falls_back_to_a_new_baseline_for_the_connection() -> None:
    h = StreamHealth()
    feed(h, [10], key="a")
    feed(h, [5], key="b")
    h.begin_resume()
    assert events(h, [20], key="a") == [Event.AHEAD]
    assert h.resume_refused() is True
    assert h.resume_refused() is False  # nothing waits any more
    assert events(h, [21], key="a") == [Event.NEXT]
    assert events(h, [30], key="b") == [Event.FIRST]  # no message since the reconnect: starts afresh
    assert counts(h, "a") == counts(h, "b") == (0, 0, 0, 0, 0, 0)
    assert (h.resumes.sent, h.resumes.refused, h.resumes.answered) == (1, 1, 0)


def test_a_resume_left_unanswered_is_given_up_after_the_wait() -> None:
    h = StreamHealth()
    h.observe("t", "k", 10, received=1000.0)
    h.begin_resume()
    assert h.observe("t", "k", 15, received=2000.0)[0] is Event.AHEAD
    assert h.resuming
    assert h.observe("t", "k", 15, received=2000.0 + RESUME_WAIT)[0] is Event.RESENT
    assert h.observe("t", "k", 15, received=2000.1 + RESUME_WAIT)[0] is Event.DUPLICATE  # given up first
    assert not h.resuming
    assert counts(h) == (0, 0, 0, 0, 1, 0)  # the jump ahead is no gap: as after a new baseline
    assert h.resumes.unanswered == 1


def test_a_second_reconnect_gives_up_the_first_resume() -> None:
    h = StreamHealth()
    feed(h, [10])
    h.begin_resume()
    feed(h, [15])
    h.begin_resume()
    assert h.since() == [{"type": "t", "key": "k", "seq": 15}]
    assert events(h, [16]) == [Event.NEXT]
    assert (h.resumes.sent, h.resumes.unanswered) == (2, 1)
    assert counts(h) == (0, 0, 0, 0, 0, 0)


def test_a_healed_reply_is_counted_and_answers_no_resume() -> None:
    h = StreamHealth()
    feed(h, [1])
    h.resume_answered(Reply(3, 2, True))
    assert not h.resuming
    h.begin_resume()
    h.resume_answered(Reply(1, 0, True))
    assert h.resuming  # still waiting for its own answer
    h.resume_answered(Reply(0, 0, False))
    h.resume_answered(Reply(0, 0, False))  # an answer to no resume: replies counted, not answers
    r = h.resumes
    assert (r.sent, r.answered, r.healed, r.replayed, r.resynced) == (1, 1, 2, 4, 2)
    assert r.text() == "resumes 1 sent, 1 answered (4 replayed, 2 resynced), 2 healed"


def test_reply_parses_only_resumed_messages_with_counts() -> None:
    assert Reply.parse({"type": "resumed", "replayed": 2, "resynced": 0}) == Reply(2, 0, False)
    assert Reply.parse({"type": "resumed", "replayed": 0, "resynced": 1, "healed": True}) == Reply(0, 1, True)
    assert Reply.parse({"type": "resumed", "replayed": 0, "resynced": 1, "healed": "yes"}) == Reply(0, 1, False)
    for bad in ({"type": "resumed", "replayed": True, "resynced": 0}, {"type": "resumed", "replayed": -1},
                {"type": "resumed", "resynced": 1.5}, {"type": "subscribed"}, ["resumed"], None):  # fmt: skip
        assert Reply.parse(bad) is None


def test_since_is_sorted_filtered_bounded_and_only_what_the_contract_accepts() -> None:
    h = StreamHealth()
    streams = [("vwap", "ES", 3), ("positions", "DU2", 9), ("positions", "DU1", 4), ("heartbeat", "", 77),
               ("positions", "x" * 65, 1), ("positions", "big", 2**63)]  # fmt: skip
    for type_, key, seq in streams:
        h.observe(type_, key, seq)
    assert h.since() == [{"type": "positions", "key": "DU1", "seq": 4}, {"type": "positions", "key": "DU2", "seq": 9},
                         {"type": "vwap", "key": "ES", "seq": 3}]  # fmt: skip
    assert h.since(frozenset({"vwap"})) == [{"type": "vwap", "key": "ES", "seq": 3}]
    assert h.since(limit=1) == [{"type": "positions", "key": "DU1", "seq": 4}]
    h.reset_baseline()
    assert h.since() == []


def test_since_names_only_the_streams_that_fit_one_frame() -> None:
    """1,000 streams with 64-character keys of non-ASCII text (six bytes each, escaped) would be
    over 400 KB: the resume names the first that fit the backend's frame limit."""
    h = StreamHealth()
    for i in range(1000):
        h.observe("positions", f"{i:03d}" + "é" * 61, 2**62 + i)
    since = h.since()
    frame = resume_frame(since)
    assert 100 < len(since) < 1000
    n = len(since)
    following = {"type": "positions", "key": f"{n:03d}" + "é" * 61, "seq": 2**62 + n}
    assert len(frame.encode()) <= FRAME_MAX < len(resume_frame([*since, following]).encode())
    assert since == h.since(limit=len(since))  # the first streams, in order
    assert json.loads(frame) == {"action": "resume", "since": since}


_texts = st.text(st.characters(exclude_categories=()), max_size=70)  # lone surrogates included


@settings(max_examples=60)
@given(st.lists(st.tuples(_texts, _texts, st.integers(0, 2**64)), max_size=1200))
def test_the_resume_frame_always_fits_and_holds_what_the_contract_accepts(
    streams: list[tuple[str, str, int]],
) -> None:
    h = StreamHealth()
    for type_, key, seq in streams:
        h.observe(type_, key, seq)
    since = h.since()
    frame = resume_frame(since)
    assert frame.isascii()
    assert len(frame) <= FRAME_MAX
    assert len(since) <= SINCE_MAX
    assert all(1 <= len(e["key"]) <= KEY_MAX and 0 <= e["seq"] <= SEQ_MAX for e in since)
    assert json.loads(frame)["since"] == since  # escapes read back to the same keys


# -- the judge ------------------------------------------------------------------------------------


def _counts(**given: int) -> dict[str, int]:
    base = dict.fromkeys(("samples", "paired", "matched", "mismatched", "unpaired", "gaps", "missed", "resyncs",
                          "resynced_missed", "duplicates", "out_of_order", "errors"), 0)  # fmt: skip
    base.update(samples=60, paired=60, matched=60)
    return base | given


def test_judge_allows_three_resyncs_by_default_and_fails_on_the_fourth() -> None:
    t = Thresholds()
    assert t.max_resyncs == 3
    assert judge(_counts(resyncs=3, resynced_missed=40), 61.0, t)[0] is Verdict.PASS
    verdict, reasons = judge(_counts(resyncs=4), 61.0, t)
    assert verdict is Verdict.FAIL
    assert reasons == ("4 resyncs > 3 allowed",)


def test_judge_with_max_resyncs_zero_fails_on_any_and_resyncs_never_count_as_gaps() -> None:
    strict = Thresholds(max_resyncs=0)
    assert judge(_counts(resyncs=1), 61.0, strict) == (Verdict.FAIL, ("1 resyncs > 0 allowed",))
    lenient = Thresholds(max_resyncs=100)
    assert judge(_counts(resyncs=50), 61.0, lenient)[0] is Verdict.PASS
    assert judge(_counts(resyncs=50, gaps=1), 61.0, lenient) == (Verdict.FAIL, ("1 gaps > 0 allowed",))
    assert judge(_counts(resyncs=1), 10.0, strict)[0] is Verdict.FAIL  # a FAIL is never merely PENDING


# -- properties -----------------------------------------------------------------------------------

marked_seqs = st.lists(st.tuples(st.integers(0, 60), st.booleans()), max_size=80)


@given(marked_seqs)
def test_every_message_is_one_event_and_the_counters_are_the_events(items: list[tuple[int, bool]]) -> None:
    h = StreamHealth()
    seen = feed(h, list(items))
    by_event = Counter(e for e, _ in seen)
    c = h.counters("t", "k")
    assert c.messages == len(items)
    assert (c.gaps, c.resyncs, c.duplicates, c.out_of_order) == (
        by_event[Event.GAP], by_event[Event.RESYNC], by_event[Event.DUPLICATE], by_event[Event.OUT_OF_ORDER],
    )  # fmt: skip
    assert c.missed == sum(n for e, n in seen if e is Event.GAP)
    assert c.resynced_missed == sum(n for e, n in seen if e is Event.RESYNC)
    assert not by_event[Event.AHEAD]  # only while a resume is answered
    assert not by_event[Event.RESENT]
    if items:
        assert seen[0] == (Event.FIRST, 0)  # marked or not
        assert by_event[Event.FIRST] == 1
    for (_, marked), (event, _) in zip(items, seen, strict=True):
        assert event is not Event.RESYNC or marked
        assert event is not Event.GAP or not marked


@given(marked_seqs)
def test_marks_only_move_jumps_from_gaps_to_resyncs(items: list[tuple[int, bool]]) -> None:
    marked, plain = StreamHealth(), StreamHealth()
    feed(marked, list(items))
    feed(plain, [seq for seq, _ in items])
    m, p = marked.counters("t", "k"), plain.counters("t", "k")
    assert p.resyncs == p.resynced_missed == 0
    assert (m.gaps + m.resyncs, m.missed + m.resynced_missed) == (p.gaps, p.missed)
    assert (m.duplicates, m.out_of_order, m.messages) == (p.duplicates, p.out_of_order, p.messages)


@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=40))
def test_a_rising_stream_misses_exactly_what_its_gaps_and_resyncs_skipped(steps: list[tuple[int, bool]]) -> None:
    h = StreamHealth()
    seq, items = 100, []
    for step, mark in steps:
        seq += step
        items.append((seq, mark))
    feed(h, items)
    c = h.counters("t", "k")
    assert c.missed + c.resynced_missed == items[-1][0] - items[0][0] + 1 - len(items)
    assert c.gaps + c.resyncs == sum(1 for step, _ in steps[1:] if step > 1)


@given(
    held=st.integers(1, 50),
    missed=st.integers(0, 20),
    history=st.booleans(),
    race=st.integers(0, 3),
    after=st.integers(0, 5),
)
def test_a_resumed_stream_has_no_gap_whatever_the_server_answers_in_time(
    held: int, missed: int, history: bool, race: int, after: int
) -> None:
    """Versions 1..held before the drop, ``missed`` more while away; the server may push ``race`` new
    ones before it reads the resume, then replays (``history``) or sends its current state marked
    resync, then ``resumed``, then live versions. Never a gap or a duplicate; one resync exactly when
    it resynced over a jump."""
    h = StreamHealth()
    feed(h, list(range(1, held + 1)))
    h.begin_resume()
    current = held + missed
    pushed = list(range(current + 1, current + race + 1))  # before the server read the resume
    feed(h, pushed)
    top = current + race
    answer: list[Any] = list(range(held + 1, top + 1)) if history else ([(top, True)] if top > held else [])
    feed(h, answer)
    h.resume_answered(Reply(len(answer) if history else 0, 0 if history else len(answer), False))
    feed(h, list(range(top + 1, top + after + 1)))
    c = h.counters("t", "k")
    assert (c.gaps, c.missed, c.duplicates, c.out_of_order) == (0, 0, 0, 0)
    jumped = not history and top > held + 1 and (not pushed or pushed[0] > held + 1)
    assert c.resyncs == (1 if jumped else 0)
    if jumped:
        assert c.resynced_missed == (pushed[0] if pushed else top) - held - 1
