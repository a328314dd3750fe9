"""The flag store: each feature's stage in Redis, changed atomically and audited, and watched live.

This package is thorcut's public interface for backends (the reference backend imports nothing
else of thorcut's): a :class:`FlagWatcher` keeps every feature's effective flag in memory and
applies changes pushed by Redis; :func:`reads_websocket` and :func:`broadcasts` answer what a
client and the server do at a stage; :class:`Keys` names the Redis keys of docs/contracts.md.

Inside: the stage machine (:mod:`.stages`) and deciding one change by it (:mod:`.plan`), one flag's
stored state (:mod:`.state`), the store and its atomic changes (:mod:`.store`), the audit chain
(:mod:`.audit`), the store's epoch (:mod:`.epoch`), the percent rollout (:mod:`.rollout`), the
watcher (:mod:`.watcher`), backup and restore (:mod:`.backup`), the wait for workers'
acknowledgements (:mod:`.acks`), ramps (:mod:`.ramp`) and who guards a feature (:mod:`.presence`).

A backend that shows and changes stages itself (the reference backend's operations API) also
reads the stored verdicts and their gate (:class:`ParityRecord`, :func:`gate`), ramps
(:class:`RampState`) and guards (:class:`GuardPresence`), and tells the errors of a change apart
(:class:`ThorcutError` and its :class:`UsageError`, :class:`Refused` and :class:`Unreachable`),
and who still reads each feature's REST endpoints (:mod:`.restreads`, imported as a module:
``from thorcut.flags import restreads``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thorcut.errors import Refused, ThorcutError, Unreachable, UsageError
    from thorcut.flags.presence import GuardPresence
    from thorcut.flags.ramp import RampState
    from thorcut.flags.rollout import broadcasts, bucket, reads_from, reads_websocket
    from thorcut.flags.stages import Stage, allowed
    from thorcut.flags.state import FlagState
    from thorcut.flags.store import FlagStore, Outcome
    from thorcut.flags.watcher import EffectiveFlag, FlagWatcher, StoreReset
    from thorcut.redisconn import Keys, connect
    from thorcut.redisurl import RedisTarget, parse_redis_url
    from thorcut.verdict import ParityRecord, gate

# Loaded on first use, so that importing one submodule (the stage machine, for a command that
# only checks a feature name) does not import Redis and the store (~80 ms of start-up).
_HOME = {
    "broadcasts": "thorcut.flags.rollout",
    "bucket": "thorcut.flags.rollout",
    "reads_from": "thorcut.flags.rollout",
    "reads_websocket": "thorcut.flags.rollout",
    "Stage": "thorcut.flags.stages",
    "allowed": "thorcut.flags.stages",
    "FlagState": "thorcut.flags.state",
    "FlagStore": "thorcut.flags.store",
    "Outcome": "thorcut.flags.store",
    "EffectiveFlag": "thorcut.flags.watcher",
    "FlagWatcher": "thorcut.flags.watcher",
    "StoreReset": "thorcut.flags.watcher",
    "Keys": "thorcut.redisconn",
    "connect": "thorcut.redisconn",
    "RedisTarget": "thorcut.redisurl",
    "parse_redis_url": "thorcut.redisurl",
    "GuardPresence": "thorcut.flags.presence",
    "RampState": "thorcut.flags.ramp",
    "ParityRecord": "thorcut.verdict",
    "gate": "thorcut.verdict",
    "ThorcutError": "thorcut.errors",
    "UsageError": "thorcut.errors",
    "Refused": "thorcut.errors",
    "Unreachable": "thorcut.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'thorcut.flags' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "EffectiveFlag",
    "FlagState",
    "FlagStore",
    "FlagWatcher",
    "GuardPresence",
    "Keys",
    "Outcome",
    "ParityRecord",
    "RampState",
    "RedisTarget",
    "Refused",
    "Stage",
    "StoreReset",
    "ThorcutError",
    "Unreachable",
    "UsageError",
    "allowed",
    "broadcasts",
    "bucket",
    "connect",
    "gate",
    "parse_redis_url",
    "reads_from",
    "reads_websocket",
]
