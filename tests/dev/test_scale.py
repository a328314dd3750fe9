"""The scale-out topology (``thorcut.dev.scale``, issue 13) on two hosts: HAProxy spreads WebSocket
connections over both; the topology survives losing the Redis primary and then the host whose job
runner leads (no acknowledged change lost, the audit chain verified, every client resumed through
HAProxy, one leader); and ``down`` leaves no process, namespace, veth or bridge behind, also after
an ``up`` killed half-way that left no state file.

Root only (network namespaces); CI runs as root and installs HAProxy (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from thorcut.dev.scale import (
    current_primary,
    down,
    haproxy_url,
    kill_host,
    kill_redis_primary,
    leader,
    live,
    net,
    processes,
    topology,
    up,
)
from thorcut.dev.scale.probe import Probe
from thorcut.dev.stack import free_port
from thorcut.errors import NotReplicated, UsageError
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the topology makes network namespaces: root only"),
]


def nothing_left() -> None:
    assert net.namespaces() == []
    assert net.links() == []
    assert processes.leftovers() == []


def eventually(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {timeout} s"
        time.sleep(0.1)


@pytest.fixture
def scale_dir(tmp_path: Path) -> Iterator[Path]:
    """The topology's folder; whatever the test did, ``down`` runs after it."""
    if net.namespaces() or net.links():  # somebody's topology is up: never take it down from here
        pytest.fail(f"a scale-out topology is up on this machine ({net.namespaces() + net.links()}): make scale-down")
    folder = tmp_path / "scale"
    try:
        yield folder
    finally:
        down(folder)


def ws_connections(address: str) -> float:
    """Open WebSocket connections on one host, from its own /metrics (all its workers summed)."""
    with urllib.request.urlopen(f"http://{address}:8000/metrics", timeout=2) as resp:
        body = resp.read().decode()
    found = re.search(r"^thor_ws_connections (\S+)$", body, re.MULTILINE)
    return float(found[1]) if found else 0.0


def health(state: dict[str, Any]) -> dict[str, Any]:
    """``/api/health`` through HAProxy."""
    with urllib.request.urlopen(haproxy_url(state) + "/api/health", timeout=2) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def _store(state: dict[str, Any]) -> FlagStore:
    return FlagStore(connect(state["redis_url"], 5.0), Keys(state["prefix"]), DEFAULT_MANIFEST.names,
                     operator="test", wait_replicas=1, wait_timeout=2.0)  # fmt: skip


