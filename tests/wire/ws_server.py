"""Small ``websockets`` servers for the stream client and ``thorcut tail``: a real server on
127.0.0.1 run by a loop in a background thread, the ``ws_server`` fixture that starts them (a
plugin of tests/conftest.py), the envelopes and handlers the tests send through them, and
:class:`Resumable`, streams with a history that answer ``resume`` as docs/contracts.md says."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from websockets.asyncio.server import Server as WsServerHandle
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from thorcut.clock import now_iso
from thorcut.dev.stack import free_port
from thorcut.manifest import DEFAULT_MANIFEST

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


# -- streams that answer resume (docs/contracts.md, "Resuming a stream") ----------------------------

#: the message types a resume may name: the reference backend's features' (never heartbeat)
RESUMABLE_TYPES = frozenset(t for f in DEFAULT_MANIFEST.features for t in f.types)


@dataclass
class Resumable:
    """Streams with a history, answering ``{"action": "resume", "since": [...]}`` per the contract.

    :meth:`publish` makes the next version of a stream (kept in its history); :meth:`forget` loses
    a stream's history, so a resume answers it with its current envelope marked ``resync``. Every
    frame a client sends is kept in ``received`` (as text), the resumes parsed in ``resumes``.
    """

    envelopes: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    forgotten: dict[tuple[str, str], int] = field(default_factory=dict)  # history lost up to this seq
    received: list[str] = field(default_factory=list)
    resumes: list[Any] = field(default_factory=list)
    refuse: bool = False  # answer every resume with an error (a backend that does not know it)

    def publish(self, type_: str, key: str, seq: int | None = None, **data: Any) -> dict[str, Any]:
        """The next version of ``(type_, key)`` (or version ``seq``), kept in its history."""
        history = self.envelopes.setdefault((type_, key), [])
        seq = seq if seq is not None else (history[-1]["seq"] + 1 if history else 1)
        envelope = env(type_, key, seq, **data)
        history.append(envelope)
        return envelope

    def forget(self, type_: str, key: str) -> None:
        """Lose the history of ``(type_, key)`` up to its current version (Redis restarted)."""
        self.forgotten[(type_, key)] = self.envelopes[(type_, key)][-1]["seq"]

    def current(self, type_: str, key: str) -> dict[str, Any] | None:
        history = self.envelopes.get((type_, key))
        return history[-1] if history else None

    @staticmethod
    def refusal(since: Any) -> str | None:
        """Why a resume's ``since`` breaks the contract, or None."""
        if not isinstance(since, list) or len(since) > 1000:
            return "since must be a list of at most 1000 streams"
        for item in since:
            if not isinstance(item, dict) or set(item) != {"type", "key", "seq"}:
                return "each stream is {type, key, seq}"
            seq = item["seq"]
            if item["type"] not in RESUMABLE_TYPES:
                return f"unknown message type {item['type']!r}"
            if not isinstance(item["key"], str) or not 1 <= len(item["key"]) <= 64:
                return "key must be a string of 1 to 64 characters"
            if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= 2**63 - 1:
                return "seq must be an integer from 0 to 2^63 - 1"
        return None

    async def answer(self, ws: ServerConnection, since: Any, *, healed: bool = False) -> None:
        """Answer a resume: per stream nothing, the missed envelopes, or the current one marked resync;
        then ``resumed`` (``healed``: a server's own, unasked)."""
        why = "the server does not know the command" if self.refuse else self.refusal(since)
        if why is not None:
            await ws.send(json.dumps({"type": "error", "error": f"bad resume: {why}"}))
            return
        held: dict[tuple[str, str], int] = {}
        for item in since:
            stream = (item["type"], item["key"])
            held[stream] = max(held.get(stream, -1), item["seq"])
        replayed = resynced = 0
        for stream, history in self.envelopes.items():
            c, s = history[-1]["seq"], held.get(stream)
            if s is not None and s >= c:
                continue
            if s is not None and s >= self.forgotten.get(stream, 0):
                for envelope in history:
                    if envelope["seq"] > s:
                        await ws.send(json.dumps(envelope))
                        replayed += 1
            else:
                await ws.send(json.dumps({**history[-1], "resync": True}))
                resynced += 1
        reply: dict[str, Any] = {"type": "resumed", "replayed": replayed, "resynced": resynced}
        if healed:
            reply["healed"] = True
        await ws.send(json.dumps(reply))

    async def next_command(self, ws: ServerConnection, timeout: float = 5.0) -> Any:
        """Wait for the client's next frame; answer it if it is a resume. Returns it parsed (None: none came)."""
        try:
            text = await asyncio.wait_for(ws.recv(), timeout)
        except TimeoutError:
            return None
        text = text if isinstance(text, str) else text.decode()
        self.received.append(text)
        command = json.loads(text)
        if isinstance(command, dict) and command.get("action") == "resume":
            self.resumes.append(command)
            await self.answer(ws, command.get("since"))
        return command

    async def send(self, ws: ServerConnection, type_: str, key: str, seq: int | None = None, **marks: Any) -> None:
        """Publish the next version of a stream and push it (with ``marks`` such as ``resync=True``)."""
        await ws.send(json.dumps({**self.publish(type_, key, seq), **marks}))
