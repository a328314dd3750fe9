"""Benchmark: `thorcut check --replay` end to end, against DeepDiff on the same pairs.

Part 1, the compare engine end to end: a recording of N pairs of 50-row positions payloads (~7 KB
per body; each pair = one WebSocket line and one REST line) is judged by a real
``thorcut check positions --replay FILE --json`` process, timed from start to exit (Python start-up,
imports, parsing every line, pairing, health, comparing, the report). DeepDiff
(``ignore_order=True``, which is what keyed lists need) compares the same bodies, already parsed
(its side pays no parsing and no start-up, so the ratio is conservative). Runs for equal pairs and
for pairs with one difference each, and for 1,000-row payloads. Recordings are written the way
``thorcut diff --record`` writes them (the data-last layout, thorcut/recording.py); two more runs
use the plain layout of a file another tool wrote (docs/contracts.md, "Recordings"): only the required
fields (REST lines without ``type``/``key``/``for_seq``, derived from the body), ``json.dumps``
default separators, no markers; once with the REST body's keys in the WebSocket body's order, once
in reverse order (so no two bodies have the same text).

Part 2, scale: a recording of 1,000,000 small pairs (account_balance) replayed by
``thorcut check``; wall time and the child's peak RSS (``ru_maxrss``), next to a 100,000-pair
replay to show memory stays flat.

    .venv/bin/python benchmarks/replay.py [--pairs 5000] [--big 1000000] [--skip-big]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, print_machine, table

T0 = 1_795_528_800.0  # 2026-11-24T14:00:00Z


def iso(t: float) -> str:
    from datetime import UTC, datetime

    d = datetime.fromtimestamp(t, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def positions_body(rows: int, i: int) -> dict[str, Any]:
    symbols = [f"S{n:04d}" for n in range(rows)]
    return {
        "account": "DU1234",
        "as_of": iso(T0 + i),
        "positions": [
            {"symbol": s, "quantity": (n * 7 + i) % 40 - 20, "avg_price": round(4000 + n * 1.25, 2),
             "last_price": round(4001 + n * 1.25 + (i % 9) * 0.25, 2),
             "market_value": round((4001 + n * 1.25) * 50, 2), "unrealized_pnl": round(n * 12.5 - i, 2)}
            for n, s in enumerate(symbols)
        ],
    }  # fmt: skip


def balance_body(i: int) -> dict[str, Any]:
    return {"account": "DU1234", "currency": "USD", "cash": 50_000.0 + i, "equity": 100_000.0 + i * 0.5,
            "unrealized_pnl": (i % 100) * 1.5, "realized_pnl": 12.0, "margin_used": 1_200.5,
            "buying_power": 400_000.0, "as_of": iso(T0 + i)}  # fmt: skip


def env(type_: str, seq: int, data: Any, t: float) -> dict[str, Any]:
    feature = "positions" if type_ == "positions" else "account_balance"
    return {"type": type_, "feature": feature, "key": "DU1234", "seq": seq, "ts": iso(t), "data": data}


def reordered(value: Any) -> Any:
    """``value`` with every object's keys in reverse order (the same JSON value)."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(value)}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def write_recording(path: Path, type_: str, pairs: list[tuple[Any, Any]] | None, n: int, body: Any = None,
                    layout: str = "thorcut") -> None:  # fmt: skip
    """Write n pairs: from ``pairs`` (ws, rest) cycled, or from ``body(i)`` equal on both sides.

    ``layout="thorcut"`` writes through :class:`RecordingWriter`, as `diff --record` does (the
    data-last layout); ``"plain"`` writes each record with ``json.dumps`` and only the fields
    docs/contracts.md requires, as another tool would; ``"plain-reordered"`` also reverses the key order of
    every REST body.
    """
    from thorcut.wire.recording import RecordingWriter, RestRecord

    url = "/api/account/positions?account=DU1234" if type_ == "positions" else "/api/account/balance?account=DU1234"
    feature = "positions" if type_ == "positions" else "account_balance"
    dumps = json.dumps
    writer = RecordingWriter(path, {}, created=iso(T0)) if layout == "thorcut" else None
    with path.open("a") as f:
        if writer is None:
            f.write(dumps({"thorcut_recording": 1, "created": iso(T0), "manifest": {}}) + "\n")
        for i in range(n):
            t = T0 + i * 0.01
            if pairs is not None:
                ws, rest = pairs[i % len(pairs)]
            else:
                ws = rest = body(i)
            seq = i + 1
            if writer is not None:
                writer.ws(iso(t), msg=env(type_, seq, ws, t))
                writer.rest(RestRecord(iso(t + 0.002), feature, type_, "DU1234", url, 200, 1.2,
                                       body=env(type_, seq, rest, t), for_seq=seq))  # fmt: skip
                continue
            f.write(dumps({"at": iso(t), "src": "ws", "msg": env(type_, seq, ws, t)}) + "\n")
            rest_body = env(type_, seq, rest, t)
            if layout == "plain-reordered":
                rest_body = reordered(rest_body)
            f.write(dumps({"at": iso(t + 0.002), "src": "rest", "feature": feature, "url": url, "status": 200,
                           "elapsed_ms": 1.2, "body": rest_body}) + "\n")  # fmt: skip
    if writer is not None:
        writer.close()


_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "sys.stderr.write(f'\\nmaxrss_kib={u.ru_maxrss} cpu_s={u.ru_utime + u.ru_stime}\\n'); "
    "sys.exit(r.returncode)"
)


