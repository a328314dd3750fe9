"""A Redis lease with a random token: who *should* run the jobs (the database term decides who *can*).

The lock is the key ``{prefix}:thor:leader``, holding the holder's token
``<host>:<pid>:<random>``. :meth:`LeaderLock.acquire` takes it when it is free (``SET ... PX ttl``
in a script); a :class:`Renewer` thread extends it every ``ttl / 3`` with a compare-and-``PEXPIRE``
script, on a short-timeout client of its own (:func:`lock_client`), retrying every ``ttl / 10``
after an error; :meth:`LeaderLock.release` deletes it with a compare-and-``DEL``, never someone
else's, so a successor need not wait for the TTL. A holder killed outright (``kill -9``) stops
renewing, its key expires, and a standby takes over within the TTL.

Only an answer from Redis saying the key is gone or holds another token ends a lease
(:attr:`LeaderLock.lost`): a renewal that cannot reach Redis is retried while the jobs run on,
which ``thor_runner.runner`` explains.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from thorcut.flags import Keys, parse_redis_url

log = logging.getLogger("thor.jobs")

DEFAULT_TTL = 3.0

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


def leader_key(prefix: str) -> str:
    return f"{Keys(prefix).base}:thor:leader"


def lock_client(url: str, ttl: float) -> redis.Redis:
    """A client for the lock only: every call bounded well below the TTL, and never retried.

    ``url`` may name a Sentinel service: each new connection then goes to the primary the
    Sentinels name (each Sentinel query bounded by the same timeout), so after a failover the
    renewals reach the new primary, where the replicated key still holds this runner's token or
    has expired (then the lease is lost and taken again, in a new term).
    """
    timeout = min(0.5, ttl / 6)
    client: redis.Redis = parse_redis_url(url, "the leader lock's Redis URL").client(
        timeout, retry=Retry(NoBackoff(), 0)
    )
    return client


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
