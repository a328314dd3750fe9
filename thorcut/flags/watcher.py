"""Keep a process's copy of every feature's stage current, with no I/O on the read path.

A :class:`FlagWatcher` runs one daemon thread that subscribes to ``{prefix}:changes`` *before*
reading the full state (so no change slips between the two), applies each change whose version
is newer than the one it holds, acknowledges it under ``{prefix}:ack:<feature>:<version>``, and
keeps the worker registered in ``{prefix}:workers``. When Redis goes away the last known stages
stay in force and the thread reconnects with backoff, then resubscribes and resyncs. A process
that never managed to read sees every feature ``off`` — clients read REST, the safe default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from thorcut.features import Stage
from thorcut.flags.rollout import env_override, reads_websocket
from thorcut.flags.store import FlagState
from thorcut.redisconn import Keys

log = logging.getLogger("thorcut.flags")


@dataclass(frozen=True)
class EffectiveFlag:
    """A feature's stage as this process applies it: the stored state, or the env override."""

    state: FlagState
    override: Stage | None = None

    @property
    def stage(self) -> Stage:
        return self.override if self.override is not None else self.state.stage

    @property
    def percent(self) -> int:
        return 100 if self.override is Stage.LIVE else self.state.percent

    def reads_websocket(self, client_id: str) -> bool:
        """Return whether ``client_id`` should render this feature from WebSocket."""
        return reads_websocket(self.stage, self.percent, self.state.feature, client_id)


Listener = Callable[[str, EffectiveFlag], None]


class FlagWatcher:
    """Subscribes to flag changes and serves the current stages from memory.

    ``on_change(feature, flag)`` is called from the watcher thread after each applied change
    (and after a resync that changed something); keep it quick or hand the work off.
    """

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        keys: Keys,
        features: tuple[str, ...],
        *,
        overrides: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        worker_id: str | None = None,
        register: bool = True,
        ttl: float = 10.0,
        on_change: Listener | None = None,
    ) -> None:
        env = os.environ if env is None else env
        overrides = overrides or {f: f"WS_FEATURE_{f.upper()}" for f in features}
        self._factory = client_factory
        self._keys = keys
        self._features = features
        self._override = {f: env_override(overrides.get(f, ""), env) for f in features}
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._register = register
        self._ttl = ttl
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._flags = {f: EffectiveFlag(FlagState(f), self._override[f]) for f in features}
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: redis.client.PubSub | None = None
        self.connected = False
        self.resyncs = 0

    # -- reading: no I/O -------------------------------------------------------------------

    def get(self, feature: str) -> EffectiveFlag:
        """Return the feature's effective flag (``off`` at version 0 before the first read)."""
        return self._flags[feature]

    def stage(self, feature: str) -> Stage:
        return self._flags[feature].stage

    def snapshot(self) -> dict[str, EffectiveFlag]:
        return dict(self._flags)

    @property
    def synced(self) -> bool:
        """Whether the full state has been read at least once."""
        return self._synced.is_set()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> FlagWatcher:
        """Start the thread; with ``wait``, block up to that many seconds for the first sync."""
        self._thread = threading.Thread(target=self._run, name="thorcut-flag-watcher", daemon=True)
        self._thread.start()
        if wait:
            self._synced.wait(wait)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> FlagWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            client: redis.Redis | None = None
            try:
                client = self._factory()
                self._session(client)
                delay = 0.05
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if self.connected:
                    log.warning("flag watcher lost Redis (%s); keeping the last known stages", type(exc).__name__)
                self.connected = False
            finally:
                if self._pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        self._pubsub.close()
                    self._pubsub = None
                if client is not None:
                    client.close()
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)

    def _session(self, client: redis.Redis) -> None:
        pubsub = self._pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(self._keys.changes)
        # Wait for the subscription to be confirmed before reading, so nothing falls between.
        deadline = time.monotonic() + 5
        while pubsub.get_message(timeout=0.5) is None:
            if time.monotonic() > deadline:
                raise redis.TimeoutError("no subscribe confirmation")
        self._resync(client)
        self.connected = True
        renew_every = self._ttl / 3
        next_renew = time.monotonic() + renew_every
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=min(0.25, renew_every))
            if msg is not None and msg.get("type") == "message":
                self._on_message(client, msg["data"])
            if time.monotonic() >= next_renew:
                self._register_worker(client)
                next_renew = time.monotonic() + renew_every
        if self._register:
            client.zrem(self._keys.workers, self.worker_id)
            client.hdel(self._keys.overrides, self.worker_id)

    def _resync(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for f in self._features:
            pipe.hgetall(self._keys.flag(f))
        changed = []
        for f, data in zip(self._features, pipe.execute(), strict=True):
            state = FlagState.from_hash(f, data)
            held = self._flags[f].state
            # A resync is authoritative: after a Redis restart versions may even go back. Only a
            # different (stage, percent, version) is a change; the rest is bookkeeping.
            if (state.stage, state.percent, state.version) != (held.stage, held.percent, held.version):
                changed.append(f)
            self._flags[f] = EffectiveFlag(state, self._override[f])
        self.resyncs += 1
        self._register_worker(client)
        self._synced.set()
        for f in changed:
            self._notify(f)
            self._ack(client, f, self._flags[f].state.version)

    def _on_message(self, client: redis.Redis, data: str) -> None:
        try:
            msg = json.loads(data)
            feature, version = msg["feature"], int(msg["version"])
            stage, percent = Stage(msg["stage"]), int(msg["percent"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed change notification: %.200r", data)
            return
        current = self._flags.get(feature)
        if current is None or version <= current.state.version:
            return  # not ours, or already applied (a resync got there first)
        state = FlagState(feature, stage, percent, version)
        self._flags[feature] = EffectiveFlag(state, self._override[feature])
        self._notify(feature)  # listeners first: the ack is a round trip they need not wait for
        self._ack(client, feature, version)

    def _ack(self, client: redis.Redis, feature: str, version: int) -> None:
        if not self._register or version == 0:
            return
        key = self._keys.ack(feature, version)
        pipe = client.pipeline(transaction=False)
        pipe.hset(key, self.worker_id, repr(time.time()))
        pipe.expire(key, 86400)
        pipe.execute()

    def _register_worker(self, client: redis.Redis) -> None:
        if not self._register:
            return
        now = time.time()
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self._keys.workers, {self.worker_id: now + self._ttl})
        pipe.zremrangebyscore(self._keys.workers, "-inf", now)
        pipe.expire(self._keys.workers, int(self._ttl * 3) + 1)
        forced = {f: s.value for f, s in self._override.items() if s is not None}
        if forced:
            pipe.hset(self._keys.overrides, self.worker_id, json.dumps(forced, sort_keys=True))
            pipe.expire(self._keys.overrides, int(self._ttl * 3) + 1)
        pipe.execute()

    def _notify(self, feature: str) -> None:
        flag = self._flags[feature]
        for listener in self._listeners:
            try:
                listener(feature, flag)
            except Exception:  # a listener's bug must not stop flag updates
                log.exception("flag listener failed for %s", feature)
