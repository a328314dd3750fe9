"""Benchmark: group fan-out through channels_redis' RedisChannelLayer vs RedisPubSubChannelLayer.

The backend broadcasts every message to a group (``thor.type.intraday_bar``, ``thor.acct.DU1234``…)
whose members are WebSocket consumers spread over W worker processes. This script reproduces that
shape without WebSockets: W receiver processes, each holding C channels in one group (as C
consumers would), and one sender doing ``group_send`` at a fixed rate from one long-lived loop
(as the Broadcaster does). Per layer it reports delivered messages/s (channel receives) and the
p50/p99 group_send-to-receive latency; the sender's wall clock stamps each message and receivers
compare with ``time.time()`` (one machine, one clock).

    .venv/bin/python benchmarks/channel_layers.py [--workers 2] [--channels 250] [--rate 40] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

from _common import machine_info, percentile, print_machine, private_redis, table

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
GROUP = "bench.fanout"


def _layer(kind: str, url: str) -> Any:
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if kind == "core":
        # capacity: a receiver that falls behind drops, as in production (default 100).
        return RedisChannelLayer(hosts=[url], prefix="bench", capacity=1000)
    return RedisPubSubChannelLayer(hosts=[url], prefix="bench")


def _receiver(kind: str, url: str, channels: int, seconds: float, ready: Any, out: Any) -> None:
    async def main() -> None:
        layer = _layer(kind, url)
        names = [await layer.new_channel() for _ in range(channels)]
        for name in names:
            await layer.group_add(GROUP, name)
        latencies: list[float] = []
        received = 0
        ready.set()
        deadline = time.monotonic() + seconds + 3

        async def pump(name: str) -> None:
            nonlocal received
            while time.monotonic() < deadline:
                try:
                    msg = await asyncio.wait_for(layer.receive(name), timeout=0.5)
                except TimeoutError:
                    continue
                if msg.get("stop"):
                    return
                received += 1
                latencies.append(time.time() - msg["sent"])

        await asyncio.gather(*(pump(n) for n in names))
        out.put({"received": received, "latencies": latencies[::10]})  # sample to keep the pipe small
        for name in names:
            await layer.group_discard(GROUP, name)
        if hasattr(layer, "flush"):
            await layer.flush()

    asyncio.run(main())


def run(kind: str, url: str, workers: int, channels: int, rate: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readies = [ctx.Event() for _ in range(workers)]
    procs = [ctx.Process(target=_receiver, args=(kind, url, channels, seconds, r, out)) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        if not r.wait(60):
            raise SystemExit("receivers did not start")

    async def send() -> tuple[int, float, list[float]]:
        layer = _layer(kind, url)
        sent = 0
        send_ms: list[float] = []
        start = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            t0 = time.perf_counter()
            await layer.group_send(GROUP, {"type": "stream.message", "sent": time.time(), "n": sent})
            send_ms.append((time.perf_counter() - t0) * 1000)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        elapsed = now - start
        await asyncio.sleep(1.0)  # let the last messages land
        await layer.group_send(GROUP, {"type": "stream.message", "stop": True})
        return sent, elapsed, send_ms

    sent, elapsed, send_ms = asyncio.run(send())
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    received = sum(r["received"] for r in results)
    lat = [x * 1000 for r in results for x in r["latencies"]]
    expected = sent * workers * channels
    return {
        "layer": kind,
        "sent": sent,
        "expected": expected,
        "delivered": received,
        "delivered_per_s": round(received / elapsed, 1),
        "loss_pct": round(100 * (1 - received / expected), 2) if expected else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "group_send_p50_ms": round(statistics.median(send_ms), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="receiver processes (ASGI workers) (2)")
    parser.add_argument("--channels", type=int, default=250, help="channels per worker in the group (250)")
    parser.add_argument("--rate", type=float, default=40.0, help="group_send calls per second (40)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (10)")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    rows = []
    for kind in LAYERS:
        with private_redis() as server:
            rows.append(run(kind, server.url, args.workers, args.channels, args.rate, args.seconds))
    cols = ["layer", "sent", "expected", "delivered", "delivered_per_s", "loss_pct", "p50_ms", "p99_ms",
            "group_send_p50_ms"]  # fmt: skip
    print(f"group fan-out: {args.workers} workers x {args.channels} channels, {args.rate:g} group_send/s, "
          f"{args.seconds:g} s; latency = group_send start -> receive (sampled 1 in 10)")  # fmt: skip
    print(table(cols, [[r[c] for c in cols] for r in rows]))
    core, pubsub = rows
    if core["delivered_per_s"]:
        print(f"pubsub/core delivered rate: {pubsub['delivered_per_s'] / core['delivered_per_s']:.2f}x")
    print(json.dumps({"benchmark": "channel_layers", "machine": info, "settings": vars(args), "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
