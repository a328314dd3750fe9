"""Hostile frames the Thor server absorbs while a normal client keeps its rate (issue 10).

The real stack on loopback: a private redis-server, a temporary SQLite DB, one ``uvicorn`` worker
(legacy ``websockets``, as ``thorcut dev up`` runs it, 64 KiB frames). A normal client does
``{"action": "ping"}`` round trips for ``--seconds`` alone (its baseline rate), then again while
``--attackers`` connections in a separate process send hostile frames as fast as the server
answers them (the 2 KB ``"[" * 1000 + "]" * 1000`` of the issue, 40 KB unclosed arrays, deep
objects, binary garbage, malformed JSON, huge numbers), each pipelining ``--pipeline`` frames.
Prints the attack's frame rate, the normal client's rate before and during, their ratio, and the
connection gauge afterwards. Bounded: two phases of ``--seconds`` each; loopback only.

    python benchmarks/hostile_frames.py --seconds 5 --attackers 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, print_machine, private_redis

from thorcut.dev.stack import free_port

BACKEND = REPO / "backend"
FRAMES: list[str | bytes] = [
    "[" * 1000 + "]" * 1000,
    "[" * 40000,
    '{"a":' * 500 + "1" + "}" * 500,
    b"\xff\x00" * 64,
    '{"action": "subscribe", ',
    "9" * 5000,
    '{"action": [[[[1]]]]}',
]


async def pings(url: str, headers: dict[str, str], seconds: float) -> int:
    """Ping round trips completed in ``seconds`` by one normal client."""
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers=headers, compression=None) as ws:
        for _ in range(2):  # flags, subscribed
            await ws.recv()
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            await ws.send('{"action":"ping"}')
            while json.loads(await ws.recv()).get("type") != "pong":
                pass
            done += 1
        return done


def _attack(url: str, headers: dict[str, str], attackers: int, pipeline: int, seconds: float, out: Any) -> None:
    from websockets.asyncio.client import connect

    async def one(i: int) -> int:
        sent = 0
        async with connect(url, additional_headers=headers, compression=None, max_size=None) as ws:
            for _ in range(2):
                await ws.recv()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for k in range(pipeline):
                    await ws.send(FRAMES[(i + sent + k) % len(FRAMES)])
                for _ in range(pipeline):
                    while json.loads(await ws.recv()).get("type") != "error":
                        pass
                sent += pipeline
        return sent

    async def main() -> int:
        return sum(await asyncio.gather(*(one(i) for i in range(attackers))))

    out.put(asyncio.run(main()))


def gauge(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("thor_ws_connections "):
                return float(line.split()[1])
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (5)")
    parser.add_argument("--attackers", type=int, default=8, help="hostile connections (8)")
    parser.add_argument("--pipeline", type=int, default=8, help="frames each attacker has in flight (8)")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    with private_redis() as redis_server, tempfile.TemporaryDirectory(prefix="thorcut-hostile-") as folder:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "thor_project.settings", "THORCUT_REDIS_URL": redis_server.url,
               "THORCUT_PREFIX": "bench", "DATABASE_URL": f"sqlite:///{Path(folder) / 'thor.sqlite3'}",
               "PYTHONPATH": str(BACKEND)}  # fmt: skip
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=BACKEND, env=env, check=True, capture_output=True)
        user = ["thor_user", "bench", "--password", "bench-pass", "--account", "DU0001", "--token", "bench", "--quiet"]
        made = subprocess.run([*manage, *user], cwd=BACKEND, env=env, check=True, capture_output=True, text=True)
        token = made.stdout.split()[1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", "127.0.0.1", "--port",
               str(port), "--ws", "websockets", "--ws-max-size", "65536", "--ws-per-message-deflate", "false",
               "--lifespan", "off", "--no-access-log", "--log-level", "warning"]  # fmt: skip
        log = Path(folder) / "uvicorn.log"
        with log.open("wb") as sink:
            web = subprocess.Popen(cmd, cwd=BACKEND, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/health", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or web.poll() is not None:
                        raise SystemExit(log.read_text(errors="replace")[-1500:]) from None
                    time.sleep(0.2)
            url = f"ws://127.0.0.1:{port}/ws/stream/?features="
            headers = {"Authorization": f"Bearer {token}"}
            alone = asyncio.run(pings(url, headers, args.seconds))
            out: Any = multiprocessing.get_context("spawn").Queue()
            attack = multiprocessing.get_context("spawn").Process(
                target=_attack, args=(url, headers, args.attackers, args.pipeline, args.seconds + 1.0, out)
            )
            attack.start()
            time.sleep(1.0)  # the attackers are connected and at full rate
            during = asyncio.run(pings(url, headers, args.seconds))
            frames = out.get(timeout=60)
            attack.join(30)
            time.sleep(0.5)
            left = gauge(base)
            tracebacks = log.read_text(errors="replace").count("Traceback")
        finally:
            web.terminate()
            web.wait(15)
    span = args.seconds + 1.0
    result = {"hostile_frames_per_s": frames / span, "normal_pings_per_s_alone": alone / args.seconds,
              "normal_pings_per_s_during": during / args.seconds, "ratio": during / alone if alone else 0.0,
              "gauge_after": left, "tracebacks": tracebacks}  # fmt: skip
    print(f"hostile frames absorbed: {result['hostile_frames_per_s']:.0f}/s ({args.attackers} connections, "
          f"{frames} frames, every one answered with an error)")  # fmt: skip
    print(
        f"normal client: {result['normal_pings_per_s_alone']:.0f} pings/s alone, "
        f"{result['normal_pings_per_s_during']:.0f} pings/s during the attack (ratio {result['ratio']:.2f})"
    )
    print(f"thor_ws_connections afterwards: {left:.0f}; tracebacks in the server log: {tracebacks}")
    print(json.dumps({"benchmark": "hostile_frames", "machine": info, "settings": vars(args), "results": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
