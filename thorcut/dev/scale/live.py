"""What the running topology says about itself, and the faults a benchmark or test injects into it.

Every function takes the state :func:`thorcut.dev.scale.up` returned (or ``status`` read back) and
asks the live processes: the Sentinels which Redis node is the primary now, the primary which job
runner holds the leader lock, HAProxy which hosts pass its health checks.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from thorcut.dev import procs
from thorcut.dev.backend import leader_pid
from thorcut.dev.scale import net, processes
from thorcut.errors import UsageError

_TIMEOUT = 0.5


def haproxy_url(state: dict[str, Any], scheme: str = "http") -> str:
    """The base URL of HAProxy on loopback (``scheme`` ``ws`` for WebSockets), no trailing slash."""
    return f"{scheme}://127.0.0.1:{state['haproxy']['port']}"


def stats_url(state: dict[str, Any]) -> str:
    """HAProxy's stats page (``;csv`` appended gives it as CSV)."""
    return f"http://127.0.0.1:{state['haproxy']['stats_port']}/"


def _host(state: dict[str, Any], name: str) -> dict[str, Any]:
    found = next((h for h in state["hosts"] if h["name"] == name), None)
    if found is None:
        raise UsageError(f"no host {name!r} in the topology (it has {', '.join(h['name'] for h in state['hosts'])})")
    return dict(found)


def address_of(state: dict[str, Any], host: str) -> str:
    """The address of ``host`` (``h1``.., or ``root`` for the bridge address); UsageError for another name."""
    if host == "root":
        return str(state["bridge"]["address"])
    return str(_host(state, host)["address"])


def host_of(state: dict[str, Any], address: str) -> str | None:
    """The name of the host with ``address``, or None."""
    return next((str(h["name"]) for h in state["hosts"] if h["address"] == address), None)


def _client(address: str, port: int) -> redis.Redis:
    return redis.Redis(host=address, port=port, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT,
                       decode_responses=True)  # fmt: skip


def ping(address: str, port: int) -> bool:
    """Whether the Redis server (or Sentinel) at ``address:port`` answers PING."""
    client = _client(address, port)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _sentinel_answers(state: dict[str, Any]) -> list[tuple[str, int] | None]:
    answers: list[tuple[str, int] | None] = []
    for _, address, port in state["sentinels"]:
        client = _client(address, port)
        try:
            found: Any = client.sentinel_get_master_addr_by_name(state["service"])
            answers.append((str(found[0]), int(found[1])) if found else None)
        except (redis.RedisError, OSError):
            answers.append(None)
        finally:
            client.close()
    return answers


def primary_address(state: dict[str, Any]) -> tuple[str, int] | None:
    """``(address, port)`` of the Redis primary most Sentinels name now; None when none answers."""
    named = Counter(a for a in _sentinel_answers(state) if a is not None)
    return named.most_common(1)[0][0] if named else None


def current_primary(state: dict[str, Any]) -> str | None:
    """The host (``h1``..) whose Redis node most Sentinels name as the primary now; None when no
    Sentinel answers. Right after a failover the Sentinels may disagree for a moment."""
    found = primary_address(state)
    return host_of(state, found[0]) if found else None


def sentinels_ready(state: dict[str, Any]) -> bool:
    """Whether every Sentinel knows the primary, at least one replica and the other Sentinels
    (so that a quorum can vote a failover)."""
    for _, address, port in state["sentinels"]:
        client = _client(address, port)
        try:
            info: Any = client.sentinel_master(state["service"])
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()
        if int(info.get("num-slaves", 0)) < 1 or int(info.get("num-other-sentinels", 0)) < len(state["sentinels"]) - 1:
            return False
    return True


def redis_role(address: str, port: int) -> str:
    """``primary``, ``replica`` or ``down``: what the node at ``address:port`` says it is."""
    client = _client(address, port)
    try:
        role = str(client.info("replication").get("role", "?"))
    except (redis.RedisError, OSError):
        return "down"
    finally:
        client.close()
    return {"master": "primary", "slave": "replica"}.get(role, role)


