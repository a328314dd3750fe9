"""Bring the scale-out topology up and take it down again.

``up`` makes the network (:mod:`.net`), starts the Redis primary (host 1) and its replica (host 2)
and three Sentinels, prepares the one shared SQLite database from the root namespace (migrate,
the demo user, the seed), starts uvicorn on every host and a job runner on hosts 1 and 2, then
HAProxy in the root namespace, and returns once HAProxy has every host up and ``/api/health``
answers through it. Any failure, Ctrl-C included, takes down what was made before it goes on.
``down`` stops every process of the topology and removes every namespace, veth and bridge, found
by name prefix and environment mark, so it also cleans up after an ``up`` that was killed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thorcut.dev import frontend as page_build
from thorcut.dev import procs
from thorcut.dev.backend import DEMO_ACCOUNT, DEMO_PASSWORD, DEMO_USER, backend_dir, runner_command, uvicorn_command
from thorcut.dev.backend import _manage as manage  # the one place that keeps the API token out of the log
from thorcut.dev.scale import configs, files, live, net, processes
from thorcut.dev.stack import free_port, port_free
from thorcut.errors import ConfigError, ThorcutError, Unreachable, UsageError
from thorcut.redisconn import connect

DEFAULT_PORT = 8600
WORKERS = 2
#: The hosts that run a job runner: one leads (it holds the lock), the other stands by.
RUNNER_HOSTS = (1, 2)


def require_programs() -> str:
    """Return the ``redis-server`` binary; raise UsageError (exit 2) naming the Debian package to
    install when a program is missing (this command installs nothing itself), or when not root."""
    if os.geteuid() != 0:
        raise UsageError("the scale-out topology makes network namespaces: run it as root")
    missing = [pkg for prog, pkg in (("haproxy", "haproxy"), ("redis-server", "redis-server"), ("ip", "iproute2"))
               if shutil.which(prog) is None]  # fmt: skip
    binary = shutil.which("redis-server") or ""
    if binary:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"v=(\d+)\.(\d+)", version)
        if not found or (int(found[1]), int(found[2])) < (6, 2):  # `replicaof`, Sentinel as we configure it
            missing.append("redis-server")
    if missing:
        which = ", ".join("redis-server 6.2 or newer" if m == "redis-server" else m for m in missing)
        raise UsageError(f"the scale-out topology needs {which}: apt-get install -y {' '.join(missing)}")
    return binary


def sentinel_addresses(members: list[net.Host]) -> list[tuple[str, str, int]]:
    """``(host name, address, port)`` of the three Sentinels: hosts 1-3, or with two hosts both
    of them and one in the root namespace on the bridge address (on a free port there)."""
    found = [(h.name, h.address, configs.SENTINEL_PORT) for h in members[:3]]
    if len(found) < 3:
        found.append(("root", net.BRIDGE_ADDRESS, free_port()))
    return found


def sentinel_url(sentinels: list[tuple[str, str, int]]) -> str:
    """The Redis URL every process of the topology uses: the Sentinels, then ``/service/db``."""
    return f"redis+sentinel://{','.join(f'{a}:{p}' for _, a, p in sentinels)}/{configs.SERVICE}/0"


def _environment(folder: Path, members: list[net.Host], redis_url: str, prefix: str, port: int,
                 tick: float) -> dict[str, str]:  # fmt: skip
    """What every backend process of the topology runs with (as ``dev up``'s, but for many hosts)."""
    backend = backend_dir()
    env = {k: v for k, v in os.environ.items() if k not in ("THOR_CHANNEL_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    fronts = ["127.0.0.1", "localhost", net.BRIDGE_ADDRESS]
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "thor_project.settings",
        "THORCUT_REDIS_URL": redis_url,
        "THORCUT_PREFIX": prefix,
        "DATABASE_URL": f"sqlite:///{folder / 'thor.sqlite3'}",
        "THOR_TICK": str(tick),
        "THOR_FRONTEND_DIST": str(page_build.frontend_dir() / "dist"),  # served if built; never built here
        # HAProxy's checks and direct requests name a host's own address; browsers come through HAProxy.
        "THOR_ALLOWED_HOSTS": ",".join([*fronts, "testserver", *(h.address for h in members)]),
        "THOR_ALLOWED_ORIGINS": ",".join(f"http://{a}:{port}" for a in fronts),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(backend), os.environ.get("PYTHONPATH", "")])),
    }


def _record(state: dict[str, Any], host: str, name: str, role: str, pid: int, marker: str, port: int) -> None:
    state["processes"].append({"host": host, "name": name, "role": role, "pid": pid, "port": port,
                               "started": procs.started(pid), "marker": marker})  # fmt: skip
    files.save(Path(state["dir"]), state)


