"""Benchmark: a boolean flag evaluation through the OpenFeature SDK against the watcher's own read.

Starts a private redis-server, puts ``positions`` live at 37% (so every answer depends on the
client id: reason SPLIT), and serves it with :class:`thorcut.openfeature.ThorcutProvider`. Then,
alternating in one loop (so drift and noise hit both alike), ``--rounds`` rounds of ``--n``
evaluations over 1,000 client ids each of:

* direct: ``watcher.get("positions").reads_websocket(client_id)`` (what the backend does),
* sdk:    ``client.get_boolean_value("positions", False, EvaluationContext(client_id))``,
* sdk+hook: the same with one no-op client hook (the SDK runs the hook stages per evaluation).

Reports the best round of each as evaluations per second and the ratio direct/sdk. Neither path
does I/O: the difference is the SDK's own work (contexts, hooks, details objects).

    .venv/bin/python benchmarks/openfeature_eval.py [--n 20000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable

import redis
from _common import machine_info, print_machine, private_redis, table
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.hook import Hook

from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.openfeature import ThorcutProvider
from thorcut.redisconn import Keys

FEATURE = "positions"
PERCENT = 37


def _rate(run: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluations per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    info = machine_info()
    ids = [f"client-{i}" for i in range(1000)]
    contexts = [EvaluationContext(targeting_key=c) for c in ids]
    with private_redis() as server:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        store = FlagStore(redis.Redis(port=server.port, decode_responses=True), Keys(prefix), DEFAULT_MANIFEST.names)
        store.change(FEATURE, Stage.SHADOW)
        store.change(FEATURE, Stage.LIVE, percent=PERCENT, force=True, reason="benchmark")
        provider = ThorcutProvider(server.url, prefix, env={})
        api.set_provider_and_wait(provider, domain="bench")
        api.set_provider_and_wait(provider, domain="bench-hook")
        try:
            plain, hooked = api.get_client("bench"), api.get_client("bench-hook")
            hooked.add_hooks([Hook()])
            watcher = provider.watcher
            n = args.n

            def direct() -> None:
                for i in range(n):
                    watcher.get(FEATURE).reads_websocket(ids[i % 1000])

            def sdk() -> None:
                for i in range(n):
                    plain.get_boolean_value(FEATURE, False, contexts[i % 1000])

            def sdk_hook() -> None:
                for i in range(n):
                    hooked.get_boolean_value(FEATURE, False, contexts[i % 1000])

            # the three paths agree before anything is timed
            assert all(
                watcher.get(FEATURE).reads_websocket(c) is plain.get_boolean_value(FEATURE, False, x)
                for c, x in zip(ids, contexts, strict=True)
            )
            best = {"direct": 0.0, "sdk": 0.0, "sdk+hook": 0.0}
            for _ in range(args.rounds):
                for name, run in (("direct", direct), ("sdk", sdk), ("sdk+hook", sdk_hook)):
                    best[name] = max(best[name], _rate(run, n))
        finally:
            api.clear_providers()
    ratio = best["direct"] / best["sdk"]
    if args.json:
        print(json.dumps({"machine": info, "evaluations_per_s": best, "ratio_direct_to_sdk": ratio}, indent=2))
        return
    print_machine(info)
    rows = [(name, f"{rate:,.0f}", f"{1e6 / rate:.2f}") for name, rate in best.items()]
    print(table(("path", "evaluations/s (best round)", "µs each"), rows))
    print(f"ratio direct/sdk: {ratio:.1f}x ({args.rounds} rounds of {args.n:,} evaluations each)")


if __name__ == "__main__":
    main()
