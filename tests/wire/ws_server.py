"""Small ``websockets`` servers for the stream client and ``thorcut tail``: a real server on
127.0.0.1 run by a loop in a background thread, the ``ws_server`` fixture that starts them (a
plugin of tests/conftest.py), and the envelopes and handlers the tests send through them."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import pytest
from websockets.asyncio.server import Server as WsServerHandle
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from thorcut.clock import now_iso
from thorcut.dev.stack import free_port

Handler = Callable[[ServerConnection, int], Awaitable[None]]


def env(type_: str, key: str, seq: int, **data: Any) -> dict[str, Any]:
    """An envelope as docs/contracts.md describes it, stamped now."""
    return {"type": type_, "feature": type_, "key": key, "seq": seq, "ts": now_iso(), "data": data or {"n": seq}}


class WsServer:
    """A real ``websockets`` server on 127.0.0.1, run by a loop in a background thread.

    ``handler(ws, n)`` serves the n-th connection (1, 2, … across restarts); when it returns the
    connection stays open until the client or :meth:`stop` ends it.
    """

    def __init__(self, handler: Handler, *, process_request: Any = None) -> None:
        self.handler = handler
        self.process_request = process_request
        self.port = free_port()
        self.connections = 0
        self.paths: list[str] = []
        self.server: WsServerHandle | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self._start())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)  # type: ignore[arg-type]

    async def _serve(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.paths.append(ws.request.path if ws.request else "")
        try:
            await self.handler(ws, self.connections)
            await ws.wait_closed()
        except ConnectionClosed:
            pass

    async def _start(self) -> None:
        self.server = await serve(
            self._serve, "127.0.0.1", self.port, compression=None, process_request=self.process_request
        )

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()  # closes open connections with 1001 (going away)
            await self.server.wait_closed()
            self.server = None

    async def restart(self, down: float) -> None:
        """Stop, stay down for ``down`` seconds (connections are refused), start on the same port."""
        await self._stop()
        await asyncio.sleep(down)
        await self._start()

    def close(self) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class StartWsServer(Protocol):
    """The ``ws_server`` fixture: start a :class:`WsServer`, stopped when the test ends."""

    def __call__(self, handler: Handler, *, process_request: Any = None) -> WsServer: ...


@pytest.fixture
def ws_server() -> Iterator[StartWsServer]:
    started: list[WsServer] = []

    def start(handler: Handler, *, process_request: Any = None) -> WsServer:
        server = WsServer(handler, process_request=process_request)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def sender(*frames: Any) -> Handler:
    """A handler that sends ``frames`` (dicts as JSON text; str and bytes as they are) on every connection."""

    async def handler(ws: ServerConnection, n: int) -> None:
        for f in frames:
            await ws.send(json.dumps(f) if isinstance(f, dict | list) else f)

    return handler


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]
