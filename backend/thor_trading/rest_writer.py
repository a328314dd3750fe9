"""Writing counted REST reads to Redis: a process's buffer, its flushing thread, and the Lua script
(docs/contracts.md, "Retiring REST"; what is counted and under which label: ``thor_trading.rest_reads``).

``Recorder.record`` is the request path's share: it adds one to a dict of this process under a
lock and never waits for Redis (about a microsecond: ``benchmarks/rest_reads.py``). One daemon
thread per process writes what was counted every ``THOR_REST_COUNT_FLUSH`` seconds (1.0), and
once more when the process ends (``close``), with one Lua script call per feature that

- adds each label's count (HINCRBY) to ``{prefix}:rest:<feature>:<unix minute>`` and sets the
  hash to expire a day after its minute ends. A label that would be a minute's 101st is counted
  as ``other``; the script decides it, so all workers together keep the cap. Counts of several
  workers add up exactly;
- moves ``{prefix}:rest:<feature>:last`` (label -> Unix time of its latest read) forward only,
  under the name the label was counted as (so it grows no faster than the minute hashes), and
  keeps it a day after its last write.

The same thread writes ``{prefix}:page:build``, the build id of the page the backend serves, at
start-up and every minute (a day's expiry).

Flushing from a thread rather than from the request that finds a flush due: that request would
wait for Redis (a round trip, or a timeout while Redis is away), which is exactly the p99 this
must not move. When Redis cannot be reached a batch is tried three times while the connection
itself fails (nothing can have been written), and dropped at once on a timeout (it may have
been written: a retry could count it twice). Dropped reads are counted in
``thor_rest_reads_dropped_total{feature}``; the log gets one line when drops begin and one when
counting works again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import redis
from prometheus_client import Counter

from thorcut.flags import Keys

log = logging.getLogger("thor_trading.rest_reads")  # one logger for counting REST reads

#: Distinct labels a minute hash holds before further ones are counted as :data:`OTHER`.
MAX_LABELS = 100
OTHER = "other"
#: Seconds a minute hash outlives its minute, and ``last`` and ``page:build`` their last write.
KEEP_S = 86400
#: Seconds between writes of ``page:build`` (it is also written at start-up).
BUILD_REFRESH_S = 60.0
#: Seconds a Redis call of the flush may take (the client's timeouts; the Recorder's caller sets them).
TIMEOUT = 1.0
#: Tries of one batch while the connection fails, and the pauses between them.
ATTEMPTS = 3
BACKOFF = (0.1, 0.3)

DROPPED = Counter(
    "thor_rest_reads_dropped_total", "REST reads not counted in Redis (it could not be reached)", ["feature"]
)

# KEYS: one feature's minute hashes, oldest first, then its `last` hash.
# ARGV: the cap, the seconds `last` is kept; per minute hash its EXPIREAT time, n, then n pairs
# (label, count); then m and m pairs (label, Unix time of its latest read).
SCRIPT = """
local cap, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3
local placed = {}
for k = 1, #KEYS - 1 do
  local key = KEYS[k]
  local expire_at, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local size = redis.call('HLEN', key)
  for _ = 1, n do
    local label, count = ARGV[i], ARGV[i + 1]
    i = i + 2
    local name = label
    if redis.call('HEXISTS', key, name) == 0 then
      if size >= cap then name = 'other' end
      if name == label or redis.call('HEXISTS', key, name) == 0 then size = size + 1 end
    end
    redis.call('HINCRBY', key, name, count)
    placed[label] = name
  end
  redis.call('EXPIREAT', key, expire_at)
