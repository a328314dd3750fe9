"""A small hand-built backend (real sockets) whose faults can be switched on at a known moment.

A ``websockets`` server and an ``http.server`` in threads of this process. Every 50 ms each of the
backend's message types (``positions`` unless told otherwise) moves to its next ``seq``, one
state for every connection; the stream sends each version of each type (key ``DU1234``), none
skipped, and REST answers a type's current state (the type whose name is in the request's path,
else the first), so any manifest that names these types and paths can judge it.

Faults (:meth:`Backend.fault`), switched on while it runs, each recording when its first faulty
message was sent (``fault_at``, ``time.time()``; every faulty message's time in ``faulty_sent``):

* ``mismatch``: REST answers the type with ``data[path]`` changed (persistent until :meth:`heal`);
  the faulty message is the first such REST response.
* ``gap``: the stream skips the type's next ``count`` versions (once); faulty: the one after them.
* ``duplicate``: the stream sends the type's next message twice (once); faulty: the second copy.
* ``resync_storm``: ``count`` jumps of two versions, each marked ``"resync": true``, back to back.
* ``drop``: every connection is closed (1012, service restart); with ``down`` > 0 both servers
  stop and start again on the same ports after ``down`` seconds (a backend restart).

``after_sent``: the fault takes effect once the stream has sent that many more messages (so a
client is surely connected and has a baseline). Use :func:`serve_backend` anywhere (a benchmark);
the pytest fixtures ``small_backend`` (sockets only) and ``backend`` (plus the test's Redis and the
``THORCUT_*`` variables) are built on it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.conftest import set_flag
from thorcut.redisconn import Keys

KEY = "DU1234"
THRESHOLDS = "[features.positions.thresholds]\nmin_paired = 5\nmin_duration = 1\n"
FAULTS = ("mismatch", "gap", "duplicate", "resync_storm", "drop")


@dataclass
class Backend:
    types: tuple[str, ...] = ("positions",)
    seq: int = 0
    noise: bool = False  # REST adds a request id that changes on every read
    close_after: int | None = None  # the stream closes the socket after this many messages (once)
    garbage: bool = False  # the stream also sends frames that are not JSON
    rest_status: int = 200
    sent: int = 0
    ws_url: str = ""
    rest_url: str = ""
    # faults (see the module docstring)
    faults: set[str] = field(default_factory=set)  # switched on and not yet spent (mismatch: until heal)
    fault_at: float | None = None
    faulty_sent: list[float] = field(default_factory=list)
    target: str = ""  # the type a fault applies to
    mismatch_path: str = "account"
    _count: int = 0  # gap: versions still to skip; resync_storm: jumps still to send
    _skip: int = 0  # resync_storm: versions to skip before the next marked one
    _armed: tuple[int, str, dict[str, Any]] | None = None  # (sent count, kind, options) of a fault to come
    _drops: int = 0  # bumped by a drop: each connection closes when it sees a new value
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)  # notified on each new seq
    restart_servers: Any = None  # set by serve_backend: (down seconds) -> None

    def body(self, seq: int, type_: str = "positions") -> dict[str, Any]:
        data: dict[str, Any]
        if type_ == "positions":
            data = {"account": KEY, "positions": [{"symbol": "ES", "quantity": seq % 7}]}
        else:
            data = {"account": KEY, "value": seq % 11}
        return {"type": type_, "feature": type_, "key": KEY, "seq": seq, "data": data}

    # -- faults --------------------------------------------------------------------------------

    def fault(self, kind: str, *, type_: str | None = None, count: int = 3, path: str = "account",
              down: float = 0.0, after_sent: int = 0) -> None:  # fmt: skip
        """Switch fault ``kind`` on (see the module docstring); ``after_sent``: once the stream has
        sent that many more messages. Clears ``fault_at`` and ``faulty_sent``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; faults: {', '.join(FAULTS)}")
        options = {"type_": type_, "count": count, "path": path, "down": down}
        with self.lock:
            self.fault_at, self.faulty_sent = None, []
            if after_sent:
                self._armed = (self.sent + after_sent, kind, options)
                return
        self._switch_on(kind, **options)

    def _switch_on(self, kind: str, *, type_: str | None, count: int, path: str, down: float) -> None:
        with self.lock:
            self.target = type_ or self.types[0]
            self.mismatch_path = path
            if kind == "drop":
                self._drops += 1
            else:
                self.faults.add(kind)
                self._count, self._skip = count, 0
        if kind == "drop" and down > 0 and self.restart_servers is not None:
            threading.Thread(target=self.restart_servers, args=(down,), daemon=True).start()

    def heal(self) -> None:
        """Switch every fault off (what was recorded stays)."""
        with self.lock:
            self.faults.clear()
            self._armed = None

    def _faulty(self) -> None:
        now = time.time()
        with self.lock:
            if self.fault_at is None:
                self.fault_at = now
            self.faulty_sent.append(now)

    def _frames(self, type_: str, seq: int) -> list[tuple[str, bool]]:
        """What the stream sends for ``type_`` at ``seq``: (text, faulty) pairs, faults applied."""
        body = self.body(seq, type_)
        with self.lock:
            if type_ != self.target or not self.faults & {"gap", "duplicate", "resync_storm"}:
                return [(json.dumps(body), False)]
            if "gap" in self.faults:
                if self._count > 0:
                    self._count -= 1
                    return []
                self.faults.discard("gap")
                return [(json.dumps(body), True)]
            if "duplicate" in self.faults:
                self.faults.discard("duplicate")
                return [(json.dumps(body), False), (json.dumps(body), True)]
            if self._skip == 0:  # resync_storm: skip one version, then send the next marked
                self._skip = 1
                return []
            self._skip = 0
            self._count -= 1
            if self._count <= 0:
                self.faults.discard("resync_storm")
            return [(json.dumps({**body, "resync": True}), True)]

    def _count_sent(self) -> bool:
        """Count one message sent; switch an armed fault on when its moment came. Returns whether
        this connection must close now (``close_after``)."""
        armed = None
        with self.lock:
            self.sent += 1
            drop = self.close_after is not None and self.sent == self.close_after
            if self._armed is not None and self.sent >= self._armed[0]:
                armed, self._armed = self._armed, None
        if armed is not None:
            self._switch_on(armed[1], **armed[2])
        return drop


