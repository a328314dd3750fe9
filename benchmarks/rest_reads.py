"""Benchmark: the cost of counting REST reads (issue 17; goal: p99 and throughput within 5 %).

Two real backends of this checkout side by side, ``uvicorn thor_project.asgi:application`` with
``--workers`` processes each, on one private redis-server and one temporary SQLite database
(migrated, one demo user with a token, one tick of every job): **on** with
``THOR_REST_COUNTING=1`` and **off** with ``THOR_REST_COUNTING=0`` (the middleware is then not in
the chain at all). A load client in this process (``httpx.AsyncClient``, ``--concurrency``
requests in flight) reads one REST endpoint (``--path``, default ``/api/account/balance``) with a
bearer token and ``X-Thor-Client: page/<one of five builds>``, in rounds of ``--seconds``,
alternating the backends and their order (on off, off on, …) so that drift of the machine falls on
both alike. Per backend: p50 and p99 latency over every request of its rounds, and requests per
second; then on/off ratios, pooled and pair by pair (the goal is judged on the median of the
pairs' ratios: two rounds back to back see the same machine). After the rounds the on backend's
counts in Redis are checked against the requests it answered (they must be equal).

Redis cost, measured on the same redis-server with the backend's own writer
(``thor_trading.rest_reads.Recorder``, its Lua script): a feature read every minute of a day by
``--labels`` clients (1,440 minute hashes, plus its ``last`` hash), and the worst case of a minute
cap's 100 labels plus ``other``: keys, ``MEMORY USAGE`` summed over them (SAMPLES 0), and the
server's ``used_memory`` growth, per feature per day. Also the writer's own costs: ``record`` (the
request path's share) and one flush of a typical batch (the thread's).

    .venv/bin/python benchmarks/rest_reads.py [--quick] [--pairs 8] [--seconds 4] [--concurrency 16]
        [--workers 1] [--path /api/account/balance]

Prints a table per part and, last, one JSON line with every figure. ``--quick`` (4 pairs of 2 s
rounds) takes under a minute; the default about a minute and a half.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, private_redis, table

from thorcut.dev.stack import free_port

BACKEND = REPO / "backend"
PREFIX = "bench"
BUILDS = [f"page/{uuid.uuid4().hex[:12]}" for _ in range(5)]
GOAL = 0.05


# -- the two backends ---------------------------------------------------------------------------------


def _env(redis_url: str, folder: Path, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "thor_project.settings",
        "THORCUT_REDIS_URL": redis_url,
        "THORCUT_PREFIX": prefix,
        "DATABASE_URL": f"sqlite:///{folder / 'thor.sqlite3'}",
        "THOR_FRONTEND_DIST": str(folder / "no-dist"),  # no page build key: only the counting differs
        "PYTHONPATH": os.pathsep.join([str(BACKEND), str(REPO)]),
    }


def _setup(env: dict[str, str]) -> str:
    """Migrate, make the user and its token, seed every feature's state; return the token."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=BACKEND, env=env, check=True, capture_output=True)
    user = ["thor_user", "bench", "--password", "bench-pass", "--account", "DU0001", "--token", "bench"]
    made = subprocess.run([*manage, *user], cwd=BACKEND, env=env, check=True, capture_output=True, text=True)
    subprocess.run([*manage, "thor_seed"], cwd=BACKEND, env=env, check=True, capture_output=True)
    return next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("token "))


