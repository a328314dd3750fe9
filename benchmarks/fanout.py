"""Benchmark: WebSocket fan-out of the Thor backend against a plain ``websockets`` broadcast server.

Both servers feed the same clients: ``--clients`` WebSocket connections (default 500), spread over
two client processes. Messages carry the sender's ``time.time()``; each client records
send-to-receive latency (one machine, one clock) and counts what it got.

* **thor**: the real stack: a private redis-server, a temporary SQLite DB, ``uvicorn`` with the
  Thor ASGI app and ``--workers`` worker processes behind one port, clients authenticated with an
  API token and subscribed to ``intraday``. The publisher is a separate process that submits
  ``intraday_bar`` envelopes to the real ``Broadcaster`` (the heartbeat's path: bounded queue →
  one asyncio loop → channel layer ``group_send`` → each worker's consumers → clients) at a fixed
  rate; the jobs' database work is left out so the rate is exact.
* **plain**: one ``websockets`` server process that sends the same envelopes to every connection
  with ``websockets.broadcast`` at the same rate.

Neither side compresses (per-message deflate off): on loopback it only costs CPU, and the Thor
stack runs with it off (``thorcut dev up``).

    .venv/bin/python benchmarks/fanout.py [--clients 500] [--rates 20,60] [--seconds 10] [--workers 2]
        [--baseline REF] [--skip-plain]

``--baseline REF`` also runs the Thor stack of git revision REF (a temporary worktree) in the same
run, for a cost measured side by side with what it is compared against.

A rate R gives R x clients deliveries per second (20/s x 500 = 10,000/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, private_redis, table, worktree

from thorcut.dev.stack import free_port

CLIENT_PROCS = 2


def envelope(n: int) -> dict[str, Any]:
    return {"type": "intraday_bar", "feature": "intraday", "key": "ES", "seq": n, "ts": "",
            "data": {"symbol": "ES", "close": 5000.25 + n % 7, "volume": 1200 + n, "sent": time.time()}}  # fmt: skip


# -- clients ---------------------------------------------------------------------------------


def _clients(url: str, count: int, headers: dict[str, str], seconds: float, ready: Any, go: Any, out: Any) -> None:
    from websockets.asyncio.client import connect

    async def main() -> None:
        latencies: list[float] = []
        received = 0
        closed = 0

        async def one(i: int) -> None:
            nonlocal received, closed
            async with connect(
                url, additional_headers=headers, max_size=2**20, open_timeout=30, compression=None
            ) as ws:
                opened.append(i)
                if len(opened) == count:
                    ready.set()
                deadline = time.monotonic() + seconds + 60
                while time.monotonic() < deadline:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=1)
                    except TimeoutError:
                        if stop.is_set():
                            return
                        continue
                    except Exception:
                        closed += 1
                        return
                    msg = json.loads(raw)
                    data = msg.get("data") if isinstance(msg, dict) else None
                    if isinstance(data, dict) and "sent" in data:
                        received += 1
                        if received % 5 == 0:
                            latencies.append(time.time() - data["sent"])

        opened: list[int] = []
        stop = asyncio.Event()
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(one(i)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not stampede the accept queue
        while not go.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(seconds + 2)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put({"received": received, "latencies": latencies, "closed": closed, "opened": len(opened)})

    asyncio.run(main())


def drive(url: str, clients: int, headers: dict[str, str], publish: Any, rate: float, seconds: float) -> dict[str, Any]:
    """Connect the clients, run ``publish(rate, seconds)``, and return the delivery figures."""
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    per = [clients // CLIENT_PROCS + (1 if i < clients % CLIENT_PROCS else 0) for i in range(CLIENT_PROCS)]
    readies = [ctx.Event() for _ in per]
    procs = [
        ctx.Process(target=_clients, args=(url, n, headers, seconds, r, go, out))
        for n, r in zip(per, readies, strict=True)
    ]
    for p in procs:
        p.start()
    try:
        for r in readies:
            if not r.wait(120):
                raise SystemExit("clients did not all connect")
        time.sleep(1.0)
        go.set()
        sent, elapsed = publish(rate, seconds)
        results = [out.get(timeout=seconds + 90) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    received = sum(r["received"] for r in results)
    lat = [x * 1000 for r in results for x in r["latencies"]]
    expected = sent * clients
    return {
        "rate": rate,
        "target_per_s": round(rate * clients),
        "delivered_per_s": round(received / elapsed),
        "loss_pct": round(100 * (1 - received / expected), 2) if expected else 0.0,
        "p50_ms": round(percentile(lat, 50), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "disconnected": sum(r["closed"] for r in results),
    }


# -- the plain websockets server ---------------------------------------------------------------


def _plain_server(port: int, ready: Any, control: Any, done: Any) -> None:
    from websockets.asyncio.server import broadcast, serve

    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=2**20, compression=None):
            ready.set()
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, control.get)
                if cmd is None:
                    return
                rate, seconds = cmd
                start, n = time.monotonic(), 0
                while time.monotonic() - start < seconds:
                    broadcast(conns, json.dumps(envelope(n)))
                    n += 1
                    await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                done.put((n, time.monotonic() - start))

    asyncio.run(main())


def plain(clients: int, rates: list[float], seconds: float) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    port = free_port()
    ready, control, done = ctx.Event(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_plain_server, args=(port, ready, control, done))
    proc.start()
    ready.wait(30)
    rows = []
    try:
        for rate in rates:

            def publish(rate: float, seconds: float) -> tuple[int, float]:
                control.put((rate, seconds))
                return done.get(timeout=seconds + 60)

            rows.append({"server": "plain websockets", **drive(f"ws://127.0.0.1:{port}/", clients, {}, publish,
                                                                  rate, seconds)})  # fmt: skip
    finally:
        control.put(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return rows


# -- the Thor stack ------------------------------------------------------------------------------

PUBLISHER = r"""
import json, os, sys, time
import django
django.setup()
from global_markets.services.websocket_broadcast import Broadcaster
sys.path.insert(0, os.environ["BENCH_DIR"])
from fanout import envelope
b = Broadcaster()
b.start()
time.sleep(0.5)
for line in sys.stdin:
    rate, seconds = json.loads(line)
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        b.submit(envelope(n))
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
    print(json.dumps([n, time.monotonic() - start, b.stats()]), flush=True)
