"""The store's epoch: telling a store Redis lost or replaced from one that kept its history.

``{prefix}:meta`` holds ``epoch`` (a random id) and ``created_at``; the commit script writes it
atomically with the store's first change, and every later change, flag hash, audit entry and
notification carries the epoch (docs/contracts.md, "The store's epoch, backup and restore").
A store that holds flags or an audit log but no ``meta`` has been **reset**: Redis lost its data
or it was replaced by something thorcut did not write.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from thorcut.flags.audit import AuditEntry
from thorcut.redisconn import Keys

GENESIS = "the audit log does not start at the store's genesis"


def new_epoch() -> str:
    """Return a fresh epoch id (16 random hex digits)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class StoreEpoch:
    """What ``{prefix}:meta`` and a cheap look at the data say about the store."""

    epoch: str | None  # None: there is no meta
    created_at: str = ""
    has_flags: bool = False
    audit_len: int = 0
    newest_epoch: str | None = None  # the newest audit entry's epoch ("" if it has none)
    #: epochs whose stages registered backend workers hold ({prefix}:epochs, live workers only)
    held: frozenset[str] = frozenset()

    @property
    def has_data(self) -> bool:
        return self.has_flags or self.audit_len > 0

    @property
    def reset(self) -> bool:
        """Whether the store was reset in the sense that gates a change: no ``meta``, but data, or
        backend workers that hold the stages of an epoch (Redis lost everything)."""
        return self.epoch is None and (self.has_data or bool(self.held))

    def problem(self, keys: Keys) -> str | None:
        """Return why the store looks reset or damaged, or None when it looks whole."""
        held = ", ".join(sorted(self.held))
        if self.epoch is None:
            if self.has_data:
                return (
                    f"the store holds flags or an audit log but no {keys.meta}: Redis lost or replaced its data "
                    "(or it was written by a thorcut older than the epoch)"
                )
            if self.held:
                return (f"the store is empty, but backend workers hold the stages of epoch {held}: Redis lost "
                        "its data")  # fmt: skip
            return None
        if self.held - {self.epoch}:
            others = ", ".join(sorted(self.held - {self.epoch}))
            return (f"backend workers hold the stages of epoch {others}, but the store has epoch {self.epoch}: "
                    "it was reset since they read it")  # fmt: skip
        if self.audit_len == 0:
            return f"{keys.meta} says the store had changes (epoch {self.epoch}), but its audit log is empty"
        if self.newest_epoch != self.epoch:
            return (
                f"the newest audit entry belongs to epoch {self.newest_epoch or '(none)'}, "
                f"not to the store's epoch {self.epoch}"
            )
        return None

    def to_dict(self, keys: Keys) -> dict[str, Any]:
        problem = self.problem(keys)
        return {"epoch": self.epoch, "created_at": self.created_at or None, "reset": problem is not None,
                "problem": problem}  # fmt: skip


def read_epoch(client: redis.Redis, keys: Keys, features: Iterable[str]) -> StoreEpoch:
    """Read ``meta``, the audit log's length and newest entry, and whether any flag exists, in one
    round trip."""
    names = list(features)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.meta)
    pipe.xlen(keys.audit)
    pipe.xrevrange(keys.audit, count=1)
    pipe.hgetall(keys.epochs)
    pipe.zrangebyscore(keys.workers, time.time(), "+inf")
    for name in names:
        pipe.exists(keys.flag(name))
    meta, length, newest, epochs, live, *flags = pipe.execute()
    return StoreEpoch(
        meta.get("epoch") if meta else None,
        meta.get("created_at", "") if meta else "",
        any(flags),
        int(length),
        str(newest[0][1].get("epoch", "")) if newest else None,
        frozenset(str(e) for w, e in epochs.items() if w in set(live) and e),
    )


def genesis_problem(entries: Iterable[AuditEntry], state: StoreEpoch, keys: Keys) -> tuple[str | None, str]:
    """Return ``(entry id or None, why)`` when the audit log does not start at the store's genesis,
    else ``(None, "")``.

    The store's epoch begins at the first entry that carries it. That entry must be the first of
    the log (``prev_hash`` empty) or a recorded reset (it has ``reset``); every entry after it must
    carry the same epoch. A store without ``meta`` passes only when it holds nothing at all.
    """
    if state.epoch is None:
        return (None, state.problem(keys) or "") if state.reset else (None, "")
    first: AuditEntry | None = None
    seen = 0
    for entry in entries:
        seen += 1
        epoch = entry.fields.get("epoch", "")
        if first is None:
            if epoch != state.epoch:
                continue
            first = entry
            if entry.fields.get("prev_hash") and "reset" not in entry.fields:
                return entry.id, (
                    f"epoch {state.epoch} begins at entry {entry.id}, which is neither the first entry of the log "
                    "nor a recorded reset"
                )
        elif epoch != state.epoch:
            return entry.id, f"entry {entry.id} belongs to epoch {epoch or '(none)'}, not the store's {state.epoch}"
    if first is None:
        if seen == 0:
            return None, f"{keys.meta} says the store had changes (epoch {state.epoch}), but the audit log is empty"
        return None, f"no audit entry belongs to the store's epoch {state.epoch}"
    return None, ""
