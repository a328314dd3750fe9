"""The WebSocket stream client (``thorcut.wire.stream``) over real sockets, driven through
``thorcut tail`` against small ``websockets`` servers: connection and credential errors,
reconnecting after a restart, the frame size limit, and the backoff between attempts.

Every CLI run passes ``--duration`` as a safety net, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection

from tests.runner import Run
from tests.wire.ws_server import StartWsServer, WsServer, env, ndjson, sender
from thorcut.dev.stack import free_port
from thorcut.wire.stream import MiB, StreamClient

# -- connection and credential errors -------------------------------------------------------------


def test_tail_unreachable_server_exits_4_with_secrets_redacted(run: Run) -> None:
    port = free_port()
    result = run("tail", "--url", f"ws://ops:hunter2@127.0.0.1:{port}/ws/?token=s3cret", "--duration", "10")
    assert result.exit_code == 4
    assert f"WebSocket at ws://ops:***@127.0.0.1:{port}/ws/?token=*** refused the connection" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_tail_http_403_at_handshake_exits_4_with_token_hint(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender(), process_request=lambda conn, req: conn.respond(HTTPStatus.FORBIDDEN, "no\n"))
    result = run("tail", "--url", server.url, "--duration", "10", env={"THORCUT_TOKEN": "tok-secret"})
    assert result.exit_code == 4
    assert "rejected the credentials (HTTP 403 at the handshake)" in result.stderr
    assert "set THORCUT_TOKEN" in result.stderr
    assert "tok-secret" not in result.stderr + result.stdout


def test_tail_close_4401_exits_4_without_reconnecting(run: Run, ws_server: StartWsServer) -> None:
    async def reject(ws: ServerConnection, n: int) -> None:
        await ws.close(4401, "authentication required")

    server = ws_server(reject)
    result = run("tail", "--url", server.url, "--duration", "10")
    assert result.exit_code == 4
    assert "rejected the credentials (close code 4401)" in result.stderr
    assert "THORCUT_TOKEN" in result.stderr
    assert "reconnecting" not in result.stderr
    assert server.connections == 1


# -- the connection -------------------------------------------------------------------------------


def test_tail_reconnects_after_the_server_restarts_and_messages_continue(run: Run, ws_server: StartWsServer) -> None:
    holder: list[WsServer] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            for seq in (1, 2, 3):
                await ws.send(json.dumps(env("positions", "DU1", seq)))
            asyncio.get_running_loop().create_task(holder[0].restart(down=0.6))
        else:
            for seq in (10, 11, 12):  # what was sent while away is a lost connection, not a gap
                await ws.send(json.dumps(env("positions", "DU1", seq)))

    server = ws_server(handler)
    holder.append(server)
    result = run("tail", "--url", server.url, "--json", "--count", "6", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert [d["msg"]["seq"] for d in ndjson(result.stdout)] == [1, 2, 3, 10, 11, 12]
    assert "disconnected: server closed 1001 (going away)" in result.stderr
    assert re.search(r"reconnecting in [\d.]+ s \(attempt 1; ", result.stderr)
    assert f"reconnected to {server.url}" in result.stderr
    assert "gaps 0 (0 missed)" in result.stderr
    assert "reconnections 1" in result.stderr


def test_tail_oversized_frame_is_reported_and_it_reconnects(run: Run, ws_server: StartWsServer) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send("x" * (4 * MiB + 1))
        else:
            await ws.send(json.dumps(env("positions", "DU1", 1)))

    server = ws_server(handler)
    result = run("tail", "--url", server.url, "--json", "--count", "1", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert "disconnected: frame over 4 MiB refused: closed 1009 (message too big)" in result.stderr
    assert "reconnected to" in result.stderr
    assert [d["msg"]["seq"] for d in ndjson(result.stdout)] == [1]


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    client = StreamClient("ws://h/", {}, backoff_initial=0.25, backoff_max=2.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 2.0), (200, 2.0)]:
        delays = [client.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed step