b.stop()
"""


WS_IMPL = os.environ.get("BENCH_WS_IMPL", "websockets")  # uvicorn --ws: websockets | websockets-sansio


def server_command(server: str, port: int, workers: int) -> tuple[list[str], str]:
    """The command that serves the Thor app, and its label. Daphne runs one process only."""
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--websocket_timeout", "-1",
                "thor_project.asgi:application"], "thor (daphne, 1 process)"  # fmt: skip
    cmd = [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--port", str(port),
           "--workers", str(workers), "--ws", WS_IMPL, "--ws-per-message-deflate", "false",
           "--lifespan", "off", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    return cmd, f"thor (uvicorn {WS_IMPL}, {workers} workers)"


def thor(
    clients: int,
    rates: list[float],
    seconds: float,
    workers: int,
    server: str = "uvicorn",
    root: Path = REPO,
    name: str = "",
) -> list[dict[str, Any]]:
    """The Thor stack of the checkout at ``root`` (this one, or a baseline worktree labelled ``name``)."""
    backend = root / "backend"
    rows = []
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="thorcut-fanout-") as folder:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "thor_project.settings",
            "THORCUT_REDIS_URL": redis_server.url,
            "THORCUT_PREFIX": "bench",
            "DATABASE_URL": f"sqlite:///{Path(folder) / 'thor.sqlite3'}",
            # The checkout's own backend and thorcut before the installed ones (a baseline runs its own).
            "PYTHONPATH": os.pathsep.join([str(backend), str(root)]),
            "BENCH_DIR": str(Path(__file__).parent),
            "THOR_WS_QUEUE": "1024",
        }
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=backend, env=env, check=True, capture_output=True)
        user = ["thor_user", "bench", "--password", "bench-pass", "--account", "DU0001", "--token", "bench"]
        made = subprocess.run([*manage, *user], cwd=backend, env=env, check=True, capture_output=True, text=True)
        token = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("token "))
        port = free_port()
        log = Path(folder) / "uvicorn.log"
        cmd, label = server_command(server, port, workers)
        with log.open("wb") as out:
            web = subprocess.Popen(cmd, cwd=backend, env=env, stdout=out, stderr=subprocess.STDOUT)
        pub = subprocess.Popen([sys.executable, "-c", PUBLISHER], cwd=backend, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            _wait_http(f"http://127.0.0.1:{port}/api/health", web, log)
            url = f"ws://127.0.0.1:{port}/ws/stream/?features=intraday"
            headers = {"Authorization": f"Bearer {token}"}
            assert pub.stdin is not None
            assert pub.stdout is not None
            for rate in rates:

                def publish(rate: float, seconds: float) -> tuple[int, float]:
                    pub.stdin.write(json.dumps([rate, seconds]) + "\n")
                    pub.stdin.flush()
                    n, elapsed, stats = json.loads(pub.stdout.readline())
                    print(f"  broadcaster: {stats}", file=sys.stderr)
                    return n, elapsed

                rows.append({"server": f"{label}{name}", **drive(url, clients, headers, publish, rate, seconds)})
        finally:
            if pub.stdin:
                pub.stdin.close()
            pub.wait(10)
            web.terminate()
            web.wait(15)
    return rows


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not start: {log.read_text(errors='replace')[-1500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="WebSocket connections (500)")
    parser.add_argument("--rates", default="20,60", help="messages per second to try (20,60)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of publishing per rate (10)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for thor (2)")
    parser.add_argument("--servers", default="uvicorn", help="ASGI servers to run the Thor app under: uvicorn,daphne")
    parser.add_argument("--baseline", metavar="REF", help="also run the Thor stack of this git revision (same run)")
    parser.add_argument("--skip-plain", action="store_true", help="leave out the plain websockets server")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the Thor stack(s), alternating order (1)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    info = machine_info()
    print_machine(info)
    rows = [] if args.skip_plain else plain(args.clients, rates, args.seconds)
    for server in args.servers.split(","):
        for turn in range(args.repeat):
            # Alternate which goes first: the second stack of a pair tends to fare worse here.
            order = ["this", "baseline"] if turn % 2 == 0 else ["baseline", "this"]
            for which in order if args.baseline else ["this"]:
                if which == "this":
                    rows += thor(args.clients, rates, args.seconds, args.workers, server)
                else:
                    with worktree(args.baseline) as root:
                        rows += thor(args.clients, rates, args.seconds, args.workers, server, root,
                                     f" @ {args.baseline}")  # fmt: skip
    cols = ["server", "rate", "target_per_s", "delivered_per_s", "loss_pct", "p50_ms", "p99_ms", "disconnected"]
    print(f"fan-out to {args.clients} clients, {args.seconds:g} s per rate; latency = publish -> client receive")
    print(table(cols, [[r[c] for c in cols] for r in rows]))
    for rate in rates:
        at = [r for r in rows if r["rate"] == rate]
        p = next((r for r in at if r["server"].startswith("plain")), None)
        for t in (r for r in at if r["server"].startswith("thor")):
            if p and p["delivered_per_s"]:
                print(f"rate {rate:g}/s: {t['server']}/plain delivered = "
                      f"{t['delivered_per_s'] / p['delivered_per_s']:.2f}x, p99 {t['p99_ms']} ms")  # fmt: skip
        base = [r for r in at if " @ " in r["server"]]
        this = [r for r in at if r["server"].startswith("thor") and " @ " not in r["server"]]
        if base and this:  # medians over --repeat runs, each side

            def med(side: list[dict[str, Any]], col: str) -> float:
                return float(statistics.median(r[col] for r in side))

            print(f"rate {rate:g}/s, median of {len(this)} run(s) each: this/baseline delivered = "
                  f"{med(this, 'delivered_per_s') / med(base, 'delivered_per_s'):.3f}x, "
                  f"p50 {med(this, 'p50_ms'):.1f} vs {med(base, 'p50_ms'):.1f} ms, "
                  f"p99 {med(this, 'p99_ms'):.1f} vs {med(base, 'p99_ms'):.1f} ms")  # fmt: skip
    print(json.dumps({"benchmark": "fanout", "machine": info, "settings": vars(args), "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
