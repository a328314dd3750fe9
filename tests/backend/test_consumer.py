"""The stream consumer in-process (Channels' WebsocketCommunicator) on the session's real Redis layer.

The app under test is the same stack as ``thor_project.asgi`` — origin check, token-or-session
auth, URL router — built from the parts, plus tests of the shipped ``application`` itself. Every
message a test publishes carries a fresh marker, so whatever else flows on the session Redis
(another test's job runner) cannot confuse a test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("demo_users")

Msg = dict[str, Any]


@pytest.fixture(scope="module")
def app(thor_env: dict[str, str]) -> Any:
    from channels.routing import URLRouter

    from global_markets.auth import BrowserOriginValidator, TokenOrSessionAuthMiddleware
    from global_markets.routing import websocket_urlpatterns

    return BrowserOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)))


def run(coro: Any) -> Any:
    """Run one scenario on a fresh loop, then close this loop's channel-layer connections."""
    from channels.layers import get_channel_layer

    async def scenario() -> Any:
        try:
            return await asyncio.wait_for(coro, 30)
        finally:
            await get_channel_layer().flush()

    return asyncio.run(scenario())


def auth(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def open_ws(app: Any, headers: list[tuple[bytes, bytes]], query: str = "") -> Any:
    """Connect; return the communicator after its ``flags`` and ``subscribed`` greeting."""
    from channels.testing import WebsocketCommunicator

    comm = WebsocketCommunicator(app, f"/ws/stream/{query}", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    comm.greeting = [await recv(comm), await recv(comm)]
    assert [m["type"] for m in comm.greeting] == ["flags", "subscribed"]
    return comm


async def recv(comm: Any, timeout: float = 5) -> Msg:
    out = await comm.receive_output(timeout)
    assert out["type"] == "websocket.send", out
    return json.loads(out["text"])


async def until(comm: Any, match: Callable[[Msg], bool], timeout: float = 5) -> tuple[Msg, list[Msg]]:
    """Read until a message matches; return it and everything read before it."""
    seen: list[Msg] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = await recv(comm, timeout)
            if match(msg):
                return msg, seen
            seen.append(msg)


async def closed_with(comm: Any, timeout: float = 5) -> int:
    """Read (skipping messages) until the server closes; return the close code."""
    async with asyncio.timeout(timeout):
        while True:
            out = await comm.receive_output(timeout)
            if out["type"] == "websocket.close":
                return int(out.get("code", 1000))


def envelope(type_: str, key: str, marker: str, seq: int = 1) -> Msg:
    from thor_trading.features import TYPE_FEATURE

    feature = TYPE_FEATURE.get(type_)
    return {"type": type_, "feature": feature, "key": key, "seq": seq, "ts": "2026-11-24T14:30:00.000Z",
            "data": {"marker": marker}}  # fmt: skip


def marked(marker: str, type_: str | None = None) -> Callable[[Msg], bool]:
    return lambda m: m.get("data", {}).get("marker") == marker and (type_ is None or m["type"] == type_)


async def publish(message: Msg) -> None:
    from channels.layers import get_channel_layer

    from global_markets.groups import event, group_for

    await get_channel_layer().group_send(group_for(message), event(message))


async def publish_until_seen(comm: Any, message: Msg, timeout: float = 5) -> Msg:
    """Publish until ``comm`` gets it: the first publish may race the Redis SUBSCRIBE."""
    marker = message["data"]["marker"]
    async with asyncio.timeout(timeout):
        while True:
            await publish(message)
            try:
                got, _ = await until(comm, marked(marker), timeout=0.3)
                return got
            except TimeoutError:
                continue


async def barrier(*comms: Any) -> list[list[Msg]]:
    """A heartbeat after everything published so far: return what each client got before it."""
    marker = uuid.uuid4().hex
    beat = {"type": "heartbeat", "feature": None, "key": "thor", "seq": 0, "ts": "", "data": {"marker": marker}}
    await publish(beat)
    return [(await until(c, marked(marker, "heartbeat")))[1] for c in comms]


# -- auth --------------------------------------------------------------------------------------


def test_token_client_gets_flags_then_subscriptions(app: Any, demo_users: dict[str, dict[str, str]]) -> None:
    from django.contrib.auth import get_user_model

    pk = get_user_model().objects.get(username="demo").pk

    async def scenario() -> None:
        comm = await open_ws(app, auth(demo_users["demo"]["token"]))
        flags, subscribed = comm.greeting
        assert flags["client"] == f"user:{pk}"
        assert set(flags["features"]) == {"account_balance", "positions", "intraday", "global_market"}
        assert set(flags["features"]["positions"]) >= {"stage", "percent", "version", "source", "override"}
        assert subscribed["features"] == ["account_balance", "positions", "intraday", "global_market"]
        await comm.send_json_to({"action": "ping"})
        assert await recv(comm) == {"type": "pong"}
        await comm.send_json_to({"action": "flags"})
        assert (await recv(comm))["features"] == flags["features"]
        await comm.disconnect()
        # ?client= names the client for the percent bucket; a bad one is reported and replaced.
        comm = await open_ws(app, auth(demo_users["demo"]["token"]), "?client=browser-42")
        assert comm.greeting[0]["client"] == "browser-42"
        await comm.disconnect()
        comm = await open_ws(app, auth(demo_users["demo"]["token"]), "?client=bad%20id")
        assert comm.greeting[0]["client"] == f"user:{pk}"
        assert "invalid client id" in (await recv(comm))["error"]
        await comm.disconnect()

    run(scenario())


@pytest.mark.parametrize("headers", [[], auth("thor_not-a-real-token"), [(b"authorization", b"Basic Zm9vOmJhcg==")]])
def test_no_valid_credentials_is_accepted_then_closed_4401(app: Any, headers: list[tuple[bytes, bytes]]) -> None:
    from channels.testing import WebsocketCommunicator

    async def scenario() -> None:
        comm = WebsocketCommunicator(app, "/ws/stream/", headers=headers)
        connected, _ = await comm.connect(timeout=5)
        assert connected  # accepted, so that the client can read why it is closed
        assert await closed_with(comm) == 4401
        await comm.disconnect(code=4401)  # what the server reports once the close handshake is done

    run(scenario())


def test_session_cookie_authenticates(app: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    browser = Client()
    browser.force_login(get_user_model().objects.get(username="demo"))
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        comm = await open_ws(app, [(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
        assert comm.greeting[0]["client"].startswith("user:")
        await comm.disconnect()

    run(scenario())


def test_shipped_application_checks_origin(demo_users: dict[str, dict[str, str]]) -> None:
    from channels.testing import WebsocketCommunicator

    from thor_project.asgi import application

    async def scenario() -> None:
        headers = auth(demo_users["demo"]["token"])
        comm = await open_ws(application, [*headers, (b"origin", b"http://localhost:5173")])
        await comm.disconnect()
        evil = WebsocketCommunicator(
            application, "/ws/stream/", headers=[*headers, (b"origin", b"https://evil.example")]
        )
        connected, _ = await evil.connect(timeout=5)
        assert not connected

    run(scenario())


def test_shipped_application_accepts_a_client_without_origin(demo_users: dict[str, dict[str, str]]) -> None:
    from thor_project.asgi import application

    async def scenario() -> None:
        comm = await open_ws(application, auth(demo_users["demo"]["token"]))
        await comm.disconnect()

    run(scenario())


# -- routing -----------------------------------------------------------------------------------


def test_account_messages_reach_only_the_owner(app: Any, demo_users: dict[str, dict[str, str]]) -> None:
    async def scenario() -> None:
        demo = await open_ws(app, auth(demo_users["demo"]["token"]))
        other = await open_ws(app, auth(demo_users["other"]["token"]))
        mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
        got = await publish_until_seen(demo, envelope("positions", "DU1234", mine))
        assert got["key"] == "DU1234"
        await publish_until_seen(other, envelope("account_balance", "DU5678", theirs))
        await publish(envelope("account_balance", "DU1234", mine))
        before_demo, before_other = await barrier(demo, other)
        assert any(marked(mine, "account_balance")(m) for m in before_demo)
        assert not any(marked(mine)(m) for m in before_other)
        assert not any(marked(theirs)(m) for m in before_demo)
        await demo.disconnect()
        await other.disconnect()

    run(scenario())


def test_subscriptions_filter_features(app: Any, demo_users: dict[str, dict[str, str]]) -> None:
    async def scenario() -> None:
        comm = await open_ws(app, auth(demo_users["demo"]["token"]), "?features=positions")
        assert comm.greeting[1]["features"] == ["positions"]
        m = uuid.uuid4().hex
        await publish_until_seen(comm, envelope("positions", "DU1234", m))
        for type_, key in [("account_balance", "DU1234"), ("intraday_bar", "AAPL"), ("market_status", "XNYS")]:
            await publish(envelope(type_, key, m))
        (before,) = await barrier(comm)
        assert not any(marked(m)(x) for x in before)  # heartbeat came through, nothing unsubscribed did

        await comm.send_json_to({"action": "subscribe", "features": ["intraday"]})
        assert (await until(comm, lambda x: x["type"] == "subscribed"))[0]["features"] == ["positions", "intraday"]
        await publish_until_seen(comm, envelope("vwap", "AAPL", uuid.uuid4().hex))
        await publish_until_seen(comm, envelope("intraday_bar", "AAPL", uuid.uuid4().hex))

        await comm.send_json_to({"action": "unsubscribe", "features": ["positions", "intraday"]})
        assert (await until(comm, lambda x: x["type"] == "subscribed"))[0]["features"] == []
        m2 = uuid.uuid4().hex
        await publish(envelope("positions", "DU1234", m2))
        await publish(envelope("intraday_bar", "AAPL", m2))
        (before,) = await barrier(comm)  # heartbeat is always on
        assert not any(marked(m2)(x) for x in before)
        await comm.disconnect()
        # Unknown features in the query string are reported, the known ones applied.
        comm = await open_ws(app, auth(demo_users["demo"]["token"]), "?features=intraday,crypto")
        assert comm.greeting[1]["features"] == ["intraday"]
        assert "crypto" in (await recv(comm))["error"]
        await comm.disconnect()

    run(scenario())


# -- bad frames ----------------------------------------------------------------------------------

BAD_FRAMES = {
    "garbage": {"text_data": "hello there"},
    "binary": {"bytes_data": b"\x00\x01\x02"},
    "malformed": {"text_data": '{"action": "subscribe", '},
    "array": {"text_data": "[1, 2, 3]"},
    "number": {"text_data": "42"},
    "unknown_action": {"text_data": '{"action": "sudo"}'},
    "no_action": {"text_data": '{"features": ["positions"]}'},
    "unknown_feature": {"text_data": '{"action": "subscribe", "features": ["positions", "crypto"]}'},
    "features_not_list": {"text_data": '{"action": "subscribe", "features": "positions"}'},
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_frame_gets_an_error_and_the_connection_stays(
    app: Any, demo_users: dict[str, dict[str, str]], frame: dict[str, Any]
) -> None:
    from global_markets.metrics import BAD_FRAMES as COUNTER

    def bad_total() -> float:
        return sum(s.value for m in COUNTER.collect() for s in m.samples if s.name.endswith("_total"))

    async def scenario() -> None:
        comm = await open_ws(app, auth(demo_users["demo"]["token"]), "?features=positions")
        before = bad_total()
        await comm.send_to(**frame)
        reply = await until(comm, lambda x: x["type"] in ("error", "subscribed"))
        assert reply[0]["type"] == "error"
        assert reply[0]["error"]
        assert bad_total() == before + 1
        await comm.send_json_to({"action": "ping"})
        await until(comm, lambda x: x["type"] == "pong")
        await comm.send_json_to({"action": "flags"})
        await until(comm, lambda x: x["type"] == "flags")
        assert comm.greeting[1]["features"] == ["positions"]  # a refused subscribe changed nothing
        await comm.disconnect()

    run(scenario())


def test_oversized_frame_closes_1009(app: Any, demo_users: dict[str, dict[str, str]]) -> None:
    from django.conf import settings

    async def scenario() -> None:
        comm = await open_ws(app, auth(demo_users["demo"]["token"]))
        await comm.send_to(text_data=json.dumps({"action": "ping", "pad": "x" * settings.THOR_WS_MAX_MESSAGE}))
        assert await closed_with(comm) == 1009
        await comm.disconnect()

    run(scenario())


# -- flags and slow clients ----------------------------------------------------------------------


def test_flag_change_is_pushed_to_connected_clients(
    app: Any, demo_users: dict[str, dict[str, str]], thor_env: dict[str, str]
) -> None:
    import redis

    from thorcut.flags.stages import Stage
    from thorcut.flags.store import FlagStore
    from thorcut.manifest import DEFAULT_MANIFEST
    from thorcut.redisconn import Keys

    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="test_consumer")
    start = store.read("global_market").stage

    async def scenario() -> None:
        comm = await open_ws(app, auth(demo_users["demo"]["token"]))
        target = Stage.SHADOW if start is Stage.OFF else Stage.OFF
        await asyncio.to_thread(store.change, "global_market", target, reason="consumer test")
        pushed, _ = await until(comm, lambda m: m["type"] == "flags"
                                and m["features"]["global_market"]["stage"] == target.value)  # fmt: skip
        assert pushed["client"] == comm.greeting[0]["client"]
        await asyncio.to_thread(store.change, "global_market", start, reason="consumer test: restore")
        await until(comm, lambda m: m["type"] == "flags" and m["features"]["global_market"]["stage"] == start.value)
        await comm.disconnect()

    try:
        run(scenario())
    finally:
        if store.read("global_market").stage is not start:
            store.change("global_market", start, reason="consumer test: restore")
        client.close()


def test_flags_message_is_the_plain_encoding_for_every_client_and_version(app: Any, thor_env: dict[str, str]) -> None:
    """The ``flags`` text is encoded once per group of clients that read alike (a cache by flags and
    sources): for clients on both sides of a percent split, and after every change, it must be
    byte for byte what encoding that client's own flags gives, never an older version's text."""
    import redis

    from global_markets.services import websocket_features
    from thorcut.flags.stages import Stage
    from thorcut.flags.store import FlagStore
    from thorcut.manifest import DEFAULT_MANIFEST
    from thorcut.redisconn import Keys

    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="test_consumer")
    start = store.read("positions")
    watcher = websocket_features.watcher()
    ids = [f"browser-{i}" for i in range(200)] + ["user:1", "a" * 64]
    try:
        for stage, percent in ((Stage.SHADOW, None), (Stage.LIVE, 30), (Stage.LIVE, 70), (Stage.SHADOW, None)):
            version = store.change("positions", stage, percent=percent, reason="flags text", force=True).after.version
            deadline = time.monotonic() + 5
            while watcher.get("positions").state.version < version:
                assert time.monotonic() < deadline, "the watcher never applied the change"
                time.sleep(0.01)
            sources = set()
            for cid in ids:
                message = {"type": "flags", "client": cid, "features": websocket_features.flags_for_client(cid)}
                plain = json.dumps(message, separators=(",", ":"))
                assert websocket_features.flags_message(cid) == plain
                sources.add(json.loads(plain)["features"]["positions"]["source"])
            assert sources == ({"rest", "websocket"} if stage is Stage.LIVE else {"rest"})
    finally:
        if store.read("positions").stage is not start.stage:
            store.change("positions", start.stage, reason="flags text: restore", force=True)
        client.close()


@pytest.mark.parametrize("close_blocked", [False, True], ids=["close-delivered", "close-stuck-too"])
def test_slow_client_is_dropped_4408_and_others_keep_up(
    app: Any, demo_users: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch, close_blocked: bool
) -> None:
    """A client whose sends never complete overflows its queue and is dropped; a normal one gets all.

    If even the close frame cannot go out (a socket that never drains), the consumer still ends.
    """
    from django.test import override_settings
    from prometheus_client import REGISTRY

    from global_markets import consumers

    monkeypatch.setattr(consumers, "CLOSE_TIMEOUT", 0.2)
    gate = asyncio.Event()  # never set: this client's socket never drains
    blocked = {"websocket.send", "websocket.close"} if close_blocked else {"websocket.send"}

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        async def send_blocked(message: Msg) -> None:
            if message["type"] in blocked:
                await gate.wait()
            await send(message)

        await app(scope, receive, send_blocked)

    async def scenario() -> None:
        from channels.testing import WebsocketCommunicator

        slow = WebsocketCommunicator(stuck, "/ws/stream/?features=positions", headers=auth(demo_users["demo"]["token"]))
        assert (await slow.connect(timeout=10))[0]
        fast = await open_ws(app, auth(demo_users["demo"]["token"]), "?features=positions")
        open_streams = REGISTRY.get_sample_value("thor_ws_connections")
        marker = uuid.uuid4().hex
        await publish_until_seen(fast, envelope("positions", "DU1234", marker, seq=0))
        for seq in range(1, 41):
            await publish(envelope("positions", "DU1234", marker, seq))
        seqs = []
        while len(seqs) < 40:
            msg, _ = await until(fast, lambda m: marked(marker)(m) and m["seq"] > 0)
            seqs.append(msg["seq"])
        assert seqs == list(range(1, 41))  # every message, in order
        if close_blocked:
            await slow.wait(5)  # the consumer ended on its own, with no close frame sent
        else:
            assert await closed_with(slow) == 4408
            await slow.disconnect(code=4408)
        assert REGISTRY.get_sample_value("thor_ws_connections") == open_streams - 1
        await fast.disconnect()

    with override_settings(THOR_WS_QUEUE=8):
        run(scenario())


# -- unexpected errors (issue 10) ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["receive", "deliver"])
def test_unexpected_exception_closes_1011_and_cleans_up_once(
    app: Any, demo_users: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """An exception escaping a handler used to end the app with no close frame and no disconnect:
    the stream stayed counted and in its groups. Now: close 1011, and the full clean-up, once."""
    from channels.layers import get_channel_layer
    from prometheus_client import REGISTRY

    from global_markets import consumers
    from global_markets.hub import hub

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    async def scenario() -> None:
        before = REGISTRY.get_sample_value("thor_ws_connections")
        comm = await open_ws(app, auth(demo_users["demo"]["token"]))
        assert REGISTRY.get_sample_value("thor_ws_connections") == before + 1
        layer_hub = hub(get_channel_layer())
        streams = {m for members in layer_hub.members.values() for m in members}
        assert streams
        if where == "receive":
            monkeypatch.setattr(consumers.StreamConsumer, "_subscription", boom)
            await comm.send_json_to({"action": "subscribe", "features": ["positions"]})
        else:
            monkeypatch.setattr(consumers.StreamConsumer, "stream_message", boom)
            (stream,) = streams
            event = {"type": "stream.message", "message": {"type": "heartbeat"}}
            await get_channel_layer().send(stream.channel_name, event)
        assert await closed_with(comm) == 1011
        await comm.wait(5)  # the app returned
        assert REGISTRY.get_sample_value("thor_ws_connections") == before
        assert not {m for members in layer_hub.members.values() for m in members}
        (stream,) = streams
        assert stream.cleaned_up

    run(scenario())
