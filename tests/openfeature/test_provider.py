"""The OpenFeature provider, through the real ``openfeature-sdk`` against real Redis servers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, FlagNotFoundError, ProviderNotReadyError
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagType, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import ProviderStatus

from tests.conftest import start_redis
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.errors import ConfigError, UsageError
from thorcut.flags.rollout import reads_websocket
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.flags.watcher import FlagWatcher
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.openfeature import ThorcutProvider
from thorcut.redisconn import Keys, connect

ALL_EVENTS = tuple(ProviderEvent)


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the handler ran
    event: ProviderEvent
    details: EventDetails


class Events:
    """Every event a client's handlers receive from the thorcut provider, with the time it came."""

    def __init__(self, client: OpenFeatureClient) -> None:
        self.seen: list[Seen] = []
        self._cond = threading.Condition()
        for event in ALL_EVENTS:
            client.add_handler(event, self._handler(event))

    def _handler(self, event: ProviderEvent) -> Callable[[EventDetails], None]:
        def handle(details: EventDetails) -> None:
            with self._cond:
                if details.provider_name == "thorcut":
                    self.seen.append(Seen(time.monotonic(), event, details))
                    self._cond.notify_all()

        return handle

    def wait(self, event: ProviderEvent, after: int = 0, timeout: float = 5.0) -> Seen:
        """Return the first ``event`` among those seen from index ``after`` on; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for seen in self.seen[after:]:
                    if seen.event is event:
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {event.name} within {timeout} s; seen: {[s.event.name for s in self.seen]}")
                self._cond.wait(left)

    def kinds(self) -> list[ProviderEvent]:
        with self._cond:
            return [s.event for s in self.seen]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no thorcut.toml of the checkout is picked up
    yield
    api.clear_providers()  # shuts every provider down and drops the event handlers


@pytest.fixture
def domain() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _serve(provider: ThorcutProvider, domain: str) -> tuple[OpenFeatureClient, Events]:
    api.set_provider_and_wait(provider, domain=domain)
    client = api.get_client(domain)
    return client, Events(client)


def _provider(server: EmbeddedRedis, prefix: str, **kw: Any) -> ThorcutProvider:
    kw.setdefault("env", {})
    return ThorcutProvider(server.url, prefix, **kw)


def _until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def _ctx(key: str | None) -> EvaluationContext:
    return EvaluationContext(targeting_key=key)


# -- evaluation ------------------------------------------------------------------------------------


def test_string_and_boolean_evaluations_follow_the_store(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    client, _ = _serve(_provider(redis_server, prefix), domain)
    assert api.get_provider_metadata(domain).name == "thorcut"
    assert client.get_provider_status() is ProviderStatus.READY
    assert client.get_string_value("positions", "x") == "off"
    assert client.get_boolean_value("positions", True, _ctx("c1")) is False
    for stage, reads_ws in ((Stage.SHADOW, False), (Stage.LIVE, True), (Stage.COMPLETE, True)):
        store.change("positions", stage, force=stage is Stage.LIVE, reason="test", percent=100)
        assert _until(lambda stage=stage: client.get_string_value("positions", "x") == stage.value)
        assert client.get_boolean_value("positions", not reads_ws, _ctx("c1")) is reads_ws
    assert client.get_string_value("intraday", "x") == "off"  # the others untouched


def test_string_details_carry_variant_reason_and_metadata(
    redis_server: EmbeddedRedis, store: FlagStore, client: redis.Redis, keys: Keys, prefix: str, domain: str
) -> None:
    store.change("positions", Stage.SHADOW)
    of, _ = _serve(_provider(redis_server, prefix), domain)
    details = of.get_string_details("positions", "off")
    assert (details.value, details.variant, details.reason) == ("shadow", "shadow", Reason.STATIC)
    assert details.error_code is None
    assert details.flag_metadata == {"stage": "shadow", "percent": 0, "version": 1,
                                     "epoch": client.hget(keys.meta, "epoch")}  # fmt: skip
    assert all(isinstance(v, str | int | float | bool) for v in details.flag_metadata.values())


@pytest.mark.parametrize(("stage", "percent", "expected"), [
    (Stage.OFF, 0, False), (Stage.SHADOW, 0, False), (Stage.LIVE, 0, False), (Stage.LIVE, 100, True),
    (Stage.COMPLETE, 100, True),
])  # fmt: skip
def test_boolean_is_static_where_the_client_id_does_not_matter_and_needs_none(
    redis_server: EmbeddedRedis, client: redis.Redis, keys: Keys, prefix: str, domain: str,
    stage: Stage, percent: int, expected: bool,
) -> None:  # fmt: skip
    client.hset(keys.meta, mapping={"epoch": "e1", "created_at": "2026-01-01T00:00:00.000Z"})
    client.hset(keys.flag("intraday"), mapping={"stage": stage.value, "percent": percent, "version": 4, "epoch": "e1"})
    of, _ = _serve(_provider(redis_server, prefix), domain)
    for ctx in (None, _ctx(None), _ctx(""), _ctx("client-9")):
        details = of.get_boolean_details("intraday", not expected, ctx)
        assert (details.value, details.reason, details.error_code) == (expected, Reason.STATIC, None)
        assert details.variant == ("websocket" if expected else "rest")
        assert details.flag_metadata["percent"] == percent


def test_boolean_at_a_live_split_is_each_clients_sticky_bucket(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    store.change("intraday", Stage.SHADOW)
    store.change("intraday", Stage.LIVE, percent=37, force=True, reason="test")
    provider = _provider(redis_server, prefix)
    of, _ = _serve(provider, domain)

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=40))
    def check(client_id: str) -> None:
        details = of.get_boolean_details("intraday", False, _ctx(client_id))
        expected = reads_websocket(Stage.LIVE, 37, "intraday", client_id)
        assert (details.value, details.reason, details.error_code) == (expected, Reason.SPLIT, None)
        assert details.variant == ("websocket" if expected else "rest")
        # the same answer as the watcher's own, for the same client, every time
        assert details.value is provider.watcher.get("intraday").reads_websocket(client_id)

    check()
    share = sum(of.get_boolean_value("intraday", False, _ctx(f"c{i}")) for i in range(2000)) / 20
    assert 32 < share < 42  # about 37% of clients


def test_a_live_split_without_a_targeting_key_gives_the_default_and_targeting_key_missing(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    store.change("positions", Stage.SHADOW)
    store.change("positions", Stage.LIVE, percent=50, force=True, reason="test")
    of, _ = _serve(_provider(redis_server, prefix), domain)
    for ctx in (None, _ctx(None), _ctx("")):
        details = of.get_boolean_details("positions", True, ctx)
        assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR,
                                                                       ErrorCode.TARGETING_KEY_MISSING)  # fmt: skip
        assert "targeting key" in (details.error_message or "")
    assert of.get_string_value("positions", "off") == "live"  # the stage needs no key


def test_unknown_flag_gives_the_default_with_flag_not_found(
    redis_server: EmbeddedRedis, prefix: str, domain: str
) -> None:
    of, _ = _serve(_provider(redis_server, prefix), domain)
    for details in (of.get_string_details("no_such_feature", "dflt"),
                    of.get_boolean_details("no_such_feature", True, _ctx("c")),
                    of.get_integer_details("no_such_feature", 7)):  # fmt: skip
        assert (details.reason, details.error_code) == (Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
        assert "valid" not in (details.error_message or "")
        assert "positions" in (details.error_message or "")
    assert of.get_string_value("no_such_feature", "dflt") == "dflt"
    assert of.get_boolean_value("no_such_feature", True) is True


@pytest.mark.parametrize(("kind", "default"), [(FlagType.INTEGER, 7), (FlagType.FLOAT, 0.5),
                                               (FlagType.OBJECT, {"a": 1})])  # fmt: skip
def test_wrong_type_gives_the_default_with_type_mismatch(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str, kind: FlagType, default: Any
) -> None:
    store.change("positions", Stage.SHADOW)
    of, _ = _serve(_provider(redis_server, prefix), domain)
    get = {FlagType.INTEGER: of.get_integer_details, FlagType.FLOAT: of.get_float_details,
           FlagType.OBJECT: of.get_object_details}[kind]  # fmt: skip
    details: FlagEvaluationDetails[Any] = get("positions", default)
    assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert "string" in (details.error_message or "")
    assert "boolean" in (details.error_message or "")


def test_env_overrides_win_over_redis_and_show_in_metadata(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    store.change("positions", Stage.SHADOW)
    store.change("intraday", Stage.SHADOW)
    env = {"WS_FEATURE_POSITIONS": "false", "WS_FEATURE_INTRADAY": "true", "WS_FEATURE_GLOBAL_MARKET": "maybe"}
    of, _ = _serve(_provider(redis_server, prefix, env=env), domain)
    positions = of.get_string_details("positions", "x")
    assert (positions.value, positions.reason, positions.flag_metadata["override"]) == ("off", Reason.STATIC, "off")
    intraday = of.get_boolean_details("intraday", False)  # live at 100%: no key needed
    assert (intraday.value, intraday.reason, intraday.variant) == (True, Reason.STATIC, "websocket")
    assert (intraday.flag_metadata["stage"], intraday.flag_metadata["percent"]) == ("live", 100)
    assert intraday.flag_metadata["override"] == "live"
    assert "override" not in of.get_string_details("global_market", "x").flag_metadata  # "maybe" is ignored


def test_settings_come_from_the_thorcut_environment(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    store.change("global_market", Stage.SHADOW)
    env = {"THORCUT_REDIS_URL": redis_server.url, "THORCUT_PREFIX": prefix, "WS_FEATURE_POSITIONS": "true"}
    of, _ = _serve(ThorcutProvider(env=env, features=("global_market", "positions")), domain)
    assert of.get_string_value("global_market", "x") == "shadow"
    assert of.get_string_value("positions", "x") == "live"
    assert of.get_string_details("intraday", "x").error_code is ErrorCode.FLAG_NOT_FOUND  # not among features


# -- events ----------------------------------------------------------------------------------------


def test_a_change_is_announced_with_its_flag_key_within_a_second(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    of, events = _serve(_provider(redis_server, prefix), domain)
    latencies = []
    for i, stage in enumerate((Stage.SHADOW, Stage.OFF, Stage.SHADOW)):
        mark = len(events.seen)
        start = time.monotonic()
        store.change("account_balance", stage)
        seen = events.wait(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, after=mark)
        latencies.append((seen.at - start) * 1000)
        assert seen.details.flags_changed == ["account_balance"]
        assert seen.details.metadata == {"stage": stage.value, "percent": 0, "version": i + 1}
        assert of.get_string_value("account_balance", "x") == stage.value  # already applied when announced
    print("PROVIDER_CONFIGURATION_CHANGED after (ms):", ", ".join(f"{ms:.2f}" for ms in latencies))  # pytest -rP
    assert max(latencies) < 1000, latencies


def test_stale_while_redis_is_away_then_ready_again(tmp_path: Path, domain: str) -> None:
    server = start_redis(tmp_path, save=True)
    try:
        r = redis.Redis(port=server.port, decode_responses=True)
        store = FlagStore(r, Keys("app"), DEFAULT_MANIFEST.names)
        store.change("positions", Stage.SHADOW)
        r.save()
        of, events = _serve(_provider(server, "app", timeout=0.5), domain)
        mark = len(events.seen)
        server.stop()
        stale = events.wait(ProviderEvent.PROVIDER_STALE, after=mark)
        assert "lost Redis" in (stale.details.message or "")
        assert of.get_provider_status() is ProviderStatus.STALE
        details = of.get_string_details("positions", "off")
        assert (details.value, details.reason, details.error_code) == ("shadow", Reason.STALE, None)
        mark = len(events.seen)
        server = EmbeddedRedis(server.binary, server.port, tmp_path).start(save=True)
        events.wait(ProviderEvent.PROVIDER_READY, after=mark, timeout=10)
        assert of.get_provider_status() is ProviderStatus.READY
        assert of.get_string_details("positions", "off").reason == Reason.STATIC
        assert ProviderEvent.PROVIDER_ERROR not in events.kinds()  # the store came back whole
    finally:
        server.stop()


def test_error_on_a_store_reset_then_ready_when_the_store_is_whole_again(tmp_path: Path, domain: str) -> None:
    server = start_redis(tmp_path)
    try:
        r = redis.Redis(port=server.port, decode_responses=True)
        store = FlagStore(r, Keys("app"), DEFAULT_MANIFEST.names)
        store.change("positions", Stage.SHADOW)
        old = r.hget(Keys("app").meta, "epoch")
        of, events = _serve(_provider(server, "app"), domain)
        mark = len(events.seen)
        r.flushall()  # Redis lost its data
        store.change("intraday", Stage.SHADOW)  # the first change of a new epoch: the watcher reads again
        error = events.wait(ProviderEvent.PROVIDER_ERROR, after=mark)
        assert error.details.error_code is ErrorCode.GENERAL
        assert f"it had epoch {old}" in (error.details.message or "")
        assert "keeping the last known stages of positions" in (error.details.message or "")
        assert of.get_provider_status() is ProviderStatus.ERROR
        kept = of.get_string_details("positions", "off")  # never back to REST because Redis lost its data
        assert (kept.value, kept.reason, kept.error_code) == ("shadow", Reason.STALE, None)
        fresh = of.get_string_details("intraday", "off")
        assert (fresh.value, fresh.reason) == ("shadow", Reason.STATIC)
        mark = len(events.seen)
        store.change("positions", Stage.SHADOW)  # set again in the new epoch: nothing is kept any more
        events.wait(ProviderEvent.PROVIDER_READY, after=mark)
        assert of.get_provider_status() is ProviderStatus.READY
        assert of.get_string_details("positions", "off").reason == Reason.STATIC
    finally:
        server.stop()


def test_unreachable_redis_at_start_is_an_error_then_ready_once_it_answers(tmp_path: Path, domain: str) -> None:
    port = free_port()
    provider = ThorcutProvider(f"redis://127.0.0.1:{port}/0", "app", env={}, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderNotReadyError):
        api.set_provider_and_wait(provider, domain=domain)
    assert time.monotonic() - started < 2  # bounded by the timeout
    of = api.get_client(domain)
    events = Events(of)
    assert of.get_provider_status() is ProviderStatus.ERROR
    details = of.get_string_details("positions", "off")
    assert (details.value, details.reason, details.error_code) == ("off", Reason.ERROR, ErrorCode.PROVIDER_NOT_READY)
    assert f"127.0.0.1:{port}" in (details.error_message or "")
    mark = len(events.seen)
    server = start_redis(tmp_path, port=port)
    try:
        events.wait(ProviderEvent.PROVIDER_READY, after=mark, timeout=10)
        assert of.get_provider_status() is ProviderStatus.READY
        assert of.get_string_details("positions", "x").value == "off"
    finally:
        server.stop()


def test_a_store_reset_at_start_is_an_error_but_evaluations_go_on(
    redis_server: EmbeddedRedis, client: redis.Redis, keys: Keys, prefix: str, domain: str
) -> None:
    client.hset(keys.flag("positions"), mapping={"stage": "shadow", "version": "3", "percent": "0"})  # no meta
    with pytest.raises(Exception, match="no meta"):
        api.set_provider_and_wait(_provider(redis_server, prefix), domain=domain)
    of = api.get_client(domain)
    assert of.get_provider_status() is ProviderStatus.ERROR
    assert of.get_string_value("positions", "off") == "shadow"  # nothing better known: the stored stage


def test_a_given_watcher_is_shared_and_keeps_running_after_shutdown(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    watcher = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names,
                          register=False, env={}).start(wait=5)  # fmt: skip
    try:
        of, events = _serve(ThorcutProvider(watcher=watcher), domain)
        store.change("positions", Stage.SHADOW)
        events.wait(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        assert of.get_string_value("positions", "x") == "shadow"
        api.clear_providers()  # shuts the provider down
        store.change("positions", Stage.OFF)
        assert _until(lambda: watcher.stage("positions") is Stage.OFF)  # still following Redis
        assert watcher.connected
    finally:
        watcher.stop()


def test_the_providers_own_watcher_stops_on_shutdown_and_a_new_one_starts_on_initialize(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    provider = _provider(redis_server, prefix)
    first = provider.watcher
    api.set_provider_and_wait(provider, domain=domain)
    assert _until(lambda: first.connected)
    api.clear_providers()
    assert first._thread is not None
    assert not first._thread.is_alive()
    store.change("positions", Stage.SHADOW)
    api.set_provider_and_wait(provider, domain=domain)
    assert provider.watcher is not first
    assert api.get_client(domain).get_string_value("positions", "x") == "shadow"


def test_evaluating_before_the_first_read_is_provider_not_ready(redis_server: EmbeddedRedis, prefix: str) -> None:
    provider = _provider(redis_server, prefix)  # never initialized: its watcher never read
    with pytest.raises(ProviderNotReadyError, match="has not read the flags"):
        provider.resolve_string_details("positions", "off")
    with pytest.raises(FlagNotFoundError):  # whether a flag exists needs no read
        provider.resolve_string_details("nope", "off")


# -- hooks -----------------------------------------------------------------------------------------


class Recorder(Hook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext | None:
        self.calls.append(("before", hook_context.flag_key, hook_context.evaluation_context.targeting_key))
        return None

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints) -> None:
        self.calls.append(("after", hook_context.flag_key, (details.value, details.variant, details.reason)))

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        self.calls.append(("error", hook_context.flag_key, type(exception).__name__))

    def finally_after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints) -> None:
        self.calls.append(("finally", hook_context.flag_key, details.error_code))


def test_hooks_see_each_evaluation_and_its_errors(
    redis_server: EmbeddedRedis, store: FlagStore, prefix: str, domain: str
) -> None:
    store.change("positions", Stage.SHADOW)
    of, _ = _serve(_provider(redis_server, prefix), domain)
    hook = Recorder()
    of.add_hooks([hook])
    assert of.get_boolean_value("positions", True, _ctx("c-1")) is False
    assert hook.calls == [
        ("before", "positions", "c-1"),
        ("after", "positions", (False, "rest", Reason.STATIC)),
        ("finally", "positions", None),
    ]
    hook.calls.clear()
    assert of.get_string_value("nope", "off") == "off"
    assert hook.calls == [("before", "nope", None), ("error", "nope", "FlagNotFoundError"),
                          ("finally", "nope", ErrorCode.FLAG_NOT_FOUND)]  # fmt: skip
    hook.calls.clear()
    of.get_integer_value("positions", 1)
    assert [c[0] for c in hook.calls] == ["before", "error", "finally"]
    assert hook.calls[1][2] == "TypeMismatchError"


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "message"), [
    ({"redis_url": "http://127.0.0.1:6379"}, "Redis URL"),
    ({"redis_url": "redis://127.0.0.1:99999/0"}, "port"),
    ({"redis_url": "redis://127.0.0.1:6379/abc"}, "database index"),
    ({"redis_url": "redis+sentinel://h1:26379"}, "service"),
    ({"redis_url": ""}, "non-empty string"),
    ({"prefix": "has space"}, "prefix"),
    ({"features": "positions"}, "sequence of feature names"),
    ({"features": ("positions", "nope")}, "unknown feature 'nope'"),
    ({"features": ("positions", "positions")}, "twice"),
    ({"features": ()}, "empty"),
    ({"timeout": 0}, "positive number"),
    ({"timeout": float("nan")}, "positive number"),
])  # fmt: skip
def test_bad_arguments_are_refused_at_construction_with_a_clear_error(kw: dict[str, Any], message: str) -> None:
    kw.setdefault("redis_url", "redis://127.0.0.1:1/0")
    with pytest.raises(UsageError, match=message) as caught:
        ThorcutProvider(**kw, env={})
    assert "Traceback" not in str(caught.value)


def test_a_bad_thorcut_redis_url_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="THORCUT_REDIS_URL"):
        ThorcutProvider(env={"THORCUT_REDIS_URL": "redis://127.0.0.1:6379/x"})


def test_a_given_watcher_excludes_the_settings_of_an_own_one(redis_server: EmbeddedRedis, prefix: str) -> None:
    watcher = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names)
    with pytest.raises(UsageError, match="drop redis_url, register"):
        ThorcutProvider(redis_server.url, watcher=watcher, register=True)
