"""Benchmark: streams that heal by ``seq`` (docs/contracts.md, "Resuming a stream"), on the real stack.

The stack is the reference backend as ``thorcut dev up`` runs it, in temporary folders: one
private redis-server (flags, channel layer, leader lock and the stream history), SQLite, a real
``manage.py run_jobs`` at ``--tick`` (every job writes its state and bumps its ``seq``), uvicorn
with ``--workers`` processes, every feature in ``shadow`` (the jobs broadcast). ``--clients``
WebSocket clients of one account follow every feature.

* **reconnects**: each client connects, sends ``resume`` with the last ``seq`` it holds per stream
  (``since: []`` the first time), waits for ``resumed``, stays a moment, closes, stays away a
  moment (versions go by), and again, until ``--reconnects`` reconnects are done. The first connects
  (every client at once, holding nothing: 21 resyncs each) are not reconnects: their latency is
  reported apart. Measured: the time
  from the open socket to ``resumed`` (then the client holds every stream's current ``seq``: what
  the database held before the resume was sent is checked, stream by stream), states missing
  after it (a stream whose ``seq`` is older than that, or absent), and unmarked jumps (gaps).
* **freeze**: the clients stay connected; the redis-server is stopped (SIGSTOP) for ``--freeze``
  seconds while the jobs go on writing the database, then continued. Measured: for each client,
  the time from the thaw until it holds, for every stream, at least the ``seq`` the database held
  at the thaw; (client, stream) pairs still behind ``--settle`` seconds after it; unmarked jumps.
  With ``--baseline REF`` the same freeze runs first against the backend of git revision REF (a
  temporary worktree), for today's figures beside the new ones.

    .venv/bin/python benchmarks/resume.py [--clients 50] [--reconnects 1000] [--tick 0.1]
        [--freeze 10] [--workers 2] [--baseline REF]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, private_redis, table, worktree

from thorcut.dev.stack import EmbeddedRedis, free_port

ACCOUNT = "DU0001"
ACCOUNT_TYPES = ("account_balance", "positions")


@dataclass
class Stack:
    redis: EmbeddedRedis
    db: Path
    url: str
    token: str
    procs: list[subprocess.Popen[bytes]]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/stream/"

    def db_seqs(self) -> dict[tuple[str, str], int]:
        """Every stream this account may see, with the ``seq`` the database holds now."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as conn:
            rows = conn.execute("SELECT type, key, seq FROM thor_trading_seqcounter").fetchall()
        return {(t, k): int(s) for t, k, s in rows
                if t != "heartbeat" and (t not in ACCOUNT_TYPES or k == ACCOUNT)}  # fmt: skip


