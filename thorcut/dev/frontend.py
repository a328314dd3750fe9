"""The page part of ``thorcut dev up`` (and of the end-to-end tests): build ``frontend/dist`` when stale.

The decision is :func:`plan`, a pure function of modification times; :func:`scan` reads them
from a checkout and :func:`ensure_built` runs what the plan says (``npm ci`` when ``node_modules``
is missing or older than the lock file, then ``npm run build``), with npm's output in a log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from thorcut.errors import ThorcutError, UsageError

#: Files and folders (relative to ``frontend/``) whose change makes the build stale. Beyond the
#: sources: ``public/`` is copied into the build, and ``tsconfig*.json`` steers its type check.
INPUTS = ("src", "public", "index.html", "package.json", "package-lock.json")
INPUT_GLOBS = ("vite.config.*", "tsconfig*.json", "page-build.*")
BUILD_TIMEOUT = 900.0


def frontend_dir() -> Path:
    """The ``frontend/`` folder of this checkout (it may not exist in an installed thorcut)."""
    return Path(__file__).resolve().parents[2] / "frontend"


@dataclass(frozen=True)
class Times:
    """Modification times (seconds) that decide a build; None where the file is missing."""

    index: float | None  # dist/index.html
    inputs: Mapping[str, float]  # every input file, by path relative to frontend/
    node_modules: float | None
    lock: float | None  # package-lock.json


@dataclass(frozen=True)
class Plan:
    """What to run, and why (for the log and the progress line)."""

    install: bool
    build: bool
    reason: str


def plan(times: Times) -> Plan:
    """Decide: build when ``dist/index.html`` is missing or older than any input; install first
    when ``node_modules`` is missing or older than ``package-lock.json``. Pure: no I/O."""
    if times.index is None:
        reason = "dist/index.html is missing"
    else:
        newer = sorted(name for name, mtime in times.inputs.items() if mtime > times.index)
        if not newer:
            return Plan(install=False, build=False, reason="the build is up to date")
        more = f" and {len(newer) - 1} more" if len(newer) > 1 else ""
        reason = f"{newer[0]}{more} changed since the last build"
    install = times.node_modules is None or (times.lock is not None and times.node_modules < times.lock)
    return Plan(install=install, build=True, reason=reason)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _files(folder: Path) -> Iterator[Path]:
    for name in INPUTS:
        path = folder / name
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
    for pattern in INPUT_GLOBS:
        yield from (p for p in folder.glob(pattern) if p.is_file())


def scan(folder: Path) -> Times:
    """Read the times :func:`plan` needs from ``folder`` (``frontend/``) and its ``dist/``."""
    dist = folder / "dist"
    inputs = {str(p.relative_to(folder)): mtime for p in _files(folder) if (mtime := _mtime(p)) is not None}
    modules = folder / "node_modules"
    # npm rewrites node_modules/.package-lock.json on every install, even when the folder stays.
    installed = [t for t in (_mtime(modules), _mtime(modules / ".package-lock.json")) if t is not None]
    return Times(
        index=_mtime(dist / "index.html"),
        inputs=inputs,
        node_modules=max(installed) if installed else None,
        lock=_mtime(folder / "package-lock.json"),
    )


def ensure_built(
    folder: Path, log: Path, *, note: Callable[[str], None] = lambda _: None, npm: str | None = None
) -> Plan | None:
    """Build ``folder/dist`` if :func:`plan` says so; return the plan (None: no ``package.json``).

    Raises UsageError when npm is not installed, ThorcutError naming ``log`` when a step fails.
    """
    if not (folder / "package.json").is_file():
        return None
    decided = plan(scan(folder))
    if not decided.build:
        return decided
    npm = npm or shutil.which("npm")
    if npm is None:
        raise UsageError(
            f"the page in {folder} needs building ({decided.reason}) but npm is not installed: install "
            "Node.js 20.19+ with npm (Debian: apt-get install nodejs npm), or pass --no-frontend"
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = ([["ci", "--no-audit", "--no-fund"]] if decided.install else []) + [["run", "build"]]
    shown = " then ".join("npm ci" if args[0] == "ci" else "npm run build" for args in steps)
    note(f"Building the page ({decided.reason}): {shown}; log in {log}")
    for args in steps:
        started = time.monotonic()
        # Created private (0600), as dev up's other logs.
        with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as out:
            out.write(f"\n$ npm {' '.join(args)}   (in {folder})\n")
            out.flush()
            try:
                proc = subprocess.run([npm, *args], cwd=folder, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise ThorcutError(f"`npm {args[0]}` in {folder} took over {BUILD_TIMEOUT:.0f} s; see {log}") from None
            out.write(f"[exit {proc.returncode} after {time.monotonic() - started:.1f} s]\n")
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-1500:]
            command = f"npm {' '.join(args)}"
            raise ThorcutError(f"`{command}` failed in {folder} (exit {proc.returncode}); log {log}:\n{tail}")
    if not (folder / "dist" / "index.html").is_file():  # e.g. a build configured to write elsewhere
        raise ThorcutError(f"`npm run build` succeeded but wrote no {folder / 'dist' / 'index.html'}; see {log}")
    return decided