def run_check(path: Path, feature: str) -> tuple[float, int, dict[str, Any], float]:
    """Return (seconds, peak RSS KiB, the JSON report, CPU seconds) of one `thorcut check --replay` process.

    A small wrapper process runs it, so the peak RSS is that one child's, not the largest so far.
    """
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "thorcut", "check", feature, "--replay", str(path),
           "--json", "--samples", "1"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1, 5):
        raise SystemExit(f"check failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = int(proc.stderr.rsplit("maxrss_kib=", 1)[1].split()[0])
    cpu = float(proc.stderr.rsplit("cpu_s=", 1)[1].split()[0])
    return elapsed, peak, json.loads(proc.stdout), cpu


def deepdiff_rate(pairs: list[tuple[Any, Any]], seconds: float = 3.0) -> float:
    from deepdiff import DeepDiff

    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ws, rest = pairs[done % len(pairs)]
        DeepDiff(ws, rest, ignore_order=True)
        done += 1
    return done / (time.perf_counter() - start)


def part1(n: int, folder: Path, *, only_plain: bool = False) -> list[dict[str, Any]]:
    rows = []
    scenarios = []
    equal50 = [(positions_body(50, i), positions_body(50, i)) for i in range(20)]
    one_diff50 = []
    for ws, rest in equal50:
        rest = copy.deepcopy(rest)
        rest["positions"][17]["last_price"] += 0.25
        one_diff50.append((ws, rest))
    equal1000 = [(positions_body(1000, i), positions_body(1000, i)) for i in range(4)]
    one_diff1000 = []
    for ws, rest in equal1000:
        rest = copy.deepcopy(rest)
        rest["positions"][500]["quantity"] += 1
        one_diff1000.append((ws, rest))
    scenarios = [("50 rows, equal", equal50, n, "thorcut"), ("50 rows, one difference", one_diff50, n, "thorcut"),
                 ("1,000 rows, equal", equal1000, max(200, n // 20), "thorcut"),
                 ("1,000 rows, one difference", one_diff1000, max(200, n // 20), "thorcut"),
                 ("50 rows, equal, plain layout", equal50, n, "plain"),
                 ("50 rows, equal, plain layout, REST keys reordered", equal50, n, "plain-reordered")]  # fmt: skip
    if only_plain:
        scenarios = [s for s in scenarios if s[3] != "thorcut"]
    size = len(json.dumps(equal50[0][0]))
    print(f"50-row body: {size:,} bytes of JSON; 1,000-row body: {len(json.dumps(equal1000[0][0])):,} bytes")
    for name, pairs, count, layout in scenarios:
        path = folder / "pairs.jsonl"
        path.unlink(missing_ok=True)
        write_recording(path, "positions", pairs, count, layout=layout)
        seconds, peak_kib, report, cpu = run_check(path, "positions")
        counts = report["features"]["positions"]["counts"]
        assert counts["paired"] == count, counts
        expect_mismatch = "difference" in name
        assert (counts["mismatched"] == count) if expect_mismatch else (counts["matched"] == count), counts
        thorcut_rate = count / seconds
        dd = deepdiff_rate(pairs)
        rows.append({"scenario": name, "layout": layout, "pairs": count, "thorcut_check_s": round(seconds, 3),
                     "cpu_s": round(cpu, 3), "us_per_pair": round(seconds / count * 1e6, 1),
                     "cpu_us_per_pair": round(cpu / count * 1e6, 1), "thorcut_pairs_per_s": round(thorcut_rate),
                     "deepdiff_ms_per_pair": round(1000 / dd, 2), "ratio": round(thorcut_rate / dd, 1),
                     "ratio_cpu": round(count / cpu / dd, 1), "peak_rss_mib": round(peak_kib / 1024, 1)})  # fmt: skip
    return rows


def part2(big: int, folder: Path) -> list[dict[str, Any]]:
    rows = []
    for n in (big // 10, big):
        path = folder / f"big-{n}.jsonl"
        t = time.perf_counter()
        write_recording(path, "account_balance", None, n, balance_body)  # the layout `diff --record` writes
        written = time.perf_counter() - t
        seconds, peak_kib, report, _ = run_check(path, "account_balance")
        counts = report["features"]["account_balance"]["counts"]
        assert counts["paired"] == counts["matched"] == n, counts
        rows.append({"pairs": n, "file_mb": round(path.stat().st_size / 1e6), "write_s": round(written, 1),
                     "check_s": round(seconds, 2), "pairs_per_s": round(n / seconds),
                     "peak_rss_mib": round(peak_kib / 1024, 1)})  # fmt: skip
        path.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5000, help="pairs per 50-row scenario (5000)")
    parser.add_argument("--big", type=int, default=1_000_000, help="pairs in the scale replay (1,000,000)")
    parser.add_argument("--skip-big", action="store_true", help="skip part 2")
    parser.add_argument("--only-plain", action="store_true", help="part 1: only the plain-layout scenarios")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="thorcut-replay-") as tmp:
        folder = Path(tmp)
        p1 = part1(args.pairs, folder, only_plain=args.only_plain)
        cols = list(p1[0])
        print("\nthorcut check --replay (whole process) vs DeepDiff(ignore_order=True) on the same pairs")
        print(table(cols, [[r[c] for c in cols] for r in p1]))
        p2 = [] if args.skip_big else part2(args.big, folder)
        if p2:
            cols = list(p2[0])
            print("\nscale: thorcut check --replay of small account_balance pairs (peak RSS of the process)")
            print(table(cols, [[r[c] for c in cols] for r in p2]))
    print(json.dumps({"benchmark": "replay", "machine": info, "settings": vars(args), "engine": p1, "scale": p2}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
