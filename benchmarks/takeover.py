"""Benchmark: job-runner takeover on the demo stack, kill -9 of the leader to the standby's first message.

Starts the stack as ``thorcut dev up`` does (``--no-frontend``, in a temporary state folder): its
embedded redis-server on a free loopback port (a private one, never 6379), two job runners and the
uvicorn workers on another free port (never 8000). Every feature goes to shadow so the leader
broadcasts everything; this process subscribes to every group on the channel layer. Then, per
repetition: kill -9 the runner the lock names; **lock** = until the lock key names the standby;
**first** = until the first message received after that (the dead leader can send nothing then,
so it is the new leader's). A `dev up` then starts a new standby in place of the killed runner.
Across all messages: seq repeats and regressions per (type, key) (both must be 0).

    .venv/bin/python benchmarks/takeover.py [--reps 5] [--tick 0.1]

Every wait is bounded; `dev down` runs in any case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, table

from thorcut.dev.backend import LOCK_TTL, leader_pid
from thorcut.dev.stack import free_port
from thorcut.manifest import DEFAULT_MANIFEST


class Receiver(threading.Thread):
    """Every message of every group (all types, the demo account) with its arrival time."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="bench-receiver")
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from channels.layers import get_channel_layer

        from global_markets import groups

        layer = get_channel_layer()
        channel = await layer.new_channel()
        types = ["intraday_bar", "vwap", "market_status"]
        for group in [*map(groups.type_group, types), groups.account_group("DU1234")]:
            await layer.group_add(group, channel)
        await asyncio.sleep(0.2)
        self.ready.set()
        task: asyncio.Task[Any] | None = None
        while not self.done.is_set():
            if task is None:
                task = asyncio.ensure_future(layer.receive(channel))
            finished, _ = await asyncio.wait({task}, timeout=0.1)  # never cancel a pub/sub receive
            if finished:
                self.messages.append((time.monotonic(), task.result()["message"]))
                task = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def since(self, t: float) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in list(self.messages) if at >= t]


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)
    return value


def thorcut(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "thorcut", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"thorcut {' '.join(args)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return proc


def seq_faults(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(repeats, regressions) of seq per (type, key), in arrival order."""
    last: dict[tuple[str, str], int] = {}
    repeats = regressions = 0
    for m in messages:
        k = (m["type"], m["key"])
        if k in last and m["seq"] == last[k]:
            repeats += 1
        elif k in last and m["seq"] < last[k]:
            regressions += 1
        last[k] = max(m["seq"], last.get(k, 0))
    return repeats, regressions


def takeover(receiver: Receiver, redis_url: str, prefix: str, runners: list[int]) -> dict[str, Any]:
    """Kill -9 the leader among ``runners``; return when the lock and the first message moved on."""
    leader = wait_for(lambda: (p := leader_pid(redis_url, prefix)) in runners and p, 3 * LOCK_TTL, "a leader")
    calm = time.monotonic()
    wait_for(lambda: len(receiver.since(calm)) >= 20, 30, "messages from the leader")
    killed = time.monotonic()
    os.kill(leader, signal.SIGKILL)
    new = wait_for(lambda: (p := leader_pid(redis_url, prefix)) not in (None, leader) and p, 3 * LOCK_TTL,
                   "the standby to take the lock")  # fmt: skip
    took = time.monotonic()
    first_at, first = wait_for(lambda: receiver.since(took)[:1], 10, "a message from the new leader")[0]
    return {"lock_s": round(took - killed, 3), "first_s": round(first_at - killed, 3), "first_type": first["type"],
            "old": leader, "new": new}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tick", type=float, default=0.1)
    opts = parser.parse_args()
    info = machine_info()
    print_machine(info)

    folder = Path(tempfile.mkdtemp(prefix="thorcut-takeover-"))
    state = folder / "stack"
    redis_url, port, prefix = f"redis://127.0.0.1:{free_port()}/0", free_port(), f"bench{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THORCUT_")}
    env.update({"THORCUT_REDIS_URL": redis_url, "THORCUT_PREFIX": prefix, "THORCUT_OPERATOR": "bench",
                "DATABASE_URL": ""})  # fmt: skip
    up_args = ("dev", "up", "--state-dir", str(state), "--port", str(port), "--no-frontend", "--tick", str(opts.tick),
               "--json")  # fmt: skip
    rows: list[list[object]] = []
    results: list[dict[str, Any]] = []
    receiver: Receiver | None = None
    try:
        doc = json.loads(thorcut(*up_args, env=env).stdout)
        assert doc["embedded"], "dev up found a Redis answering on the free port"  # a private Redis of this run
        for feature in DEFAULT_MANIFEST.names:
            thorcut("shadow", feature, "--reason", "takeover benchmark", env=env)
        os.environ.update({"THORCUT_REDIS_URL": redis_url, "THORCUT_PREFIX": prefix,
                           "DJANGO_SETTINGS_MODULE": "thor_project.settings",
                           "DATABASE_URL": f"sqlite:///{state / 'thor.sqlite3'}"})  # fmt: skip
        sys.path.insert(0, str(REPO / "backend"))
        import django

        django.setup()
        receiver = Receiver()
        receiver.start()
        assert receiver.ready.wait(10)
        runners = [p["pid"] for p in doc["backend"]["processes"] if p["role"] == "jobs"]
        for rep in range(1, opts.reps + 1):
            result = takeover(receiver, redis_url, prefix, runners)
            results.append({"rep": rep, **result})
            rows.append([rep, f"{result['lock_s']:.2f}", f"{result['first_s']:.2f}", result["first_type"]])
            time.sleep(1.0)  # messages from the new leader before the restart
            redo = json.loads(thorcut(*up_args, env=env).stdout)  # a new standby in place of the killed runner
            runners = [p["pid"] for p in redo["backend"]["processes"] if p["role"] == "jobs"]
        time.sleep(1.0)
        messages = [m for _, m in receiver.since(0.0)]
    finally:
        if receiver is not None:
            receiver.done.set()
            receiver.join(5)
        subprocess.run([sys.executable, "-m", "thorcut", "dev", "down", "--state-dir", str(state)], env=env,
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    repeats, regressions = seq_faults(messages)
    print(f"\ntick {opts.tick} s, lock TTL {LOCK_TTL:g} s, {opts.reps} kill -9 takeovers; seconds after the kill:")
    print(table(["rep", "lock taken", "first message", "first type"], rows))
    firsts = [r["first_s"] for r in results]
    print(f"\nfirst message: median {percentile(firsts, 50):.2f} s, max {max(firsts):.2f} s; "
          f"{len(messages)} messages, seq repeats {repeats}, regressions {regressions}")  # fmt: skip
    print(json.dumps({"benchmark": "takeover", "machine": info, "tick": opts.tick, "ttl": LOCK_TTL, "reps": results,
                      "messages": len(messages), "seq_repeats": repeats, "seq_regressions": regressions}))  # fmt: skip


if __name__ == "__main__":
    main()
