"""The guard loop behind ``thorcut guard``: judge live traffic, and roll back a feature the moment it fails.

One :class:`~thorcut.parity.watch.Watch` (one reconnecting stream, REST pairing) judges every named
feature; each feature that is ``live`` or ``complete`` has its own
:class:`~thorcut.parity.watch.Window`, checked after every judged event. The moment a window has a
:class:`~thorcut.parity.watch.Breach`, the feature is moved back to ``shadow`` through the flag
store (its audit entry's ``by`` is the store's operator, ``guard``; its reason ``guard: <cause>``),
and the window's FAIL is stored as the feature's verdict (source ``guard``), so ``status`` shows
why and ``enable`` stays shut until a new PASS. Healthy features are never touched, and neither a
connection drop nor a REST error fails a window (the stream reconnects and resumes; REST errors
are counted).

The stages are read again every ``poll`` seconds: a feature someone moved to ``shadow`` or ``off``
is no longer guarded (``released``), one that became ``live`` is guarded with a fresh window. The
run ends at its deadline, on :meth:`Guard.stop`, or once something was rolled back and nothing is
left guarded.

While it guards a feature, the guard says so in ``{prefix}:guard:<feature>`` (thorcut/flags/presence.py):
written when guarding begins and every second after, deleted when the feature is released or rolled
back and when the run ends; a guard killed outright leaves it for at most 3 s.

Nothing here prints: every step is an event (a dict, the NDJSON of ``guard --json``) given to ``emit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from thorcut.clock import now_iso
from thorcut.compare.shadow import ShadowJudge
from thorcut.errors import TransitionRefused
from thorcut.flags.presence import HEARTBEAT_S, PresenceWriter
from thorcut.flags.stages import Stage
from thorcut.flags.state import FlagState
from thorcut.flags.store import FlagStore
from thorcut.parity.live import LiveOptions
from thorcut.parity.result import RunResult
from thorcut.parity.watch import Breach, Watch, Window

#: the stages whose traffic is guarded
GUARDED = (Stage.LIVE, Stage.COMPLETE)
#: seconds between two reads of the stages
POLL = 0.5

Emit = Callable[[dict[str, Any]], None]


def iso(ts: float) -> str:
    """``ts`` (Unix seconds) in thorcut's one time format."""
    return now_iso(datetime.fromtimestamp(ts, UTC))


@dataclass(frozen=True)
class Rollback:
    """A feature the guard moved back to ``shadow``, and why."""

    feature: str
    cause: str
    reasons: tuple[str, ...]
    version: int  # the feature's version after the rollback
    audit_entry: str | None  # the audit stream entry id
    fault_at: float  # time.time() the frame that made the window fail was received
    latency_ms: float  # from that frame to the committed audit entry (this machine's clock)

    def to_event(self) -> dict[str, Any]:
        return {"event": "rolled_back", "feature": self.feature, "cause": self.cause, "reasons": list(self.reasons),
                "version": self.version, "audit_entry": self.audit_entry, "fault_at": iso(self.fault_at),
                "latency_ms": round(self.latency_ms, 1)}  # fmt: skip


