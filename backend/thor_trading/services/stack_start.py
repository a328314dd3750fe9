"""The job runner: the job registry, the leader lock, and the loop that runs jobs only while leader.

Any number of processes may run ``manage.py run_jobs``; exactly one runs the jobs at a time.
Each waits for the Redis lock ``{prefix}:thor:leader`` (``SET NX PX ttl`` with a random token),
and the holder:

* starts a :class:`~global_markets.services.websocket_broadcast.Broadcaster` and a
  :class:`~global_markets.services.heartbeat.Heartbeat` over freshly built jobs (fresh objects
  per term, so no in-memory state survives from an earlier term that another runner followed);
* renews the lock every ``ttl / 3`` with a compare-and-``PEXPIRE`` script (retrying sooner after
  an error), on its own short-timeout Redis client so a slow Redis cannot hold a renewal past
  the TTL;
* treats the lock as valid only until ``(local time just before the last successful SET or
  renewal) + ttl - ttl / 4``. Redis starts the TTL no earlier than that local time, so the local
  deadline always falls before the key can expire and another runner can take it. The heartbeat
  asks this before *every* job: a holder that could not renew stops running jobs at once, and
  one whose key was deleted or taken over (the renewal finds another token) stops immediately.
  That is why no ``seq`` is ever produced by two runners at the same time.
* on losing the lock stops the heartbeat and the broadcaster and goes back to waiting; on
  shutdown releases the lock with a compare-and-``DEL`` so a successor need not wait for the TTL.

Each process also starts its flag watcher (``websocket_features.watcher()``): the heartbeat asks
it on every tick which features to broadcast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from global_markets.services import websocket_features
from global_markets.services.heartbeat import Heartbeat, Job
from global_markets.services.websocket_broadcast import Broadcaster
from thorcut.redisconn import Keys

log = logging.getLogger("thor.jobs")

#: job name -> job class, filled from ``thor_trading.jobs.build_jobs`` (see :func:`build_jobs`).
JOB_CLASSES: dict[str, type] = {}

DEFAULT_TTL = 3.0

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
    """A Redis lease with a random token: acquire, renew, release, and a local validity check."""

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
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def _px(self) -> int:
        return max(1, int(self.ttl * 1000))

    def acquire(self) -> bool:
        """Try once to take the lock (``SET NX PX``); True if this lock now holds it."""
        t0 = time.monotonic()
        if self.client.set(self.key, self.token, nx=True, px=self._px):
            self._valid_until = t0 + self.ttl
            self.held = True
            self.lost.clear()
            return True
        return False

    def renew(self) -> bool:
        """Extend the lease if the key still holds our token; False (and ``lost``) if it does not.

        Raises redis errors (timeouts included): the caller retries until the lease runs out.
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
        """Whether this process may still act as leader (held, not lost, lease not near its end)."""
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
    """Renews a held :class:`LeaderLock` every ``ttl / 3`` until stopped or the lease is lost."""

    def __init__(self, lock: LeaderLock) -> None:
        self.lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thor-leader-renew", daemon=True)
        self.renewals = 0
        self.errors = 0

    def start(self) -> Renewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        lock, every = self.lock, self.lock.ttl / 3
        retry = min(every, max(0.05, lock.ttl / 10))
        wait = every
        while not self._stop.wait(wait):
            try:
                if not lock.renew():
                    return
                self.renewals += 1
                wait = every
            except (redis.RedisError, OSError) as exc:
                self.errors += 1
                if not lock.valid():
                    lock._lose(f"could not renew within the TTL ({type(exc).__name__})")
                    return
                log.warning("leader lock renewal failed (%s); retrying", type(exc).__name__)
                wait = retry


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
) -> None:
    """Wait for the leader lock, run the jobs while holding it, repeat until ``stop_event``.

    Blocks; returns after ``stop_event`` is set, having released the lock. ``jobs_factory``,
    ``broadcaster_factory``, ``redis_url``, ``prefix`` default to the real jobs and settings;
    ``on_lead(lock, heartbeat)`` is called at the start of each term (tests, logging).
    """
    tick = settings.THOR_TICK if tick is None else tick
    stop_event = stop_event or threading.Event()
    url = redis_url or settings.THORCUT_REDIS_URL
    key = leader_key(prefix or settings.THORCUT_PREFIX)
    websocket_features.watcher()  # this process's flags: read on every tick by the heartbeat
    client = lock_client(url, ttl)
    lock = LeaderLock(client, key, ttl)
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
            elif not _lead(lock, tick, stop_event, make_jobs, make_broadcaster, on_lead):
                # The term failed to start (e.g. the jobs could not be built): give a standby
                # the lock for a while rather than spinning on the same failure.
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
) -> bool:
    """One term as leader: run until the lock is lost, the heartbeat dies, or we are stopped.

    Returns False if the term failed with an error (the caller then backs off).
    """
    log.warning("job runner %s is now the leader", lock.token)
    renewer = Renewer(lock).start()
    broadcaster: Broadcaster | None = None
    heartbeat: Heartbeat | None = None
    term = threading.Event()
    term.set()
    ok = True

    def guard() -> bool:
        # Bound to this term: a heartbeat stuck in a job past stop() must not come back to life
        # when the same lock object is acquired again for a later term.
        return term.is_set() and lock.valid()

    try:
        jobs = list(jobs_factory())
        broadcaster = broadcaster_factory().start()
        heartbeat = Heartbeat(tick, jobs, broadcaster, guard=guard, heartbeat_seq=heartbeat_seq)
        if on_lead is not None:
            on_lead(lock, heartbeat)
        if lock.valid():
            heartbeat.start()
            while lock.valid() and heartbeat.running and not stop_event.wait(min(0.05, tick)):
                pass
    except Exception:
        log.exception("job runner term failed")
        ok = False
    finally:
        why = "stopping" if stop_event.is_set() else "lost the lock" if not lock.valid() else "heartbeat ended"
        if heartbeat is not None:
            heartbeat.stop(0)  # ask first, so the guard below reads as a stop, not a refusal
        term.clear()
        if heartbeat is not None and not heartbeat.stop(10.0):
            log.error("heartbeat did not stop within 10 s (a job is stuck); it will not run another job")
        renewer.stop()
        if broadcaster is not None:
            broadcaster.stop(timeout=1.0)
        with contextlib.suppress(redis.RedisError, OSError):
            lock.release()
        _close_db()
        log.warning("job runner %s stepped down (%s)", lock.token, why)
    return ok


def _close_db() -> None:
    from django.db import connections

    connections.close_all()


def heartbeat_seq() -> int:
    """Next heartbeat ``seq`` from the database, so it never restarts when the leader changes."""
    from django.db import transaction

    from thor_trading.models import SeqCounter

    with transaction.atomic():
        return SeqCounter.bump("heartbeat", "")
