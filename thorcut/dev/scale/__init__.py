"""The scale-out topology (issue 13): N hosts, each a network namespace on one private bridge, behind
HAProxy, with Redis behind Sentinel. Run as ``python -m thorcut.dev.scale up|down|status``
(``make scale``, ``make scale-down``); root only, Linux only, and nothing leaves the machine.

    host      runs
    h1        uvicorn (2 workers) on :8000, job runner, Redis primary :6379, Sentinel :26379
    h2        uvicorn (2 workers) on :8000, job runner, Redis replica :6379, Sentinel :26379
    h3        uvicorn (2 workers) on :8000, Sentinel :26379
    h4..hN    uvicorn (2 workers) on :8000
    root      HAProxy on 127.0.0.1:<port> and the bridge address, its stats page on another port
              (with two hosts also the third Sentinel, on the bridge address)

Every process reaches Redis through the Sentinels (``redis+sentinel://…/thor/0``), or with
``--direct-redis`` at the primary's address (which a failover leaves behind). A missing program
(``haproxy``, ``redis-server``) is named with the package to install and ``up`` exits 2: it
installs nothing itself (``.ci/run`` does, on CI machines).

:mod:`.net` makes the network, :mod:`.processes` starts and finds the processes, :mod:`.configs`
writes the configs, :mod:`.files` keeps the folder and state file, :mod:`.lifecycle` brings it up
and down, and :mod:`.live` asks it what runs and injects faults (for benchmarks and tests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thorcut.dev.scale.files import DEFAULT_DIR
    from thorcut.dev.scale.files import read as read_state
    from thorcut.dev.scale.lifecycle import DEFAULT_PORT, down, topology, up
    from thorcut.dev.scale.live import (
        backends,
        current_primary,
        haproxy_url,
        kill_host,
        kill_redis_primary,
        leader,
        primary_address,
        stats_url,
    )

# Loaded on first use, as thorcut's own public names: the modules import one another through this
# package, which must therefore not import them at its top.
_HOME = {
    "DEFAULT_DIR": ("files", "DEFAULT_DIR"),
    "read_state": ("files", "read"),
    **{name: ("live", name) for name in ("backends", "current_primary", "haproxy_url", "kill_host",
                                         "kill_redis_primary", "leader", "primary_address", "stats_url")},
    **{name: ("lifecycle", name) for name in ("DEFAULT_PORT", "down", "topology", "up")},
}  # fmt: skip

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_PORT",
    "backends",
    "current_primary",
    "down",
    "haproxy_url",
    "kill_host",
    "kill_redis_primary",
    "leader",
    "primary_address",
    "read_state",
    "stats_url",
    "topology",
    "up",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'thorcut.dev.scale' has no attribute {name!r}")
    return getattr(importlib.import_module(f"thorcut.dev.scale.{home[0]}"), home[1])
