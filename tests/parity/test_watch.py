"""The shared core of ``guard`` and ``ramp``: a feature's :class:`Window` over a judge fed by hand,
and a :class:`Watch` against the small backend (real sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.small_backend import Backend, small_backend_fixture  # noqa: F401 (the fixture)
from thorcut.compare.shadow import ShadowJudge
from thorcut.manifest import build_manifest
from thorcut.parity.live import LiveOptions
from thorcut.parity.watch import Breach, Watch, Window
from thorcut.verdict import Verdict

MANIFEST = build_manifest(
    {
        "positions": {"thresholds": {"min_paired": 3, "min_duration": 2, "max_resyncs": 1}},
        "account_balance": {"thresholds": {"min_paired": 3, "min_duration": 2}},
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Feed:
    """A judge fed by hand: ``msg`` is a WebSocket message, ``rest`` the REST answer made for it."""

    def __init__(self) -> None:
        self.judge = ShadowJudge(MANIFEST, ["positions", "account_balance"])
        self.judge.track_arrivals()

    def msg(self, seq: int, data: Any = None, *, key: str = "DU1", type_: str = "positions", resync: bool = False,
            received: float | None = None) -> None:  # fmt: skip
        msg: dict[str, Any] = {"type": type_, "key": key, "seq": seq, "data": {"cash": seq} if data is None else data}
        if resync:
            msg["resync"] = True
        self.judge.ws_message(msg, "2026-01-01T00:00:00.000Z", received if received is not None else time.time())

    def rest(self, seq: int, data: Any = None, *, key: str = "DU1", type_: str = "positions") -> None:
        feature = "positions" if type_ == "positions" else "account_balance"
        body = {"type": type_, "key": key, "seq": seq, "data": {"cash": seq} if data is None else data}
        self.judge.rest_outcome(feature, type_, key, seq, 200, body)

    def pair(self, seq: int, **kw: Any) -> None:
        self.msg(seq, **kw)
        self.rest(seq, key=kw.get("key", "DU1"), type_=kw.get("type_", "positions"))


def test_counts_are_the_totals_since_the_window_started() -> None:
    feed = Feed()
    for seq in range(1, 5):
        feed.pair(seq)
    window = Window(feed.judge, "positions")
    assert window.counts()["paired"] == 0
    assert window.counts()["samples"] == 0
    feed.pair(5)
    feed.pair(6)
    counts = window.counts()
    assert (counts["samples"], counts["paired"], counts["matched"]) == (2, 2, 2)
    assert set(counts) == set(feed.judge.report(1.0)["positions"].counts)


def test_counting_does_not_flush_waiting_samples() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.msg(1)  # no REST answer yet
    assert window.counts()["unpaired"] == 0
    assert window.verdict()[0] is Verdict.PENDING
    feed.rest(1)  # the sample still waited, so it pairs now
    assert window.counts()["paired"] == 1


def test_pending_until_both_minimums_are_inside_the_window() -> None:
    feed, clock = Feed(), Clock()
    window = Window(feed.judge, "positions", clock=clock)
    for seq in range(1, 4):
        feed.pair(seq)
    verdict, reasons = window.verdict()
    assert verdict is Verdict.PENDING
    assert reasons == ("window 0.0 s < 2 s needed",)
    clock.now += 2.5
    assert window.verdict()[0] is Verdict.PASS
    window.restart()  # the pairs and the seconds were before the new start
    verdict, reasons = window.verdict()
    assert verdict is Verdict.PENDING
    assert reasons == ("0 paired samples < 3 needed", "window 0.0 s < 2 s needed")
    clock.now += 3
    assert window.verdict()[1] == ("0 paired samples < 3 needed",)
    for seq in range(4, 7):
        feed.pair(seq)
    assert window.verdict()[0] is Verdict.PASS
    assert window.breach() is None


def test_a_mismatch_fails_at_once_naming_its_path() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1)
    feed.msg(2, {"cash": 1000.0}, received=1234.5)
    assert window.breach() is None  # REST has not answered yet
    feed.rest(2, {"cash": 999.5})
    breach = window.breach()
    assert isinstance(breach, Breach)
    assert breach.feature == "positions"
    assert breach.cause == "mismatch at cash: ws 1000.0, rest 999.5 (DU1 seq 2)"
    assert breach.reasons == ("mismatch rate 50.00% > 0.00% (1 of 2 pairs)",)
    assert breach.counts["mismatched"] == 1
    assert breach.at == 1234.5  # when the mismatched message arrived, not when REST answered
    assert window.verdict()[0] is Verdict.FAIL


def test_a_mismatch_before_the_window_does_not_count() -> None:
    feed = Feed()
    feed.msg(1, {"cash": 1})
    feed.rest(1, {"cash": 2})
    window = Window(feed.judge, "positions")
    feed.pair(2)
    assert window.breach() is None
    assert window.counts()["mismatched"] == 0


def test_a_gap_fails_naming_the_stream_and_seqs() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(41)
    feed.msg(44, received=99.0)
    breach = window.breach()
    assert breach is not None
    assert breach.cause == "gap in positions DU1: seq 41 -> 44"
    assert breach.reasons == ("1 gaps > 0 allowed",)
    assert breach.at == 99.0


def test_a_duplicate_fails_naming_the_counter() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1)
    feed.msg(1)
    breach = window.breach()
    assert breach is not None
    assert breach.cause == "1 duplicates > 0 allowed (latest: positions DU1 seq 1)"


def test_an_out_of_order_message_fails() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1)
    feed.msg(3, resync=True)  # a marked jump: one resync, allowed
    feed.msg(2)
    breach = window.breach()
    assert breach is not None
    assert breach.cause == "1 out-of-order messages > 0 allowed (latest: positions DU1 seq 2)"


def test_resyncs_fail_only_above_their_threshold() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1)
    feed.msg(5, resync=True)
    assert window.breach() is None  # max_resyncs 1
    feed.msg(9, resync=True, received=7.0)
    breach = window.breach()
    assert breach is not None
    assert breach.cause == "2 resyncs > 1 allowed (latest: positions DU1 seq 5 -> 9)"
    assert breach.at == 7.0


def test_another_features_fault_is_not_this_ones() -> None:
    feed = Feed()
    positions, balance = Window(feed.judge, "positions"), Window(feed.judge, "account_balance")
    feed.pair(1, type_="account_balance")
    feed.msg(5, type_="account_balance")
    assert balance.breach() is not None
    assert positions.breach() is None


def test_restart_forgets_a_failure() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1)
    feed.msg(3)
    assert window.breach() is not None
    window.restart()
    assert window.breach() is None
    assert window.counts()["gaps"] == 0


def test_network_text_in_a_cause_is_one_inert_line() -> None:
    feed = Feed()
    window = Window(feed.judge, "positions")
    feed.pair(1, key="a\nb\x1b[2J")
    feed.msg(3, key="a\nb\x1b[2J")
    breach = window.breach()
    assert breach is not None
    assert "\n" not in breach.cause
    assert "\x1b" not in breach.cause
    assert breach.cause == "gap in positions a\\nb\\x1b[2J: seq 1 -> 3"


def test_report_of_a_failed_window_leads_with_the_cause() -> None:
    feed = Feed()
    feed.msg(1, {"cash": 1})
    feed.rest(1, {"cash": 2})  # before the window: not in its report
    window = Window(feed.judge, "positions")
    feed.msg(2, {"cash": 5})
    feed.rest(2, {"cash": 6})
    report = window.report()
    assert report.verdict is Verdict.FAIL
    assert report.reasons[0] == "mismatch at cash: ws 5, rest 6 (DU1 seq 2)"
    assert [e["seq"] for e in report.examples] == [2]
    assert report.counts["mismatched"] == 1


# -- Watch against the small backend ------------------------------------------------------------


def options(backend: Backend) -> LiveOptions:
    return LiveOptions(ws_url=backend.ws_url, rest_base=backend.rest_url, headers={}, duration=None,
                       rest_timeout=2.0)  # fmt: skip


def test_watch_calls_back_after_every_event_and_stops_from_the_callback(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])
    events = []
    watch: Watch

    def on_event() -> None:
        events.append(judge.counts("positions")["paired"])
        if events[-1] >= 3:
            watch.stop()

    watch = Watch(judge, options(small_backend), MANIFEST.to_dict(), on_event=on_event)
    started = time.monotonic()
    result = asyncio.run(watch.run())  # no deadline: only stop() ends it
    assert time.monotonic() - started < 5
    assert max(events) >= 3
    assert result.frames >= 3
    assert result.reports["positions"].counts["paired"] >= 3


def test_watch_ends_at_its_deadline(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])
    watch = Watch(judge, options(small_backend), MANIFEST.to_dict())
    started = time.monotonic()
    result = asyncio.run(watch.run(0.6))
    assert 0.5 < time.monotonic() - started < 3
    assert result.frames > 0


def test_watch_stopped_before_it_runs_ends_at_once(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])
    watch = Watch(judge, options(small_backend), MANIFEST.to_dict())
    watch.stop()
    started = time.monotonic()
    asyncio.run(watch.run())
    assert time.monotonic() - started < 2


def test_watch_stops_from_another_task(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])
    watch = Watch(judge, options(small_backend), MANIFEST.to_dict())

    async def main() -> float:
        async def stopper() -> None:
            await asyncio.sleep(0.4)
            watch.stop()

        task = asyncio.create_task(stopper())
        started = time.monotonic()
        await watch.run()
        await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 3


def test_an_error_in_on_event_ends_the_run_and_is_raised(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])

    def on_event() -> None:
        raise RuntimeError("boom")

    watch = Watch(judge, options(small_backend), MANIFEST.to_dict(), on_event=on_event)
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(watch.run(10))


def test_watch_window_sees_a_mismatch_switched_on_while_running(small_backend: Backend) -> None:
    judge = ShadowJudge(MANIFEST, ["positions"])
    window = Window(judge, "positions")
    breaches: list[Breach] = []
    watch: Watch

    def on_event() -> None:
        if judge.counts("positions")["paired"] == 3 and not small_backend.faults:
            small_backend.fault("mismatch")
        breach = window.breach()
        if breach is not None:
            breaches.append(breach)
            watch.stop()

    watch = Watch(judge, options(small_backend), MANIFEST.to_dict(), on_event=on_event)
    asyncio.run(watch.run(10))
    assert breaches, "no breach within 10 s"
    breach = breaches[0]
    assert breach.cause.startswith('mismatch at account: ws "DU1234", rest "DU1234!"')
    assert small_backend.fault_at is not None
    assert breach.at >= small_backend.fault_at - 0.01
    assert breach.at - small_backend.fault_at < 1.0
