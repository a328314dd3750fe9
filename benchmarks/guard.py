"""Benchmark: from the first faulty message to ``thorcut guard``'s audit entry (issue 14; goal p99 < 1 s).

Per run: a fresh key prefix in a private redis-server with ``positions`` live; the small fault
backend of the tests (``tests/small_backend.py``: a ``websockets`` server and an ``http.server``
in threads of this process) streaming a ``positions`` envelope every 50 ms; ``thorcut guard
positions --json`` started as its own process (``python -m thorcut``), as an operator runs it. A
fault is armed to switch on once the backend has sent the guard 10 messages. Measured:

    latency = (the rollback's audit entry id, the Redis server's ms clock) - (time.time() the
              backend sent the faulty message)

The faulty message: ``mismatch`` the first REST response that differs (``data.account``); ``gap``
the first message after three skipped versions; ``duplicate`` the second copy; ``resync_storm``
the fourth marked resync (``max_resyncs`` is 3, so the fourth fails the window). One machine, so
both clocks are the same. Also shown: the guard's own figure (``latency_ms`` of its
``rolled_back`` event: from when its WebSocket frame arrived to when the commit returned).

    .venv/bin/python benchmarks/guard.py [--runs 20] [--kinds mismatch,gap,duplicate,resync_storm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, private_redis, table

sys.path.insert(0, str(REPO))  # the tests' small backend

import redis

from tests.small_backend import THRESHOLDS, Backend, serve_backend
from thorcut.redisconn import Keys

KINDS = ("mismatch", "gap", "duplicate", "resync_storm")
OPTIONS: dict[str, dict[str, Any]] = {"gap": {"count": 3}, "resync_storm": {"count": 4}}
GOAL_P99_MS = 1000.0
AFTER_SENT = 10


def faulty_at(backend: Backend, kind: str) -> float:
    """When the message that fails the window was sent: the 4th resync of a storm, else the first."""
    if kind == "resync_storm":
        return backend.faulty_sent[3]
    assert backend.fault_at is not None
    return backend.fault_at


def one_run(backend: Backend, client: redis.Redis, redis_url: str, folder: Path, kind: str) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    client.hset(keys.meta, mapping={"epoch": "bench", "created_at": "2026-01-01T00:00:00.000Z"})
    client.hset(keys.flag("positions"), mapping={"stage": "live", "version": 2, "percent": 100})
    backend.heal()
    backend.fault(kind, after_sent=AFTER_SENT, **OPTIONS.get(kind, {}))
    env = {**os.environ, "THORCUT_REDIS_URL": redis_url, "THORCUT_PREFIX": prefix, "THORCUT_BACKEND_URL":
           backend.rest_url, "THORCUT_WS_URL": backend.ws_url, "NO_COLOR": "1"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "thorcut", "guard", "positions", "--duration", "30", "--json"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    if proc.returncode != 1:
        raise SystemExit(f"{kind}: guard exited {proc.returncode}, not 1:\n{proc.stdout}\n{proc.stderr}")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    done = next(e for e in events if e["event"] == "rolled_back")
    entry: Any = client.xrevrange(keys.audit, count=1)
    entry_id, fields = entry[0]
    if fields["by"] != "guard" or entry_id != done["audit_entry"]:
        raise SystemExit(f"{kind}: unexpected audit entry {entry_id} {fields}")
    client.delete(keys.flag("positions"), keys.audit, keys.meta, keys.parity("positions"), keys.mismatches("positions"))
    return {"latency_ms": int(entry_id.split("-")[0]) - faulty_at(backend, kind) * 1000,
            "guard_ms": done["latency_ms"], "cause": done["cause"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    info = machine_info()
    print_machine(info)
    results: dict[str, list[dict[str, Any]]] = {}
    with private_redis() as server, serve_backend() as backend, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "thorcut.toml").write_text(THRESHOLDS)
        client = redis.Redis(port=server.port, decode_responses=True)
        started = time.monotonic()
        for kind in kinds:
            results[kind] = [one_run(backend, client, server.url, folder, kind) for _ in range(args.runs)]
            print(f"{kind}: {args.runs} runs, e.g. cause {results[kind][0]['cause']!r}", file=sys.stderr)
        elapsed = time.monotonic() - started
    rows, summary = [], {}
    for kind, runs in results.items():
        lat = [r["latency_ms"] for r in runs]
        own = [r["guard_ms"] for r in runs]
        figures = {"runs": len(runs), "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
                   "max_ms": round(max(lat), 1), "guard_p50_ms": round(percentile(own, 50), 1),
                   "guard_p99_ms": round(percentile(own, 99), 1)}  # fmt: skip
        summary[kind] = figures
        rows.append([kind, len(runs), figures["p50_ms"], figures["p99_ms"], figures["max_ms"], figures["guard_p50_ms"],
                     figures["guard_p99_ms"]])  # fmt: skip
    all_lat = [r["latency_ms"] for runs in results.values() for r in runs]
    p99 = percentile(all_lat, 99)
    print(table(["fault", "runs", "p50 ms", "p99 ms", "max ms", "guard's own p50", "guard's own p99"], rows))
    verdict = "met" if p99 < GOAL_P99_MS else "NOT met"
    print(f"all {len(all_lat)} runs: p50 {percentile(all_lat, 50):.1f} ms, p99 {p99:.1f} ms "
          f"(goal p99 < {GOAL_P99_MS:.0f} ms: {verdict}); {elapsed:.0f} s in all")  # fmt: skip
    print(json.dumps({"benchmark": "guard", "faults": summary, "p50_ms": round(percentile(all_lat, 50), 1),
                      "p99_ms": round(p99, 1), "goal_p99_ms": GOAL_P99_MS, "machine": info}))  # fmt: skip


if __name__ == "__main__":
    main()
