"""Benchmark: wall time of ``thorcut status`` against importing its three dependencies.

Runs, alternating in one loop (so drift and noise hit both alike), after ``--warmup`` rounds:

* baseline: ``.venv/bin/python -c "import typer, rich, redis"`` (the floor any typer/rich/redis
  CLI pays),
* status:   ``.venv/bin/thorcut status --redis-url <private redis>`` with ``THORCUT_PREFIX`` set
  to a benchmark prefix holding a few seeded flags,
* for context only: ``python -c pass`` (interpreter start) and ``thorcut --version`` (the CLI's
  imports, no Redis).

Reports median and p90 of each and the ratio of the medians (goal: status/baseline <= 1.5).
Then runs ``python -X importtime -m thorcut status ...`` ``--importtime-runs`` times and lists
the top imports by cumulative time, the imports ``status`` adds over the baseline, and checks
that deepdiff, httpx, websockets and django are not imported.

    .venv/bin/python benchmarks/status_startup.py [--runs 30] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _common import REPO, machine_info, percentile, print_machine, private_redis, table

from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys, connect

GOAL_RATIO = 1.5
MUST_NOT_IMPORT = ("deepdiff", "httpx", "websockets", "django")
FEATURES = ("account_balance", "positions", "intraday", "global_market")
#: The smallest typer CLI that runs a command with one option: the floor for any typer CLI.
TYPER_HELLO = """
import typer, rich, redis
app = typer.Typer()
@app.command()
def hello(as_json: bool = typer.Option(False, "--json")) -> None:
    print("hello")
app()
"""


def seed(url: str, prefix: str) -> None:
    """Give the status table something to show: one feature in shadow, one live at 25 %."""
    client = connect(url, 2.0)
    try:
        store = FlagStore(client, Keys(prefix), FEATURES, operator="bench")
        store.change("account_balance", Stage.SHADOW, reason="bench")
        store.change("positions", Stage.SHADOW, reason="bench")
        store.change("positions", Stage.LIVE, percent=25, force=True, reason="bench")
    finally:
        client.close()


def timed(cmd: list[str], env: dict[str, str], expect: str | None = None) -> float:
    """Run ``cmd``; return its wall time in ms. Fails loudly on a non-zero exit."""
    start = time.perf_counter_ns()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if proc.returncode != 0 or (expect is not None and expect not in proc.stdout):
        raise RuntimeError(f"{cmd} failed (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def importtime(cmd: list[str], env: dict[str, str]) -> list[tuple[str, int, int, int]]:
    """Return ``(module, depth, self_us, cumulative_us)`` from one ``-X importtime`` run."""
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((name.strip(), depth, int(self_us), int(cumulative)))
    return rows


def median_importtime(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    """Per module: depth and the median self / cumulative microseconds over ``runs`` runs."""
    samples: dict[str, dict[str, Any]] = defaultdict(lambda: {"depth": 0, "self": [], "cumulative": []})
    for _ in range(runs):
        for name, depth, self_us, cumulative in importtime(cmd, env):
            entry = samples[name]
            entry["depth"] = depth
            entry["self"].append(self_us)
            entry["cumulative"].append(cumulative)
    return {
        name: {
            "depth": e["depth"],
            "self_us": int(statistics.median(e["self"])),
            "cumulative_us": int(statistics.median(e["cumulative"])),
        }
        for name, e in samples.items()
    }


#: Run in a child interpreter: time each import phase, then ``status`` itself with its three
#: steps (settings + connect, Redis reads, rendering) wrapped in timers. Prints one JSON line.
PHASES = r"""
import sys, time
t = [time.perf_counter()]
import typer, rich, redis
t.append(time.perf_counter())
try:
    import typer._adapters  # typer 0.29+ only: pulls in pydantic when any command runs
except ImportError:
    pass
t.append(time.perf_counter())
import rich.console, rich.table, rich.text
t.append(time.perf_counter())
import thorcut.cli.app, thorcut.commands.status  # eager or lazy in cli.py: status needs both anyway
t.append(time.perf_counter())
import contextlib, io, json
import thorcut.commands.status as st
spent = {"open_session": 0.0, "read_snapshot": 0.0, "render": 0.0}
def timing(name, fn):
    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper
