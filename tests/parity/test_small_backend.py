"""``diff``/``check`` against a small hand-built backend (real sockets): noisy REST fields for
``--learn-noise``, a stream that drops mid-run, garbage frames, and REST errors.

The backend is a ``websockets`` server and an ``http.server`` in threads of this process. The
stream sends a ``positions`` envelope every 50 ms; REST answers with the current state.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from tests.conftest import set_flag, start_redis
from tests.runner import Run
from thorcut.redisconn import Keys

THRESHOLDS = "[features.positions.thresholds]\nmin_paired = 5\nmin_duration = 1\n"


@dataclass
class Backend:
    seq: int = 0
    noise: bool = False  # REST adds a request id that changes on every read
    close_after: int | None = None  # the stream closes the socket after this many messages (once)
    garbage: bool = False  # the stream also sends frames that are not JSON
    rest_status: int = 200
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)  # notified on each new seq

    def body(self, seq: int) -> dict[str, Any]:
        data: dict[str, Any] = {"account": "DU1234", "positions": [{"symbol": "ES", "quantity": seq % 7}]}
        return {"type": "positions", "feature": "positions", "key": "DU1234", "seq": seq, "data": data}


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: redis.Redis, keys: Keys) -> Iterator[Backend]:
    """The backend, with positions in shadow in this test's Redis (check/diff refuse an off feature)."""
    set_flag(client, keys, "positions", "shadow", 1)
    state = Backend()
    stop = threading.Event()

    def stream(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client leaving ends the handler
            send_until_stopped(ws)

    def tick() -> None:
        """One state for all: seq moves every 50 ms whoever is connected (a stream per connection
        would bump it too, and a client would see the other's versions as gaps)."""
        while not stop.wait(0.05):
            with state.changed:
                state.seq += 1
                state.changed.notify_all()

    def send_until_stopped(ws: ServerConnection) -> None:
        """Send every version from the one current at connect time on, none skipped (a slow
        thread catches up), so the stream itself never has a gap."""
        with state.lock:
            last = state.seq - 1
        while not stop.is_set():
            with state.changed:
                state.changed.wait_for(lambda seen=last: state.seq > seen or stop.is_set(), timeout=0.5)
                current = state.seq
            for seq in range(last + 1, current + 1):
                with state.lock:
                    state.sent += 1
                    drop = state.close_after is not None and state.sent == state.close_after
                ws.send(json.dumps(state.body(seq)))
                if state.garbage:
                    ws.send("<<not json>>")
                    ws.send(b"\x00\x01binary")
                if drop:
                    state.close_after = None
                    ws.close(1012, "restart")
                    return
            last = current

    class Rest(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                body = state.body(state.seq)
            if state.noise:
                body["data"]["request_id"] = uuid.uuid4().hex
            raw = json.dumps(body).encode()
            self.send_response(state.rest_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    threading.Thread(target=tick, daemon=True).start()
    with serve(stream, "127.0.0.1", 0) as ws_server:
        threading.Thread(target=ws_server.serve_forever, daemon=True).start()
        ws_port = ws_server.socket.getsockname()[1]
        monkeypatch.setenv("THORCUT_BACKEND_URL", f"http://127.0.0.1:{http.server_address[1]}")
        monkeypatch.setenv("THORCUT_WS_URL", f"ws://127.0.0.1:{ws_port}/")
        (tmp_path / "thorcut.toml").write_text(THRESHOLDS)
        try:
            yield state
        finally:
            stop.set()
            ws_server.shutdown()
            http.shutdown()
            http.server_close()


def test_learn_noise_proposes_ignore_rules(run: Run, backend: Backend) -> None:
    backend.noise = True
    result = run("diff", "positions", "--learn-noise", "--duration", "1.5")
    assert result.exit_code == 0, result.stderr
    assert "request_id" in result.stdout
    assert '[features.positions]\nignore = ["request_id"]' in result.stdout
    as_json = json.loads(run("diff", "positions", "--learn-noise", "--duration", "1", "--json").stdout)
    assert as_json["positions"]["paths"] == {"request_id": as_json["positions"]["compared"]}


def test_the_learned_rule_makes_the_noisy_feature_pass(run: Run, backend: Backend, tmp_path: Path) -> None:
    backend.noise = True
    noisy = json.loads(run("check", "positions", "--duration", "1.5", "--json", "--no-store").stdout)
    assert noisy["features"]["positions"]["verdict"] == "FAIL"
    assert {p["path"] for p in noisy["features"]["positions"]["paths"]} == {"request_id"}
    (tmp_path / "thorcut.toml").write_text(THRESHOLDS + '[features.positions]\nignore = ["request_id"]\n')
    result = run("check", "positions", "--duration", "1.5", "--json", "--no-store")
    assert result.exit_code == 0, result.stdout


def test_a_stream_that_drops_mid_run_reconnects_without_counting_a_gap(run: Run, backend: Backend) -> None:
    backend.close_after = 5
    result = run("check", "positions", "--duration", "2.5", "--json", "--no-store")
    body = json.loads(result.stdout)
    assert any(n.startswith("disconnected") for n in body["notices"]), body["notices"]
    f = body["features"]["positions"]
    assert f["counts"]["gaps"] == 0
    assert f["verdict"] == "PASS", f["reasons"]
    assert f["counts"]["samples"] > 5  # messages kept coming after the reconnect


def test_garbage_frames_are_counted_never_fatal(run: Run, backend: Backend) -> None:
    backend.garbage = True
    result = run("check", "positions", "--duration", "1.5", "--json", "--no-store")
    body = json.loads(result.stdout)
    assert result.exit_code == 0, result.stdout
    assert body["non_json_frames"] >= 2


def test_rest_errors_are_counted_by_status(run: Run, backend: Backend) -> None:
    backend.rest_status = 503
    result = run("check", "positions", "--duration", "1", "--json", "--no-store")
    f = json.loads(result.stdout)["features"]["positions"]
    assert result.exit_code == 5  # no pair at all: PENDING, never PASS
    assert set(f["rest_errors"]) == {"http_503"}
    assert f["rest_errors"]["http_503"] == f["counts"]["samples"]


def test_verdicts_are_stored_unless_told_not_to(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    assert run("check", "positions", "--duration", "1.5", "--no-store").exit_code == 0
    assert client.exists(keys.parity("positions")) == 0
    assert run("check", "positions", "--duration", "1.5").exit_code == 0
    stored = client.hgetall(keys.parity("positions"))
    assert stored["verdict"] == "PASS"
    assert int(stored["paired"]) >= 5
    assert stored["source"] == "live"
    status = json.loads(run("status", "--json").stdout)
    row = next(r for r in status["features"] if r["feature"] == "positions")
    assert row["parity"]["verdict"] == "PASS"
    assert row["parity"]["stream"] == "ok"


def test_mismatch_examples_land_in_the_bounded_list(
    run: Run, backend: Backend, client: redis.Redis, keys: Keys
) -> None:
    backend.noise = True
    assert run("check", "positions", "--duration", "1.5").exit_code == 1
    examples = [json.loads(e) for e in client.lrange(keys.mismatches("positions"), 0, -1)]
    assert examples
    assert all(e["differences"][0]["path"] == "request_id" for e in examples)
    assert "request_id" in client.hget(keys.parity("positions"), "last_mismatch")


def test_unreachable_redis_before_a_live_run_exits_4_at_once(run: Run, backend: Backend) -> None:
    """The stages are read first: no Redis, no sampling (its verdicts could not be stored either)."""
    from thorcut.dev.stack import free_port

    result = run("check", "positions", "--duration", "30", "--redis-url", f"redis://u:pw@127.0.0.1:{free_port()}/0",
                 "--timeout", "0.5")  # fmt: skip
    assert result.exit_code == 4
    assert "Redis at redis://u:***@127.0.0.1" in result.stderr
    assert "--no-store judges without Redis" in result.stderr
    assert result.stdout == ""  # nothing was sampled
    assert backend.sent == 0
    assert ":pw@" not in result.stderr + result.stdout


def test_no_store_judges_without_redis(run: Run, backend: Backend) -> None:
    from thorcut.dev.stack import free_port

    result = run("check", "positions", "--duration", "1.5", "--no-store", "--json",
                 "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "0.5")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "cannot read the features' stages" in result.stderr
    assert json.loads(result.stdout)["features"]["positions"]["verdict"] == "PASS"


def test_redis_lost_during_a_live_run_exits_4_but_shows_the_report(run: Run, backend: Backend, tmp_path: Path) -> None:
    import redis

    from thorcut.redisconn import Keys

    private = start_redis(tmp_path / "redis")
    try:
        c = redis.Redis(port=private.port, decode_responses=True)
        set_flag(c, Keys("lost"), "positions", "shadow", 1)
        c.close()
        # The stages are read at once; Redis is gone when the run ends and stores its verdict.
        threading.Timer(1.0, private.stop).start()
        result = run("check", "positions", "--duration", "2.5", "--redis-url", private.url, "--timeout", "0.5",
                     env={"THORCUT_PREFIX": "lost"})  # fmt: skip
    finally:
        private.stop()
    assert result.exit_code == 4, result.stdout + result.stderr
    assert "positions" in result.stdout
    assert "PASS" in result.stdout
    assert "Redis at" in result.stderr


def test_named_off_feature_is_refused_at_once(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "off", 2)
    result = run("check", "positions", "--duration", "30")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: positions is off: the backend broadcasts nothing to judge — `thorcut shadow positions` starts "
        "broadcasting it"
    )
    assert backend.sent == 0  # nothing was sampled
    diff = run("diff", "positions", "--duration", "30")
    assert diff.exit_code == 2
    assert "thorcut shadow positions" in diff.stderr


def test_all_skips_off_features_and_says_so(run: Run, backend: Backend) -> None:
    result = run("check", "--all", "--duration", "1.5", "--json", "--no-store")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert list(json.loads(result.stdout)["features"]) == ["positions"]
    assert "skipping account_balance, intraday, global_market: off, nothing is broadcast" in result.stderr


def test_every_feature_off_is_refused(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "off", 2)
    for args in (("check",), ("check", "--all"), ("diff", "--all")):
        result = run(*args, "--duration", "30")
        assert result.exit_code == 2, args
        assert "every feature is off" in result.stderr
        assert "thorcut shadow F" in result.stderr
    assert backend.sent == 0
