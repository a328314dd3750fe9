"""The job runner: the job registry, the leader lock, and the loop that runs jobs only while leader.

Any number of processes may run ``manage.py run_jobs``; exactly one runs the jobs at a time.
Each waits for the Redis lock ``{prefix}:thor:leader`` (``SET NX PX ttl`` with a random token),
and the holder:

* starts a leader *term* in the database (:func:`thor_trading.fence.start_term`): ``term += 1``
  on the single ``LeaderTerm`` row. The term number is the runner's fencing token: every job
  transaction first checks that the row still holds it (``fence.check()``, called by
  ``jobs.bump_many`` and :func:`heartbeat_seq`) and fails with ``Fenced`` if a later term has
  started, writing nothing;
* starts a :class:`~global_markets.services.websocket_broadcast.Broadcaster` and a
  :class:`~global_markets.services.heartbeat.Heartbeat` over freshly built jobs (fresh objects
  per term, so no in-memory state survives from an earlier term that another runner followed);
  each job runs with the term bound to the heartbeat thread;
* renews the lock every ``ttl / 3`` with a compare-and-``PEXPIRE`` script, on its own
  short-timeout Redis client, retrying every ``ttl / 10`` after an error;
* ends the term when the lock is definitively lost (a renewal that Redis *answers* finds the key
  missing or holding another token), when a job is fenced, or on shutdown; then stops the
  heartbeat and the broadcaster, releases the lock with a compare-and-``DEL`` (never someone
  else's; a successor need not wait for the TTL) and goes back to waiting.

Why the jobs run on while Redis cannot be reached (renewals time out or fail to connect): the lock
alone could not allow it, because the key may expire meanwhile and another runner take it. The
fencing token makes it safe: a runner that takes over starts a new term first, and from then on
the old leader's next job transaction fails its check, so the old leader stops at once and none of
its writes comes after the new leader's first; no ``seq`` is ever produced twice. And while Redis
is simply down or frozen for everybody, nobody can take the lock, so the leader is the only runner
that could do the work. So a Redis outage costs the broadcasts (the broadcaster drops and counts)
but neither the heartbeat's rhythm nor the database state that REST serves. A holder killed
outright (``kill -9``) stops renewing, its key expires, and a standby takes over within the TTL.

Each process also starts its flag watcher (``websocket_features.watcher()``): the heartbeat asks
it on every tick which features to broadcast. :class:`RunnerStatus` exposes what the runner is
doing (``run_jobs --stats-file``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from global_markets.services import websocket_features
from global_markets.services.heartbeat import Heartbeat, Job
from global_markets.services.websocket_broadcast import Broadcaster
from thor_trading import fence
from thorcut.redisconn import Keys

log = logging.getLogger("thor.jobs")

#: job name -> job class, filled from ``thor_trading.jobs.build_jobs`` (see :func:`build_jobs`).
JOB_CLASSES: dict[str, type] = {}

DEFAULT_TTL = 3.0
#: How many of the latest tick-lateness samples :class:`RunnerStatus` reports.
RECENT_LATENESS = 512

# Take the key if it is free, or if it already holds our token: an acquire or renewal whose
# answer was lost (client timeout while Redis was frozen) may have set it after all.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def build_jobs(seed: int | None = None) -> list[Job]:
    """Build the jobs from ``thor_trading.jobs`` and register their classes in ``JOB_CLASSES``."""
    from thor_trading import jobs

    built: list[Job] = list(jobs.build_jobs(settings.THOR_SEED if seed is None else seed))
    for job in built:
        JOB_CLASSES[job.name] = type(job)
    return built


def leader_key(prefix: str) -> str:
    return f"{Keys(prefix).base}:thor:leader"


def lock_client(url: str, ttl: float) -> redis.Redis:
    """A client for the lock only: every call bounded well below the TTL, and never retried."""
    timeout = min(0.5, ttl / 6)
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


class LeaderLock:
    """A Redis lease with a random token: acquire, renew, release, and a local validity check.

    ``valid()`` says whether the lease is surely still ours in Redis (it ends ``ttl / 4`` before
    the key can expire). The job runner does not stop at that point (a renewal that cannot reach
    Redis is retried while the jobs run on, fenced by the database term); it ends its term when
    ``lost`` is set: a renewal Redis answered found the key gone or held by another token.
    """

    def __init__(self, client: redis.Redis, key: str, ttl: float = DEFAULT_TTL, token: str | None = None) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.key = key
        self.ttl = ttl
        self.margin = ttl / 4
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._valid_until = 0.0
        self.held = False
        self.lost = threading.Event()
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def _px(self) -> int:
        return max(1, int(self.ttl * 1000))

    def acquire(self) -> bool:
        """Try once to take the lock (free, or already holding our token); True if this lock now holds it."""
        t0 = time.monotonic()
        if self._acquire(keys=[self.key], args=[self.token, self._px]) == 1:
            self._valid_until = t0 + self.ttl
            self.held = True
            self.lost.clear()
            return True
        return False

    def renew(self) -> bool:
        """Extend the lease if the key still holds our token; False (and ``lost``) if it does not.

        Raises redis errors (timeouts included): the caller retries.
        """
        t0 = time.monotonic()
        if self._renew(keys=[self.key], args=[self.token, self._px]) == 1:
            self._valid_until = t0 + self.ttl
            return True
        self._lose("the lock key no longer holds this runner's token")
        return False

    def release(self) -> bool:
        """Delete the key if it still holds our token (never someone else's)."""
        was_held, self.held = self.held, False
        self._valid_until = 0.0
        if not was_held:
            return False
        return bool(self._release(keys=[self.key], args=[self.token]))

    def valid(self) -> bool:
        """Whether the lease is surely still ours in Redis (held, not lost, not near its end)."""
        return self.held and not self.lost.is_set() and time.monotonic() < self._valid_until - self.margin

    def remaining(self) -> float:
        return max(0.0, self._valid_until - time.monotonic()) if self.held else 0.0

    def holder(self) -> str | None:
        return self.client.get(self.key)  # type: ignore[return-value]

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("leader lock %s lost: %s", self.key, why)
        self.lost.set()


class Renewer:
    """Renews a held :class:`LeaderLock` every ``ttl / 3`` until stopped or the lock is lost.

    A renewal that fails with a Redis error (timeout, refused connection) is retried every
    ``ttl / 10`` for as long as it takes; only an answer saying the key is not ours ends it.
    """

    def __init__(self, lock: LeaderLock) -> None:
        self.lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thor-leader-renew", daemon=True)
        self.renewals = 0
        self.errors = 0
        self.outages = 0
        self.unreachable_since: float | None = None  # monotonic time of the first failure of this outage

    def start(self) -> Renewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def stats(self) -> dict[str, Any]:
        since = self.unreachable_since
        return {
            "renewals": self.renewals,
            "errors": self.errors,
            "outages": self.outages,
            "unreachable_for": round(time.monotonic() - since, 3) if since is not None else 0.0,
            "lease_remaining": round(self.lock.remaining(), 3),
        }

    def _run(self) -> None:
        lock, every = self.lock, self.lock.ttl / 3
        retry = min(every, max(0.05, lock.ttl / 10))
        wait = every
        while not self._stop.wait(wait):
            try:
                renewed = lock.renew()
            except (redis.RedisError, OSError) as exc:
                self.errors += 1
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
                    self.outages += 1
                    log.warning("leader lock renewal failed (%s: %s); retrying, the jobs run on (fenced by the "
                                "database term)", type(exc).__name__, exc)  # fmt: skip
                wait = retry
                continue
            if not renewed:
                return
            if self.unreachable_since is not None:
                log.warning("leader lock renewed again after %.2f s without Redis",
                            time.monotonic() - self.unreachable_since)  # fmt: skip
                self.unreachable_since = None
            self.renewals += 1
            wait = every


class TermJob:
    """A job run with its leader term bound as the heartbeat thread's fencing token."""

    def __init__(self, job: Job, term: fence.Term) -> None:
        self.job = job
        self.term = term
        self.name = job.name
        self.feature = job.feature
        self.every = job.every

    def run(self, tick: int) -> list[dict[str, Any]]:
        with fence.bound(self.term):
            return self.job.run(tick)

    def __repr__(self) -> str:
        return f"<{self.name} every {self.every}, term {self.term.number}>"


class TermSubmitter:
    """The term's way to the broadcaster: once the term is fenced nothing more goes out.

    (After a fenced job the heartbeat may still send its envelope with a local seq count, the
    fallback for a failed seq counter; a runner that has been replaced must not.)
    """

    def __init__(self, broadcaster: Broadcaster, term: fence.Term) -> None:
        self.broadcaster = broadcaster
        self.term = term
        self.fenced_drops = 0

    def submit(self, message: dict[str, Any]) -> bool:
        if self.term.fenced.is_set():
            self.fenced_drops += 1
            return False
        return self.broadcaster.submit(message)


@dataclass
class Lead:
    """One term as leader, for :class:`RunnerStatus`."""

    term: fence.Term
    renewer: Renewer
    started: float
    heartbeat: Heartbeat | None = None
    broadcaster: Broadcaster | None = None

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "term": self.term.number,
            "for": round(time.monotonic() - self.started, 3),
            "fenced": self.term.reason if self.term.fenced.is_set() else "",
            "renewer": self.renewer.stats(),
        }
        if self.heartbeat is not None:
            out["heartbeat"] = self.heartbeat.stats()
            # The latest samples themselves (oldest first; one per tick run, so the last
            # ``ticks - t`` of them are the ticks run since an earlier snapshot with ``ticks == t``):
            # lets an observer take the percentiles of a window, e.g. a Redis outage.
            samples = list(getattr(self.heartbeat, "_lateness", ()))[-RECENT_LATENESS:]
            out["lateness_recent"] = [round(x, 6) for x in samples]
        if self.broadcaster is not None:
            out["broadcaster"] = self.broadcaster.stats()
        return out