def _rest_handler(state: Backend) -> type[BaseHTTPRequestHandler]:
    class Rest(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            type_ = next((t for t in state.types if t in self.path), state.types[0])
            faulty = False
            with state.lock:
                body = state.body(state.seq, type_)
                if "mismatch" in state.faults and type_ == state.target:
                    value = body["data"].get(state.mismatch_path)
                    body["data"][state.mismatch_path] = value + 0.5 if isinstance(value, int | float) else f"{value}!"
                    faulty = True
            if state.noise:
                body["data"]["request_id"] = uuid.uuid4().hex
            raw = json.dumps(body).encode()
            self.send_response(state.rest_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if faulty:
                state._faulty()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    return Rest


@contextlib.contextmanager
def serve_backend(types: tuple[str, ...] = ("positions",)) -> Iterator[Backend]:
    """Run the backend on free loopback ports until the block ends; ``ws_url``/``rest_url`` say where."""
    state = Backend(types=types, target=types[0])
    stop = threading.Event()

    def tick() -> None:
        """One state for all: seq moves every 50 ms whoever is connected (a stream per connection
        would bump it too, and a client would see the other's versions as gaps)."""
        while not stop.wait(0.05):
            with state.changed:
                state.seq += 1
                state.changed.notify_all()

    def stream(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client leaving ends the handler
            send_until_stopped(ws)

    def send_until_stopped(ws: ServerConnection) -> None:
        """Send every version from the one current at connect time on, none skipped (a slow
        thread catches up), so the stream itself never has a gap but for a fault."""
        with state.lock:
            last, drops = state.seq - 1, state._drops
        while not stop.is_set():
            with state.changed:
                state.changed.wait_for(lambda seen=last: state.seq > seen or stop.is_set(), timeout=0.5)
                current = state.seq
            for seq in range(last + 1, current + 1):
                close = False
                for type_ in state.types:
                    for text, faulty in state._frames(type_, seq):
                        if faulty:
                            state._faulty()
                        ws.send(text)
                        close = state._count_sent() or close
                if state.garbage:
                    ws.send("<<not json>>")
                    ws.send(b"\x00\x01binary")
                if close:
                    state.close_after = None
                if close or state._drops != drops:
                    ws.close(1012, "restart")
                    return
            last = current

    servers: dict[str, Any] = {}

    def start(ws_port: int = 0, http_port: int = 0) -> None:
        http = ThreadingHTTPServer(("127.0.0.1", http_port), _rest_handler(state))
        threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        ws_server: Server = serve(stream, "127.0.0.1", ws_port)
        threading.Thread(target=ws_server.serve_forever, daemon=True).start()
        servers.update(http=http, ws=ws_server)

    def shutdown() -> None:
        servers["ws"].shutdown()
        servers["http"].shutdown()
        servers["http"].server_close()

    lock = threading.Lock()

    def restart(down: float) -> None:
        with lock:
            ws_port, http_port = servers["ws"].socket.getsockname()[1], servers["http"].server_address[1]
            shutdown()
            time.sleep(down)
            if not stop.is_set():
                start(ws_port, http_port)

    start()
    state.restart_servers = restart
    state.ws_url = f"ws://127.0.0.1:{servers['ws'].socket.getsockname()[1]}/"
    state.rest_url = f"http://127.0.0.1:{servers['http'].server_address[1]}"
    threading.Thread(target=tick, daemon=True).start()
    try:
        yield state
    finally:
        stop.set()
        with lock:
            shutdown()


@pytest.fixture(name="small_backend")
def small_backend_fixture() -> Iterator[Backend]:
    """The backend's sockets alone (no Redis, no environment)."""
    with serve_backend() as state:
        yield state


def use_backend(state: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str = THRESHOLDS) -> None:
    """Point the CLI (``THORCUT_BACKEND_URL``/``THORCUT_WS_URL``) at ``state``, with ``toml`` as thorcut.toml."""
    monkeypatch.setenv("THORCUT_BACKEND_URL", state.rest_url)
    monkeypatch.setenv("THORCUT_WS_URL", state.ws_url)
    (tmp_path / "thorcut.toml").write_text(toml)


@pytest.fixture(name="backend")
def backend_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: redis.Redis,
                    keys: Keys) -> Iterator[Backend]:  # fmt: skip
    """The backend, with positions in shadow in this test's Redis (check/diff refuse an off feature)
    and the CLI pointed at it (lowered thresholds in thorcut.toml)."""
    set_flag(client, keys, "positions", "shadow", 1)
    with serve_backend() as state:
        use_backend(state, monkeypatch, tmp_path)
        yield state
