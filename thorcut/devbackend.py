"""The Thor backend part of ``thorcut dev up``: the page build, migrate, seed, demo user, job runner,
ASGI workers.

The backend lives in ``backend/`` next to the ``thorcut`` package of a checkout. Everything runs
as child processes in their own sessions (they outlive ``dev up``), logging to
``<state>/logs/``; ``dev down`` stops them by the pids kept in ``<state>/dev.json``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thorcut import devfrontend
from thorcut.errors import ThorcutError, Unreachable, UsageError

DEMO_USER, DEMO_PASSWORD, DEMO_ACCOUNT = "demo", "demo-pass", "DU1234"


def backend_dir() -> Path:
    """Return the backend folder of this checkout; raise UsageError if there is none."""
    folder = Path(__file__).resolve().parents[1] / "backend"
    if not (folder / "manage.py").is_file():
        raise UsageError(f"no Thor backend at {folder} (run from a thorcut checkout, or use --no-backend)")
    missing = [m for m in ("django", "channels", "channels_redis", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"the backend needs {', '.join(missing)}: pip install 'thorcut[backend]'")
    return folder


def _manage(folder: Path, env: dict[str, str], log: Path, *args: str) -> str:
    """Run ``manage.py`` to completion; return its output; raise ThorcutError with the log tail."""
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    with log.open("a") as out:
        out.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ThorcutError(f"`manage.py {args[0]}` failed:\n{(proc.stdout + proc.stderr)[-1500:]}")
    return proc.stdout


#: Children started by this process, kept so they are not collected (and warned about) while
#: running, and reaped when stopped. `dev up` exits at once, leaving them to init.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(cmd: list[str], folder: Path, env: dict[str, str], log: Path) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _running(pid: int) -> bool:
    """Whether a child we started still runs: ask its Popen, not /proc.

    Read just after Popen returns, /proc/<pid>/cmdline can still lack the new program's arguments
    (seen here as an intermittent "did not become healthy" with empty logs), so :func:`alive`
    is only for pids read back from the state file.
    """
    child = _CHILDREN.get(pid)
    return child.poll() is None if child is not None else alive(pid, "python")


def _wait_healthy(url: str, pids: list[int], logs: list[Path], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=1) as resp:  # noqa: S310 (loopback URL we built)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not all(_running(p) for p in pids):
            break
        time.sleep(0.2)
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-800:]}" for log in logs if log.exists())
    raise Unreachable(f"the backend did not become healthy at {url} within {timeout:.0f} s:\n{tails}")


def up(state_dir: Path, redis_url: str, prefix: str, *, port: int, workers: int, tick: float,
       frontend: bool = True, note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:  # fmt: skip
    """Start the backend against ``redis_url``; return its state (url, pids, demo credentials).

    With ``frontend`` it first builds the page if ``frontend/dist`` is stale (``note`` gets the
    progress line), so the page is served at ``/``; a failed build raises before anything starts.
    """
    folder = backend_dir()
    state_dir = state_dir.resolve()
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    page = devfrontend.frontend_dir()
    built = devfrontend.ensure_built(page, logs / "frontend.log", note=note) if frontend else None
    metrics = state_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)  # prometheus multiprocess files are per run
    metrics.mkdir(parents=True)
    env = {
        **os.environ,
        "THORCUT_REDIS_URL": redis_url,
        "THORCUT_PREFIX": prefix,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{state_dir / 'thor.sqlite3'}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "THOR_TICK": str(tick),
        "THOR_FRONTEND_DIST": str(page / "dist"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")])),
    }
    setup_log = logs / "setup.log"
    _manage(folder, env, setup_log, "migrate", "--noinput")
    made = _manage(folder, env, setup_log, "thor_user", DEMO_USER, "--password", DEMO_PASSWORD,
                   "--account", DEMO_ACCOUNT, "--token", "thorcut-dev")  # fmt: skip
    token = next((line.split()[1] for line in made.splitlines() if line.startswith("token ")), "")
    _manage(folder, env, setup_log, "thor_seed")
    jobs_log, web_log = logs / "jobs.log", logs / "web.log"
    jobs_pid = _spawn([sys.executable, "manage.py", "run_jobs"], folder, env, jobs_log)
    web_pid = _spawn(
        [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--ws", "websockets", "--ws-max-size", "65536",
         "--ws-ping-interval", "20", "--ws-ping-timeout", "20", "--ws-per-message-deflate", "false",
         "--lifespan", "off", "--no-access-log"],
        folder, env, web_log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    processes = [{"name": "job runner", "pid": jobs_pid}, {"name": f"uvicorn ({workers} workers)", "pid": web_pid}]
    try:
        _wait_healthy(url, [jobs_pid, web_pid], [web_log, jobs_log])
    except ThorcutError:
        stop(processes)
        raise
    if not (page / "dist" / "index.html").is_file():
        frontend_state = "not built: / answers 503"
    elif built is None:
        frontend_state = "prebuilt" if frontend else "not checked (--no-frontend)"
    else:
        frontend_state = "built" if built.build else "up to date"
    return {"url": url, "page_url": f"{url}/", "frontend": frontend_state, "ws_url": f"ws://127.0.0.1:{port}/ws/stream/",
            "processes": processes, "token": token, "user": DEMO_USER, "password": DEMO_PASSWORD,
            "account": DEMO_ACCOUNT, "logs": str(logs)}  # fmt: skip


def stop(processes: list[dict[str, Any]]) -> list[str]:
    """SIGTERM each process group (uvicorn's workers go with their parent); return what stopped."""
    stopped = []
    for proc in reversed(processes):
        pid = proc.get("pid")
        if isinstance(pid, int) and alive(pid, "python"):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(250):
                if not alive(pid, "python"):
                    break
                time.sleep(0.02)
            else:
                os.killpg(pid, signal.SIGKILL)
            child = _CHILDREN.pop(pid, None)
            if child is not None:
                child.wait(5)
            stopped.append(f"{proc.get('name')} (pid {pid})")
    return stopped


def alive(pid: object, match: str) -> bool:
    """Return whether ``pid`` runs and its command line contains ``match`` (not a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return match.encode() in cmdline and status != "Z"
