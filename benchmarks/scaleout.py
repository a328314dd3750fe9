"""Benchmark: the scale-out topology (thorcut/dev/scale/) under load and under faults.

Brings the topology up (``--hosts`` hosts in network namespaces, 2 uvicorn workers each, behind
HAProxy; Redis primary + replica + 3 Sentinels; job runners leader + standby; every process reaches
Redis through Sentinel), measures, and always takes it down. Root only (namespaces). Measured:

* **fan-out**: ``--clients`` WebSocket clients through HAProxy, publish → client latency at
  ``--rate`` envelopes/s each (``benchmarks/fanout.py``'s clients and publisher: 500 x 20/s =
  10,000 deliveries/s spread over every host's workers).
* **flags**: ``--flag-clients`` connected clients; ``--changes`` stage changes (each reported done
  by the store only once a replica acknowledged it); per change, the time from the call to the last
  client holding the new version (every worker on every host applied it and pushed it).
* **failover**: a writer makes changes without pause; the Redis primary is killed (SIGKILL) and,
  once the Sentinels promoted the replica, started again, as a supervisor would (it comes back as a
  replica; started at once, it would simply be the primary again). ``failover_s``: kill →
  a stage change accepted by the new primary and an envelope broadcast after the kill seen by a
  client; ``lost_acknowledged_changes``: changes reported done before the kill and missing after.
* **host kill**: every process of the host whose runner leads is killed (SIGKILL); its clients'
  connections drop. ``host_kill_recovery_s``: kill → every client reconnected through HAProxy and
  answered ``resumed``, and the standby runner leading (envelopes flowing again).
* The audit chain is verified after each fault.

    sudo .venv/bin/python benchmarks/scaleout.py [--quick] [--hosts 3]

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import machine_info, percentile, print_machine, table
from fanout import PUBLISHER, drive
from websockets.exceptions import ConnectionClosed

from thorcut.dev.backend import backend_dir
from thorcut.dev.scale import haproxy_url, kill_host, leader, topology
from thorcut.dev.scale.live import current_primary, kill_redis_primary, restart_redis
from thorcut.dev.scale.probe import Probe
from thorcut.errors import NotReplicated
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect
from thorcut.redisurl import parse_redis_url

FLAG_FEATURE = "global_market"  # the flags benchmark toggles it: live <-> shadow


def store_of(state: dict[str, Any], operator: str = "bench") -> FlagStore:
    target = parse_redis_url(state["redis_url"])
    return FlagStore(connect(state["redis_url"], 5.0), Keys(state["prefix"]), DEFAULT_MANIFEST.names,
                     operator=operator, wait_replicas=target.wait_replicas, wait_timeout=2.0)  # fmt: skip


def ws_url(state: dict[str, Any], query: str) -> str:
    return haproxy_url(state, "ws") + "/ws/stream/" + query


def headers(state: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {state['token']}", "Origin": haproxy_url(state)}


# -- fan-out ---------------------------------------------------------------------------------------


def fan_out(state: dict[str, Any], clients: int, rate: float, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "thor_project.settings", "THORCUT_REDIS_URL": state["redis_url"],
           "THORCUT_PREFIX": state["prefix"], "DATABASE_URL": f"sqlite:///{state['database']}",
           "PYTHONPATH": str(backend_dir()), "BENCH_DIR": str(Path(__file__).parent)}  # fmt: skip
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER], cwd=backend_dir(), env=env, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert pub.stdin is not None
    assert pub.stdout is not None
    stdin, stdout = pub.stdin, pub.stdout

    def publish(rate: float, seconds: float) -> tuple[int, float]:
        stdin.write(json.dumps([rate, seconds]) + "\n")
        stdin.flush()
        n, elapsed, _ = json.loads(stdout.readline())
        return int(n), float(elapsed)

    try:
        return drive(ws_url(state, "?features=intraday"), clients, headers(state), publish, rate, seconds)
    finally:
        stdin.close()
        pub.wait(15)


# -- flags -----------------------------------------------------------------------------------------


def _flag_clients(url: str, count: int, hdrs: dict[str, str], ready: Any, stop: Any, out: Any) -> None:
    """``count`` clients; for each version of FLAG_FEATURE, the latest arrival among them (time.time()).

    Each client reads with ``async for`` until its connection is closed at the end: a timed
    ``recv()`` per message (a task and a timer each) cost the clients, on the cores they share with
    the topology, about a tenth of every change's propagation time."""
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect

    async def main() -> None:
        last: dict[int, float] = {}
        conns: list[ClientConnection] = []

        async def one() -> None:
            ws = await ws_connect(url, additional_headers=hdrs, open_timeout=60, compression=None)
            conns.append(ws)
            if len(conns) == count:
                ready.set()
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    now = time.time()
                    msg = json.loads(raw)
                    if msg.get("type") == "flags":
                        version = int(msg["features"][FLAG_FEATURE]["version"])
                        last[version] = max(last.get(version, 0.0), now)

        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(one()))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(last)

    asyncio.run(main())


