"""The stream over real sockets: a uvicorn child process, real ``websockets`` clients, real TCP.

Each test runs against both of uvicorn's websockets protocol implementations (the legacy
``websockets`` one ``dev up`` uses and ``websockets-sansio``), because the slow-client drop depends
on how their ``send`` applies TCP back-pressure. Messages are published into the channel layer
from this process (same settings and Redis as the server) and carry a fresh marker, so traffic
from anything else on the session Redis cannot confuse a test.

Non-browser clients here send an allowed ``Origin``: the shipped ``asgi.py`` still refuses
handshakes without one (see ``test_consumer.test_shipped_application_accepts_a_client_without_origin``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.backend.conftest import Server, start_server

pytestmark = pytest.mark.usefixtures("demo_users")

QUEUE = 16  # THOR_WS_QUEUE for these servers: small, so filling it takes little data
MAX_MESSAGE = 65536  # THOR_WS_MAX_MESSAGE's default


@pytest.fixture(scope="module", params=["websockets", "websockets-sansio"])
def server(request: pytest.FixtureRequest, thor_env: dict[str, str], demo_users: object,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # fmt: skip
    """One server per implementation. Legacy gets ``--ws-max-size`` (uvicorn enforces 1009);
    sansio does not (the consumer enforces THOR_WS_MAX_MESSAGE itself)."""
    impl = request.param
    args = ["--ws", impl, "--ws-ping-interval", "20", "--ws-ping-timeout", "20"]
    if impl == "websockets":
        args += ["--ws-max-size", str(MAX_MESSAGE)]
    log = tmp_path_factory.mktemp("ws") / f"uvicorn-{impl}.log"
    srv = start_server(thor_env, log, extra_env={"THOR_WS_QUEUE": str(QUEUE)}, args=args)
    yield srv
    srv.stop()


def run(coro: Any) -> Any:
    """Run one scenario on a fresh loop, then close this loop's channel-layer connections."""
    from channels.layers import get_channel_layer

    async def scenario() -> Any:
        try:
            return await asyncio.wait_for(coro, 60)
        finally:
            await get_channel_layer().flush()

    return asyncio.run(scenario())


def origin(server: Server) -> str:
    return server.url  # http://127.0.0.1:PORT: the host is in ALLOWED_HOSTS


async def open_ws(server: Server, token: str | None, query: str = "", **kw: Any) -> ClientConnection:
    """Connect and read the ``flags`` + ``subscribed`` greeting."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kw.setdefault("origin", origin(server))
    ws = await connect(server.ws_url + query, additional_headers=headers, compression=None, open_timeout=10, **kw)
    greeting = [json.loads(await ws.recv()), json.loads(await ws.recv())]
    assert [m["type"] for m in greeting] == ["flags", "subscribed"]
    return ws


async def until(ws: ClientConnection, marker: str, timeout: float = 5, **match: Any) -> tuple[dict[str, Any], int]:
    """Read until a message with ``marker`` (and ``match`` fields); return it and how many came before."""
    skipped = 0
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("data", {}).get("marker") == marker and all(msg.get(k) == v for k, v in match.items()):
                return msg, skipped
            skipped += 1


async def read_to_close(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, int]:
    """Read until the server closes; return its close code (None: no close frame) and the message count."""
    count = 0
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
                count += 1
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), count


def envelope(type_: str, key: str, marker: str, seq: int = 0, pad: str = "") -> dict[str, Any]:
    feature = {"positions": "positions", "account_balance": "account_balance", "heartbeat": None}[type_]
    return {"type": type_, "feature": feature, "key": key, "seq": seq, "ts": "2026-11-24T14:30:00.000Z",
            "data": {"marker": marker, "pad": pad}}  # fmt: skip


async def publish(message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    from global_markets.groups import event, group_for

    await get_channel_layer().group_send(group_for(message), event(message))


async def publish_until_seen(ws: ClientConnection, message: dict[str, Any], timeout: float = 5) -> None:
    """The first publish may race the server's Redis SUBSCRIBE: repeat until it arrives."""
    async with asyncio.timeout(timeout):
        while True:
            await publish(message)
            try:
                await until(ws, message["data"]["marker"], timeout=0.3)
                return
            except TimeoutError:
                continue


def dropped_as_slow(server: Server, ws: ClientConnection) -> bool:
    """Whether the server logged dropping this connection (matched by the client's local port)."""
    host, port = ws.local_address[:2]
    needle = f"({host!r}, {port})"
    lines = server.log.read_text(errors="replace").splitlines()
    return any(line.startswith("dropping slow websocket client") and needle in line for line in lines)