def _start(env: dict[str, str], counting: bool, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--lifespan", "off", "--no-access-log",
           "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=BACKEND, env={**env, "THOR_REST_COUNTING": "1" if counting else "0"},
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server did not start: {log.read_text(errors='replace')[-1500:]}")


# -- load ---------------------------------------------------------------------------------------------


async def _round(url: str, path: str, token: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for ``seconds``; latencies (ms) of those that ended in time."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:
        headers = [{"Authorization": f"Bearer {token}", "X-Thor-Client": build} for build in BUILDS]
        for i in range(concurrency * 4):  # warm the connections and the server's caches
            await http.get(path, headers=headers[i % len(headers)])
        started = time.perf_counter()
        end = started + seconds

        async def client(n: int) -> None:
            nonlocal errors
            i = n
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                resp = await http.get(path, headers=headers[i % len(headers)])
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    errors += 1
                i += 1

        await asyncio.gather(*(client(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors, "sent": len(latencies) + concurrency * 4}


def load(servers: dict[str, str], args: argparse.Namespace, token: str) -> dict[str, dict[str, Any]]:
    """Rounds on and off, alternating (on off, off on, ...); per backend its pooled figures."""
    pooled: dict[str, dict[str, Any]] = {name: {"latencies": [], "elapsed": 0.0, "errors": 0, "sent": 0,
                                                "rounds": []} for name in servers}  # fmt: skip
    for pair in range(args.pairs):
        order = ("on", "off") if pair % 2 == 0 else ("off", "on")
        for name in order:
            result = asyncio.run(_round(servers[name], args.path, token, args.concurrency, args.seconds))
            p = pooled[name]
            p["latencies"] += result["latencies"]
            p["elapsed"] += result["elapsed"]
            p["errors"] += result["errors"]
            p["sent"] += result["sent"]
            rps = len(result["latencies"]) / result["elapsed"]
            p["rounds"].append({"rps": round(rps, 1), "p99_ms": round(percentile(result["latencies"], 99), 3)})
            print(f"  round {pair + 1}/{args.pairs} {name:>3}: {rps:7.0f} req/s, "
                  f"p99 {percentile(result['latencies'], 99):6.2f} ms", file=sys.stderr)  # fmt: skip
    out = {}
    for name, p in pooled.items():
        lat = p["latencies"]
        out[name] = {
            "requests": len(lat),
            "errors": p["errors"],
            "sent": p["sent"],
            "p50_ms": round(percentile(lat, 50), 3),
            "p99_ms": round(percentile(lat, 99), 3),
            "rps": round(len(lat) / p["elapsed"], 1),
            "rounds": p["rounds"],
        }
    return out


def paired(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """On/off ratios of each pair of rounds (run back to back, so the machine's drift cancels), and their median."""
    pairs = list(zip(figures["on"]["rounds"], figures["off"]["rounds"], strict=True))
    rps = [on["rps"] / off["rps"] for on, off in pairs]
    p99 = [on["p99_ms"] / off["p99_ms"] for on, off in pairs]
    return {"rps": [round(r, 3) for r in rps], "p99": [round(r, 3) for r in p99],
            "rps_median": round(statistics.median(rps), 3), "p99_median": round(statistics.median(p99), 3)}  # fmt: skip


def counted(redis_url: str, prefix: str) -> int:
    """Every read counted under ``prefix``, all features and minutes."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        total = 0
        for key in client.scan_iter(match=f"{{{prefix}}}:rest:*", count=1000):
            if not key.endswith(":last"):
                total += sum(int(v) for v in client.hvals(key))
        return total
    finally:
        client.close()


# -- Redis cost -----------------------------------------------------------------------------------------


def _django(env: dict[str, str]) -> None:
    """Set Django up in this process (the recorder imports the backend's models)."""
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "THORCUT_REDIS_URL",
                                           "THORCUT_PREFIX", "THOR_FRONTEND_DIST")})  # fmt: skip
    for path in (str(BACKEND), str(REPO)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def day_of_one_feature(redis_url: str, labels: int) -> dict[str, Any]:
    """Write a day (1,440 minutes) of one feature read by ``labels`` clients each minute, with the
    backend's writer, then measure what Redis holds for it."""
    import redis

    from thor_trading.rest_writer import Recorder
    from thorcut.flags import Keys

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(f"day{uuid.uuid4().hex[:8]}")
    before = int(client.info("memory")["used_memory"])
    recorder = Recorder(client, keys, thread=False)
    now = time.time()
    current = int(now // 60)
    names = [BUILDS[i] if i < len(BUILDS) else f"script/client-{i:03d}" for i in range(labels)]
    for minute in range(current - 1439, current + 1):
        for i, label in enumerate(names):
            for _ in range(1 + (minute * 7 + i * 13) % 40):  # 1 to 40 reads a minute: a 1- or 2-digit count
                recorder.record("positions", label, minute * 60 + 30.0)
        if minute % 60 == 0:
            recorder.flush()
    recorder.flush()
    names_in_redis = list(client.scan_iter(match=f"{keys.base}:rest:positions:*", count=1000))
    usage = sum(int(client.memory_usage(name, samples=0) or 0) for name in names_in_redis)
    after = int(client.info("memory")["used_memory"])
    fields = sum(int(client.hlen(name)) for name in names_in_redis)
    ttl_min = min(int(client.ttl(name)) for name in names_in_redis)
    client.delete(*names_in_redis)
    client.close()
    return {"labels": labels, "keys": len(names_in_redis), "fields": fields, "memory_usage_bytes": usage,
            "used_memory_growth_bytes": after - before, "min_ttl_s": ttl_min}  # fmt: skip


def writer_costs(redis_url: str) -> dict[str, Any]:
    """``record`` per call (ns), and one flush of a second's batch: 4 features x 5 labels (us)."""
    import redis

    from thor_trading.rest_writer import Recorder
    from thorcut.flags import Keys

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    recorder = Recorder(client, Keys(f"cost{uuid.uuid4().hex[:8]}"), thread=False)  # record() alone
    features = ("account_balance", "positions", "intraday", "global_market")
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        recorder.record(features[i % 4], BUILDS[i % 5])
    record_ns = (time.perf_counter() - t0) / n * 1e9
    recorder.flush()
    flushes = []
    for _ in range(300):
        for i in range(200):
            recorder.record(features[i % 4], BUILDS[i % 5])
        t0 = time.perf_counter()
        recorder.flush()
        flushes.append((time.perf_counter() - t0) * 1e6)
    for name in client.scan_iter(match=f"{recorder.keys.base}*"):
        client.delete(name)
    client.close()
    return {"record_ns": round(record_ns), "flush_p50_us": round(percentile(flushes, 50)),
            "flush_p99_us": round(percentile(flushes, 99))}  # fmt: skip


# -- main -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 pairs of 2 s rounds (under a minute in all)")
    parser.add_argument("--pairs", type=int, default=8, help="rounds per backend, alternating (8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per round (4)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (16)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per backend (1)")
    parser.add_argument("--path", default="/api/account/balance", help="the REST endpoint read")
    parser.add_argument("--labels", type=int, default=5, help="clients reading the feature each minute (5)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.seconds = 4, 2.0
    if args.pairs < 1 or args.seconds <= 0 or args.concurrency < 1 or args.workers < 1 or not 1 <= args.labels <= 100:
        parser.error("--pairs, --concurrency, --workers and --labels (1 to 100) must be at least 1, --seconds above 0")

    info = machine_info()
    print_machine(info)
    started = time.monotonic()
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="thorcut-restreads-") as name:
        folder = Path(name)
        (folder / "no-dist").mkdir()
        env = _env(redis_server.url, folder, PREFIX)
        token = _setup(env)
        procs: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
        try:
            for backend, counting in (("on", True), ("off", False)):
                log = folder / f"uvicorn-{backend}.log"
                proc, url = _start({**env, "THORCUT_PREFIX": f"{PREFIX}-{backend}"}, counting, args.workers, log)
                procs[backend] = (proc, url, log)
            for proc, url, log in procs.values():
                _wait_ready(url, proc, log)
            print(f"load: {args.pairs} rounds of {args.seconds:g} s per backend, {args.concurrency} in flight, "
                  f"GET {args.path}, {args.workers} worker(s) each", file=sys.stderr)  # fmt: skip
            figures = load({name: url for name, (_, url, _) in procs.items()}, args, token)
        finally:
            for proc, _, _ in procs.values():
                proc.terminate()
            for proc, _, _ in procs.values():
                proc.wait(20)
        # Everything the on backend answered is counted (the last flush ran when it stopped).
        on_counted = counted(redis_server.url, f"{PREFIX}-on")
        off_counted = counted(redis_server.url, f"{PREFIX}-off")
        _django(env)
        days = [day_of_one_feature(redis_server.url, args.labels), day_of_one_feature(redis_server.url, 101)]
        costs = writer_costs(redis_server.url)
    on, off = figures["on"], figures["off"]
    ratios = {
        "p50": round(on["p50_ms"] / off["p50_ms"], 3),
        "p99": round(on["p99_ms"] / off["p99_ms"], 3),
        "rps": round(on["rps"] / off["rps"], 3),
    }
    by_pair = paired(figures)
    within = by_pair["p99_median"] <= 1 + GOAL and by_pair["rps_median"] >= 1 - GOAL

    print()
    print(table(["backend", "requests", "errors", "p50 ms", "p99 ms", "req/s", "req/s per round"],
                [[f"counting {n}", f["requests"], f["errors"], f["p50_ms"], f["p99_ms"], f["rps"],
                  " ".join(f"{r['rps']:.0f}" for r in f["rounds"])] for n, f in figures.items()]))  # fmt: skip
    print(f"on/off, all rounds pooled: p50 x{ratios['p50']}, p99 x{ratios['p99']}, throughput x{ratios['rps']}")
    print(f"on/off, pair by pair: throughput x{by_pair['rps_median']} (median of {by_pair['rps']}), "
          f"p99 x{by_pair['p99_median']} (median of {by_pair['p99']}): "
          f"{'within' if within else 'NOT within'} {GOAL:.0%}")  # fmt: skip
    print(f"counted in Redis: on {on_counted} of {on['sent']} requests sent; off {off_counted}")
    print()
    print(table(["one feature, one day", "keys", "hash fields", "MEMORY USAGE", "used_memory growth", "min TTL s"],
                [[f"{d['labels']} labels a minute" if d["labels"] <= 100 else "100 labels + other (the cap)",
                  d["keys"], d["fields"], f"{d['memory_usage_bytes'] / 1024:.0f} KiB",
                  f"{d['used_memory_growth_bytes'] / 1024:.0f} KiB", d["min_ttl_s"]] for d in days]))  # fmt: skip
    print(f"writer: record() {costs['record_ns']} ns a read; a flush of 4 features x 5 labels "
          f"p50 {costs['flush_p50_us']} us, p99 {costs['flush_p99_us']} us")  # fmt: skip
    print(f"took {time.monotonic() - started:.0f} s")
    counts = {"on": on_counted, "off": off_counted}
    print(json.dumps({"benchmark": "rest_reads", "machine": info, "args": vars(args), "load": figures,
                      "ratios": ratios, "paired": by_pair, "within_goal": within, "counted": counts,
                      "redis_day": days, "writer": costs}))  # fmt: skip
    if on_counted != on["sent"] or off_counted != 0:
        print(f"Error: counted {on_counted} reads for {on['sent']} requests (off: {off_counted})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