def leader(state: dict[str, Any]) -> str | None:
    """The host whose job runner holds the leader lock (``thor_runner.leader``), read from the
    current primary; None when no runner holds it or no primary can be found."""
    found = primary_address(state)
    if found is None:
        return None
    pid = leader_pid(f"redis://{found[0]}:{found[1]}/0", state["prefix"], timeout=_TIMEOUT)
    return next((str(p["host"]) for p in state["processes"] if p["role"] == "jobs" and p["pid"] == pid), None)


def backends(state: dict[str, Any]) -> dict[str, str]:
    """HAProxy's view of each host (``UP``, ``DOWN``, ``UP 1/2``..); empty when HAProxy does not answer.

    HAProxy counts a server up until its first check fails, so one no check has passed yet is
    ``UP (unchecked)``, not ``UP``.
    """
    try:
        with urllib.request.urlopen(stats_url(state) + ";csv", timeout=1) as resp:  # noqa: S310 (loopback URL we built)
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    found = {}
    for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
        if row.get("pxname") == "thor_hosts" and row.get("svname") != "BACKEND":
            checked = row["status"] != "UP" or row.get("check_status") == "L7OK"
            found[row["svname"]] = row["status"] if checked else "UP (unchecked)"
    return found


def health(state: dict[str, Any]) -> bool:
    """Whether ``/api/health`` answers 200 through HAProxy."""
    try:
        with urllib.request.urlopen(haproxy_url(state) + "/api/health", timeout=2) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def alive(proc: dict[str, Any]) -> bool:
    """Whether the recorded process still runs and is the one ``up`` started."""
    return processes.running(proc["pid"]) and procs.ours(proc["pid"], proc.get("started"), str(proc.get("marker")))


def describe(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recorded process with its live role, for ``status`` and ``up``'s table."""
    checks = backends(state)
    lead = leader(state)
    rows = []
    for proc in state["processes"]:
        address = address_of(state, proc["host"])
        running = alive(proc)
        if not running:
            role = "gone"
        elif proc["role"] == "redis":
            role = redis_role(address, proc["port"])
        elif proc["role"] == "sentinel":
            role = "sentinel"
        elif proc["role"] == "jobs":
            role = "runner: leader" if lead == proc["host"] else "runner: standby"
        elif proc["role"] == "web":
            role = f"web (HAProxy: {checks.get(proc['host'], '?')})"
        else:
            role = "load balancer"
        rows.append({**proc, "address": address, "running": running, "live_role": role})
    return rows


def kill_host(state: dict[str, Any], host: str) -> list[int]:
    """SIGKILL every process of ``host`` (everything in its namespace, uvicorn's workers included),
    as a machine that dies would; return their pids. Its network stays. Raises UsageError for a
    name that is no host of the topology."""
    netns = str(_host(state, host)["netns"])
    return processes.kill(lambda: [p for p in net.pids(netns) if procs.running(p)])


def kill_redis_primary(state: dict[str, Any]) -> str | None:
    """SIGKILL the Redis node the Sentinels name as the primary; return its host (None: none found)."""
    host = current_primary(state)
    proc = next((p for p in state["processes"] if p["role"] == "redis" and p["host"] == host), None)
    if proc is None or not alive(proc):
        return None
    processes.kill(lambda: [proc["pid"]] if processes.running(proc["pid"]) else [])
    return host


def restart_redis(state: dict[str, Any], host: str) -> int:
    """Start ``host``'s Redis node again with its own config, as a supervisor would after a crash;
    return its pid. Started after a failover it comes back as a replica (the Sentinels make it one);
    started before the Sentinels judged it down, it is simply the primary again."""
    proc = next(p for p in state["processes"] if p["role"] == "redis" and p["host"] == host)
    conf = Path(str(proc["marker"]))
    pid = processes.spawn([shutil.which("redis-server") or "redis-server", str(conf)],
                          netns=str(_host(state, host)["netns"]), cwd=conf.parent, env=dict(os.environ),
                          log=Path(state["logs"]) / f"{host}-redis.log")  # fmt: skip
    proc.update(pid=pid, started=procs.started(pid))  # alive() knows it as the one the topology runs
    return pid
