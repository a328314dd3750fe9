"""Judging live traffic window by window while it flows: what ``thorcut guard`` and ``thorcut ramp`` share.

A :class:`Watch` is a live run (:func:`thorcut.parity.live.run_live`: the reconnecting stream, its
resume, the REST request pairing each message) that calls back after every event it judged and
runs until stopped or a deadline. A :class:`Window` is one feature's evidence since it started:
the judge's totals minus those at its start, judged by :func:`thorcut.compare.shadow.judge` with
the feature's thresholds, without ending anything (samples still waiting for REST keep waiting).
A window FAILs the moment a threshold is exceeded; it is PASS only with ``min_paired`` pairs and
``min_duration`` seconds inside it. :meth:`Window.breach` says what failed in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from thorcut.compare.shadow import Fault, FeatureReport, ShadowJudge, failures, judge
from thorcut.parity.live import LiveOptions, run_live
from thorcut.parity.result import RunResult
from thorcut.text import safe
from thorcut.verdict import Verdict

#: the longest value (JSON) and cause shown in a breach's one line
VALUE_WIDTH = 60
CAUSE_WIDTH = 300


@dataclass(frozen=True)
class Breach:
    """Why a feature's window FAILed, and when the frame that made it fail arrived."""

    feature: str
    cause: str  # one line naming the failing path or counter (see Window.breach)
    reasons: tuple[str, ...]  # compare.shadow.judge()'s reasons for the FAIL
    counts: dict[str, int]  # the window's counts
    at: float  # time.time() the frame that made the window fail was received


