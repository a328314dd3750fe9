"""Benchmark: heartbeat tick lateness with Redis healthy and with Redis frozen (SIGSTOP).

Runs the real stack pieces in this process: the four jobs over a temporary SQLite database (two
paper accounts), the Broadcaster on the channel layer, the flag watcher, and the Heartbeat at
``--tick``, with every feature in shadow so every message is broadcast. One private redis-server
serves flags and the channel layer. Lateness = when a tick's work started minus when it was
scheduled (``start + n * tick``); the heartbeat keeps every sample of a run.

    .venv/bin/python benchmarks/heartbeat_lateness.py [--tick 0.1] [--seconds 20]

Goal: p99 < 5 ms in both modes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, print_machine, private_redis, table


def run_mode(mode: str, tick: float, seconds: float, redis_pid: int) -> dict[str, Any]:
    from django.conf import settings

    from global_markets.services.websocket_broadcast import Broadcaster
    from thor_runner.heartbeat import Heartbeat
    from thor_trading.jobs import build_jobs

    broadcaster = Broadcaster().start()
    heartbeat = Heartbeat(tick, build_jobs(settings.THOR_SEED), broadcaster)
    try:
        if mode == "frozen":
            os.kill(redis_pid, signal.SIGSTOP)
        heartbeat.start()
        time.sleep(seconds)
        heartbeat.stop()
    finally:
        if mode == "frozen":
            os.kill(redis_pid, signal.SIGCONT)
    late = heartbeat.lateness()
    stats = heartbeat.stats()
    sent = broadcaster.stats()
    broadcaster.stop()
    return {
        "mode": mode,
        "ticks": stats["ticks"],
        "skipped": stats["skipped"],
        "job_errors": sum(stats.get("job_errors", {}).values()),
        "p50_ms": round(late["p50"] * 1000, 3),
        "p99_ms": round(late["p99"] * 1000, 3),
        "max_ms": round(late["max"] * 1000, 3),
        "sent": sent["sent"],
        "dropped": sent["dropped"],
        "failed": sent["failed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tick", type=float, default=0.1, help="heartbeat interval in seconds (0.1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per mode (20)")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    with private_redis() as server, tempfile.TemporaryDirectory(prefix="thorcut-hb-") as folder:
        os.environ.update({
            "DJANGO_SETTINGS_MODULE": "thor_project.settings",
            "THORCUT_REDIS_URL": server.url,
            "THORCUT_PREFIX": "bench-hb",
            "DATABASE_URL": f"sqlite:///{Path(folder) / 'thor.sqlite3'}",
            "THOR_TICK": str(args.tick),
        })  # fmt: skip
        sys.path.insert(0, str(REPO / "backend"))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from global_markets.services import websocket_features
        from thor_trading.users import ensure_user
        from thorcut.flags.stages import Stage
        from thorcut.flags.store import FlagStore
        from thorcut.manifest import DEFAULT_MANIFEST
        from thorcut.redisconn import Keys, connect

        ensure_user("bench1", "pw-bench-1", "DU0001")
        ensure_user("bench2", "pw-bench-2", "DU0002")
        store = FlagStore(connect(server.url, 2), Keys("bench-hb"), DEFAULT_MANIFEST.names, operator="bench")
        for feature in DEFAULT_MANIFEST.names:
            store.change(feature, Stage.SHADOW)
        watcher = websocket_features.watcher()
        deadline = time.monotonic() + 5
        while any(watcher.stage(f) is not Stage.SHADOW for f in DEFAULT_MANIFEST.names) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.process is not None
        rows = [run_mode(mode, args.tick, args.seconds, server.process.pid) for mode in ("healthy", "frozen")]
        websocket_features.stop()
    cols = ["mode", "ticks", "skipped", "job_errors", "p50_ms", "p99_ms", "max_ms", "sent", "dropped", "failed"]
    print(f"heartbeat lateness: tick {args.tick:g} s, {args.seconds:g} s per mode, 4 jobs, 2 accounts, all in shadow")
    print(table(cols, [[r[c] for c in cols] for r in rows]))
    for r in rows:
        verdict = "MET" if r["p99_ms"] < 5 else "NOT MET"
        print(f"{r['mode']}: p99 {r['p99_ms']} ms vs goal 5 ms ({r['p99_ms'] / 5:.2f}x) -> {verdict}")
    print(json.dumps({"benchmark": "heartbeat_lateness", "machine": info, "settings": vars(args), "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
