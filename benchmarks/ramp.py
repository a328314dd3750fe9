"""Benchmark: a ramp over a healthy backend takes its steps times its hold (issue 14; goal: within 5 %).

Per run: a fresh key prefix in a private redis-server with ``positions`` in shadow and a fresh PASS
verdict; the small backend of the tests (``tests/small_backend.py``: a ``websockets`` server and
an ``http.server`` in threads of this process, a ``positions`` envelope every 50 ms, REST always
matching); ``thorcut ramp positions --steps 25,50,75,100 --hold 3s --json`` started as its own
process (``python -m thorcut``), as an operator runs it, with the thresholds lowered so that a 3 s
hold passes (min_paired 5, min_duration 1). Measured from its NDJSON events as they arrive here:

    ramp  = from the first ``step`` event (the first percent is live) to ``done``
            (ideal: the steps times the hold; the ratio is the goal's figure)
    wall  = from starting the process to its exit (adds Python's start-up, connecting to the
            backend and the first frame, and the exit)

and per step, how much longer than the hold it took to pass it and take the next (the overshoot).

    .venv/bin/python benchmarks/ramp.py [--runs 3] [--steps 25,50,75,100] [--hold 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, print_machine, private_redis, table

sys.path.insert(0, str(REPO))  # the tests' small backend

import redis

from tests.small_backend import THRESHOLDS, Backend, serve_backend
from thorcut.clock import now_iso
from thorcut.redisconn import Keys

GOAL_RATIO = 1.05


def one_run(backend: Backend, client: redis.Redis, redis_url: str, folder: Path, steps: str,
            hold: float) -> dict[str, Any]:  # fmt: skip
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    client.hset(keys.meta, mapping={"epoch": "bench", "created_at": "2026-01-01T00:00:00.000Z"})
    client.hset(keys.flag("positions"), mapping={"stage": "shadow", "percent": 0, "version": 1})
    client.hset(keys.parity("positions"), mapping={"verdict": "PASS", "judged_at": now_iso(), "paired": 60})
    env = {**os.environ, "THORCUT_REDIS_URL": redis_url, "THORCUT_PREFIX": prefix, "THORCUT_OPERATOR": "bench",
           "THORCUT_BACKEND_URL": backend.rest_url, "THORCUT_WS_URL": backend.ws_url}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "thorcut", "ramp", "positions", "--steps", steps, "--hold",
                             f"{hold:g}", "--json"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen: list[tuple[float, dict[str, Any]]] = []
    for line in proc.stdout:
        seen.append((time.monotonic(), json.loads(line)))
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.wait(30)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"the ramp exited {proc.returncode}:\n{stderr}")
    marks = [t for t, e in seen if e["event"] in ("step", "done")]
    n = len(marks) - 1
    ramp = marks[-1] - marks[0]
    overshoot = [(b - a - hold) * 1000 for a, b in itertools.pairwise(marks)]
    audit = [f["percent"] for _, f in client.xrange(keys.audit)]
    return {"steps": n, "hold_s": hold, "ideal_s": n * hold, "ramp_s": round(ramp, 3),
            "ratio": round(ramp / (n * hold), 4), "wall_s": round(wall, 3), "wall_ratio": round(wall / (n * hold), 4),
            "overshoot_ms": [round(o, 1) for o in overshoot], "audit_percents": audit}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", default="25,50,75,100")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds")
    opts = parser.parse_args()
    info = machine_info()
    print_machine(info)
    results = []
    with private_redis() as server, serve_backend() as backend, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "thorcut.toml").write_text(THRESHOLDS)
        client = redis.Redis(port=server.port, decode_responses=True)
        for _ in range(opts.runs):
            results.append(one_run(backend, client, server.url, folder, opts.steps, opts.hold))
    rows = [[i, r["steps"], f"{r['ideal_s']:.1f}", f"{r['ramp_s']:.3f}", f"{r['ratio']:.4f}", f"{r['wall_s']:.3f}",
             f"{r['wall_ratio']:.3f}", f"{max(r['overshoot_ms']):.0f}"] for i, r in enumerate(results, 1)]  # fmt: skip
    print(f"\n--steps {opts.steps} --hold {opts.hold:g}s, {opts.runs} runs; seconds:")
    print(table(["run", "steps", "steps × hold", "ramp", "ratio", "wall", "wall ratio", "max step overshoot ms"],
                rows))  # fmt: skip
    worst = max(r["ratio"] for r in results)
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    print(f"\nworst ratio {worst:.4f} (goal <= {GOAL_RATIO}): {verdict}; every run's audit log: "
          f"{', '.join(sorted({'/'.join(r['audit_percents']) for r in results}))}")  # fmt: skip
    print(json.dumps({"benchmark": "ramp", "machine": info, "steps": opts.steps, "hold_s": opts.hold,
                      "goal_ratio": GOAL_RATIO, "worst_ratio": worst, "runs": results}))  # fmt: skip


if __name__ == "__main__":
    main()