class Window:
    """One feature's evidence since the window started: the judge's totals minus those at the start."""

    def __init__(self, judge: ShadowJudge, feature: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Start now (``clock()``, default ``time.monotonic()``). Raises KeyError if ``judge`` does
        not judge ``feature``."""
        self.clock = clock
        self.judge = judge
        self.feature = feature
        self.tally = judge.tallies[feature]
        self.thresholds = judge.specs[feature].thresholds
        self.restart()

    def restart(self) -> None:
        """Start the window again from now: what was counted so far no longer counts."""
        self._started = self.clock()
        self._start = self.judge.counts(self.feature)
        self._start_errors = dict(self.tally.rest_errors)
        self._start_unpaired = dict(self.tally.unpaired_why)
        self._start_at = self.tally.last_at

    def counts(self) -> dict[str, int]:
        """The counts inside the window (the keys of :attr:`FeatureReport.counts`)."""
        now = self.judge.counts(self.feature)
        return {k: v - self._start.get(k, 0) for k, v in now.items()}

    def seconds(self) -> float:
        return self.clock() - self._started

    def verdict(self) -> tuple[Verdict, tuple[str, ...]]:
        """The window's verdict and its reasons: FAIL as soon as any threshold is exceeded; PASS
        only with ``min_paired`` pairs and ``min_duration`` seconds inside the window; else PENDING."""
        return judge(self.counts(), self.seconds(), self.thresholds)

    def breach(self) -> Breach | None:
        """A :class:`Breach` when :meth:`verdict` is FAIL, else None.

        Its cause names the first failing counter in :func:`judge`'s order: a mismatch by its path
        (``mismatch at cash: ws 1000.0, rest 999.5 (DU1234 seq 41)``), a gap by its stream
        (``gap in positions DU1234: seq 41 -> 44``), the others by the count and the newest event
        (``2 duplicates > 0 allowed (latest: positions DU1234 seq 41)``).
        """
        counts = self.counts()
        verdict, reasons = judge(counts, self.seconds(), self.thresholds)
        if verdict is not Verdict.FAIL:
            return None
        counter, reason = failures(counts, self.thresholds)[0]
        fault = self.tally.faults.get(counter)
        cause = _one_line(_cause(counter, reason, fault))
        at = fault.received if fault is not None and fault.received is not None else time.time()
        return Breach(self.feature, cause, reasons, counts, at)

    def report(self) -> FeatureReport:
        """The window as a :class:`FeatureReport` (to store as the feature's verdict): its counts,
        verdict and reasons (a breach's cause first), and the mismatch examples seen inside it."""
        counts = self.counts()
        seconds = self.seconds()
        verdict, reasons = judge(counts, seconds, self.thresholds)
        breach = self.breach() if verdict is Verdict.FAIL else None
        if breach is not None and breach.cause not in reasons:
            reasons = (breach.cause, *reasons)
        tally = self.tally
        health = self.judge.health.totals(tally.spec.types).to_dict()
        for name in ("gaps", "missed", "resyncs", "resynced_missed", "duplicates", "out_of_order"):
            health[name] = counts[name]
        new = min(counts["mismatched"], len(tally.examples))
        examples = tuple(tally.examples)[len(tally.examples) - new :] if new else ()
        seen = {d["path"] for e in examples for d in e["differences"]}
        paths = tuple(sorted((p for p in tally.paths.values() if p.path in seen), key=lambda p: (-p.count, p.path)))
        return FeatureReport(
            self.feature, verdict, reasons, counts, health,
            _minus(tally.rest_errors, self._start_errors), _minus(tally.unpaired_why, self._start_unpaired),
            paths, examples, seconds, self._start_at if counts["samples"] else None,
            tally.last_at if counts["samples"] else None, self.thresholds,
        )  # fmt: skip


class Watch:
    """A live run (run_live's machinery: reconnecting stream, resume, REST pairing) that calls back
    after every judged event and runs until stopped or a deadline."""

    def __init__(self, judge: ShadowJudge, opts: LiveOptions, manifest: dict[str, Any], *,
                 on_event: Callable[[], None] | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:  # fmt: skip
        """``on_event``: called after every WebSocket message and REST outcome judged (an exception
        it raises ends :meth:`run`, which raises it); ``on_notice``: the connection's notices
        ("disconnected: …", "connected …" after a reconnect)."""
        self.judge = judge
        self.opts = opts
        self.manifest = manifest
        self.on_event = on_event
        self.on_notice = on_notice
        self._stopped = False
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        judge.track_arrivals()  # a mismatch's breach then says when its message arrived

    async def run(self, duration: float | None = None) -> RunResult:
        """Judge live traffic for ``duration`` seconds, or until :meth:`stop` (None). Returns the
        run's result (its reports flush what still waits); raises what run_live raises
        (BackendUnavailable when the WebSocket cannot be opened at the start)."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        if self._stopped:
            self._event.set()
        opts = replace(self.opts, duration=duration)
        return await run_live(self.judge, opts, self.manifest, on_notice=self.on_notice, on_event=self.on_event,
                              stop=self._event)  # fmt: skip

    def stop(self) -> None:
        """End :meth:`run` soon (at once if it has not started); safe from ``on_event``, from other
        tasks, and from other threads."""
        self._stopped = True
        event, loop = self._event, self._loop
        if event is None or loop is None:
            return
        if _running(loop):
            event.set()
        else:  # another thread: asyncio.Event is not thread-safe
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over anyway
                loop.call_soon_threadsafe(event.set)

    @property
    def stopped(self) -> bool:
        return self._stopped


def _running(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _cause(counter: str, reason: str, fault: Fault | None) -> str:
    if fault is None:
        return reason
    where = f"{fault.type} {fault.key}"
    if counter == "mismatched" and fault.difference is not None:
        d = fault.difference
        ws = "(missing)" if d.get("kind") == "missing_on_ws" else _value(d.get("ws"))
        rest = "(missing)" if d.get("kind") == "extra_on_ws" else _value(d.get("rest"))
        return f"mismatch at {d.get('path') or '(body)'}: ws {ws}, rest {rest} ({fault.key} seq {fault.seq})"
    if counter == "gaps":
        return f"gap in {where}: seq {fault.seq - fault.skipped - 1} -> {fault.seq}"
    if counter == "resyncs":
        return f"{reason} (latest: {where} seq {fault.seq - fault.skipped - 1} -> {fault.seq})"
    return f"{reason} (latest: {where} seq {fault.seq})"


def _one_line(text: str) -> str:
    """Network text (paths, keys, values) made one printable line of bounded length."""
    line = safe(text).plain.replace("\n", "\\n").replace("\t", " ")
    return line if len(line) <= CAUSE_WIDTH else line[: CAUSE_WIDTH - 1] + "…"


def _minus(now: dict[str, int] | Any, start: dict[str, int]) -> dict[str, int]:
    out = {k: v - start.get(k, 0) for k, v in now.items()}
    return {k: v for k, v in out.items() if v}
