"""The demo stack's ports: the probe `dev up` runs before starting the backend, and free_port()."""

from __future__ import annotations

import socket
from pathlib import Path

from thorcut.devstack import free_port, port_free


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