@dataclass
class RunnerStatus:
    """What a job runner is doing: its current term (if leading), the last one, and counts."""

    token: str = ""
    terms: int = 0
    step_downs: Counter[str] = field(default_factory=Counter)
    lead: Lead | None = None
    last: dict[str, Any] | None = None  # the stats of the last term, as it ended

    def snapshot(self) -> dict[str, Any]:
        lead = self.lead
        current: dict[str, Any] | None = None
        with contextlib.suppress(RuntimeError):  # a deque or dict changed under us: next time
            current = lead.stats() if lead is not None else None
        return {
            "pid": os.getpid(),
            "time": time.time(),
            "token": self.token,
            "leader": lead is not None,
            "terms": self.terms,
            "step_downs": dict(self.step_downs),
            "current": current,
            "last": self.last,
        }


def run_job_runner(
    tick: float | None = None,
    ttl: float = DEFAULT_TTL,
    stop_event: threading.Event | None = None,
    *,
    jobs_factory: Callable[[], Sequence[Job]] | None = None,
    broadcaster_factory: Callable[[], Broadcaster] | None = None,
    redis_url: str | None = None,
    prefix: str | None = None,
    on_lead: Callable[[LeaderLock, Heartbeat], None] | None = None,
    status: RunnerStatus | None = None,
) -> None:
    """Wait for the leader lock, run the jobs while holding it, repeat until ``stop_event``.

    Blocks; returns after ``stop_event`` is set, having released the lock. ``jobs_factory``,
    ``broadcaster_factory``, ``redis_url`` (the lock's Redis), ``prefix`` default to the real jobs
    and settings; ``on_lead(lock, heartbeat)`` is called at the start of each term (tests,
    logging); ``status`` is kept up to date for observers.
    """
    tick = settings.THOR_TICK if tick is None else tick
    stop_event = stop_event or threading.Event()
    status = status or RunnerStatus()
    url = redis_url or settings.THORCUT_REDIS_URL
    key = leader_key(prefix or settings.THORCUT_PREFIX)
    websocket_features.watcher()  # this process's flags: read on every tick by the heartbeat
    client = lock_client(url, ttl)
    lock = LeaderLock(client, key, ttl)
    status.token = lock.token
    poll = min(0.25, ttl / 10)
    make_jobs = jobs_factory or build_jobs
    make_broadcaster = broadcaster_factory or Broadcaster
    unreachable = False
    log.info("job runner %s waiting for %s (tick %.3fs, ttl %.1fs)", lock.token, key, tick, ttl)
    try:
        while not stop_event.is_set():
            try:
                got = lock.acquire()
                unreachable = False
            except (redis.RedisError, OSError) as exc:
                if not unreachable:
                    log.warning("job runner cannot reach Redis for the leader lock (%s)", exc)
                unreachable, got = True, False
            if not got:
                stop_event.wait(poll)
            elif not _lead(lock, tick, stop_event, make_jobs, make_broadcaster, on_lead, status):
                # The term failed to start (e.g. the jobs could not be built, the database is
                # down): give a standby the lock for a while rather than spinning on the failure.
                stop_event.wait(ttl)
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            lock.release()
        client.close()


