"""Keep a process's copy of every feature's stage current, with no I/O on the read path.

A :class:`FlagWatcher` runs one daemon thread that subscribes to ``{prefix}:changes`` *before*
reading the full state (so no change slips between the two), applies each change whose version
is newer than the one it holds, acknowledges it under ``{prefix}:ack:<feature>:<version>``, and
keeps the worker registered in ``{prefix}:workers``. When Redis goes away the last known stages
stay in force and the thread reconnects with backoff, then resubscribes and resyncs. A process
that never managed to read sees every feature ``off`` — clients read REST, the safe default.
Through Sentinel (a client from a ``redis+sentinel://`` URL) each reconnect goes to the primary
the Sentinels name, so after a failover the watcher follows the new primary the same way.

The watcher follows the store's epoch (``{prefix}:meta``, docs/contracts.md "The store's epoch,
backup and restore"). When the store it reads no longer has the epoch it followed — Redis lost
or replaced its data — that is a **reset**: it keeps every stage it knew, except for a feature
changed since in the new epoch (or whose stored stage is the one it holds), logs a warning,
calls the reset listeners and shows the reset in :attr:`FlagWatcher.reset` until the store
has the old epoch again (a restore) or every feature has been adopted in the new one.

Status listeners hear every change of :attr:`FlagWatcher.connected` and :attr:`FlagWatcher.reset`
(Redis lost and regained, a reset seen and over), for a process that reports its flags' health.
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
from dataclasses import dataclass, field

import redis

from thorcut.flags.rollout import env_override, reads_websocket
from thorcut.flags.stages import Stage
from thorcut.flags.state import FlagState
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

    def state_key(self) -> tuple[Stage, int]:
        """The stored (stage, percent) this flag holds, without the override."""
        return (self.state.stage, self.state.percent)

    def reads_websocket(self, client_id: str) -> bool:
        """Return whether ``client_id`` should render this feature from WebSocket."""
        return reads_websocket(self.stage, self.percent, self.state.feature, client_id)


Listener = Callable[[str, EffectiveFlag], None]


@dataclass(frozen=True)
class StoreReset:
    """A reset the watcher saw: the epoch it followed, what the store has now, what it kept."""

    followed: str | None  # the epoch the held stages came from (None: it never saw one)
    found: str | None  # the store's epoch now (None: no meta)
    kept: tuple[str, ...] = ()  # features whose last known stage is kept over the store's
    detected_at: float = field(default_factory=time.time, compare=False)

    def describe(self) -> str:
        if self.followed is None:
            return "the flag store holds flags or an audit log but no meta: Redis lost or replaced its data"
        now = f"epoch {self.found}" if self.found else "no epoch"
        kept = f"; keeping the last known stages of {', '.join(self.kept)}" if self.kept else ""
        return f"the flag store was reset: it had epoch {self.followed}, it now has {now}{kept}"

    def to_dict(self) -> dict[str, object]:
        return {"followed": self.followed, "found": self.found, "kept": list(self.kept),
                "detected_at": self.detected_at, "message": self.describe()}  # fmt: skip


ResetListener = Callable[[StoreReset], None]
#: ``listener(connected, reset)``: the watcher's :attr:`~FlagWatcher.connected` and
#: :attr:`~FlagWatcher.reset` after one of them changed.
StatusListener = Callable[[bool, StoreReset | None], None]


class FlagWatcher:
    """Subscribes to flag changes and serves the current stages from memory.

    ``on_change(feature, flag)`` is called from the watcher thread after each applied change
    (and after a resync that changed something); keep it quick or hand the work off.
    ``on_reset(reset)`` is called from the same thread when a reset of the store is detected.
    Status listeners (:meth:`add_status_listener`) are called from it too.
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
        on_reset: ResetListener | None = None,
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
        self._remade = False  # the pub/sub connection was re-made under the current session
        self.connected = False
        self.resyncs = 0
        #: The store's epoch the held stages follow: None before the first read, "" for a store
        #: without meta.
        self.epoch: str | None = None
        #: The reset in force, if any (see the module docstring); None when the store is whole.
        self.reset: StoreReset | None = None
        self.resets_detected = 0
        self._reset_listeners: list[ResetListener] = [on_reset] if on_reset else []
        self._status_listeners: list[StatusListener] = []

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

    def add_reset_listener(self, listener: ResetListener) -> None:
        self._reset_listeners.append(listener)

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(connected, reset)`` from the watcher thread each time :attr:`connected`
        or :attr:`reset` changes: Redis lost (``False``) or reached again after a read of the full
        state (``True``), a reset seen, replaced by another, or over (``None``). A first attempt
        that fails changes nothing (a watcher starts disconnected)."""
        self._status_listeners.append(listener)

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
                    self._status_changed()
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
        # A client whose connections retry re-makes a dropped pub/sub connection inside
        # get_message and re-subscribes by itself (through Sentinel: on the new primary), and
        # what was published meanwhile never comes: a re-made connection ends the session, so
        # the next one reads the full state again.
        self._remade = False
        connection = pubsub.connection
        connection.register_connect_callback(self._on_remade)
        try:
            self._resync(client)
            if not self.connected:
                self.connected = True
                self._status_changed()
            renew_every = self._ttl / 3
            next_renew = time.monotonic() + renew_every
            while not self._stop.is_set():
                msg = pubsub.get_message(timeout=min(0.25, renew_every))
                if self._remade:
                    raise redis.ConnectionError("the pub/sub connection was re-made; changes may have been missed")
                if msg is not None and msg.get("type") == "message":
                    self._on_message(client, msg["data"])
                if time.monotonic() >= next_renew:
                    self._register_worker(client)
                    next_renew = time.monotonic() + renew_every
        finally:
            connection.deregister_connect_callback(self._on_remade)
        if self._register:
            client.zrem(self._keys.workers, self.worker_id)
            client.hdel(self._keys.overrides, self.worker_id)
            client.hdel(self._keys.epochs, self.worker_id)

    def _on_remade(self, connection: object) -> None:
        self._remade = True

    def _resync(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hget(self._keys.meta, "epoch")
        pipe.exists(self._keys.audit)
        for f in self._features:
            pipe.hgetall(self._keys.flag(f))
        found, audit, *flags = pipe.execute()
        store = str(found or "")
        states = {f: FlagState.from_hash(f, data) for f, data in zip(self._features, flags, strict=True)}
        if self.epoch is None or self.epoch in ("", store):
            # The store it followed, or that store's first epoch: the read is authoritative, and
            # within one epoch versions may even go back (Redis restarted from an older snapshot).
            adopt = set(self._features)
        else:  # a reset: keep what it knew unless changed in the new epoch or equal anyway
            adopt = {
                f for f, st in states.items()
                if (store and st.epoch == store) or (st.stage, st.percent) == self._flags[f].state_key()
            }  # fmt: skip
        kept = tuple(f for f in self._features if f not in adopt)
        if not kept and (store or self.epoch is None):
            self.epoch = store
        changed = []
        for f in adopt:
            state, held = states[f], self._flags[f].state
            # Only a different (stage, percent, version) is a change; the rest is bookkeeping.
            if (state.stage, state.percent, state.version) != (held.stage, held.percent, held.version):
                changed.append(f)
            self._flags[f] = EffectiveFlag(state, self._override[f])
        self._note_reset(store, bool(audit) or any(flags), kept)
        self.resyncs += 1
        self._register_worker(client)
        self._synced.set()
        for f in changed:
            self._notify(f)
            self._ack(client, f, self._flags[f].state.version)

    def _note_reset(self, store: str, has_data: bool, kept: tuple[str, ...]) -> None:
        """Set :attr:`reset` after a read; log and tell the listeners when it is a new one."""
        before = self.reset
        if self.epoch != store:
            reset: StoreReset | None = StoreReset(self.epoch or None, store or None, kept)
        elif not store and has_data:
            reset = StoreReset(None, None)
        else:
            reset = None
        if reset is not None and reset != self.reset:
            self.resets_detected += 1
            log.warning("%s", reset.describe())
            self.reset = reset
            for listener in self._reset_listeners:
                try:
                    listener(reset)
                except Exception:  # a listener's bug must not stop flag updates
                    log.exception("flag reset listener failed")
        elif reset is None and self.reset is not None:
            log.warning("the flag store is whole again (epoch %s)", store or "none")
        self.reset = reset
        if reset != before:
            self._status_changed()

    def _status_changed(self) -> None:
        for listener in self._status_listeners:
            try:
                listener(self.connected, self.reset)
            except Exception:  # a listener's bug must not stop flag updates
                log.exception("flag status listener failed")

    def _on_message(self, client: redis.Redis, data: str) -> None:
        try:
            msg = json.loads(data)
            feature, version = msg["feature"], int(msg["version"])
            stage, percent = Stage(msg["stage"]), int(msg["percent"])
            epoch = str(msg.get("epoch") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed change notification: %.200r", data)
            return
        current = self._flags.get(feature)
        if current is None:
            return  # not ours
        if epoch != self.epoch or self.reset is not None:
            self._resync(client)  # another epoch, or a reset in force: the epoch rules live there
            return
        if version <= current.state.version:
            return  # already applied (a resync got there first)
        state = FlagState(feature, stage, percent, version, epoch=epoch)
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
        held = self.reset.followed if self.reset is not None else self.epoch
        if held:  # what it holds, so a command can tell a wiped store from a new one
            pipe.hset(self._keys.epochs, self.worker_id, held)
            pipe.expire(self._keys.epochs, int(self._ttl * 3) + 1)
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