@contextlib.contextmanager
def stack(root: Path, tick: float, workers: int) -> Iterator[Stack]:
    """The reference backend of the checkout at ``root`` (this one, or a baseline worktree)."""
    backend = root / "backend"
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="thorcut-resume-") as folder:
        db = Path(folder) / "thor.sqlite3"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "thor_project.settings",
            "THORCUT_REDIS_URL": redis_server.url,
            "THORCUT_PREFIX": "bench",
            "DATABASE_URL": f"sqlite:///{db}",
            # The checkout's own thorcut before the installed one: a baseline runs with its own.
            "PYTHONPATH": os.pathsep.join([str(backend), str(root)]),
            "THOR_TICK": str(tick),
            "PYTHONUNBUFFERED": "1",
        }
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=backend, env=env, check=True, capture_output=True)
        user = ["thor_user", "bench", "--password", "bench-pass", "--account", ACCOUNT, "--token", "bench"]
        made = subprocess.run([*manage, *user], cwd=backend, env=env, check=True, capture_output=True, text=True)
        token = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("token "))
        subprocess.run([*manage, "thor_seed"], cwd=backend, env=env, check=True, capture_output=True)
        shadow = ("from thorcut.flags.store import FlagStore; from thorcut.redisconn import Keys; "
                  "from thorcut.flags.stages import Stage; from thorcut.manifest import DEFAULT_MANIFEST; import redis;"
                  f"s = FlagStore(redis.Redis.from_url({redis_server.url!r}, decode_responses=True), Keys('bench'),"
                  " DEFAULT_MANIFEST.names, operator='bench');"
                  "[s.change(f, Stage.SHADOW, reason='benchmark', percent=None)"
                  " for f in DEFAULT_MANIFEST.names]")  # fmt: skip
        subprocess.run([sys.executable, "-c", shadow], cwd=root, env=env, check=True, capture_output=True)
        port = free_port()
        logs = Path(folder)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with (logs / "runner.log").open("wb") as out:  # a lease that outlives any freeze here
                procs.append(subprocess.Popen([*manage, "run_jobs", "--ttl", "60"], cwd=backend, env=env,
                                              stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
            web = [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--port", str(port),
                   "--workers", str(workers), "--ws", "websockets", "--ws-per-message-deflate", "false",
                   "--lifespan", "off", "--no-access-log", "--log-level", "warning"]  # fmt: skip
            with (logs / "uvicorn.log").open("wb") as out:
                procs.append(subprocess.Popen(web, cwd=backend, env=env, stdout=out, stderr=subprocess.STDOUT))
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/api/health", procs, logs)
            time.sleep(2.0)  # past the first ticks
            yield Stack(redis_server, db, url, token, procs)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    tail = "".join(f.read_text(errors="replace")[-1500:] for f in logs.glob("*.log"))
    raise SystemExit(f"the stack did not start: {tail}")


class Client:
    """One WebSocket client's view: the last ``seq`` it holds per stream, and what went wrong."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], int] = {}
        self.unmarked = 0  # seq jumps without the resync mark: gaps
        self.resyncs = 0
        self.healed = 0
        self.resumed: list[dict[str, Any]] = []
        #: While a resume is unanswered: per stream, the seq held before it, the seqs seen since and
        #: whether one came marked. The server may push the newest envelope before it reads the
        #: resume, so a jump is judged only at ``resumed``, once the replay had its chance to fill it.
        self.pending: dict[tuple[str, str], tuple[int | None, set[int], list[bool]]] | None = None

    def begin_resume(self) -> None:
        self.pending = {}

    def _answered(self) -> None:
        for old, seen, marked in (self.pending or {}).values():
            if old is not None and not marked[0] and any(s not in seen for s in range(old + 1, max(seen))):
                self.unmarked += 1
        self.pending = None

    def take(self, raw: str | bytes) -> dict[str, Any]:
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            return {}
        if msg.get("type") == "resumed":
            self.resumed.append(msg)
            self.healed += bool(msg.get("healed"))
            if self.pending is not None and not msg.get("healed"):
                self._answered()
        elif msg.get("feature") and isinstance(msg.get("seq"), int):
            stream = (msg["type"], msg["key"])
            last = self.held.get(stream)
            if self.pending is not None:
                old, seen, marked = self.pending.setdefault(stream, (last, set(), [False]))
                seen.add(msg["seq"])
                if msg.get("resync") and old is not None and msg["seq"] > old + 1 and not marked[0]:
                    marked[0] = True
                    self.resyncs += 1
            elif last is not None and msg["seq"] > last + 1:
                if msg.get("resync"):
                    self.resyncs += 1
                else:
                    self.unmarked += 1
            if last is None or msg["seq"] > last:
                self.held[stream] = msg["seq"]
        return msg

    def behind(self, want: dict[tuple[str, str], int]) -> int:
        """How many of ``want``'s streams this client holds an older ``seq`` of (or none)."""
        return sum(1 for stream, seq in want.items() if self.held.get(stream, -1) < seq)

    def since(self) -> list[dict[str, Any]]:
        return [{"type": t, "key": k, "seq": s} for (t, k), s in self.held.items()]


async def _connect(s: Stack) -> Any:
    from websockets.asyncio.client import connect

    return await connect(s.ws_url, additional_headers={"Authorization": f"Bearer {s.token}"}, compression=None,
                         open_timeout=30, max_size=2**22)  # fmt: skip


async def reconnects(s: Stack, clients: int, total: int) -> dict[str, Any]:
    rounds = max(1, total // clients)
    latencies: list[float] = []
    first: list[float] = []  # the first connects (``since: []``, every client at once): apart
    missing = 0
    views = [Client() for _ in range(clients)]

    async def one(view: Client) -> None:
        nonlocal missing
        rng = random.Random(id(view))
        for round_ in range(rounds + 1):  # round 0 is the first connect: a reconnect only after it
            ws = await _connect(s)
            try:
                want = await asyncio.to_thread(s.db_seqs)  # committed before the resume: must be covered
                opened = time.monotonic()
                await ws.send(json.dumps({"action": "resume", "since": view.since()}))
                view.begin_resume()
                while view.pending is not None:
                    view.take(await asyncio.wait_for(ws.recv(), 30))
                (latencies if round_ else first).append((time.monotonic() - opened) * 1000)
                missing += view.behind(want)
                stay = time.monotonic() + rng.uniform(0.1, 0.5)
                while time.monotonic() < stay:
                    with contextlib.suppress(TimeoutError):
                        view.take(await asyncio.wait_for(ws.recv(), max(0.01, stay - time.monotonic())))
            finally:
                await ws.close()
            await asyncio.sleep(rng.uniform(0.05, 0.5))  # away: versions go by

    started = time.monotonic()
    await asyncio.gather(*(one(v) for v in views))
    return {
        "reconnects": rounds * clients,
        "seconds": round(time.monotonic() - started, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "first_connect_p50_ms": round(percentile(first, 50), 1),
        "first_connect_max_ms": round(max(first), 1),
        "states_missing": missing,
        "unmarked_jumps": sum(v.unmarked for v in views),
        # The reconnects' answers (each client's first is its first connect's):
        "replayed": sum(r.get("replayed", 0) for v in views for r in v.resumed[1:]),
        "resynced": sum(r.get("resynced", 0) for v in views for r in v.resumed[1:]),
    }


async def freeze(s: Stack, clients: int, seconds: float, settle: float, resume: bool) -> dict[str, Any]:
    views = [Client() for _ in range(clients)]
    sockets = [await _connect(s) for _ in views]
    caught: dict[int, float] = {}
    thawed: list[float] = []
    want: dict[tuple[str, str], int] = {}
    done = asyncio.Event()

    async def read(i: int) -> None:
        view, ws = views[i], sockets[i]
        with contextlib.suppress(Exception):
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    view.take(await asyncio.wait_for(ws.recv(), 0.1))
                if thawed and i not in caught and want and view.behind(want) == 0:
                    caught[i] = (time.monotonic() - thawed[0]) * 1000

    if resume:
        for ws in sockets:
            await ws.send(json.dumps({"action": "resume", "since": []}))
    else:  # no resume to ask: the state a page would have read over REST at connect
        start = await asyncio.to_thread(s.db_seqs)
        for view in views:
            view.held.update(start)
    readers = [asyncio.create_task(read(i)) for i in range(clients)]
    await asyncio.sleep(3.0)  # every stream seen at least once (market status changes rarely: resume gave it)
    before = sum(v.unmarked for v in views)
    assert s.redis.process is not None
    os.kill(s.redis.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(s.redis.process.pid, signal.SIGCONT)
    thawed.append(time.monotonic())
    want.update(await asyncio.to_thread(s.db_seqs))  # the database at the thaw (the jobs went on)
    await asyncio.sleep(settle)
    done.set()
    await asyncio.gather(*readers)
    for ws in sockets:
        await ws.close()
    lat = list(caught.values())
    behind = sum(v.behind(want) for v in views)
    return {
        "clients": clients,
        "streams": len(want),
        "caught_up": len(lat),
        "p50_ms": round(percentile(lat, 50), 1) if lat else None,
        "p99_ms": round(percentile(lat, 99), 1) if len(lat) == clients else None,
        "max_ms": round(max(lat), 1) if len(lat) == clients else None,
        "stale_after_settle": behind,
        "unmarked_jumps": sum(v.unmarked for v in views) - before,
        "resyncs": sum(v.resyncs for v in views),
        "healed_notices": sum(v.healed for v in views),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients (50)")
    parser.add_argument("--reconnects", type=int, default=1000, help="forced reconnects in all (1000)")
    parser.add_argument("--tick", type=float, default=0.1, help="the jobs' heartbeat seconds (0.1)")
    parser.add_argument("--freeze", type=float, default=10.0, help="seconds the redis-server is stopped (10)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the thaw to catch up (5)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (2)")
    parser.add_argument("--baseline", metavar="REF", help="also freeze the backend of this git revision")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    results: dict[str, Any] = {}
    if args.baseline:
        with worktree(args.baseline) as root, stack(root, args.tick, args.workers) as s:
            results["freeze_baseline"] = asyncio.run(freeze(s, args.clients, args.freeze, args.settle, False))
    with stack(REPO, args.tick, args.workers) as s:
        results["freeze"] = asyncio.run(freeze(s, args.clients, args.freeze, args.settle, True))
    with stack(REPO, args.tick, args.workers) as s:
        results["reconnects"] = asyncio.run(reconnects(s, args.clients, args.reconnects))
    r = results["reconnects"]
    print(f"\n{r['reconnects']} reconnects of {args.clients} clients at tick {args.tick:g} s "
          f"(open socket -> resumed, then every stream at the seq the database held before the resume)")  # fmt: skip
    cols = ["p50_ms", "p99_ms", "max_ms", "states_missing", "unmarked_jumps", "replayed", "resynced"]
    print(
        f"(before them, the first connects of all {args.clients} clients at once, since: []: p50 "
        f"{r['first_connect_p50_ms']} ms, max {r['first_connect_max_ms']} ms)"
    )
    print(table(cols, [[r[c] for c in cols]]))
    print(f"\nRedis frozen {args.freeze:g} s under {args.clients} connected clients "
          f"(thaw -> every stream at the seq the database held at the thaw)")  # fmt: skip
    cols = ["backend", "streams", "caught_up", "p50_ms", "p99_ms", "max_ms", "stale_after_settle",
            "unmarked_jumps", "resyncs", "healed_notices"]  # fmt: skip
    names = (("freeze_baseline", f"baseline {args.baseline}"), ("freeze", "this checkout"))
    rows = [[name, *[results[key][c] for c in cols[1:]]] for key, name in names if key in results]
    print(table(cols, rows))
    print(json.dumps({"benchmark": "resume", "machine": info, "settings": vars(args), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