end
local last = KEYS[#KEYS]
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  local label, at = ARGV[i], ARGV[i + 1]
  i = i + 2
  local name = placed[label] or label
  local held = redis.call('HGET', last, name)
  held = held and tonumber(held)
  if not held or held < tonumber(at) then redis.call('HSET', last, name, at) end
end
if m > 0 then redis.call('EXPIRE', last, keep) end
return 1
"""


Batch = dict[tuple[str, int], dict[str, int]]


class Recorder:
    """Counts reads in this process and writes them to Redis from its own thread.

    ``record`` is what a request does; ``flush`` writes (the thread calls it every ``interval``
    seconds, and :meth:`close` once more); ``page_build`` returns the build id to keep in
    ``page:build`` (None: no key). ``where`` names the Redis in log lines (no secret in it).
    With ``thread`` False no thread is started: the caller flushes (tests, the benchmark).
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, interval: float = 1.0,
                 page_build: Callable[[], str | None] | None = None, where: str = "Redis",
                 clock: Callable[[], float] = time.time, thread: bool = True) -> None:  # fmt: skip
        self.client = client
        self.keys = keys
        self.interval = interval
        self.page_build = page_build
        self.where = where
        self._clock = clock
        self._script = client.register_script(SCRIPT)
        self._lock = threading.Lock()  # the buffer
        self._flushing = threading.Lock()  # one flush at a time: the thread's, and the last one at exit
        self._starting = threading.Lock()
        self._counts: Batch = {}
        self._last: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._threaded = thread
        self._pid: int | None = None
        self._build_checked: float | None = None
        self.outage_since: float | None = None
        self.dropped_in_outage = 0

    # - the request path -

    def record(self, feature: str, label: str, now: float | None = None) -> None:
        """Count one read of ``feature`` by ``label`` (at ``now``, default the clock). Never blocks on I/O."""
        if self._threaded and self._pid != os.getpid():
            self.start()
        at = self._clock() if now is None else now
        minute = int(at // 60)
        with self._lock:
            bucket = self._counts.get((feature, minute))
            if bucket is None:
                bucket = self._counts[(feature, minute)] = {}
            # The same cap as the script's: a 101st label here is at least the 101st in Redis too.
            if label not in bucket and len(bucket) >= MAX_LABELS:
                label = OTHER
            bucket[label] = bucket.get(label, 0) + 1
            last = self._last.get(feature)
            if last is None:
                last = self._last[feature] = {}
            if at > last.get(label, 0.0):
                last[label] = at

    def pending(self) -> int:
        """Reads counted and not yet written."""
        with self._lock:
            return sum(sum(bucket.values()) for bucket in self._counts.values())

    # - the thread -

    def start(self) -> None:
        """Start this process's flushing thread (again after a fork: the parent's buffer is not ours)."""
        with self._starting:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # a forked child: what the parent counted is the parent's to write
                self._lock = threading.Lock()
                self._flushing = threading.Lock()
                self._counts, self._last = {}, {}
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="rest-reads-flush", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _run(self) -> None:
        stop = self._stop
        while True:
            try:
                self.flush()
            except Exception:  # a bug must not end counting for the life of the process
                log.exception("writing REST read counts failed")
            if stop.wait(self.interval):
                return

    def close(self) -> None:
        """Stop the thread and write what is left (at exit; one try, bounded by :data:`TIMEOUT`)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + ATTEMPTS * (2 * TIMEOUT) + sum(BACKOFF))
        self.flush()

    # - writing -

    def _due_build(self) -> str | None:
        if self.page_build is None:
            return None
        now = time.monotonic()
        if self._build_checked is not None and now - self._build_checked < BUILD_REFRESH_S:
            return None
        self._build_checked = now
        return self.page_build()

    def flush(self) -> int:
        """Write what was counted since the last flush, and ``page:build`` when due; return the
        reads written. Never raises for Redis: a batch that cannot be written is dropped and counted."""
        with self._flushing:
            with self._lock:
                counts, last = self._counts, self._last
                self._counts, self._last = {}, {}
            build = self._due_build()
            if not counts and build is None:
                return 0
            error: Exception | None = None
            for attempt in range(ATTEMPTS):
                try:
                    self._write(counts, last, build)
                except redis.ConnectionError as exc:  # refused or reset: the script did not run
                    error = exc
                    if attempt + 1 < ATTEMPTS and not self._stop.wait(BACKOFF[attempt]):
                        continue
                    break
                except (redis.RedisError, OSError) as exc:  # a timeout: it may have run; never twice
                    error = exc
                    break
                else:
                    return self._written(counts)
            assert error is not None
            self._build_checked = None  # try the build again at the next flush
            self._drop(counts, error)
            return 0

    def _write(self, counts: Batch, last: Mapping[str, Mapping[str, float]], build: str | None) -> None:
        by_feature: dict[str, list[tuple[int, dict[str, int]]]] = {}
        for (feature, minute), bucket in counts.items():
            by_feature.setdefault(feature, []).append((minute, bucket))
        pipe = self.client.pipeline(transaction=False)
        for feature, buckets in by_feature.items():
            buckets.sort(key=lambda item: item[0])
            keys = [self.keys.rest(feature, minute) for minute, _ in buckets] + [self.keys.rest_last(feature)]
            args: list[str | int] = [MAX_LABELS, KEEP_S]
            for minute, bucket in buckets:
                args += [(minute + 1) * 60 + KEEP_S, len(bucket)]
                for label, count in bucket.items():
                    args += [label, count]
            seen = last.get(feature, {})
            args.append(len(seen))
            for label, at in seen.items():
                args += [label, f"{at:.3f}"]
            self._script(keys=keys, args=args, client=pipe)
        if build is not None:
            pipe.set(self.keys.page_build, build, ex=KEEP_S)
        pipe.execute()

    def _written(self, counts: Batch) -> int:
        if self.outage_since is not None:
            log.warning("REST read counts are written to %s again, after %.1f s; %d read(s) were dropped meanwhile",
                        self.where, time.monotonic() - self.outage_since, self.dropped_in_outage)  # fmt: skip
            self.outage_since, self.dropped_in_outage = None, 0
        return sum(sum(bucket.values()) for bucket in counts.values())

    def _drop(self, counts: Batch, error: Exception) -> None:
        per_feature: dict[str, int] = {}
        for (feature, _), bucket in counts.items():
            per_feature[feature] = per_feature.get(feature, 0) + sum(bucket.values())
        for feature, reads in per_feature.items():
            DROPPED.labels(feature).inc(reads)
        dropped = sum(per_feature.values())
        if self.outage_since is None:
            self.outage_since, self.dropped_in_outage = time.monotonic(), dropped
            log.warning("REST read counts cannot be written to %s (%s: %s): dropping them (%d read(s) so far, "
                        "thor_rest_reads_dropped_total) until it is back; REST answers as usual",
                        self.where, type(error).__name__, error, dropped)  # fmt: skip
        else:
            self.dropped_in_outage += dropped
