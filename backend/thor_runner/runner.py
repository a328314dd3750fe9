"""The job runner: wait for the leader lock, run the jobs while holding it, repeat.

Any number of processes may run ``manage.py run_jobs``; exactly one runs the jobs at a time. Each
waits for the leader lock (:mod:`thor_runner.leader`), and the holder:

* starts a leader *term* in the database (:func:`thor_trading.fence.start_term`): ``term += 1``
  on the single ``LeaderTerm`` row. The term number is the runner's fencing token: every job
  transaction first checks that the row still holds it (``fence.check()``, called by
  ``jobs.bump_many`` and :func:`thor_runner.term.heartbeat_seq`) and fails with ``Fenced`` if a
  later term has started, writing nothing;
* starts a :class:`~global_markets.services.websocket_broadcast.Broadcaster` and a
  :class:`~thor_runner.heartbeat.Heartbeat` over freshly built jobs (fresh objects per term, so
  no in-memory state survives from an earlier term that another runner followed); each job runs
  with the term bound to the heartbeat thread (:mod:`thor_runner.term`);
* keeps the lock renewed (:class:`~thor_runner.leader.Renewer`);
* ends the term when the lock is definitively lost (a renewal that Redis *answers* finds the key
  missing or holding another token), when a job is fenced, or on shutdown; then stops the
  heartbeat and the broadcaster, releases the lock and goes back to waiting.

Why the jobs run on while Redis cannot be reached (renewals time out or fail to connect): the lock
alone could not allow it, because the key may expire meanwhile and another runner take it. The
fencing token makes it safe: a runner that takes over starts a new term first, and from then on
the old leader's next job transaction fails its check, so the old leader stops at once and none of
its writes comes after the new leader's first; no ``seq`` is ever produced twice. And while Redis
is simply down or frozen for everybody, nobody can take the lock, so the leader is the only runner
that could do the work. So a Redis outage costs the broadcasts (the broadcaster drops and counts)
but neither the heartbeat's rhythm nor the database state that REST serves.

A failover of a Redis behind Sentinel (``THORCUT_REDIS_URL=redis+sentinel://…``) is such an outage,
a few seconds long: every client here asks the Sentinels for the primary when it reconnects, so the
renewals reach the new primary, where the replicated lock key still holds this runner's token (the
term goes on) or has expired meanwhile (the renewal says so: this runner steps down and takes the
lock again, in a new term, as it did in tests/backend/test_sentinel.py). The messages lost meanwhile
are healed by the workers themselves: their hubs' probes failed during the outage too
(``global_markets/hub.py``); a new term's broadcaster starts afresh and sends no heal event.

Each process also starts its flag watcher (``websocket_features.watcher()``): the heartbeat asks
it on every tick which features to broadcast. :class:`~thor_runner.status.RunnerStatus` exposes
what the runner is doing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis
from django.conf import settings
from django.db import connections

from global_markets.services import websocket_features
from global_markets.services.websocket_broadcast import Broadcaster
from thor_runner.heartbeat import Heartbeat, Job
from thor_runner.leader import DEFAULT_TTL, LeaderLock, Renewer, leader_key, lock_client
from thor_runner.status import Lead, RunnerStatus
from thor_runner.term import TermJob, TermSubmitter, heartbeat_seq
from thor_trading import fence
from thor_trading.jobs import build_jobs

log = logging.getLogger("thor.jobs")


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
    make_jobs = jobs_factory or (lambda: build_jobs(settings.THOR_SEED))
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
    connections.close_all()
