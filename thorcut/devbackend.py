"""The Thor backend part of ``thorcut dev up``: the page build, migrate, seed, demo user, job runner,
ASGI workers.

The backend lives in ``backend/`` next to the ``thorcut`` package of a checkout. Everything runs
as child processes in their own sessions (they outlive ``dev up``), logging to
``<state>/logs/``; ``dev down`` stops them by the pids kept in ``<state>/dev.json``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from thorcut import devfrontend, devprocs
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
    """Run ``manage.py`` to completion; return its output; raise ThorcutError with the log tail.

    ``thor_user --token`` prints the new API token: it goes back to the caller (``dev up`` shows it
    once), but the log and any error message get ``token ***`` instead (issue 9).
    """
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    shown = _TOKEN_LINE.sub(r"\1***", proc.stdout + proc.stderr)
    with private_log(log, "a") as out:
        out.write(shown)
    if proc.returncode != 0:
        raise ThorcutError(f"`manage.py {args[0]}` failed:\n{shown[-1500:]}")
    return proc.stdout


_TOKEN_LINE = re.compile(r"(?m)^(token )\S+")


def private_log(path: Path, mode: str) -> IO[Any]:
    """Open the log ``path`` for appending (``"a"``/``"ab"``), created with mode 0600.

    A log an older thorcut left readable by others is tightened to 0600 first.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


#: Children started by this process, kept so they are not collected (and warned about) while
#: running, and reaped when stopped. `dev up` exits at once, leaving them to init.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(cmd: list[str], folder: Path, env: dict[str, str], log: Path) -> int:
    with private_log(log, "ab") as out:
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
    """Return once ``url`` answers /api/health while every process in ``pids`` still runs.

    Raises Unreachable with the logs' tails when one of them dies first (a job runner that
    died at start must not pass for a healthy stack because the web server answers) or on timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(_running(p) for p in pids):
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=1) as resp:  # noqa: S310 (loopback URL we built)
                if resp.status == 200 and all(_running(p) for p in pids):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-800:]}" for log in logs if log.exists())
    raise Unreachable(f"the backend did not become healthy at {url} within {timeout:.0f} s:\n{tails}")


#: What each backend process's command line holds, by the role recorded in the state file.
MARKERS = {"jobs": "run_jobs", "web": "thor_project.asgi:application"}


def up(state_dir: Path, redis_url: str, prefix: str, *, port: int, workers: int, tick: float,
       frontend: bool = True, note: Callable[[str], None] = lambda _: None,
       record: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:  # fmt: skip
    """Start the backend against ``redis_url``; return its state (url, processes, demo credentials).

    With ``frontend`` it first builds the page if ``frontend/dist`` is stale (``note`` gets the
    progress line), so the page is served at ``/``; a failed build raises before anything starts.
    ``record`` gets the state so far each time a process is started (so that a ``dev up`` killed
    outright leaves ``dev down`` the pids). On any failure, Ctrl-C included, the processes
    started so far are stopped before the exception goes on.
    """
    folder = backend_dir()
    state_dir = state_dir.resolve()
    logs = state_dir / "logs"
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    if logs.stat().st_mode & 0o077:
        logs.chmod(0o700)  # left readable by an older thorcut
    page = devfrontend.frontend_dir()
    built = devfrontend.ensure_built(page, logs / "frontend.log", note=note) if frontend else None
    metrics = state_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)  # prometheus multiprocess files are per run
    metrics.mkdir(mode=0o700, parents=True)
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
    url = f"http://127.0.0.1:{port}"
    state: dict[str, Any] = {"url": url, "port": port, "page_url": f"{url}/", "ws_url": f"ws://127.0.0.1:{port}/ws/stream/",
                             "processes": [], "logs": str(logs)}  # fmt: skip
    commands = {
        "jobs": ("job runner", [sys.executable, "manage.py", "run_jobs"], jobs_log),
        "web": (f"uvicorn ({workers} workers)",
                [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(workers), "--ws", "websockets", "--ws-max-size", "65536",
                 "--ws-ping-interval", "20", "--ws-ping-timeout", "20", "--ws-per-message-deflate", "false",
                 "--lifespan", "off", "--no-access-log"], web_log),
    }  # fmt: skip
    try:
        for role, (name, cmd, log) in commands.items():
            pid = _spawn(cmd, folder, env, log)
            state["processes"].append({"name": name, "role": role, "pid": pid, "started": devprocs.started(pid)})
            record(state)
        _wait_healthy(url, [p["pid"] for p in state["processes"]], [web_log, jobs_log])
    except BaseException:
        stop(state["processes"])
        raise
    if not (page / "dist" / "index.html").is_file():
        frontend_state = "not built: / answers 503"
    elif built is None:
        frontend_state = "prebuilt" if frontend else "not checked (--no-frontend)"
    else:
        frontend_state = "built" if built.build else "up to date"
    return {**state, "frontend": frontend_state, "token": token, **demo_login()}


def demo_login() -> dict[str, str]:
    """The demo user's fixed credentials (documented in the README; not secrets)."""
    return {"user": DEMO_USER, "password": DEMO_PASSWORD, "account": DEMO_ACCOUNT}


