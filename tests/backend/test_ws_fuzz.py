"""Hypothesis-generated frames against a real server (issue 10): uvicorn on loopback, real sockets.

Random JSON of any depth and size, unicode, binary, and invalid UTF-8 sent as text frames go to
one connection after another, while a normal client watches. Invariants after every example: the
normal client still gets heartbeats and answers ``{"action": "ping"}``, the fuzzed connection
either stayed open (then it answers a ping too) or was closed with a documented code, and the
connection gauge returns to its baseline. Bounded: 120 examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.backend.conftest import Server, start_server
from tests.backend.test_hostile_clients import DOCUMENTED_CLOSES, connections, gauge_settles, ping_pong
from tests.backend.test_ws_integration import envelope, open_ws, publish_until_seen

pytestmark = pytest.mark.usefixtures("demo_users")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=60,
)
commands = st.fixed_dictionaries(
    {"action": st.sampled_from(["ping", "flags", "subscribe", "unsubscribe", "sudo", ""]) | json_values},
    optional={"features": st.lists(st.sampled_from(["positions", "intraday", "crypto", ""]) | json_values, max_size=5)
              | json_values},
)  # fmt: skip
frames: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.just("text"), json_values.map(json.dumps)),
    st.tuples(st.just("text"), commands.map(json.dumps)),
    st.tuples(st.just("text"), st.integers(10, 3000).map(lambda n: "[" * n + "]" * n)),
    st.tuples(st.just("text"), st.integers(10, 3000).map(lambda n: '{"a":' * n + "0" + "}" * n)),
    # Unclosed and repeated nesting, up to 60 KB (under the 64 KiB frame limit: 1009 is tested elsewhere).
    st.tuples(st.just("text"), st.builds(str.__mul__, st.sampled_from(["[", '{"a":', "[{}"]), st.integers(10, 12000))),
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("text"), st.integers(1, 6000).map(lambda n: "9" * n)),
    st.tuples(st.just("binary"), st.binary(max_size=300)),
    st.tuples(st.just("bad-utf8"), st.binary(min_size=1, max_size=60).map(lambda b: b"\xff" + b)),
)


@pytest.fixture(scope="module")
def server(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as ``thorcut dev up`` runs it (legacy websockets, 64 KiB frames)."""
    args = ["--ws", "websockets", "--ws-max-size", "65536", "--ws-ping-interval", "20", "--ws-ping-timeout", "20"]
    srv = start_server(thor_env, tmp_path_factory.mktemp("fuzz") / "uvicorn.log", args=args)
    yield srv
    srv.stop()


class Loop:
    """One event loop for all examples, so the watcher's connection lives across them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def close(self) -> None:
        from channels.layers import get_channel_layer

        self.loop.run_until_complete(get_channel_layer().flush())
        self.loop.close()


async def send(ws: ClientConnection, kind: str, data: Any) -> None:
    if kind == "text":
        await ws.send(data)
    elif kind == "binary":
        await ws.send(bytes(data))
    else:  # invalid UTF-8 in a text frame (websockets sends bytes as text when asked)
        await ws.send(data, text=True)


async def outcome(ws: ClientConnection) -> int | None:
    """None if the connection is still open and answers a ping; else the close code it got."""
    try:
        await ping_pong(ws)
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1


async def heartbeat(ws: ClientConnection) -> None:
    """A heartbeat published into the channel layer (as the job runner would) reaches ``ws``."""
    await publish_until_seen(ws, envelope("heartbeat", "thor", uuid.uuid4().hex))


def test_fuzzed_frames_never_hurt_the_server_or_others(server: Server, demo_users: dict[str, dict[str, str]]) -> None:
    token = demo_users["demo"]["token"]
    loop = Loop()
    watcher = loop.run(open_ws(server, token, "?features="))
    base = loop.run(asyncio.to_thread(connections, server))  # the watcher is counted in it
    seen: set[int | None] = set()

    @settings(max_examples=int(os.environ.get("FUZZ_N", "120")), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.lists(frames, min_size=1, max_size=4))
    def example(batch: list[tuple[str, Any]]) -> None:
        async def scenario() -> None:
            ws = await open_ws(server, token, "?features=", max_size=None)
            try:
                with contextlib.suppress(ConnectionClosed):  # closed by an earlier frame of the batch
                    for kind, data in batch:
                        await send(ws, kind, data)
                code = await outcome(ws)
                seen.add(code)
                assert code is None or code in DOCUMENTED_CLOSES, (code, batch)
            finally:
                await ws.close()
            await heartbeat(watcher)
            await ping_pong(watcher)
            assert await gauge_settles(server, base) == base

        loop.run(scenario())

    try:
        example()
        print(f"\nfuzzed connections ended: {sorted(seen, key=str)}")
    finally:
        loop.run(watcher.close())
        loop.close()
