"""An OpenFeature provider over the flag store, for the ``openfeature-sdk`` package
(``pip install 'thorcut[openfeature]'``): applications ask the standard API, not thorcut's internals::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from thorcut.openfeature import ThorcutProvider

    api.set_provider_and_wait(ThorcutProvider())  # THORCUT_REDIS_URL, THORCUT_PREFIX, thorcut.toml
    flags = api.get_client()
    flags.get_string_value("positions", "off")  # the stage: off, shadow, live or complete
    flags.get_boolean_value("positions", False, EvaluationContext("client-7"))  # reads WebSocket?

Every evaluation is answered from a :class:`~thorcut.flags.FlagWatcher`'s memory (no I/O); the
watcher follows Redis by pub/sub, so a change reaches the answers within milliseconds.

Evaluation (the flag key is the feature's name; an unknown one is ``FLAG_NOT_FOUND``):

- **string**: the feature's effective stage (an env override ``WS_FEATURE_*`` wins over Redis, as
  everywhere in thorcut); the variant is the stage too.
- **boolean**: whether the evaluation context's targeting key (the client id) renders the feature
  from WebSocket, by the sticky percent bucket (:func:`thorcut.flags.reads_websocket`); the variant
  is ``"websocket"`` or ``"rest"``. When the feature is ``live`` for 0 < percent < 100 the answer
  depends on the key: reason ``SPLIT``, and a missing (or empty) targeting key is
  ``TARGETING_KEY_MISSING``. At any other stage or percent the key does not matter, so the answer
  is given without one.
- **integer, float, object**: ``TYPE_MISMATCH``; a feature is a stage or a yes/no.
- Reason ``STATIC``, except ``SPLIT`` (above) and ``STALE`` when the value may be out of date: the
  watcher has lost Redis and serves the last known stages, or a reset of the store is in force
  and this feature's stage is the one kept from before it (an env override is never stale).
- Flag metadata: ``stage``, ``percent``, ``version``, and ``epoch`` (the store's epoch the flag
  was written in) and ``override`` (the stage an env override forces) when there are any.
- Before the watcher's first read of Redis: ``PROVIDER_NOT_READY``.

Errors are raised as OpenFeature's exceptions, so the SDK returns the caller's default with reason
``ERROR`` and the error code, and runs the error hooks. Pass ``"off"`` / ``False`` as the default:
that is the safe answer thorcut gives a process that never read its flags (clients read REST).

Events (to the handlers of the provider's clients; READY and ERROR of initialization come from the
SDK when :meth:`ThorcutProvider.initialize` returns or raises):

- ``PROVIDER_READY`` once the flags were read; again when Redis is reached after an outage, or
  when a reset is over (the store has the old epoch again, or every feature was set in the new one).
- ``PROVIDER_CONFIGURATION_CHANGED`` for each applied change, ``flags_changed=[feature]``, with
  the new ``stage``, ``percent`` and ``version`` in its metadata.
- ``PROVIDER_STALE`` when the watcher loses Redis (the last known stages stay in force).
- ``PROVIDER_ERROR`` (``GENERAL``, the message says what happened) when the watcher sees a reset
  of the store (docs/contracts.md, "The store's epoch"): evaluations go on, with the kept stages.
  A reset outranks an outage: while one is in force, losing Redis sends no ``PROVIDER_STALE``.
  ``initialize`` raises, so the SDK reports ``PROVIDER_ERROR``, when Redis cannot be read within
  ``timeout`` (``PROVIDER_NOT_READY``) or a reset is in force at once (``GENERAL``); the provider
  sends ``PROVIDER_READY`` as soon as that is over.

The reference backend reads its flags from its own watcher (``global_markets/services/
websocket_features.py``), not through this provider: it asks on every heartbeat tick and for every
client of each ``flags`` push, where the SDK's hooks and contexts cost many times the watcher's
memory read (``benchmarks/openfeature_eval.py``), it needs one consistent snapshot of every
feature with its version for a push, and it may use only :mod:`thorcut.flags` of thorcut.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.exception import (
    ErrorCode,
    FlagNotFoundError,
    GeneralError,
    ProviderNotReadyError,
    TargetingKeyMissingError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from thorcut.config import load_settings
from thorcut.errors import UsageError
from thorcut.flags.stages import Stage, check_feature
from thorcut.flags.watcher import EffectiveFlag, FlagWatcher, StoreReset
from thorcut.redisconn import Keys, connect
from thorcut.redisurl import parse_redis_url

NAME: Final = "thorcut"
_METADATA: Final = Metadata(name=NAME)

#: What the SDK was last told of the provider's status: (event, message).
_Status = tuple[ProviderEvent, str]


class ThorcutProvider(AbstractProvider):
    """An OpenFeature provider answering from a :class:`~thorcut.flags.FlagWatcher` (module docstring).

    ``redis_url`` and ``prefix`` default to thorcut's settings (``THORCUT_REDIS_URL``,
    ``THORCUT_PREFIX``, then ``thorcut.toml`` or ``config``); any URL thorcut takes works, through
    Sentinel (``redis+sentinel://``) and TLS (``rediss://``) too. ``features`` default to the
    manifest's (``thorcut.toml`` if found, else the built-in one) and must be features of it;
    ``env`` (default ``os.environ``) is read for the settings and the ``WS_FEATURE_*`` overrides
    (each feature's ``env_override`` in the manifest). ``timeout`` (default ``THORCUT_TIMEOUT``,
    2 s) bounds each Redis call and :meth:`initialize`'s wait for the first read.

    The provider makes its own watcher, started by :meth:`initialize` and stopped by
    :meth:`shutdown`. With ``register=False`` (the default) that watcher reads and follows the
    flags only; ``register=True`` makes the process count as a backend worker: it is listed in
    ``{prefix}:workers``, acknowledges every version (``thorcut enable --wait`` waits for it), shows
    its env overrides in ``thorcut status`` and records the epoch it holds, so a store Redis lost
    entirely is told from a new one. An application that only asks about flags stays out of those.

    Given ``watcher=``, the provider answers from that watcher (started by its owner) and leaves
    it running on :meth:`shutdown`: a backend shares its own. The other settings then do not apply
    and giving them is an error.

    Raises :class:`~thorcut.errors.UsageError` (``ConfigError`` for settings) for bad arguments, a
    malformed Redis URL, an unknown feature or an unreadable ``thorcut.toml``; nothing connects
    before :meth:`initialize`.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str | None = None,
        *,
        features: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        watcher: FlagWatcher | None = None,
        register: bool = False,
        timeout: float | None = None,
        config: str | Path | None = None,
    ) -> None:
        super().__init__()
        if timeout is not None and not _positive(timeout):
            raise UsageError(f"ThorcutProvider: timeout must be a positive number of seconds, not {timeout!r}")
        self._make: Callable[[], FlagWatcher] | None = None
        self._where = "the given watcher"
        if watcher is not None:
            given = [n for n, v in (("redis_url", redis_url), ("prefix", prefix), ("features", features),
                                    ("env", env), ("config", config)) if v is not None]  # fmt: skip
            if register:
                given.append("register")
            if given:
                raise UsageError(f"ThorcutProvider(watcher=...) answers from that watcher as it is; drop "
                                 f"{', '.join(given)} (they configure a watcher of the provider's own)")  # fmt: skip
            self._timeout = 2.0 if timeout is None else float(timeout)
        else:
            self._make = self._factory(redis_url, prefix, features, env, register, timeout, config)
            watcher = self._make()
        self._watcher = watcher
        self._features = tuple(watcher.snapshot())
        self._lock = threading.Lock()
        self._started = False  # the provider's own watcher runs
        self._spent = False  # the provider's own watcher was stopped: initialize() makes another
        self._live = False  # initialize() has returned: events go to the SDK
        self._shown: _Status | None = None
        self._read = threading.Event()  # the watcher has read the full state
        self._listen(watcher)

    def _factory(
        self,
        redis_url: str | None,
        prefix: str | None,
        features: Sequence[str] | None,
        env: Mapping[str, str] | None,
        register: bool,
        timeout: float | None,
        config: str | Path | None,
    ) -> Callable[[], FlagWatcher]:
        """Check the settings and return what makes the provider's own watcher."""
        for name, value in (("redis_url", redis_url), ("prefix", prefix)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"ThorcutProvider: {name} must be a non-empty string, not {value!r}")
        if redis_url is not None:
            parse_redis_url(redis_url, "ThorcutProvider's redis_url")
        settings = load_settings({"redis_url": redis_url, "prefix": prefix}, config=config, env=env)
        names = settings.features if features is None else _feature_names(features, settings.features)
        spec = {f.name: f.env_override for f in settings.manifest.features}
        overrides = {f: spec[f] for f in names}
        url, seconds = settings.redis_url, settings.timeout if timeout is None else float(timeout)
        connect(url, seconds, check=False).close()  # what redis-py itself refuses in the URL, now
        keys = Keys(settings.prefix)
        self._timeout = seconds
        self._where = f"Redis at {parse_redis_url(url).shown} (prefix {settings.prefix})"

        def make() -> FlagWatcher:
            return FlagWatcher(lambda: connect(url, seconds, check=False), keys, names, overrides=overrides,
                               env=env, register=register)  # fmt: skip

        return make

    @property
    def watcher(self) -> FlagWatcher:
        """The watcher the answers come from."""
        return self._watcher

    def get_metadata(self) -> Metadata:
        return _METADATA

    # -- lifecycle -----------------------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start the provider's own watcher and wait up to ``timeout`` for its first read.

        Raises :class:`~openfeature.exception.ProviderNotReadyError` when the flags could not be
        read in time, and :class:`~openfeature.exception.GeneralError` when a reset of the store is
        in force: the SDK then reports ``PROVIDER_ERROR``, and the provider sends
        ``PROVIDER_READY`` once that is over.
        """
        with self._lock:
            if self._make is not None and not self._started:
                if self._spent:  # a stopped watcher does not start again
                    self._watcher = self._make()
                    self._spent = False
                    self._read.clear()
                    self._listen(self._watcher)
                self._watcher.start()
                self._started = True
            watcher = self._watcher
        # An own watcher is ready once connected: it reads the full state, then says so (a status
        # listener call). A given one may have read long ago.
        if watcher.synced and (watcher.connected or self._make is None):
            self._read.set()
        self._read.wait(self._timeout)
        with self._lock:
            self._live = True
            if not watcher.synced:
                message = (f"thorcut could not read the flags from {self._where} within {self._timeout:g} s; "
                           "evaluations return the caller's default until it does")  # fmt: skip
                self._shown = (ProviderEvent.PROVIDER_ERROR, message)
                raise ProviderNotReadyError(message)
            if watcher.reset is not None:
                self._shown = (ProviderEvent.PROVIDER_ERROR, watcher.reset.describe())
                raise GeneralError(watcher.reset.describe())
            self._shown = (ProviderEvent.PROVIDER_READY, "")

    def shutdown(self) -> None:
        """Stop the provider's own watcher (a given one keeps running); events stop."""
        with self._lock:
            self._live = False
            stop = self._make is not None and self._started
            self._started = False
            self._spent = self._spent or stop
        if stop:  # outside the lock: the watcher thread may be waiting for it in a listener
            self._watcher.stop()

    # -- evaluation: no I/O --------------------------------------------------------------------

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        flag = self._flag(flag_key)
        stage = flag.stage.value
        return FlagResolutionDetails(stage, reason=self._reason(flag_key, flag, Reason.STATIC), variant=stage,
                                     flag_metadata=_metadata(flag))  # fmt: skip

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        flag = self._flag(flag_key)
        key = evaluation_context.targeting_key if evaluation_context is not None else None
        split = flag.stage is Stage.LIVE and 0 < flag.percent < 100
        if split and not key:
            raise TargetingKeyMissingError(
                f"{flag_key} is live for {flag.percent}% of clients: pass the client id as the evaluation "
                "context's targeting key"
            )
        value = flag.reads_websocket(key or "")  # off, shadow, complete, live 0 or 100: any key answers alike
        return FlagResolutionDetails(
            value,
            reason=self._reason(flag_key, flag, Reason.SPLIT if split else Reason.STATIC),
            variant="websocket" if value else "rest",
            flag_metadata=_metadata(flag),
        )

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        raise self._mismatch(flag_key, "an integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        raise self._mismatch(flag_key, "a float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        raise self._mismatch(flag_key, "an object")

    def _known(self, flag_key: str) -> None:
        if flag_key not in self._features:
            raise FlagNotFoundError(f"no feature {flag_key!r}; thorcut's features are {', '.join(self._features)}")

    def _flag(self, flag_key: str) -> EffectiveFlag:
        self._known(flag_key)
        watcher = self._watcher
        if not watcher.synced:
            raise ProviderNotReadyError(f"thorcut has not read the flags from {self._where} yet")
        return watcher.get(flag_key)

    def _mismatch(self, flag_key: str, kind: str) -> TypeMismatchError:
        self._known(flag_key)
        return TypeMismatchError(f"{flag_key} is a thorcut feature: evaluate it as a string (its stage) or a "
                                 f"boolean (whether the targeting key reads WebSocket), not as {kind}")  # fmt: skip

    def _reason(self, flag_key: str, flag: EffectiveFlag, fresh: Reason) -> Reason:
        watcher = self._watcher
        if flag.override is None:
            reset = watcher.reset
            if not watcher.connected or (reset is not None and flag_key in reset.kept):
                return Reason.STALE
        return fresh

    # -- events: called on the watcher thread --------------------------------------------------

    def _listen(self, watcher: FlagWatcher) -> None:
        watcher.add_listener(self._on_change)
        watcher.add_status_listener(self._on_status)

    def _on_change(self, feature: str, flag: EffectiveFlag) -> None:
        with self._lock:
            if self._live:
                self.emit_provider_configuration_changed(ProviderEventDetails(
                    flags_changed=[feature],
                    message=f"{feature} is {flag.stage.value} (version {flag.state.version})",
                    metadata={"stage": flag.stage.value, "percent": flag.percent, "version": flag.state.version},
                ))  # fmt: skip

    def _on_status(self, connected: bool, reset: StoreReset | None) -> None:
        watcher = self._watcher
        if not watcher.synced:
            return
        self._read.set()
        if reset is not None:
            status: _Status = (ProviderEvent.PROVIDER_ERROR, reset.describe())
        elif not connected:
            status = (ProviderEvent.PROVIDER_STALE, f"thorcut lost {self._where}; the last known stages stay in force")
        else:
            status = (ProviderEvent.PROVIDER_READY, "")
        with self._lock:
            if not self._live or status == self._shown:
                return
            self._shown = status
            event, message = status
            if event is ProviderEvent.PROVIDER_READY:
                self.emit_provider_ready(ProviderEventDetails())
            elif event is ProviderEvent.PROVIDER_STALE:
                self.emit_provider_stale(ProviderEventDetails(message=message))
            else:
                self.emit_provider_error(ProviderEventDetails(message=message, error_code=ErrorCode.GENERAL))


def _feature_names(features: Sequence[str], known: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``features`` as a tuple if each is a feature of the manifest, once; raise UsageError."""
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise UsageError(f"ThorcutProvider: features must be a sequence of feature names, such as "
                         f"('positions', 'intraday'), not {features!r}")  # fmt: skip
    names = tuple(features)
    if not names:
        raise UsageError("ThorcutProvider: features is empty; name at least one, or leave it out for the manifest's")
    for name in names:
        if not isinstance(name, str):
            raise UsageError(f"ThorcutProvider: features must be names (strings), not {name!r}")
        check_feature(name, known)
    if len(set(names)) != len(names):
        raise UsageError(f"ThorcutProvider: features names a feature twice: {', '.join(names)}")
    return names


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _metadata(flag: EffectiveFlag) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {
        "stage": flag.stage.value,
        "percent": flag.percent,
        "version": flag.state.version,
    }
    if flag.state.epoch:
        meta["epoch"] = flag.state.epoch
    if flag.override is not None:
        meta["override"] = flag.override.value
    return meta
