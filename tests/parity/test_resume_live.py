"""A live ``diff`` whose stream drops and is resumed (docs/contracts.md, "Resuming a stream"), over
real sockets: a small WebSocket server that answers ``resume`` (tests/wire/ws_server.py,
:class:`Resumable`) and a REST server answering each account's current envelope. The replayed
envelopes are the next versions, a marked jump is a resync, an unmarked one a gap; and the
recording of the run replays to the same counts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from websockets.asyncio.server import ServerConnection

from tests.conftest import set_flag
from tests.runner import Run
from tests.wire.ws_server import Resumable, StartWsServer
from thorcut.redisconn import Keys


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch, client: redis.Redis, keys: Keys) -> Iterator[Resumable]:
    """The streams, served over REST as each account's current positions; positions in shadow."""
    set_flag(client, keys, "positions", "shadow", 1)
    state = Resumable()

    class Rest(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            account = parse_qs(urlsplit(self.path).query).get("account", [""])[0]
            raw = json.dumps(state.current("positions", account)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    monkeypatch.setenv("THORCUT_BACKEND_URL", f"http://127.0.0.1:{http.server_address[1]}")
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def test_a_live_diff_resumes_after_a_drop_and_its_recording_replays_alike(
    run: Run, streams: Resumable, ws_server: StartWsServer, tmp_path: Path
) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            for key in ("DU1", "DU1", "DU1", "DU2"):
                await streams.send(ws, "positions", key)
            await ws.close(1012, "restart")
            return
        streams.publish("positions", "DU1")
        streams.publish("positions", "DU1")
        for _ in range(4):
            streams.publish("positions", "DU2")
        streams.forget("positions", "DU2")
        await streams.next_command(ws)  # DU1 4, 5 replayed; DU2 5 marked resync; resumed
        await streams.send(ws, "positions", "DU1")  # 6
        await streams.send(ws, "positions", "DU1", 9)  # unmarked jump: a gap of 2

    server = ws_server(handler)
    record = tmp_path / "live.jsonl"
    result = run("diff", "positions", "--url", server.url, "--duration", "2", "--no-store", "--json",
                 "--record", str(record))  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr
    assert streams.received == [
        '{"action":"resume","since":[{"type":"positions","key":"DU1","seq":3},{"type":"positions","key":"DU2","seq":1}]}'
    ]
    live = json.loads(result.stdout)
    f = live["features"]["positions"]
    c = f["counts"]
    assert (c["gaps"], c["missed"], c["resyncs"], c["resynced_missed"], c["duplicates"]) == (1, 2, 1, 3, 0)
    assert c["samples"] == 9
    assert f["reasons"] == ["1 gaps > 0 allowed"]
    assert any(n.startswith("connected: ") and n.endswith(" (resuming 2 streams)") for n in live["notices"])
    assert live["resumes"] == {"sent": 1, "answered": 1, "refused": 0, "unanswered": 0, "healed": 0,
                               "replayed": 2, "resynced": 1}  # fmt: skip

    again = run("check", "positions", "--replay", str(record), "--json")
    assert again.exit_code == 1, again.stdout + again.stderr
    replayed = json.loads(again.stdout)
    assert replayed["features"]["positions"]["counts"] == c
    assert replayed["resumes"] == live["resumes"]  # as the recording's "reconnected": "resume" says
    text = run("check", "positions", "--replay", str(record))
    assert "The stream was resumed: resumes 1 sent, 1 answered (2 replayed, 1 resynced)." in text.stdout
