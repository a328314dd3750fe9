"""The ramp: raise a live feature's percent step by step, judging each step's traffic (``thorcut ramp``).

A :class:`Ramp` owns a claimed ramp (:class:`thorcut.flags.ramp.RampState`) and runs a
:class:`~thorcut.parity.watch.Watch` over the feature's live traffic. The first step is taken once
the stream delivered its first frame (a backend that cannot be reached never sees the feature
changed). Each step moves the feature to the step's percent (``by`` = the store's operator, ``ramp``)
and judges a fresh :class:`~thorcut.parity.watch.Window`:

* a breach at any moment rolls the feature back to ``shadow`` at once and stores the FAIL;
* when the hold is over, a PASS is stored (so the next step passes the ``enable`` gate on real
  evidence) and the next step is taken; a PENDING holds — it never advances without evidence;
* after the last step's PASS the ramp is done and the feature stays live at the last percent.

Every :data:`~thorcut.flags.ramp.HEARTBEAT_S` the owner writes its heartbeat and reads the feature's
flag in one script: someone else changing the feature stops the ramp without touching it, and an
abort (or another process taking the ramp over) ends it. The ramp reports what happens as events
(plain dicts, the NDJSON of ``--json``) and ends with an :class:`Ending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from thorcut.clock import now_iso
from thorcut.compare.shadow import ShadowJudge
from thorcut.errors import ExitCode, Refused, StaleVersion
from thorcut.flags.ramp import (
    ABORTED,
    DONE,
    FAILED,
    HEARTBEAT_S,
    HOLDING,
    INTERRUPTED,
    RUNNING,
    Beat,
    RampState,
    RampStore,
    format_span,
)
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.parity.live import LiveOptions
from thorcut.parity.report import mismatch_examples, parity_record
from thorcut.parity.watch import Breach, Watch, Window
from thorcut.verdict import Verdict

#: seconds between the notes that a step still holds
HOLD_NOTE_S = 10.0
#: the longest the loop sleeps between looks at the clock (heartbeat, hold, deadline)
TICK_S = 0.25
#: the parity record's source for the verdicts a ramp stores
SOURCE = "ramp"
#: exit code of a ramp stopped by Ctrl-C (as every command)
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class Ending:
    """How a ramp ended: its exit code, the status stored, and one line saying why."""

    code: int
    status: str
    message: str


class Ramp:
    """Run one claimed ramp; see the module docstring.

    ``store``'s operator is the audit entry's ``by`` of every change (``ramp``); ``state`` is the
    claimed state (its owner is this process); ``force`` lets the first change of this run past the
    parity gate (later steps pass it on the PASS the ramp stored). ``emit`` gets every event.
    """

    def __init__(self, store: FlagStore, ramps: RampStore, state: RampState, judge: ShadowJudge,
                 opts: LiveOptions, manifest: dict[str, Any], *, emit: Callable[[dict[str, Any]], None],
                 force: bool = False, resumed: bool = False) -> None:  # fmt: skip
        assert state.owner is not None, "a ramp runs for its owner"
        self.store = store
        self.ramps = ramps
        self.state = state
        self.judge = judge
        self.opts = opts
        self.manifest = manifest
        self.emit_event = emit
        self.force = force
        self.resumed = resumed
        self.feature = state.feature
        self.token = state.owner.token
        self.window: Window | None = None
        self.due: float | None = None  # monotonic time the current step's hold ends
        self.holding_since: float | None = None
        self.next_note = 0.0
        self.next_beat = 0.0
        self.ending: Ending | None = None
        self.took_step = False
        self.started = time.monotonic()
        self.watch = Watch(judge, opts, manifest, on_event=self._on_event, on_notice=self._on_notice)

    # -- running --------------------------------------------------------------------------------

    async def run(self, duration: float | None = None, *, previous: dict[str, str] | None = None) -> Ending:
        """Run until the ramp ends, ``duration`` seconds pass, or Ctrl-C; return how it ended.

        Raises what the watch or the ramp's own Redis writes raise (BackendUnavailable, exit 4: the
        WebSocket cannot be opened). Before any step was taken the claim is then given back
        (``previous``: the hash the claim replaced, restored as it was); after, the ramp is left
        ``interrupted`` (if Redis can still be written; else its lease runs out).
        """
        s = self.state
        self._emit("started", steps=list(s.steps), hold_s=s.hold_s, index=s.index, percent=s.percent,
                   resumed=self.resumed)  # fmt: skip
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
        deadline = None if duration is None else time.monotonic() + duration
        clock = asyncio.create_task(self._clock(deadline, duration))
        clock.add_done_callback(self._clock_ended)
        try:
            await self.watch.run(None)
            failed = clock.exception() if clock.done() and not clock.cancelled() else None
            if failed is not None:
                raise failed
        except BaseException as exc:
            if self.ending is None:
                with contextlib.suppress(Exception):  # Redis may be what failed: the lease then tells
                    if not self.took_step:
                        self.ramps.release(self.feature, self.token, previous or {})
                    else:
                        why = f"stopped at step {self._where()}: {exc or type(exc).__name__}"
                        self.ramps.write(self.feature, self.token, {"status": INTERRUPTED, "why": why})
            raise
        finally:
            clock.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)
        if self.ending is None:  # the stream ended on its own (a server that closed for good)
            self._stop(ExitCode.PENDING, INTERRUPTED, "the stream ended", "stream_ended")
        assert self.ending is not None
        return self.ending

    def _clock_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.watch.stop()  # run() raises what it raised

    def interrupt(self) -> None:
        """Stop the ramp as Ctrl-C does: state ``interrupted`` (resumable), exit 130."""
        if self.ending is None:
            self._stop(INTERRUPTED_EXIT, INTERRUPTED, f"stopped by Ctrl-C at step {self._where()}", "signal")

    async def _clock(self, deadline: float | None, duration: float | None) -> None:
        """What happens with time, not traffic: heartbeats, a hold that ends on a quiet stream, the
        holding notes, and ``--duration``."""
        while self.ending is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                holding = f", holding: {self.state.why}" if self.state.status == HOLDING and self.state.why else ""
                waiting = "" if self.took_step else f"; no message came from the stream, {self.feature} was not changed"
                self._stop(ExitCode.PENDING, INTERRUPTED,
                           f"--duration {format_span(duration or 0)} ended at step {self._where()}{holding}{waiting}",
                           "duration")  # fmt: skip
                return
            if now >= self.next_beat:
                self._beat()
            if self.ending is None and self.due is not None and now >= self.due:
                self._decide()
            wake = [now + TICK_S, self.next_beat]
            if self.due is not None and self.due > now:
                wake.append(self.due)
            if deadline is not None:
                wake.append(deadline)
            await asyncio.sleep(max(0.0, min(wake) - time.monotonic()))

    # -- what traffic does ------------------------------------------------------------------------

    def _on_event(self) -> None:
        if self.ending is not None:
            return
        if self.window is None:
            self._enter(self.state.index)  # the stream works: take the (first) step
            return
        breach = self.window.breach()
        if breach is not None:
            self._rollback(breach)
        elif self.due is not None and time.monotonic() >= self.due:
            self._decide()

    def _on_notice(self, text: str) -> None:
        self._emit("notice", text=text)

    # -- steps -------------------------------------------------------------------------------------

    def _enter(self, index: int) -> None:
        """Take step ``index``: move the feature to its percent (unless it is there), start its window."""
        s = replace(self.state, index=index, status=RUNNING, why="", step_started=None, next_due=None)
        beat = self._write(s, "index", "percent", "status", "why", "step_started", "next_due")
        if beat is None:
            return
        self.state = s
        flag = beat.flag
        assert flag is not None
        if self._changed_by_someone(flag):
            return
        forced = False
        if (flag.stage, flag.percent) != (Stage.LIVE, s.percent):
            who = f"started by {s.started_by}" if s.started_by else "ramp"
            reason = f"ramp step {s.step}: {s.percent}% ({who})" + (f": {s.reason}" if s.reason else "")
            try:
                outcome = self.store.change(self.feature, Stage.LIVE, percent=s.percent, reason=reason,
                                            force=self.force, expect_version=s.flag_version)  # fmt: skip
            except StaleVersion:
                self._changed_by_someone(self.store.read(self.feature))
                return
            except Refused as exc:  # the gate (a verdict that expired, a FAIL stored meanwhile) or the stage machine
                self._stop(
                    ExitCode.REFUSED, INTERRUPTED, f"step {s.step} ({s.percent} %) was refused: {exc}", "refused"
                )
                return
            forced, self.force = outcome.forced, False  # later steps pass the gate on the ramp's own PASS
            version = outcome.after.version
        else:
            version = flag.version
        self.took_step = True
        self.window = Window(self.judge, self.feature)
        now = time.monotonic()
        self.due = now + s.hold_s
        self.holding_since = None
        wall = time.time()
        self.state = replace(s, flag_version=version, step_started=wall, next_due=wall + s.hold_s)
        self._emit("step", index=index, of=len(s.steps), percent=s.percent, version=version, forced=forced,
                   hold_s=s.hold_s)  # fmt: skip
        self._write(self.state, "flag_version", "step_started", "next_due")

    def _decide(self) -> None:
        """The hold is over: PASS takes the next step (or ends the ramp), PENDING holds."""
        assert self.window is not None
        breach = self.window.breach()
        if breach is not None:
            self._rollback(breach)
            return
        verdict, reasons = self.window.verdict()
        if verdict is Verdict.PASS:
            self._passed()
            return
        why = "; ".join(reasons)
        now = time.monotonic()
        if self.holding_since is None:
            self.holding_since = now
            self.next_note = now
            self.state = replace(self.state, status=HOLDING, why=why)
            if self._write(self.state, "status", "why") is None:
                return
        else:
            self.state = replace(self.state, why=why)
        if now >= self.next_note:
            self.next_note = now + HOLD_NOTE_S
            self._emit("holding", index=self.state.index, percent=self.state.percent, why=why,
                       window_s=round(self.window.seconds(), 3))  # fmt: skip
        self.due = now + TICK_S  # look again soon (traffic looks at once)

    def _passed(self) -> None:
        assert self.window is not None
        report = self.window.report()
        self.store.record_parity(self.feature, parity_record(report, SOURCE), mismatch_examples(report))
        s = self.state
        self._emit("passed", index=s.index, percent=s.percent, paired=report.counts["paired"],
                   window_s=round(report.window_s, 3))  # fmt: skip
        if s.next_percent is None:
            elapsed = time.monotonic() - self.started
            self._stop(ExitCode.OK, DONE, f"all {len(s.steps)} steps passed; {self.feature} is live at {s.percent} %",
                       None, elapsed_s=round(elapsed, 3))  # fmt: skip
            return
        self.window = None
        self.due = None
        self._enter(s.index + 1)

    def _rollback(self, breach: Breach) -> None:
        """Roll the feature back to shadow at once, then store the FAIL and end the ramp (exit 1)."""
        s = self.state
        try:
            outcome = self.store.change(self.feature, Stage.SHADOW, rollback=True, reason=f"ramp: {breach.cause}")
        except Refused:  # someone moved it out of live meanwhile (off): theirs to say
            self._changed_by_someone(self.store.read(self.feature))
            return
        latency = (time.time() - breach.at) * 1000
        assert self.window is not None
        report = self.window.report()
        self.store.record_parity(self.feature, parity_record(report, SOURCE), mismatch_examples(report))
        self._emit("rolled_back", index=s.index, percent=s.percent, cause=breach.cause, reasons=list(breach.reasons),
                   version=outcome.after.version, audit_entry=outcome.entry_id,
                   fault_at=now_iso(datetime.fromtimestamp(breach.at, UTC)), latency_ms=round(latency, 1))  # fmt: skip
        self.state = replace(s, flag_version=outcome.after.version)
        self._stop(ExitCode.PARITY_FAIL, FAILED,
                   f"{self.feature} rolled back to shadow at step {s.step} ({s.percent} %): {breach.cause}",
                   None, write_why=breach.cause)  # fmt: skip

    # -- the state in Redis -------------------------------------------------------------------------

    def _beat(self) -> None:
        self.next_beat = time.monotonic() + HEARTBEAT_S
        fields = ("status", "why") if self.state.status == HOLDING else ()
        beat = self._write(self.state, *fields)
        if beat is not None and beat.flag is not None and self.took_step:
            self._changed_by_someone(beat.flag)

    def _write(self, state: RampState, *fields: str) -> Beat | None:
        """Heartbeat and store ``fields`` of ``state``; None (and the ramp ended) when it is no
        longer this process's to write."""
        stored = state.to_hash()
        beat = self.ramps.write(self.feature, self.token, {f: stored[f] for f in fields})
        self.next_beat = time.monotonic() + HEARTBEAT_S
        if beat.ok:
            return beat
        if beat.kind == "lost":
            who = str(beat.holder) if beat.holder else "another process"
            self._stop(ExitCode.REFUSED, "", f"{who} took this ramp over; this process stops without touching "
                       f"{self.feature}", "taken_over", write=False)  # fmt: skip
        elif beat.kind == "ended" and beat.status == ABORTED:
            flag = self.store.read(self.feature)
            where = f"live at {flag.percent} %" if flag.stage is Stage.LIVE else flag.stage.value
            self._stop(ExitCode.REFUSED, ABORTED, f"the ramp was aborted ({beat.why or 'no reason given'}); "
                       f"{self.feature} stays {where} — `thorcut disable {self.feature}` rolls it back",
                       "aborted", write=False)  # fmt: skip
        else:
            self._stop(ExitCode.REFUSED, "", f"the ramp's state is gone ({beat.kind} {beat.status}); this process "
                       f"stops without touching {self.feature}", "gone", write=False)  # fmt: skip
        return None

    def _changed_by_someone(self, flag: Any) -> bool:
        """Stop (exit 3, untouched) if the feature is no longer at the version the ramp left it."""
        if flag.version == self.state.flag_version:
            return False
        at = f"live at {flag.percent} %" if flag.stage is Stage.LIVE else flag.stage.value
        by = f" by {flag.updated_by}" if flag.updated_by else ""
        reason = f" ({flag.reason})" if flag.reason else ""
        self._stop(ExitCode.REFUSED, INTERRUPTED,
                   f"{self.feature} was changed{by} meanwhile: now {at}, version {flag.version}{reason}; the ramp "
                   "stopped without touching it", "changed")  # fmt: skip
        return True

    def _stop(self, code: int, status: str, message: str, cause: str | None, *, write: bool = True,
              write_why: str | None = None, **extra: Any) -> None:  # fmt: skip
        """End the ramp: store ``status`` with ``message`` as its why (unless ``write`` is False),
        emit the ending's event, and stop the watch."""
        if self.ending is not None:
            return
        self.ending = Ending(int(code), status, message)
        self.watch.stop()
        s = self.state
        if write and status:
            ended = replace(s, status=status, why=write_why or message)
            beat = self.ramps.write(self.feature, self.token, {f: ended.to_hash()[f] for f in ("status", "why")})
            if beat.ok:
                self.state = ended
        if status == DONE:
            self._emit("done", percent=s.percent, steps=list(s.steps), **extra)
        elif status != FAILED:  # a failure's event is rolled_back
            self._emit("interrupted", index=s.index, percent=s.percent, why=message, cause=cause, **extra)

    def _where(self) -> str:
        return f"{self.state.step} ({self.state.percent} %)"

    def _emit(self, event: str, **fields: Any) -> None:
        self.emit_event({"event": event, "feature": self.feature, **fields})