def _until(cond: Callable[[], object], timeout: float, what: str, detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s {detail()}")
        time.sleep(0.1)


def _assert_store(state: dict[str, Any], acknowledged: dict[str, int]) -> None:
    store = _store(state)
    try:
        for feature, version in acknowledged.items():
            assert store.read(feature).version >= version, f"{feature}: change {version} reported done, then lost"
        report = store.verify()
        assert report.ok, report
    finally:
        store.client.close()


def test_two_hosts_survive_losing_the_redis_primary_and_the_leading_host(scale_dir: Path) -> None:
    """The Redis primary is killed (and started again once the Sentinels failed it over, as a
    supervisor would: it comes back as a replica), then every process of the host whose job runner
    leads. After each fault: no stage change reported done is lost, the audit chain verifies, every
    client is served again through HAProxy (resumed by seq, no unmarked gap), one runner leads."""
    with topology(hosts=2, folder=scale_dir, tick=0.5, prefix="t") as state:  # every process through Sentinel
        pids = [p["pid"] for p in state["processes"]]
        assert current_primary(state) == "h1"
        assert live.backends(state) == {"h1": "UP", "h2": "UP"}
        url = haproxy_url(state, "ws") + "/ws/stream/"
        auth = {"Authorization": f"Bearer {state['token']}"}
        with ExitStack() as stack:
            clients = [stack.enter_context(ws_connect(url, additional_headers=auth, open_timeout=5)) for _ in range(4)]
            assert all(json.loads(c.recv(timeout=5))["type"] == "flags" for c in clients)
            # leastconn: each new connection goes to the host holding fewer
            eventually(lambda: {h["name"]: ws_connections(h["address"]) for h in state["hosts"]} == {"h1": 2, "h2": 2},
                       timeout=5)  # fmt: skip
        store = _store(state)
        for feature in DEFAULT_MANIFEST.names:
            store.change(feature, Stage.SHADOW, reason="scale test")
        store.client.close()
        acknowledged: dict[str, int] = {}
        stop = threading.Event()

        def writer() -> None:  # changes without pause, as engineers and a ramp would make them
            s = _store(state)
            i = 0
            while not stop.is_set():
                feature = ("positions", "intraday")[i % 2]
                try:
                    done = s.change(feature, Stage.LIVE if (i // 2) % 2 == 0 else Stage.SHADOW, reason=f"{i}",
                                    force=True)  # fmt: skip
                    acknowledged[feature] = done.after.version
                except NotReplicated:
                    pass  # on the new primary, no replica yet: not reported done
                except Exception:
                    time.sleep(0.05)
                i += 1
            s.client.close()

        probes = [Probe(state) for _ in range(6)]
        for p in probes:
            p.__enter__()
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            _until(lambda: all(p.last_envelope for p in probes) and len(acknowledged) == 2, 30, "traffic and changes")

            # 1. The Redis primary dies; a supervisor starts it again.
            killed = time.time()
            old = kill_redis_primary(state)
            assert old == "h1"
            _until(lambda: current_primary(state) not in (None, old), 30, "a failover")  # down after 1 s, a vote
            live.restart_redis(state, old)
            _until(lambda: all(p.last_envelope > killed for p in probes), 30, "broadcasts after the failover")
            seen = dict(acknowledged)
            _until(lambda: any(acknowledged[f] > seen[f] for f in seen), 30, "a change acknowledged after it")
            _assert_store(state, acknowledged)
            _until(lambda: leader(state) is not None, 15, "a leading job runner")

            # 2. Every process of the host whose runner leads dies.
            lead = leader(state)
            assert lead is not None
            connects = [p.connects for p in probes]
            kill_host(state, lead)
            killed = time.time()  # after: nothing the dead host sent can arrive later than this
            _until(lambda: live.backends(state).get(lead) == "DOWN", 10, "HAProxy taking the host out")
            _until(lambda: leader(state) not in (None, lead), 30, "the standby runner leading")
            _until(
                lambda: all(p.last_envelope > killed for p in probes),
                30,
                "every client served again",
                lambda: f"{[(p.connects, round(p.last_envelope - killed, 1), len(p.resumes)) for p in probes]}",
            )
            dropped = [p for p, before in zip(probes, connects, strict=True) if p.connects > before]
            assert dropped, "no client was on the killed host (HAProxy balanced none to it)"
            _until(lambda: all(p.resumes and p.resumes[-1] > killed for p in dropped), 15, "resumed after reconnect")
        finally:
            stop.set()
            thread.join(30)
            for p in probes:
                p.__exit__()
        _assert_store(state, acknowledged)
        assert sum(p.gaps for p in probes) == 0, [p.gaps for p in probes]
        survivors = {h["name"] for h in state["hosts"]} - {lead}
        assert leader(state) in survivors
        assert live.backends(state).get(lead) == "DOWN"
    nothing_left()
    assert not any(processes.running(pid) for pid in pids)
    assert not (scale_dir / "scale.json").exists()


def test_down_cleans_up_after_an_up_killed_half_way_without_its_state_file(scale_dir: Path) -> None:
    command = [sys.executable, "-m", "thorcut.dev.scale", "--dir", str(scale_dir), "up", "--hosts", "2",
               "--port", str(free_port()), "--direct-redis"]  # fmt: skip
    errors = scale_dir.parent / "up.err"
    with errors.open("wb") as err:
        starting = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        state_file = scale_dir / "scale.json"

        def web_started() -> bool:
            assert starting.poll() is None, f"up ended before it started the web servers: {errors.read_text()}"
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                return False
            return any(p["role"] == "web" for p in state["processes"])

        eventually(web_started, timeout=40)
    finally:
        starting.send_signal(signal.SIGKILL)  # no clean-up of its own: what it started runs on
        starting.wait()
    state_file.unlink()
    assert net.namespaces() == ["thor-h1", "thor-h2"]
    assert len(processes.leftovers()) >= 5  # Redis x2, Sentinels x3, uvicorn...

    with pytest.raises(UsageError, match="make scale-down"):
        up(scale_dir, hosts=2, port=free_port())  # refuses, and removes nothing

    result = subprocess.run([sys.executable, "-m", "thorcut.dev.scale", "--dir", str(scale_dir), "down"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "namespace thor-h1" in result.stdout
    assert "bridge thorbr0" in result.stdout
    nothing_left()
