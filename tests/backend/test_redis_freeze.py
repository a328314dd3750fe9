"""Redis frozen under the whole stack: ONE private redis-server for flags, channel layer and the
leader lock (as ``thorcut dev up`` runs it), a real ``manage.py run_jobs``, a real uvicorn server
and a real WebSocket client, then ``SIGSTOP`` on the redis-server for two seconds.

While it is frozen the heartbeat keeps its rhythm, the broadcaster drops and counts, the jobs run
on (the seq counters in the database keep rising: the leader's lease cannot be renewed, and the
database term, not the lease, fences it), REST answers with fresh seqs, the job runner stays up.
After ``SIGCONT`` the broadcasts resume and reach the WebSocket client again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from tests.backend.conftest import BACKEND, start_server
from tests.backend.test_heartbeat import _path
from tests.backend.test_leader import wait_for
from tests.conftest import start_redis
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

pytestmark = pytest.mark.slow

TICK = 0.05
FREEZE = 2.5
#: The lock renews every TTL / 3 (< FREEZE: at least one renewal fails while frozen), and the key
#: outlives the freeze plus the renewal retries after it (TTL / 3 + FREEZE + ~1 s < TTL), so the
#: same term runs straight through. (A key that expires during a freeze is test_leader's case.)
TTL = 7.0


class WsClient(threading.Thread):
    """A real WebSocket client (bearer token) that keeps every message with its arrival time."""

    def __init__(self, url: str, origin: str, token: str) -> None:
        super().__init__(daemon=True, name="test-ws-client")
        self.url, self.origin, self.token = url, origin, token
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            async with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                               origin=self.origin, compression=None, open_timeout=10) as ws:  # fmt: skip
                self.ready.set()
                while not self.done.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.2)  # cancelling recv() loses nothing
                    except TimeoutError:
                        continue
                    self.messages.append((time.monotonic(), json.loads(raw)))
        except Exception as exc:
            self.error = exc
        finally:
            self.ready.set()

    def data(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Job envelopes (not flags/subscribed/heartbeat) that arrived at or after ``since``."""
        return [m for at, m in list(self.messages) if at >= since and m.get("feature")]

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def read_stats(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def current(stats: dict[str, Any]) -> dict[str, Any]:
    return stats.get("current") or {}


def fresh_stats(path: Path, after: float) -> dict[str, Any]:
    """The first stats the runner wrote after wall time ``after``."""
    return wait_for(lambda: (s := read_stats(path)) and s["time"] > after and s, 3, "fresh runner stats")


def test_the_stack_rides_out_a_frozen_redis(thor_env: dict[str, str], demo_users: dict[str, dict[str, str]],
                                            tmp_path: Path) -> None:  # fmt: skip
    from thor_runner.heartbeat import percentile
    from thor_trading.models import SeqCounter

    server = start_redis(tmp_path / "redis")
    assert server.process is not None
    redis_pid = server.process.pid
    prefix = f"frz{uuid.uuid4().hex[:8]}"
    env = {**thor_env, "THORCUT_REDIS_URL": server.url, "THOR_CHANNEL_REDIS_URL": server.url,
           "THORCUT_PREFIX": prefix, "THOR_TICK": str(TICK)}  # fmt: skip
    # Every feature in shadow on this Redis, before anything starts: the jobs broadcast.
    client = redis.Redis.from_url(server.url, decode_responses=True)
    store = FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names, operator="t")
    for feature in DEFAULT_MANIFEST.names:
        for step in _path(store.read(feature).stage, Stage.SHADOW):
            store.change(feature, step, reason="test", percent=None)
    client.close()

    stats_file = tmp_path / "runner-stats.json"
    runner_log = tmp_path / "runner.log"
    token = demo_users["demo"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    cmd = [sys.executable, "manage.py", "run_jobs", "--ttl", str(TTL), "--stats-file", str(stats_file),
           "--stats-every", "0.25"]  # fmt: skip
    with runner_log.open("wb") as out:
        runner = subprocess.Popen(cmd, cwd=BACKEND, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    web = None
    ws: WsClient | None = None
    frozen = False
    try:
        web = start_server(env, tmp_path / "uvicorn.log", extra_env=env)
        ws = WsClient(web.ws_url, web.url, token)
        ws.start()
        assert ws.ready.wait(15)
        assert ws.error is None, ws.error
        wait_for(lambda: len(ws.data()) >= 30, 30, "messages on the WebSocket")
        assert {m["key"] for m in ws.data() if m["type"] == "account_balance"} == {"DU1234"}  # only its own

        def db_seq() -> int:
            return SeqCounter.objects.get(type="account_balance", key="DU1234").seq

        # Past the start-up (imports, first ticks, connections) before measuring anything.
        wait_for(lambda: current(read_stats(stats_file)).get("heartbeat", {}).get("ticks", 0) >= 60, 15, "warm-up")
        before = fresh_stats(stats_file, time.time())
        assert before["leader"]
        assert before["terms"] == 1

        # -- freeze ------------------------------------------------------------------------
        os.kill(redis_pid, signal.SIGSTOP)
        frozen, frozen_at = True, time.monotonic()
        frozen_wall = time.time()
        seqs: list[int] = []
        rest: list[tuple[int, int]] = []
        with httpx.Client(timeout=3) as http:
            while time.monotonic() - frozen_at < FREEZE:
                r = http.get(f"{web.url}/api/account/balance", headers=auth)
                rest.append((r.status_code, r.json().get("seq", -1) if r.status_code == 200 else -1))
                seqs.append(db_seq())
                assert runner.poll() is None, runner_log.read_text(errors="replace")
                time.sleep(0.2)
        during = fresh_stats(stats_file, frozen_wall + FREEZE - 0.5)  # written while still frozen
        assert time.monotonic() - frozen_at < FREEZE + 1.0
        ws_while_frozen = len(ws.data(since=frozen_at + 0.6))
        os.kill(redis_pid, signal.SIGCONT)
        frozen, thawed_at = False, time.monotonic()

        # -- after ---------------------------------------------------------------------------
        wait_for(lambda: ws.data(since=thawed_at), 5, "WebSocket messages after SIGCONT")
        back_after = min(at for at, m in list(ws.messages) if at >= thawed_at and m.get("feature"))
        wait_for(lambda: len(ws.data(since=thawed_at)) >= 20, 10, "the stream to resume")
        after = fresh_stats(stats_file, time.time())

        b0, b1, b2 = (current(s).get("broadcaster", {}) for s in (before, during, after))
        h0, h1 = current(before)["heartbeat"], current(during)["heartbeat"]
        span = during["time"] - before["time"]
        ticks = h1["ticks"] - h0["ticks"]
        window = current(during)["lateness_recent"][-ticks:]  # one sample per tick run since `before`
        lateness = {"p50": percentile(window, 50), "p95": percentile(window, 95), "p99": percentile(window, 99),
                    "max": max(window)}  # fmt: skip
        print(f"\nfrozen {FREEZE} s: {ticks} ticks in {span:.2f} s (tick {TICK}), "
              f"skipped {h1['skipped'] - h0['skipped']}, "
              f"lateness ms {', '.join(f'{k} {v * 1000:.2f}' for k, v in lateness.items())}; "
              f"db seq {seqs[0]}->{seqs[-1]}, rest {rest[0]}->{rest[-1]} ({len(rest)} requests); "
              f"broadcaster dropped+failed {b0['dropped'] + b0['failed']}->{b1['dropped'] + b1['failed']}, "
              f"sent {b1['sent']}->{b2['sent']}; renewer {current(after)['renewer']}; "
              f"ws {ws_while_frozen} while frozen, "
              f"back {(back_after - thawed_at) * 1000:.0f} ms after SIGCONT")  # fmt: skip

        # The heartbeat kept its rhythm (the goal is p99 < 5 ms; this bound only allows for a busy machine).
        assert ticks >= span / TICK * 0.9
        assert h1["skipped"] - h0["skipped"] <= 3
        assert lateness["p99"] < 0.05
        assert h1["job_errors"] == dict.fromkeys(h1["job_errors"], 0)
        # The jobs ran on: the database seq rose at every sample, REST served it.
        assert all(b > a for a, b in itertools.pairwise(seqs)), seqs
        assert seqs[-1] - seqs[0] >= (FREEZE - 0.5) / TICK * 0.7
        assert {code for code, _ in rest} == {200}
        assert all(b >= a for (_, a), (_, b) in itertools.pairwise(rest)), rest
        assert rest[-1][1] > rest[0][1]
        # The broadcaster dropped (and counted) instead of waiting; the lock could not be renewed.
        assert b1["dropped"] + b1["failed"] > b0["dropped"] + b0["failed"]
        assert current(after)["renewer"]["outages"] >= 1
        assert "leader lock renewal failed" in runner_log.read_text(errors="replace")
        assert ws_while_frozen == 0
        # One term throughout: nothing stepped down, the runner is still the same leader.
        assert after["terms"] == 1
        assert after["step_downs"] == {}
        assert current(after)["term"] == current(before)["term"]
        assert b2["sent"] > b1["sent"]
        assert runner.poll() is None
        assert web.process.poll() is None
    finally:
        if frozen:
            os.kill(redis_pid, signal.SIGCONT)
        if ws is not None:
            ws.stop()
        if web is not None:
            web.stop()
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(15)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(5)
        server.stop()
    assert runner.returncode == 0, runner_log.read_text(errors="replace")[-3000:]
