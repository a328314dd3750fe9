"""The Thor backend part of ``thorcut dev up``: the page build, migrate, seed, demo users, two job
runners (one leads, one stands by), ASGI workers.

Two demo users: ``demo`` is an operator (the page shows it stage controls), ``viewer`` is not (it
watches the same page without them); their fixed credentials are in the README.

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

from redis.exceptions import RedisError

from thorcut.dev import frontend as page_build
from thorcut.dev import procs
from thorcut.errors import ThorcutError, Unreachable, UsageError
from thorcut.redisconn import Keys, connect

DEMO_USER, DEMO_PASSWORD, DEMO_ACCOUNT = "demo", "demo-pass", "DU1234"
VIEWER_USER, VIEWER_PASSWORD, VIEWER_ACCOUNT = "viewer", "viewer-pass", "DU9012"


def backend_dir() -> Path:
    """Return the backend folder of this checkout; raise UsageError if there is none."""
    folder = Path(__file__).resolve().parents[2] / "backend"
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
#: Every child ever started here, also once it left ``_CHILDREN``: a pid can be reused by a later
#: child (pid_max is 32768 on small machines), and the entry it replaces must not be collected
#: unreaped, which CPython reports as a ResourceWarning (only tests run `dev up` in-process).
_SPAWNED: list[subprocess.Popen[bytes]] = []


def _spawn(cmd: list[str], folder: Path, env: dict[str, str], log: Path) -> int:
    with private_log(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _CHILDREN[proc.pid] = proc
    _SPAWNED.append(proc)
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
#: The job runners `dev up` starts: one leads (holds the Redis lock), the other stands by to take
#: over within the lock's TTL when the leader dies, as production needs (issue 10).
RUNNERS = ("job runner 1", "job runner 2")
#: The lock TTL of ``run_jobs`` (``thor_runner.leader.DEFAULT_TTL``; tests hold the two together).
LOCK_TTL = 3.0


def leader_key(prefix: str) -> str:
    """The job runners' leader lock key (``thor_runner.leader.leader_key``; tests hold the two together)."""
    return f"{Keys(prefix).base}:thor:leader"


def leader_pid(redis_url: str, prefix: str, timeout: float = 1.0) -> int | None:
    """Return the pid of the job runner holding the leader lock, or None (no holder, no Redis).

    The lock's value is the holder's token ``<host>:<pid>:<random>`` (``thor_runner.leader.LeaderLock``).
    """
    try:
        client = connect(redis_url, timeout)
    except ThorcutError:
        return None
    try:
        token = client.get(leader_key(prefix))
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    if isinstance(token, bytes):
        token = token.decode(errors="replace")
    parts = token.rsplit(":", 2) if isinstance(token, str) else []
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def wait_leader(redis_url: str, prefix: str, pids: list[int], timeout: float = 2 * LOCK_TTL) -> int | None:
    """Return which of ``pids`` holds the leader lock, waiting up to ``timeout`` s (None if none does).

    A lock left by a runner killed just before (``kill -9``) names it until its TTL runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid = leader_pid(redis_url, prefix)
        if pid in pids or time.monotonic() > deadline or not all(_running(p) for p in pids):
            return pid if pid in pids else None
        time.sleep(0.1)


def _environment(folder: Path, state_dir: Path, redis_url: str, prefix: str, tick: float) -> dict[str, str]:
    """The environment of every backend process of the stack kept in ``state_dir``."""
    return {
        **os.environ,
        "THORCUT_REDIS_URL": redis_url,
        "THORCUT_PREFIX": prefix,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{state_dir / 'thor.sqlite3'}",
        "PROMETHEUS_MULTIPROC_DIR": str(state_dir / "metrics"),
        "THOR_TICK": str(tick),
        "THOR_FRONTEND_DIST": str(page_build.frontend_dir() / "dist"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")])),
    }


def runner_command() -> list[str]:
    """The job runner's command line (run in the backend folder)."""
    return [sys.executable, "manage.py", "run_jobs", "--ttl", str(LOCK_TTL)]


