"""The heartbeat: one thread that ticks at a fixed rate and runs the jobs due on each tick.

Ticks follow a monotonic schedule, ``start + n * tick``, not ``sleep(tick)`` after each run, so
job time never accumulates as drift. When a tick's work overruns (a slow job, a paused process)
the ticks whose time has fully passed are *skipped and counted*, never run back to back: a
burst would push a stale batch of updates at clients and steal time from the next tick.

Ticks are numbered from 0 (every job runs on the first tick). On each tick every job with
``tick % job.every == 0`` runs (timed into ``JOB_SECONDS``); each message it returns goes, if
the job's feature is broadcast here (shadow/live/complete per the process's flag watcher),
through fault injection (``THOR_FAULTS``) to the broadcaster, whose ``submit()`` never blocks,
so a slow or frozen Redis cannot stall the rhythm. Every 30 ticks a ``heartbeat`` envelope goes
out whatever the flags say (its ``seq`` comes from ``heartbeat_seq``; by default a count of this
heartbeat's envelopes from 1). A job that raises is logged and counted; the heartbeat carries
on. ``guard`` (the job runner's lock check) is asked before every job: a process that no longer
holds the leader lock must not run one more job.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings

from global_markets.metrics import JOB_SECONDS, TICK_LATENESS
from global_markets.services import websocket_features
from thor_runner import faults

log = logging.getLogger("thor.heartbeat")

#: A ``heartbeat`` envelope goes out on every tick divisible by this (docs/contracts.md, "Heartbeat").
HEARTBEAT_EVERY = 30
#: The fastest supported tick.
MIN_TICK = 0.01
#: How many recent lateness samples ``lateness()`` summarises.
LATENESS_SAMPLES = 4096


class Job(Protocol):
    """What the heartbeat runs (implemented in ``thor_trading.jobs``, whose jobs set these per class)."""

    @property
    def name(self) -> str: ...
    @property
    def feature(self) -> str: ...
    @property
    def every(self) -> int: ...

    def run(self, tick: int) -> list[dict[str, Any]]: ...


class Submitter(Protocol):
    def submit(self, message: dict[str, Any]) -> bool: ...


def iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Heartbeat:
    """Runs ``jobs`` on a fixed-rate tick in a daemon thread and hands their messages on.

    ``on_tick(tick)`` is called after each tick's work (tests, metrics). ``guard()`` returning
    False skips the tick's jobs (nothing is built) and stops the heartbeat.
    """

    def __init__(
        self,
        tick_seconds: float,
        jobs: Sequence[Job],
        broadcaster: Submitter,
        on_tick: Callable[[int], None] | None = None,
        *,
        guard: Callable[[], bool] | None = None,
        heartbeat_every: int = HEARTBEAT_EVERY,
        name: str = "thor-heartbeat",
        heartbeat_seq: Callable[[], int] | None = None,
    ) -> None:
        if tick_seconds < MIN_TICK:
            raise ValueError(f"tick must be at least {MIN_TICK} s (got {tick_seconds})")
        # The stack passes a database counter so heartbeat seq continues across leader terms.
        self._heartbeat_seq = heartbeat_seq
        for job in jobs:
            if job.every < 1:
                raise ValueError(f"job {job.name}: every must be >= 1")
        faults.parse(settings.THOR_FAULTS)  # a malformed THOR_FAULTS fails here, not on every tick
        self.tick_seconds = tick_seconds
        self.jobs = list(jobs)
        self.broadcaster = broadcaster
        self.on_tick = on_tick
        self.guard = guard
        self.heartbeat_every = heartbeat_every
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self.tick = -1  # the last tick started
        self.ticks = 0  # ticks run
        self.skipped = 0  # ticks skipped because their time had passed
        self.job_runs: dict[str, int] = {job.name: 0 for job in self.jobs}
        self.job_errors: dict[str, int] = {job.name: 0 for job in self.jobs}
        self._next_error_log: dict[str, float] = {}
        self.submitted = 0  # messages handed to the broadcaster (accepted or not)
        self.suppressed = 0  # messages not broadcast because the feature is off here
        self.heartbeats = 0
        self.guard_stopped = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the current tick; return whether the thread ended within ``timeout``."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observing ------------------------------------------------------------------------------

    def lateness(self) -> dict[str, float]:
        """Summary of recent tick lateness, in seconds."""
        samples = list(self._lateness)
        return {
            "n": float(len(samples)),
            "p50": percentile(samples, 50),
            "p99": percentile(samples, 99),
            "max": max(samples, default=0.0),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "tick": self.tick,
            "ticks": self.ticks,
            "skipped": self.skipped,
            "heartbeats": self.heartbeats,
            "submitted": self.submitted,
            "suppressed": self.suppressed,
            "job_runs": dict(self.job_runs),
            "job_errors": dict(self.job_errors),
            "lateness": self.lateness(),
            "guard_stopped": self.guard_stopped,
        }

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._close_db()

    def _loop(self) -> None:
        tick = self.tick_seconds
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            scheduled = start + n * tick
            delay = scheduled - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            began = time.monotonic()
            late = began - scheduled
            self._lateness.append(late)
            TICK_LATENESS.observe(late)
            if not self._tick(n):
                return
            # Next tick: n + 1, unless its time and later ones have already fully passed, in
            # which case run the latest due tick now and count the ones in between as skipped.
            due = int((time.monotonic() - start) // tick)
            if due > n + 1:
                self.skipped += due - n - 1
                n = due
            else:
                n += 1

    def _tick(self, n: int) -> bool:
        """Run tick ``n``; return False when the guard says stop."""
        self.tick = n
        self.ticks += 1
        if not self._guard_ok(n):
            return False
        for job in self.jobs:
            if n % job.every:
                continue
            if not self._guard_ok(n):
                return False
            self._run_job(job, n)
        if n % self.heartbeat_every == 0:
            self.heartbeats += 1
            seq = self.heartbeats
            if self._heartbeat_seq is not None:
                try:
                    seq = self._heartbeat_seq()
                except Exception:  # a database hiccup must not stop the rhythm; the gap shows it
                    log.exception("heartbeat seq counter failed; sending the local count")
            self._submit({"type": "heartbeat", "feature": None, "key": "", "seq": seq,
                          "ts": iso_now(), "data": {"tick": n}})  # fmt: skip
        if self.on_tick is not None:
            try:
                self.on_tick(n)
            except Exception:
                log.exception("heartbeat on_tick callback failed")
        return True

    def _guard_ok(self, n: int) -> bool:
        if self.guard is None or self.guard():
            return True
        if self._stop.is_set():
            return False  # being stopped anyway: not a refusal worth a warning
        self.guard_stopped = True
        log.warning("heartbeat: guard refused at tick %d; stopping", n)
        return False

    def _run_job(self, job: Job, n: int) -> None:
        t0 = time.perf_counter()
        try:
            messages = job.run(n)
        except Exception:
            self._job_failed(job, n, "failed")
            self._recover_db()
            return
        finally:
            JOB_SECONDS.labels(job.name).observe(time.perf_counter() - t0)
        self.job_runs[job.name] = self.job_runs.get(job.name, 0) + 1
        if not messages:
            return
        try:
            if not websocket_features.is_broadcast(job.feature):
                self.suppressed += len(messages)
                return
            spec = settings.THOR_FAULTS
            for message in messages:
                for out in faults.ws(message, spec):
                    self._submit(out)
        except Exception:  # e.g. a job naming a feature the watcher does not know
            self._job_failed(job, n, "could not hand its messages on")

    def _job_failed(self, job: Job, n: int, what: str) -> None:
        errors = self.job_errors[job.name] = self.job_errors.get(job.name, 0) + 1
        now = time.monotonic()
        if now >= self._next_error_log.get(job.name, 0.0):  # at most one traceback per job per 10 s
            self._next_error_log[job.name] = now + 10.0
            log.exception("job %s %s at tick %d (%d failures so far)", job.name, what, n, errors)

    def _submit(self, message: dict[str, Any]) -> None:
        self.submitted += 1
        try:
            self.broadcaster.submit(message)
        except Exception:  # the broadcaster never raises by contract; the rhythm matters more
            log.exception("broadcaster.submit failed")

    @staticmethod
    def _recover_db() -> None:
        """After a failed job, drop a broken DB connection so the next tick starts clean."""
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()

    @staticmethod
    def _close_db() -> None:
        from django.db import connections

        connections.close_all()