def _lead(
    lock: LeaderLock,
    tick: float,
    stop_event: threading.Event,
    jobs_factory: Callable[[], Sequence[Job]],
    broadcaster_factory: Callable[[], Broadcaster],
    on_lead: Callable[[LeaderLock, Heartbeat], None] | None,
    status: RunnerStatus,
) -> bool:
    """One term as leader: run until the lock is lost, the term is fenced, the heartbeat dies, or stop.

    Returns False if the term failed with an error (the caller then backs off).
    """
    log.info("job runner %s took the leader lock", lock.token)
    renewer = Renewer(lock).start()
    broadcaster: Broadcaster | None = None
    heartbeat: Heartbeat | None = None
    term: fence.Term | None = None
    lead: Lead | None = None
    open_ = threading.Event()
    open_.set()
    ok = True

    def guard() -> bool:
        # Bound to this term: a heartbeat stuck in a job past stop() must not come back to life
        # when the same lock object is acquired again for a later term.
        return open_.is_set() and not lock.lost.is_set() and term is not None and not term.fenced.is_set()

    try:
        # The term starts before anything is built: the simulation resumes from the database
        # only after every transaction of an earlier term has committed or been fenced.
        term = fence.start_term(lock.token)
        log.warning("job runner %s is now the leader (term %d)", lock.token, term.number)
        lead = status.lead = Lead(term, renewer, time.monotonic())
        status.terms += 1
        jobs = [TermJob(job, term) for job in jobs_factory()]
        broadcaster = lead.broadcaster = broadcaster_factory().start()
        this_term = term
        heartbeat = lead.heartbeat = Heartbeat(tick, jobs, TermSubmitter(broadcaster, term), guard=guard,
                                               heartbeat_seq=lambda: heartbeat_seq(this_term))  # fmt: skip
        if on_lead is not None:
            on_lead(lock, heartbeat)
        if guard():
            heartbeat.start()
            while guard() and heartbeat.running and not stop_event.wait(min(0.05, tick)):
                pass
    except Exception:
        log.exception("job runner term failed")
        ok = False
    finally:
        if stop_event.is_set():
            why = "stopping"
        elif term is not None and term.fenced.is_set():
            why = f"fenced: {term.reason}"
        elif lock.lost.is_set():
            why = "lost the lock"
        else:
            why = "heartbeat ended" if ok else "term failed"
        if heartbeat is not None:
            heartbeat.stop(0)  # ask first, so the guard below reads as a stop, not a refusal
        open_.clear()
        if heartbeat is not None and not heartbeat.stop(10.0):
            log.error("heartbeat did not stop within 10 s (a job is stuck); it will not run another job")
        renewer.stop()
        if broadcaster is not None:
            broadcaster.stop(timeout=1.0)
        with contextlib.suppress(redis.RedisError, OSError):
            lock.release()
        _close_db()
        if lead is not None:
            status.last = lead.stats()
        status.lead = None
        status.step_downs[why.split(":")[0]] += 1
        log.warning("job runner %s stepped down (%s)", lock.token, why)
    return ok


def _close_db() -> None:
    from django.db import connections

    connections.close_all()


def heartbeat_seq(term: fence.Term | None = None) -> int:
    """Next heartbeat ``seq`` from the database, so it never restarts when the leader changes.

    Fenced like the jobs when ``term`` is given.
    """
    from django.db import transaction

    from thor_trading.models import SeqCounter

    with fence.bound(term), transaction.atomic():
        fence.check()
        return SeqCounter.bump("heartbeat", "")