def uvicorn_command(host: str, port: int, workers: int) -> list[str]:
    """The ASGI server's command line (run in the backend folder): the demo's and the scale-out topology's."""
    return [sys.executable, "-m", "uvicorn", "thor_project.asgi:application", "--host", host, "--port", str(port),
            "--workers", str(workers), "--ws", "websockets", "--ws-max-size", "65536", "--ws-ping-interval", "20",
            "--ws-ping-timeout", "20", "--ws-per-message-deflate", "false", "--lifespan", "off",
            "--no-access-log"]  # fmt: skip


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
    page = page_build.frontend_dir()
    built = page_build.ensure_built(page, logs / "frontend.log", note=note) if frontend else None
    metrics = state_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)  # prometheus multiprocess files are per run
    metrics.mkdir(mode=0o700, parents=True)
    env = _environment(folder, state_dir, redis_url, prefix, tick)
    setup_log = logs / "setup.log"
    _manage(folder, env, setup_log, "migrate", "--noinput")
    made = _manage(folder, env, setup_log, "thor_user", DEMO_USER, "--password", DEMO_PASSWORD,
                   "--account", DEMO_ACCOUNT, "--token", "thorcut-dev", "--operator")  # fmt: skip
    _manage(folder, env, setup_log, "thor_user", VIEWER_USER, "--password", VIEWER_PASSWORD,
            "--account", VIEWER_ACCOUNT, "--no-operator")  # fmt: skip
    token = next((line.split()[1] for line in made.splitlines() if line.startswith("token ")), "")
    _manage(folder, env, setup_log, "thor_seed")
    jobs_log, web_log = logs / "jobs.log", logs / "web.log"
    url = f"http://127.0.0.1:{port}"
    state: dict[str, Any] = {"url": url, "port": port, "page_url": f"{url}/", "ws_url": f"ws://127.0.0.1:{port}/ws/stream/",
                             "tick": tick, "processes": [], "logs": str(logs)}  # fmt: skip
    commands = [
        *((name, "jobs", runner_command(), jobs_log) for name in RUNNERS),  # both log to jobs.log
        (f"uvicorn ({workers} workers)", "web", uvicorn_command("127.0.0.1", port, workers), web_log),
    ]  # fmt: skip
    try:
        for name, role, cmd, log in commands:
            pid = _spawn(cmd, folder, env, log)
            state["processes"].append({"name": name, "role": role, "pid": pid, "started": procs.started(pid)})
            record(state)
        _wait_healthy(url, [p["pid"] for p in state["processes"]], [web_log, jobs_log])
        runners = [p["pid"] for p in state["processes"] if p["role"] == "jobs"]
        state["leader"] = wait_leader(redis_url, prefix, runners)
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


def restart_runners(state_dir: Path, redis_url: str, prefix: str, backend: dict[str, Any],
                    gone: list[dict[str, Any]], *, tick: float,
                    record: Callable[[dict[str, Any]], None] = lambda _: None) -> list[str]:  # fmt: skip
    """Start a job runner in place of each of ``gone`` (runners of ``backend`` that died) and
    update ``backend`` (a state file's record, whose other processes run on); return their names.

    A surviving runner is first given the TTL to take the leader lock over. The stack's recorded
    tick is kept. Raises Unreachable with the log's tail when a new runner
    dies at start (it is stopped first, and ``backend`` lists only what runs).
    """
    folder = backend_dir()
    state_dir = state_dir.resolve()
    jobs_log = Path(str(backend.get("logs") or state_dir / "logs")) / "jobs.log"
    jobs_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = _environment(folder, state_dir, redis_url, prefix, float(backend.get("tick") or tick))
    processes = [p for p in backend["processes"] if p not in gone]
    for proc in gone:  # started by this very process (tests): reap it
        child = _CHILDREN.pop(proc["pid"], None)
        if child is not None:
            child.poll()
    # Let a surviving runner take over first (a dead leader's lock lasts out its TTL), so that the
    # runner started now is the standby, not a newcomer racing the standby for the lock.
    wait_leader(redis_url, prefix, [p["pid"] for p in processes if p.get("role") == "jobs"])
    new: list[dict[str, Any]] = []
    try:
        for old in gone:
            pid = _spawn(runner_command(), folder, env, jobs_log)
            new.append({"name": old.get("name") or RUNNERS[-1], "role": "jobs", "pid": pid,
                        "started": procs.started(pid)})  # fmt: skip
            backend["processes"] = sorted([*processes, *new], key=_order)
            record(backend)
        _wait_healthy(str(backend["url"]), [p["pid"] for p in new], [jobs_log])
    except BaseException:
        stop(new)
        backend["processes"] = processes
        raise
    return [p["name"] for p in new]