def _start_redis(state: dict[str, Any], binary: str, members: list[net.Host]) -> None:
    folder = Path(state["dir"])
    primary = members[0].address
    for host, replica_of in ((members[0], None), (members[1], primary)):
        data = folder / "redis" / host.name
        data.mkdir(mode=0o700)
        conf = data / "redis.conf"
        conf.write_text(configs.redis_conf(host.address, data, replica_of))
        pid = processes.spawn([binary, str(conf)], netns=host.netns, cwd=data, env=dict(os.environ),
                              log=folder / "logs" / f"{host.name}-redis.log")  # fmt: skip
        _record(state, host.name, "redis-server", "redis", pid, str(conf), configs.REDIS_PORT)
    by_name = {h.name: h for h in members}
    for name, address, port in state["sentinels"]:
        where = folder / "sentinel" / name
        where.mkdir(mode=0o700)
        conf = where / "sentinel.conf"
        conf.write_text(configs.sentinel_conf(address, port, where, primary))
        netns = by_name[name].netns if name in by_name else None
        pid = processes.spawn([binary, str(conf), "--sentinel"], netns=netns, cwd=where, env=dict(os.environ),
                              log=folder / "logs" / f"{name}-sentinel.log")  # fmt: skip
        _record(state, name, "redis sentinel", "sentinel", pid, str(conf), port)
    for proc in state["processes"]:
        _wait(functools.partial(live.ping, live.address_of(state, proc["host"]), int(proc["port"])), state,
              f"{proc['name']} on {proc['host']}")  # fmt: skip


def _setup(folder: Path, env: dict[str, str]) -> str:
    """Migrate the shared database, make the demo user and seed it, once, from the root namespace;
    return the demo user's API token. Marked, so ``down`` stops a setup an ``up`` left running."""
    backend, log = backend_dir(), folder / "logs" / "setup.log"
    env = {**env, processes.MARK: "1"}
    manage(backend, env, log, "migrate", "--noinput")
    made = manage(backend, env, log, "thor_user", DEMO_USER, "--password", DEMO_PASSWORD, "--account", DEMO_ACCOUNT,
                   "--token", "thorcut-scale", "--operator")  # fmt: skip
    manage(backend, env, log, "thor_seed")
    return next((line.split()[1] for line in made.splitlines() if line.startswith("token ")), "")


def _start_backend(state: dict[str, Any], members: list[net.Host], env: dict[str, str]) -> None:
    folder, backend = Path(state["dir"]), backend_dir()
    for host in members:
        metrics = folder / "metrics" / host.name  # per host: each host's /metrics sums its own processes
        metrics.mkdir(mode=0o700)
        host_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        cmd = uvicorn_command(host.address, configs.WEB_PORT, WORKERS)
        log = folder / "logs" / f"{host.name}-web.log"
        pid = processes.spawn(cmd, netns=host.netns, cwd=backend, env=host_env, log=log)
        _record(state, host.name, f"uvicorn ({WORKERS} workers)", "web", pid, "thor_project.asgi:application",
                configs.WEB_PORT)  # fmt: skip
        if host.index in RUNNER_HOSTS:
            pid = processes.spawn(runner_command(), netns=host.netns, cwd=backend, env=host_env,
                                  log=folder / "logs" / f"{host.name}-jobs.log")  # fmt: skip
            _record(state, host.name, "job runner", "jobs", pid, "run_jobs", 0)


def _start_haproxy(state: dict[str, Any], members: list[net.Host]) -> None:
    folder, front = Path(state["dir"]), state["haproxy"]
    cfg = folder / "haproxy.cfg"
    cfg.write_text(configs.haproxy_cfg(front["port"], front["stats_port"], front["binds"],
                                       [(h.name, h.address) for h in members]))  # fmt: skip
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise ThorcutError(f"HAProxy refused {cfg}: {(check.stderr or check.stdout).strip()[-800:]}")
    # In the foreground (-db) as a child of its own, so `down` stops it like every other process.
    pid = processes.spawn(["haproxy", "-db", "-f", str(cfg)], netns=None, cwd=folder, env=dict(os.environ),
                          log=folder / "logs" / "haproxy.log")  # fmt: skip
    _record(state, "root", "haproxy", "haproxy", pid, str(cfg), front["port"])


