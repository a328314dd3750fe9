"""Who guards a feature now: ``{prefix}:guard:<feature>`` (docs/contracts.md, "Guard and ramp").

While ``thorcut guard`` guards a feature (it is live or complete) the guard keeps this hash:
``host``, ``pid``, ``since`` (ISO, when it began guarding the feature) and ``heartbeat`` (Unix
seconds), written again every :data:`HEARTBEAT_S` with an expiry of :data:`EXPIRE_S`. It deletes
the hash when it releases the feature (someone moved it, or the guard rolled it back) or ends, and
a guard killed outright leaves it for at most :data:`EXPIRE_S`. ``status`` and the backend's
operations monitor read it (:class:`GuardPresence`); the guard writes it (:class:`PresenceWriter`).

Two guards of one feature do not fight over the hash: the first keeps it while it beats, and
each deletes only its own.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from thorcut.clock import now_iso, parse_iso
from thorcut.redisconn import Keys

__all__ = ["EXPIRE_S", "HEARTBEAT_S", "GuardPresence", "PresenceWriter"]

#: seconds between two writes of a guard's hashes, and how long each outlives the last write
HEARTBEAT_S = 1.0
EXPIRE_S = 3.0

# KEYS: the held features' hashes, then the released ones'. ARGV: host, pid, heartbeat, expiry (ms),
# how many KEYS are held, then each held feature's `since`. A hash another guard holds is left alone.
_FLUSH = """
local host, pid, beat, ttl, held = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
for i, key in ipairs(KEYS) do
  local cur = redis.call('HMGET', key, 'host', 'pid')
  local ours = cur[1] == host and cur[2] == pid
  if i <= held then
    if ours or not cur[1] then
      redis.call('HSET', key, 'host', host, 'pid', pid, 'since', ARGV[5 + i], 'heartbeat', beat)
      redis.call('PEXPIRE', key, ttl)
    end
  elseif ours then
    redis.call('DEL', key)
  end
end
return 1
"""


@dataclass(frozen=True)
class GuardPresence:
    """A feature's guard as stored: which process guards it, since when, and its last heartbeat."""

    feature: str
    host: str
    pid: int
    since: str
    heartbeat: float | None = None

    @classmethod
    def from_hash(cls, feature: str, data: Mapping[str, str]) -> GuardPresence | None:
        """Build from the stored hash; None when there is none (or it is not a guard's)."""
        pid = data.get("pid", "") if data else ""
        if not (pid.isascii() and pid.isdigit()):
            return None
        try:
            beat: float | None = float(data.get("heartbeat", ""))
        except ValueError:
            beat = None
        if beat is not None and not math.isfinite(beat):
            beat = None
        return cls(feature, data.get("host", ""), int(pid), data.get("since", ""), beat)

    def age(self, now: datetime | None = None) -> float | None:
        """Seconds since the guard began guarding the feature, or None when ``since`` is unreadable."""
        at = parse_iso(self.since) if self.since else None
        return None if at is None else ((now or datetime.now(UTC)) - at).total_seconds()

    def describe(self, now: datetime | None = None) -> str:
        """One line for ``status``: ``guarded by host:4242 since 14:30:05 UTC (2 min ago)``."""
        from thorcut.text import ago

        at = parse_iso(self.since) if self.since else None
        if at is None:
            return f"guarded by {self.host}:{self.pid}"
        return f"guarded by {self.host}:{self.pid} since {at.astimezone(UTC):%H:%M:%S} UTC ({ago(self.since, now)})"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The ``guard`` object of ``status --json`` and the operations monitor."""
        now = now or datetime.now(UTC)
        age = self.age(now)
        beat = self.heartbeat
        return {
            "host": self.host,
            "pid": self.pid,
            "since": self.since or None,
            "age_s": round(age, 3) if age is not None else None,
            "heartbeat_age_s": round(now.timestamp() - beat, 3) if beat is not None else None,
        }


class PresenceWriter:
    """The presence hashes of one guard process.

    :meth:`hold` and :meth:`release` only note what is guarded; :meth:`flush` writes it (every held
    feature's hash, a heartbeat, and deletes released ones). Thread-safe: the guard flushes from
    a worker thread while its event loop holds and releases, and a flush writes the holdings as
    they are when it runs, so a feature released meanwhile is never written back.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, host: str | None = None, pid: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self._flush = client.register_script(_FLUSH)
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}  # feature -> since
        self._released: set[str] = set()
        self._new = False

    @property
    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    @property
    def pending(self) -> bool:
        """Whether something was held or released since the last flush."""
        with self._lock:
            return self._new or bool(self._released)

    def hold(self, feature: str) -> None:
        """Note that ``feature`` is guarded from now (``since`` now, unless it already is)."""
        with self._lock:
            if feature not in self._held:
                self._held[feature] = now_iso()
                self._new = True
            self._released.discard(feature)

    def release(self, feature: str) -> None:
        """Note that ``feature`` is no longer guarded (its hash goes at the next flush)."""
        with self._lock:
            if self._held.pop(feature, None) is not None:
                self._released.add(feature)

    def release_all(self) -> None:
        with self._lock:
            self._released.update(self._held)
            self._held.clear()

    def flush(self) -> None:
        """Write every held feature's hash (expiring in :data:`EXPIRE_S`) and delete the released
        ones', in one script. Raises redis-py's errors; what failed is written at the next flush."""
        with self._lock:
            if not self._held and not self._released:
                return
            held = list(self._held.items())
            released = sorted(self._released)
            keys = [self.keys.guard(f) for f, _ in held] + [self.keys.guard(f) for f in released]
            args = [self.host, str(self.pid), f"{time.time():.3f}", str(round(EXPIRE_S * 1000)), str(len(held)),
                    *(since for _, since in held)]  # fmt: skip
            self._flush(keys=keys, args=args)
            self._released.clear()
            self._new = False