def metric(server: Server, name: str, **labels: str) -> float:
    """One sample from the server's /metrics (0 when absent)."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and sorted(filter(None, (m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


# -- auth and isolation --------------------------------------------------------------------------


def test_no_token_is_closed_4401(server: Server) -> None:
    async def scenario() -> None:
        async with connect(server.ws_url, origin=origin(server), open_timeout=10) as ws:
            assert await read_to_close(ws) == (4401, 0)
        async with connect(server.ws_url, origin=origin(server), open_timeout=10,
                           additional_headers={"Authorization": "Bearer thor_wrong"}) as ws:  # fmt: skip
            assert await read_to_close(ws) == (4401, 0)

    run(scenario())


def test_accounts_are_isolated(server: Server, demo_users: dict[str, dict[str, str]]) -> None:
    async def scenario() -> None:
        demo = await open_ws(server, demo_users["demo"]["token"])
        other = await open_ws(server, demo_users["other"]["token"])
        secret = uuid.uuid4().hex
        await publish_until_seen(demo, envelope("positions", "DU1234", secret))
        await publish(envelope("account_balance", "DU1234", secret, seq=1))
        await until(demo, secret, type="account_balance")
        # Heartbeats after the secrets, until `other` gets one: nothing of DU1234's may come first.
        beat = uuid.uuid4().hex
        async with asyncio.timeout(5):
            while True:
                await publish(envelope("heartbeat", "thor", beat))
                try:
                    msg = json.loads(await asyncio.wait_for(other.recv(), 0.3))
                except TimeoutError:
                    continue
                assert msg.get("key") != "DU1234"
                assert msg.get("data", {}).get("marker") != secret
                if msg.get("data", {}).get("marker") == beat:
                    break
        await demo.close()
        await other.close()

    run(scenario())


def test_origin_check(server: Server, demo_users: dict[str, dict[str, str]]) -> None:
    async def scenario() -> None:
        token = demo_users["demo"]["token"]
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.ws_url, origin="https://evil.example", open_timeout=10,
                          additional_headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert refused.value.response.status_code == 403
        ws = await open_ws(server, token, origin="http://localhost:5173")  # a dev front end, allowed host
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await ws.close()

    run(scenario())


def test_oversized_frame_is_closed_1009(server: Server, demo_users: dict[str, dict[str, str]]) -> None:
    async def scenario() -> None:
        # Heartbeat only: on legacy uvicorn the refused connection lingers server-side for its
        # close timeout (10 s), and it should not be sent the next test's traffic meanwhile.
        ws = await open_ws(server, demo_users["demo"]["token"], "?features=", max_size=None)
        await ws.send(json.dumps({"action": "ping", "pad": "x" * MAX_MESSAGE}))
        code, _ = await read_to_close(ws)
        assert code == 1009

    run(scenario())


# -- a slow client -------------------------------------------------------------------------------


async def stalled_client(server: Server, token: str) -> ClientConnection:
    """A client that never reads: a tiny receive buffer, and websockets stops reading after 1 frame."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so no window autotuning
    sock.setblocking(False)
    url = urlparse(server.ws_url)
    await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
    return await open_ws(server, token, "?features=positions", sock=sock, max_queue=1, ping_interval=None)


def test_slow_client_is_dropped_and_others_keep_up(server: Server, demo_users: dict[str, dict[str, str]]) -> None:
    """A client that stops reading is closed with 4408 once its queue overflows; a client connected
    at the same time receives every message, in order, throughout."""
    token = demo_users["demo"]["token"]
    batch, size = 8, 32 * 1024  # a batch fits the fast client's queue even if it lags a little

    async def scenario() -> None:
        slow = await stalled_client(server, token)
        fast = await open_ws(server, token, "?features=positions")
        marker = uuid.uuid4().hex
        await publish_until_seen(fast, envelope("positions", "DU1234", marker))
        seq = 0
        dropped_at = None
        started = time.monotonic()
        # Keep publishing, in step with the fast reader, until the server drops the slow one,
        # then a few batches more to show that the fast one is still served.
        while dropped_at is None or seq < dropped_at + 4 * batch:
            assert time.monotonic() - started < 40, f"slow client not dropped after {seq} messages"
            pad = base64.b64encode(os.urandom(size * 3 // 4)).decode()  # incompressible
            for _ in range(batch):
                seq += 1
                await publish(envelope("positions", "DU1234", marker, seq, pad))
            for expect in range(seq - batch + 1, seq + 1):
                msg, _ = await until(fast, marker, timeout=10, seq=expect)  # in order, none missing
                assert msg["seq"] == expect
            if dropped_at is None and dropped_as_slow(server, slow):
                dropped_at = seq
        # Now the slow client reads what was on the wire before the cut, then the close frame.
        code, got = await read_to_close(slow, timeout=20)
        assert code == 4408
        assert got < dropped_at, (got, dropped_at)
        assert await asyncio.to_thread(metric, server, "thor_ws_server_closes_total", reason="too_slow") >= 1
        dropped = await asyncio.to_thread(metric, server, "thor_ws_messages_dropped_total", type="positions",
                                          reason="too_slow")  # fmt: skip
        assert dropped >= QUEUE
        print(f"\n[{urlparse(server.ws_url).port}] slow client dropped after {dropped_at} messages of "
              f"{size // 1024} KiB ({dropped_at * size / 2**20:.1f} MiB); it had read {got}")  # fmt: skip
        await fast.close()

    run(scenario())
