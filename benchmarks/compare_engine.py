"""Benchmark: thorcut's compare engine against DeepDiff on positions payloads.

Each case is one (WebSocket body, REST body) pair shaped like the reference backend's positions
``data`` (``{"account", "positions": [...], "as_of"}``, rows of symbol, quantity, avg_price,
last_price, market_value, unrealized_pnl), judged under the default manifest's positions rules
(keyed by ``symbol``, tolerance ``*`` abs 1e-9). Both sides are parsed separately from JSON text
with ``thorcut.wire.jsonfast.loads``, as ``thorcut check`` does, so they share no objects. Cases:

* ``50 equal``: identical bodies (the common case: one builder behind REST and WebSocket),
* ``50 equal, reordered``: equal under the rules but not identical (REST lists the rows in
  reverse order), which takes the normalising walk instead of the identity shortcut,
* ``50 one diff``: one ``last_price`` differs,
* ``1000 equal`` and ``1000 one diff``: the same at 1,000 rows.

For each case: pairs/s of ``Comparator.compare``, of ``DeepDiff(ignore_order=True)`` and, for
reference, of ``DeepDiff()``; the ratios; and the time of ``loads`` of both lines plus
``compare`` (the per-pair budget of ``check --replay`` is about 110 µs). Every rate is the best
of ``--repeats`` loops of at least ``--seconds`` each.

    .venv/bin/python benchmarks/compare_engine.py [--seconds 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
from _common import machine_info, print_machine, table
from deepdiff import DeepDiff

from thorcut.compare.engine import Comparator
from thorcut.compare.rules import Rules
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.wire.jsonfast import loads


def positions(n: int, seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        qty = rnd.randint(-500, 500) or 1
        avg, last = round(rnd.uniform(10, 500), 2), round(rnd.uniform(10, 500), 2)
        rows.append({"symbol": f"S{i:04d}", "quantity": qty, "avg_price": avg, "last_price": last,
                     "market_value": round(qty * last, 2), "unrealized_pnl": round(qty * (last - avg), 2)})  # fmt: skip
    return {"account": "DU1234", "positions": rows, "as_of": "2026-11-24T14:30:00.123Z"}


def cases() -> list[tuple[str, int, bytes, bytes, int]]:
    """(name, rows, WebSocket line, REST line, expected number of differences)."""
    out = []
    for n in (50, 1000):
        body = positions(n)
        line = orjson.dumps(body)
        out.append((f"{n} equal", n, line, line, 0))
        if n == 50:
            other = positions(n)
            other["positions"].reverse()
            out.append((f"{n} equal, reordered", n, line, orjson.dumps(other), 0))
        other = positions(n)
        other["positions"][n // 2]["last_price"] += 0.01
        out.append((f"{n} one diff", n, line, orjson.dumps(other), 1))
    return out


def rate(fn: Callable[[], object], seconds: float, repeats: int) -> float:
    """Calls per second: the best of ``repeats`` loops of at least ``seconds`` each."""
    best = 0.0
    for _ in range(repeats):
        calls, batch = 0, 1
        start = time.perf_counter()
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            batch = min(batch * 2, 256)
        best = max(best, calls / elapsed)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum length of one timed loop (1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed loops per figure; the best counts (3)")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    comparator = Comparator(Rules.from_spec(DEFAULT_MANIFEST.get("positions")))
    rows = []
    for name, n, ws_line, rest_line, expected in cases():
        ws, rest = loads(ws_line), loads(rest_line)
        found = comparator.compare(ws, rest)
        assert len(found) == expected, found  # the figures are only worth having if the answer is right
        assert bool(DeepDiff(ws, rest, ignore_order=True)) == bool(expected), name
        ours = rate(lambda ws=ws, rest=rest: comparator.compare(ws, rest), args.seconds, args.repeats)
        dd_io = rate(lambda ws=ws, rest=rest: DeepDiff(ws, rest, ignore_order=True), args.seconds, args.repeats)
        dd = rate(lambda ws=ws, rest=rest: DeepDiff(ws, rest), args.seconds, args.repeats)
        pipeline = rate(
            lambda a=ws_line, b=rest_line: comparator.compare(loads(a), loads(b)), args.seconds, args.repeats
        )
        rows.append({
            "case": name, "rows": n, "bytes": len(ws_line),
            "compare_per_s": round(ours), "compare_us": round(1e6 / ours, 1),
            "deepdiff_ignore_order_per_s": round(dd_io, 1), "deepdiff_per_s": round(dd, 1),
            "x_vs_ignore_order": round(ours / dd_io), "x_vs_deepdiff": round(ours / dd),
            "loads_compare_us": round(1e6 / pipeline, 1),
        })  # fmt: skip
    cols = ["case", "bytes", "compare_per_s", "compare_us", "deepdiff_ignore_order_per_s", "deepdiff_per_s",
            "x_vs_ignore_order", "x_vs_deepdiff", "loads_compare_us"]  # fmt: skip
    print(f"positions pairs under the default positions rules; best of {args.repeats} loops of >= {args.seconds:g} s")
    print(table(cols, [[r[c] for c in cols] for r in rows]))
    print(json.dumps({"benchmark": "compare_engine", "machine": info, "settings": vars(args), "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