st.open_session = timing("open_session", st.open_session)
st.read_snapshot = timing("read_snapshot", st.read_snapshot)
rich.console.Console.print = timing("render", rich.console.Console.print)
sys.argv = ["thorcut", "status", "--redis-url", sys.argv[1]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        thorcut.cli.app.main()  # what the console script runs
    except SystemExit as exc:
        if exc.code:
            raise
t.append(time.perf_counter())
ms = lambda a, b: (b - a) * 1000
run = ms(t[4], t[5])
print(json.dumps({
    "import typer, rich, redis": ms(t[0], t[1]),
    "import pydantic (typer 0.29+ only)": ms(t[1], t[2]),
    "import rich.console, rich.table": ms(t[2], t[3]),
    "import thorcut.cli.app + thorcut.commands.status": ms(t[3], t[4]),
    "run: main() - typer builds the app, parses, coerces (rest)": run - sum(spent.values()) * 1000,
    "run: settings + connect + PING": spent["open_session"] * 1000,
    "run: Redis reads (read_snapshot)": spent["read_snapshot"] * 1000,
    "run: render the table (rich)": spent["render"] * 1000,
}))
"""


def breakdown(python: str, url: str, env: dict[str, str], runs: int) -> dict[str, float]:
    """Median milliseconds per phase of one in-process ``status`` run, over ``runs`` child processes."""
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        proc = subprocess.run([python, "-c", PHASES, url], env=env, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"phase breakdown failed: {proc.stderr[-800:]}")
        for phase, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            samples[phase].append(value)
    return {phase: round(statistics.median(v), 1) for phase, v in samples.items()}


def package_of(module: str) -> str:
    top = module.split(".")[0]
    return top if top not in sys.stdlib_module_names else "(stdlib)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each command (30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first (3)")
    parser.add_argument("--importtime-runs", type=int, default=5, help="-X importtime runs to take medians of (5)")
    parser.add_argument("--top", type=int, default=10, help="how many imports to list (10)")
    parser.add_argument("--breakdown-runs", type=int, default=10, help="runs of the per-phase breakdown (10)")
    parser.add_argument("--prefix", default="thorcut-bench-status", help="THORCUT_PREFIX for the status runs")
    parser.add_argument(
        "--bytecode",
        choices=("cache", "env"),
        default="cache",
        help="cache (default): let every child cache bytecode under a temporary PYTHONPYCACHEPREFIX, as an "
        "installed package would (writes nothing into the source tree); env: inherit the environment as it is "
        "(e.g. PYTHONDONTWRITEBYTECODE=1 recompiles thorcut's sources on every run)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the private redis-server on kill too

    python = sys.executable  # the venv's interpreter: run this script as .venv/bin/python benchmarks/...
    thorcut = str(Path(python).parent / "thorcut")
    info = machine_info()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("THORCUT_", "WS_FEATURE_"))}
    env["THORCUT_PREFIX"] = args.prefix
    inherited_no_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))

    with private_redis() as server, tempfile.TemporaryDirectory(prefix="thorcut-bench-pyc-") as pyc:
        if args.bytecode == "cache":
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pyc
        seed(server.url, args.prefix)
        commands: dict[str, tuple[list[str], str | None]] = {
            "baseline": ([python, "-c", "import typer, rich, redis"], None),
            "status": ([thorcut, "status", "--redis-url", server.url], "thorcut cutover status"),
            "python -c pass": ([python, "-c", "pass"], None),
            "thorcut --version": ([thorcut, "--version"], "thorcut"),
            "typer hello": ([python, "-c", TYPER_HELLO], "hello"),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        print(f"private redis-server at {server.url}; {args.warmup} warm-ups, {args.runs} runs", file=sys.stderr)
        for i in range(args.warmup + args.runs):
            order = list(commands) if i % 2 == 0 else list(reversed(commands))  # alternate who goes first
            for name in order:
                cmd, expect = commands[name]
                ms = timed(cmd, env, expect)
                if i >= args.warmup:
                    times[name].append(ms)

        status_imports = median_importtime(
            [python, "-X", "importtime", "-m", "thorcut", "status", "--redis-url", server.url],
            env,
            args.importtime_runs,
        )
        base_imports = median_importtime(
            [python, "-X", "importtime", "-c", "import typer, rich, redis"], env, args.importtime_runs
        )
        phases = breakdown(python, server.url, env, args.breakdown_runs)

    summary = {
        name: {
            "median_ms": round(statistics.median(v), 1),
            "p90_ms": round(percentile(v, 90), 1),
            "min_ms": round(min(v), 1),
        }
        for name, v in times.items()
    }
    base, status = summary["baseline"]["median_ms"], summary["status"]["median_ms"]
    ratio = status / base
    met = ratio <= GOAL_RATIO

    print_machine(info)
    print(
        f"startup wall time, {args.runs} alternating runs each after {args.warmup} warm-up rounds (ms); "
        f"bytecode={args.bytecode} (PYTHONDONTWRITEBYTECODE in the caller's env: {inherited_no_bytecode})"
    )
    rows = [
        [name, s["median_ms"], s["p90_ms"], s["min_ms"], f"{s['median_ms'] / base:.2f}x"] for name, s in summary.items()
    ]
    print(table(["command", "median", "p90", "min", "vs baseline"], rows))
    print(
        f"ratio of medians status/baseline = {ratio:.2f}x (goal <= {GOAL_RATIO}x) -> {'MET' if met else 'NOT MET'}; "
        f"status costs {status - base:.1f} ms more than importing typer, rich and redis"
    )

    # -- where the time goes ------------------------------------------------------------------
    print(f"\nwhere `thorcut status` spends its time, in-process, median of {args.breakdown_runs} runs (ms)")
    print(table(["phase", "ms"], [[phase, f"{v:.1f}"] for phase, v in phases.items()]))
    print(
        f"(plus interpreter start-up, ~{summary['python -c pass']['median_ms']:.0f} ms: `python -c pass`; "
        "phases are sequential, so each import phase excludes what earlier phases already loaded)"
    )
    top = sorted(status_imports.items(), key=lambda kv: -kv[1]["cumulative_us"])[: args.top]
    print(f"\ntop {args.top} imports of `thorcut status` by cumulative time (median of {args.importtime_runs} runs)")
    print(
        table(
            ["module (indent = nesting)", "cumulative ms", "self ms"],
            [
                ["  " * e["depth"] + name, f"{e['cumulative_us'] / 1000:.1f}", f"{e['self_us'] / 1000:.1f}"]
                for name, e in top
            ],
        )
    )
    by_package: dict[str, int] = defaultdict(int)
    for name, e in status_imports.items():
        by_package[package_of(name)] += e["self_us"]
    total_status = sum(by_package.values())
    total_base = sum(e["self_us"] for e in base_imports.values())
    print(f"\nimport self time by package, `thorcut status` (total {total_status / 1000:.1f} ms)")
    print(
        table(
            ["package", "self ms", "share"],
            [
                [pkg, f"{us / 1000:.1f}", f"{us / total_status:.0%}"]
                for pkg, us in sorted(by_package.items(), key=lambda kv: -kv[1])[: args.top]
            ],
        )
    )
    extra = {n: e for n, e in status_imports.items() if n not in base_imports}
    extra_total = sum(e["self_us"] for e in extra.values())
    print(
        f"\nmodules `thorcut status` imports beyond the baseline: {len(extra)}, "
        f"{extra_total / 1000:.1f} ms self time (baseline imports total {total_base / 1000:.1f} ms); top {args.top}:"
    )
    print(
        table(
            ["module", "self ms"],
            [
                [name, f"{e['self_us'] / 1000:.1f}"]
                for name, e in sorted(extra.items(), key=lambda kv: -kv[1]["self_us"])[: args.top]
            ],
        )
    )
    tops = {name.split(".")[0] for name in status_imports}
    forbidden = {name: {"imported": name in tops, "installed": find_spec(name) is not None} for name in MUST_NOT_IMPORT}
    clean = not any(v["imported"] for v in forbidden.values())
    print(
        "\nheavy optional packages imported by `thorcut status`: "
        + ", ".join(
            f"{n}: {'IMPORTED' if v['imported'] else 'no'}{'' if v['installed'] else ' (not installed)'}"
            for n, v in forbidden.items()
        )
    )
    print(
        json.dumps(
            {
                "benchmark": "status_startup",
                "machine": info,
                "settings": {
                    "runs": args.runs,
                    "warmup": args.warmup,
                    "importtime_runs": args.importtime_runs,
                    "breakdown_runs": args.breakdown_runs,
                    "bytecode": args.bytecode,
                    "caller_env_PYTHONDONTWRITEBYTECODE": inherited_no_bytecode,
                },
                "results": summary,
                "ratio_status_to_baseline": round(ratio, 3),
                "ratio_status_to_typer_hello": round(status / summary["typer hello"]["median_ms"], 3),
                "phases_ms": phases,
                "goal": {"max_ratio": GOAL_RATIO, "met": met},
                "top_cumulative_imports": [
                    {"module": n, "cumulative_ms": e["cumulative_us"] / 1000, "self_ms": e["self_us"] / 1000}
                    for n, e in top
                ],
                "import_self_ms_by_package": {
                    k: v / 1000 for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
                },
                "extra_imports_over_baseline": {"count": len(extra), "self_ms": extra_total / 1000},
                "must_not_import": forbidden,
                "must_not_import_ok": clean,
            }
        )
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