def stop(processes: list[dict[str, Any]]) -> list[str]:
    """Stop processes this ``dev up`` started (their whole groups: uvicorn's workers go too).

    Their pids cannot name anybody else: a child's pid stays reserved until it is reaped here.
    Returns what was stopped.
    """
    stopped = []
    for proc in reversed(processes):
        pid = proc["pid"]
        child = _CHILDREN.pop(pid, None)
        if child is None:
            continue
        was_running = child.poll() is None
        devprocs.stop_group(pid)
        child.wait(5)
        if was_running:
            stopped.append(f"{proc['name']} (pid {pid})")
    return stopped


def recorded_running(backend: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the processes a state file's ``backend`` records into (still ours and running, gone)."""
    running: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    for proc in backend.get("processes", []):
        marker = MARKERS.get(str(proc.get("role")), "")
        is_ours = bool(marker) and devprocs.ours(proc.get("pid"), proc.get("started"), marker)
        (running if is_ours else gone).append(proc)
    return running, gone


def stop_recorded(backend: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Stop the backend processes a state file records, if they are still the ones ``dev up`` started.

    Workers whose uvicorn parent died are found by process group and stopped too. Returns (what
    was stopped, what was left alone because its pid now names another program).
    """
    from thorcut.devstack import StrangerPid

    folder = Path(__file__).resolve().parents[1] / "backend"
    stopped, strangers = [], []
    ours, _ = recorded_running(backend)
    for proc in reversed(backend.get("processes", [])):
        pid = proc["pid"]
        child = _CHILDREN.pop(pid, None)  # started by this very process (tests): reap it below
        if proc in ours:
            devprocs.stop_group(pid)
            stopped.append(f"{proc.get('name')} (pid {pid})")
        elif devprocs.running(pid):
            strangers.append(str(StrangerPid(f"pid {pid} (the {proc.get('name')})", devprocs.command_line(pid))))
        elif left := devprocs.orphans(pid, folder):
            for orphan in left:
                devprocs.stop_one(orphan, timeout=5.0)
            stopped.append(f"{len(left)} process(es) left by the {proc.get('name')} (pids {', '.join(map(str, left))})")
        if child is not None and child.poll() is None:
            child.wait(5)
    return stopped, strangers


def alive(pid: object, match: str) -> bool:
    """Return whether ``pid`` runs and its command line contains ``match`` (tests' helper).

    Not an identity check (a reused pid passes); the stack itself uses :mod:`thorcut.devprocs`.
    """
    return devprocs.valid_pid(pid) and devprocs.running(pid) and match in devprocs.command_line(pid)