def _wait(ready: Callable[[], object], state: dict[str, Any], what: str, timeout: float = 20.0) -> None:
    """Poll ``ready`` until it returns something true while every recorded process still runs;
    raise Unreachable naming ``what``, with the tails of the logs, on timeout or a death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in state["processes"] if not processes.running(p["pid"])]
        if dead:
            names = ", ".join(f"{p['name']} on {p['host']} (pid {p['pid']})" for p in dead)
            what = f"{what}: {names} exited"
            break
        if ready():
            return
        time.sleep(0.1)
    logs = sorted((Path(state["dir"]) / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)[-4:]
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-600:].strip()}" for log in logs)
    raise Unreachable(f"the scale-out topology did not come up ({what}):\n{tails}")


def up(folder: Path = files.DEFAULT_DIR, *, hosts: int = 3, port: int = DEFAULT_PORT, direct_redis: bool = False,
       tick: float = 1.0, prefix: str = "thorcut", timeout: float = 90.0,
       note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:  # fmt: skip
    """Bring the topology up; return its state (as saved, plus the demo user's API ``token``).

    Raises UsageError (exit 2) for a missing program, a clash with what is on the machine
    (leftovers of an earlier run included: ``down`` removes them), a busy ``port``, or a Redis
    URL this thorcut cannot use yet; Unreachable when a part does not come up within ``timeout``.
    """
    binary = require_programs()
    members = net.hosts(hosts)
    folder = folder.resolve()
    if (folder / files.STATE_FILE).exists():
        raise UsageError(f"a topology is already up (state in {folder / files.STATE_FILE}): `make scale-down` first")
    problems = net.clashes()
    if left := processes.leftovers():
        problems.append(f"processes of an earlier run still run: pids {', '.join(map(str, left))} (`make scale-down`)")
    if problems:
        raise UsageError("cannot bring the topology up: " + "; ".join(problems))
    if not port_free(port):
        raise UsageError(f"port {port} is in use on 127.0.0.1: pick another with --port")
    sentinels = sentinel_addresses(members)
    url = f"redis://{members[0].address}:{configs.REDIS_PORT}/0" if direct_redis else sentinel_url(sentinels)
    try:  # a client is made, not connected: this only asks whether thorcut understands the URL
        connect(url, 1.0, check=False).close()
    except ConfigError as exc:
        raise UsageError(f"this thorcut cannot use {url} ({exc}); try --direct-redis") from None
    folder = files.prepare(folder)
    state: dict[str, Any] = {
        "dir": str(folder), "prefix": prefix, "tick": tick, "redis_url": url, "direct_redis": direct_redis,
        "sentinel_url": sentinel_url(sentinels), "sentinels": sentinels, "service": configs.SERVICE,
        "bridge": {"name": net.BRIDGE, "address": net.BRIDGE_ADDRESS, "subnet": str(net.SUBNET)},
        "hosts": [{"name": h.name, "netns": h.netns, "address": h.address, "veth": h.veth} for h in members],
        "haproxy": {"port": port, "stats_port": free_port(), "binds": ["127.0.0.1", net.BRIDGE_ADDRESS]},
        "database": str(folder / "thor.sqlite3"), "logs": str(folder / "logs"), "processes": [], "complete": False,
    }  # fmt: skip
    files.save(folder, state)
    try:
        note(f"network: bridge {net.BRIDGE}, namespaces {members[0].netns}..{members[-1].netns}")
        net.create(members)
        note("Redis: primary, replica, 3 Sentinels")
        _start_redis(state, binary, members)
        env = _environment(folder, members, url, prefix, port, tick)
        note("database: migrate, demo user, seed")
        state["token"] = _setup(folder, env)
        note(f"backend: uvicorn on {len(members)} hosts, job runners on {len(RUNNER_HOSTS)}")
        _start_backend(state, members, env)
        _start_haproxy(state, members)
        note("waiting for every host to be healthy behind HAProxy")
        _wait(lambda: live.sentinels_ready(state), state, "the Sentinels to know the replica and each other", timeout)
        _wait(lambda: list(live.backends(state).values()) == ["UP"] * len(members), state, "HAProxy's health checks",
              timeout)  # fmt: skip
        _wait(lambda: live.health(state), state, "/api/health through HAProxy", timeout)
        _wait(lambda: live.leader(state), state, "a job runner to take the leader lock", timeout)
    except BaseException as exc:
        try:
            down(folder)
        except ThorcutError as cleanup:  # the first failure is the one to report; this one is said too
            exc.add_note(f"and taking it down again failed: {cleanup}")
        raise
    state["complete"] = True
    files.save(folder, state)
    return state


def down(folder: Path = files.DEFAULT_DIR) -> list[str]:
    """Stop every process of the topology, then remove every veth, namespace and bridge it made;
    return what was removed. Works without a state file (by name prefix and environment mark).

    Raises ThorcutError when something could not be removed.
    """
    folder = folder.resolve()
    stopped = processes.stop(processes.leftovers)
    removed = [f"{len(stopped)} processes"] if stopped else []
    removed += net.remove()
    files.forget(folder)
    if left := processes.leftovers():
        raise ThorcutError(f"processes of the topology survived SIGKILL: pids {', '.join(map(str, left))}")
    return removed


@contextmanager
def topology(hosts: int = 3, port: int | None = None, *, folder: Path = files.DEFAULT_DIR,
             **options: Any) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Bring the topology up (on a free port unless ``port``) for the ``with`` block, and always
    take it down afterwards, whatever the block raised. ``options`` go to :func:`up`.

    An ``up`` that fails has taken down what it made; one refused because a topology is already
    up (somebody else's, maybe) made nothing, and that topology is left alone.
    """
    state = up(folder, hosts=hosts, port=port or free_port(), **options)
    try:
        yield state
    finally:
        down(folder)