class Guard:
    """Guard ``judge``'s features; see the module docstring.

    ``store``'s operator is what the audit log records as ``by`` (``guard``). Call :meth:`begin`
    (it reads the stages), then :meth:`run`. Redis failures while reading the stages at the start
    or while rolling back surface as redis-py's errors (the caller translates them: exit 4); while
    only following the stages, they are a notice and the read is retried.
    """

    def __init__(self, store: FlagStore, judge: ShadowJudge, opts: LiveOptions, manifest: dict[str, Any], *,
                 emit: Emit, poll: float = POLL) -> None:  # fmt: skip
        self.store = store
        self.judge = judge
        self.features = list(judge.specs)
        self.emit = emit
        self.poll = poll
        self.windows: dict[str, Window] = {}
        self.rolled_back: list[Rollback] = []
        self.watch = Watch(judge, opts, manifest, on_event=self.check,
                           on_notice=lambda text: emit({"event": "notice", "text": text}))  # fmt: skip
        self._poll_failed = False
        self._versions: dict[str, int] = {}  # the newest version seen of each feature (a late read is older)
        self.presence = PresenceWriter(store.client, store.keys)

    @property
    def guarding(self) -> list[str]:
        return list(self.windows)

    def begin(self) -> dict[str, FlagState]:
        """Read the stages, start a window for each live or complete feature (and say so in its
        presence hash), emit ``started``."""
        states = self.store.read_all()
        for name in self.features:
            if states[name].stage in GUARDED:
                self.windows[name] = Window(self.judge, name)
                self.presence.hold(name)
        self.presence.flush()
        self.emit({"event": "started", "features": self.features, "guarding": self.guarding})
        return states

    async def run(self, duration: float | None = None) -> RunResult:
        """Guard until ``duration`` seconds have passed (None: until stopped); raises what the
        live run raises (BackendUnavailable if the WebSocket cannot be opened at the start)."""
        poller = asyncio.create_task(self._poll())
        beat = asyncio.create_task(self._beat())
        try:
            return await self.watch.run(duration)
        finally:
            poller.cancel()
            beat.cancel()
            self.presence.release_all()
            self._flush_presence()  # here, not in a thread: a cancelled run awaits nothing more

    def stop(self) -> None:
        self.watch.stop()

    # -- after every judged event ----------------------------------------------------------------

    def check(self) -> None:
        """Roll back every guarded feature whose window has a breach (the Watch's ``on_event``)."""
        for window in list(self.windows.values()):
            breach = window.breach()
            if breach is not None:
                self._roll_back(window, breach)

    def _roll_back(self, window: Window, breach: Breach) -> None:
        from thorcut.parity.report import mismatch_examples, parity_record

        name = breach.feature
        del self.windows[name]
        self.presence.release(name)
        try:
            outcome = self.store.change(name, Stage.SHADOW, rollback=True, reason=f"guard: {breach.cause}")
        except TransitionRefused:  # someone turned it off meanwhile: nothing to roll back
            outcome = None
        committed = time.time()
        self._flush_presence()
        if outcome is None or not outcome.changed:  # someone moved it first
            stage = outcome.after.stage.value if outcome is not None else Stage.OFF.value
            self.emit({"event": "released", "feature": name, "stage": stage})
            self._end_if_done()
            return
        report = window.report()
        self.store.record_parity(name, parity_record(report, "guard"), mismatch_examples(report))
        self._versions[name] = outcome.after.version
        done = Rollback(name, breach.cause, breach.reasons, outcome.after.version, outcome.entry_id, breach.at,
                        (committed - breach.at) * 1000)  # fmt: skip
        self.rolled_back.append(done)
        self.emit(done.to_event())
        self._end_if_done()

    def _end_if_done(self) -> None:
        if self.rolled_back and not self.windows:
            self.watch.stop()

    # -- presence ----------------------------------------------------------------------------------

    def _flush_presence(self) -> bool:
        """Write the presence hashes; False when Redis did not take them (they expire on their own,
        and the stages' poll already says that Redis is away)."""
        try:
            self.presence.flush()
        except redis.RedisError:
            return False
        return True

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await asyncio.to_thread(self._flush_presence)

    # -- following stage changes -------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                states = await asyncio.to_thread(self.store.read_all)
            except redis.RedisError as exc:
                if not self._poll_failed:
                    self.emit({"event": "notice", "text": f"cannot read the stages ({type(exc).__name__}); "
                                                          "retrying, still guarding"})  # fmt: skip
                self._poll_failed = True
                continue
            if self._poll_failed:
                self.emit({"event": "notice", "text": "reading the stages again"})
                self._poll_failed = False
            self.follow(states)
            if self.presence.pending:
                await asyncio.to_thread(self._flush_presence)

    def follow(self, states: dict[str, FlagState]) -> None:
        """Guard the features that became live or complete; release those that left."""
        for name in self.features:
            if states[name].version < self._versions.get(name, 0):
                continue  # read before the guard's own rollback committed
            self._versions[name] = states[name].version
            stage = states[name].stage
            if name in self.windows and stage not in GUARDED:
                del self.windows[name]
                self.presence.release(name)
                self.emit({"event": "released", "feature": name, "stage": stage.value})
            elif name not in self.windows and stage in GUARDED:
                self.windows[name] = Window(self.judge, name)
                self.presence.hold(name)
                self.emit({"event": "guarding", "feature": name})
        self._end_if_done()