def _order(proc: dict[str, Any]) -> tuple[int, str]:
    """Runners first, by name, then the web server: the order `dev up` starts them in."""
    return (0 if proc.get("role") == "jobs" else 1, str(proc.get("name")))


def demo_login() -> dict[str, Any]:
    """The demo users' fixed credentials (documented in the README; not secrets): ``user``,
    ``password`` and ``account`` are the operator ``demo``'s, ``logins`` lists both users."""
    logins = [
        {"user": DEMO_USER, "password": DEMO_PASSWORD, "account": DEMO_ACCOUNT, "operator": True},
        {"user": VIEWER_USER, "password": VIEWER_PASSWORD, "account": VIEWER_ACCOUNT, "operator": False},
    ]
    return {"user": DEMO_USER, "password": DEMO_PASSWORD, "account": DEMO_ACCOUNT, "logins": logins}


def stop(processes: list[dict[str, Any]]) -> list[str]:
    """Stop processes this ``dev up`` started (their whole groups: uvicorn's workers go too).

    Their pids cannot name anybody else: a child's pid stays reserved until it is reaped here.
    Returns what was stopped.
    """
    stopped = []
    children = []
    for proc in reversed(processes):
        child = _CHILDREN.pop(proc["pid"], None)
        if child is not None:
            children.append(child)
            if child.poll() is None:
                stopped.append(f"{proc['name']} (pid {proc['pid']})")
    procs.stop_groups([child.pid for child in children])
    for child in children:
        child.wait(5)
    return stopped


def recorded_running(backend: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the processes a state file's ``backend`` records into (still ours and running, gone)."""
    running: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    for proc in backend.get("processes", []):
        marker = MARKERS.get(str(proc.get("role")), "")
        is_ours = bool(marker) and procs.ours(proc.get("pid"), proc.get("started"), marker)
        (running if is_ours else gone).append(proc)
    return running, gone


def stop_recorded(backend: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Stop the backend processes a state file records, if they are still the ones ``dev up`` started.

    Workers whose uvicorn parent died are found by process group and stopped too. Returns (what
    was stopped, what was left alone because its pid now names another program).
    """
    from thorcut.dev.stack import StrangerPid

    folder = Path(__file__).resolve().parents[2] / "backend"
    stopped, strangers, children = [], [], []
    ours, _ = recorded_running(backend)
    for proc in reversed(backend.get("processes", [])):
        pid = proc["pid"]
        child = _CHILDREN.pop(pid, None)  # started by this very process (tests): reap it below
        if child is not None:
            children.append(child)
        if proc in ours:
            stopped.append(f"{proc.get('name')} (pid {pid})")
        elif procs.running(pid):
            strangers.append(str(StrangerPid(f"pid {pid} (the {proc.get('name')})", procs.command_line(pid))))
        elif left := procs.orphans(pid, folder):
            for orphan in left:
                procs.stop_one(orphan, timeout=5.0)
            stopped.append(f"{len(left)} process(es) left by the {proc.get('name')} (pids {', '.join(map(str, left))})")
    procs.stop_groups([proc["pid"] for proc in ours])  # all at once: no handover to a runner about to stop
    for child in children:
        if child.poll() is None:
            child.wait(5)
    return stopped, strangers


def alive(pid: object, match: str) -> bool:
    """Return whether ``pid`` runs and its command line contains ``match`` (tests' helper).

    Not an identity check (a reused pid passes); the stack itself uses :mod:`thorcut.dev.procs`.
    """
    return procs.valid_pid(pid) and procs.running(pid) and match in procs.command_line(pid)
