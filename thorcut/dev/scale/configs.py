"""The configuration files of the topology's Redis nodes, Sentinels and HAProxy (text only, no I/O)."""

from __future__ import annotations

from pathlib import Path

#: The Sentinel service (master) name: the ``/thor/`` of ``redis+sentinel://…/thor/0``.
SERVICE = "thor"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
WEB_PORT = 8000
#: Sentinels that must agree that the primary is down before one of them fails it over.
QUORUM = 2


def redis_conf(address: str, folder: Path, replica_of: str | None = None) -> str:
    """A data node on ``address``: the primary, or a replica of the node at ``replica_of``.

    ``set-proc-title no`` keeps the command line (with this file's path) as started, which is
    how ``status`` tells the node from another redis-server. ``min-replicas-to-write`` stays
    unset: after a failover the new primary has no replica until the old one returns, and must
    still take writes.
    """
    lines = [
        f"bind {address}",
        f"port {REDIS_PORT}",
        "protected-mode no",  # no password by default; the bridge reaches no other machine
        "daemonize no",
        "set-proc-title no",
        f"dir {folder}",
        'logfile ""',  # stdout, which goes to the topology's logs/ folder
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
    ]
    if replica_of:
        lines.append(f"replicaof {replica_of} {REDIS_PORT}")
    return "\n".join(lines) + "\n"


def sentinel_conf(address: str, port: int, folder: Path, primary: str) -> str:
    """A Sentinel on ``address:port`` watching the primary at ``primary``.

    Short timings, so a failover takes a few seconds: the primary counts as down after 1 s
    without an answer, and a failover that stalls is retried after 5 s. Sentinel rewrites this
    file as it learns (its id, the other Sentinels, the replicas, the current primary).
    """
    return "\n".join([
        f"bind {address}",
        f"port {port}",
        "protected-mode no",
        "daemonize no",
        "set-proc-title no",
        f"dir {folder}",
        'logfile ""',
        f"sentinel monitor {SERVICE} {primary} {REDIS_PORT} {QUORUM}",
        f"sentinel down-after-milliseconds {SERVICE} 1000",
        f"sentinel failover-timeout {SERVICE} 5000",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]) + "\n"  # fmt: skip


def haproxy_cfg(port: int, stats_port: int, binds: list[str], backends: list[tuple[str, str]]) -> str:
    """HAProxy in front of ``backends`` (``(name, address)``: uvicorn on port 8000 of each host).

    ``leastconn`` because WebSocket connections last: each new one goes to the host holding the
    fewest. The health check asks ``/api/health`` every 500 ms with a Host header Django allows;
    two failures take a host out, two successes bring it back. ``timeout tunnel`` governs an
    upgraded (WebSocket) connection once it is established, so an idle stream stays up for an
    hour, while ``timeout client``/``server`` bound ordinary requests.
    """
    lines = [
        "global",  # no log target: in the foreground HAProxy tells server state changes on stderr (its log)
        "    maxconn 8000",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout queue 10s",
        "    timeout tunnel 1h",
        "    timeout client-fin 5s",
        "",
        "frontend thor",
        *(f"    bind {address}:{port}" for address in binds),
        "    default_backend thor_hosts",
        "",
        "backend thor_hosts",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /api/health ver HTTP/1.1 hdr Host 127.0.0.1",
        "    http-check expect status 200",
        "    default-server inter 500ms fall 2 rise 2",
        *(f"    server {name} {address}:{WEB_PORT} check" for name, address in backends),
        "",
        "frontend stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /",
        "    stats refresh 2s",
    ]
    return "\n".join(lines) + "\n"