def flags(state: dict[str, Any], clients: int, changes: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    procs_n = 2
    readies = [ctx.Event() for _ in range(procs_n)]
    per = [clients // procs_n + (1 if i < clients % procs_n else 0) for i in range(procs_n)]
    workers = [ctx.Process(target=_flag_clients, args=(ws_url(state, "?features="), n, headers(state), r, stop, out))
               for n, r in zip(per, readies, strict=True)]  # fmt: skip
    for w in workers:
        w.start()
    store = store_of(state)
    started: dict[int, float] = {}
    try:
        for r in readies:
            if not r.wait(180):
                raise SystemExit("flag clients did not all connect")
        time.sleep(1.0)
        for i in range(changes):
            stage = Stage.LIVE if i % 2 == 0 else Stage.SHADOW
            t0 = time.time()
            started[store.change(FLAG_FEATURE, stage, reason="flag benchmark", force=True).after.version] = t0
            time.sleep(0.3)  # the pushes of one change land before the next
        time.sleep(2.0)
    finally:
        stop.set()
        results = [out.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(30)
        store.client.close()
    lat = []
    missing = 0
    for version, t0 in started.items():
        arrivals = [r.get(version) for r in results]
        if any(a is None for a in arrivals):
            missing += 1
            continue
        lat.append((max(a for a in arrivals if a is not None) - t0) * 1000)
    return {"flag_clients": clients, "changes": changes, "flag_p50_ms": round(percentile(lat, 50), 1),
            "flag_p99_ms": round(percentile(lat, 99), 1), "changes_not_seen_by_every_client": missing}  # fmt: skip


# -- faults ----------------------------------------------------------------------------------------


def _verify(state: dict[str, Any]) -> bool:
    store = store_of(state)
    try:
        return bool(store.verify().ok)
    finally:
        store.client.close()


def failover(state: dict[str, Any], seconds_before: float = 3.0) -> dict[str, Any]:
    acknowledged: list[tuple[str, int]] = []
    stop = threading.Event()
    killed_at: list[float] = []
    accepted_at: list[float] = []

    def writer() -> None:
        store = store_of(state, operator="bench-writer")
        i = 0
        while not stop.is_set():
            feature = ("positions", "intraday")[i % 2]
            stage = Stage.LIVE if (i // 2) % 2 == 0 else Stage.SHADOW
            try:
                done = store.change(feature, stage, reason=f"writer {i}", force=True)
                acknowledged.append((feature, done.after.version))
                if killed_at and not accepted_at:
                    accepted_at.append(time.time())
            except NotReplicated:  # written on the new primary, no replica yet: accepted, not acknowledged
                if killed_at and not accepted_at:
                    accepted_at.append(time.time())
            except Exception:
                time.sleep(0.05)
            i += 1
        store.client.close()

    with Probe(state) as watch:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(seconds_before)
        killed_at.append(time.time())
        host = kill_redis_primary(state)
        assert host is not None, "no Redis primary to kill"
        deadline = time.time() + 60
        while current_primary(state) in (None, host) and time.time() < deadline:
            time.sleep(0.05)
        promoted = time.time()
        restart_redis(state, host)  # only now: started at once, it would come back as the primary
        while time.time() < deadline and not (accepted_at and watch.last_envelope > killed_at[0]):
            time.sleep(0.05)
        flowing = watch.last_envelope if watch.last_envelope > killed_at[0] else None
        gaps = watch.gaps
        time.sleep(2.0)
        stop.set()
        thread.join(30)
    store = store_of(state)
    try:
        lost = 0
        kill = killed_at[0]
        for feature, version in acknowledged:
            if store.read(feature).version < version:
                lost += 1
    finally:
        store.client.close()
    ready = max(accepted_at[0], flowing) if accepted_at and flowing else None
    return {"killed_primary_on": host, "new_primary_on": current_primary(state),
            "promoted_s": round(promoted - kill, 2),
            "failover_s": round(ready - kill, 2) if ready else None,
            "acknowledged_changes": len(acknowledged), "lost_acknowledged_changes": lost,
            "failover_unmarked_gaps": gaps,
            "chain_verified_after_failover": _verify(state)}  # fmt: skip


def host_kill(state: dict[str, Any], clients: int) -> dict[str, Any]:
    lead = leader(state)
    assert lead is not None, "no runner leads"
    watches = [Probe(state) for _ in range(clients)]
    for w in watches:
        w.__enter__()
    try:
        time.sleep(3.0)
        killed_at = time.time()
        kill_host(state, lead)
        deadline = killed_at + 60
        while time.time() < deadline:
            new_lead = leader(state)
            # Every client that lost its connection resumed through HAProxy; envelopes flow to all.
            dropped = [w for w in watches if w.connects > 1 or (w.resumes and w.resumes[-1] > killed_at)]
            if (
                new_lead
                and new_lead != lead
                and all(w.last_envelope > killed_at for w in watches)
                and all(w.resumes and w.resumes[-1] > killed_at for w in dropped)
            ):
                break
            time.sleep(0.1)
        recovered = [max(w.resumes[-1], w.last_envelope) for w in watches if w.last_envelope > killed_at]
        done = max(recovered) if len(recovered) == len(watches) else None
        reconnected = sum(1 for w in watches if w.connects > 1)
        gaps = sum(w.gaps for w in watches)
    finally:
        for w in watches:
            w.__exit__()
    return {"killed_host": lead, "new_leader": leader(state), "kill_clients": clients,
            "clients_recovered": len(recovered), "clients_reconnected": reconnected, "unmarked_gaps": gaps,
            "host_kill_recovery_s": round(done - killed_at, 2) if done else None,
            "chain_verified_after_host_kill": _verify(state)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--clients", type=int, default=500, help="fan-out clients (500)")
    parser.add_argument("--rate", type=float, default=20.0, help="envelopes/s to each fan-out client (20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="fan-out seconds (10)")
    parser.add_argument("--flag-clients", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--kill-clients", type=int, default=30, help="clients watching the host kill (30)")
    parser.add_argument("--quick", action="store_true", help="sized to finish within 5 minutes (the default)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    results: dict[str, Any] = {"hosts": args.hosts, "workers_per_host": 2}
    started = time.monotonic()
    with topology(hosts=args.hosts, port=args.port, tick=1.0, prefix="bench") as state:
        store = store_of(state)
        for feature in DEFAULT_MANIFEST.names:
            store.change(feature, Stage.SHADOW, reason="benchmark")
        store.client.close()
        print(f"topology up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        f = fan_out(state, args.clients, args.rate, args.seconds)
        results.update(clients=args.clients, deliveries_per_s=f["delivered_per_s"], p50_ms=f["p50_ms"],
                       p99_ms=f["p99_ms"], loss_pct=f["loss_pct"])  # fmt: skip
        print(f"fan-out: {f}", file=sys.stderr)
        results.update(flags(state, args.flag_clients, args.changes))
        print(f"flags: p99 {results['flag_p99_ms']} ms", file=sys.stderr)
        results.update(failover(state))
        print(f"failover: {results['failover_s']} s", file=sys.stderr)
        results.update(host_kill(state, args.kill_clients))
    results["seconds_in_all"] = round(time.monotonic() - started, 1)
    goals = {"p99_ms": ("<", 100), "flag_p99_ms": ("<", 50), "failover_s": ("<", 10),
             "lost_acknowledged_changes": ("=", 0), "host_kill_recovery_s": ("<", 10)}  # fmt: skip
    rows = []
    for name, (op, bound) in goals.items():
        value = results.get(name)
        met = value is not None and (value < bound if op == "<" else value == bound)
        rows.append([name, value, f"{op} {bound}", "met" if met else "NOT met"])
    print(table(["figure", "value", "goal", ""], rows))
    print(json.dumps({"benchmark": "scaleout", "machine": info, "settings": vars(args), **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
