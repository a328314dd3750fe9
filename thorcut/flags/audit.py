"""The audit log's hash chain: each entry's hash covers its content and the previous hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

#: Fields of an audit entry, in the order they are written. ``hash`` is computed over the rest.
FIELDS = ("feature", "from", "to", "percent", "version", "by", "reason", "forced", "at", "prev_hash")

#: Fields hashed only when an entry has them, so entries written before they existed keep their
#: hashes: ``epoch`` (the store's epoch when written), ``reset`` (why the store looked reset when
#: this entry started a new epoch) and ``event`` (``restore`` for an entry recording a forced restore).
OPTIONAL = ("epoch", "reset", "event")


def entry_hash(fields: dict[str, str]) -> str:
    """Return the SHA-256 hex digest of the entry's fields (all but ``hash``), canonically encoded."""
    body = {name: fields.get(name, "") for name in FIELDS}
    body.update({name: fields[name] for name in OPTIONAL if name in fields})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One stored change, with its stream id."""

    id: str
    fields: dict[str, str]

    @property
    def feature(self) -> str:
        return self.fields.get("feature", "")

    @property
    def version(self) -> int:
        return int(self.fields.get("version", "0") or 0)

    @property
    def forced(self) -> bool:
        return self.fields.get("forced") == "1"

    def to_dict(self) -> dict[str, object]:
        f = self.fields
        return {
            "id": self.id,
            "feature": f.get("feature"),
            "from": f.get("from"),
            "to": f.get("to"),
            "percent": int(f.get("percent", "0") or 0),
            "version": self.version,
            "by": f.get("by"),
            "reason": f.get("reason"),
            "forced": self.forced,
            "at": f.get("at"),
            "prev_hash": f.get("prev_hash"),
            "hash": f.get("hash"),
            "epoch": f.get("epoch"),
            "reset": f.get("reset"),
            "event": f.get("event"),
        }


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`: ``broken`` names the first bad entry, if any."""

    checked: int
    broken_id: str | None = None
    problem: str = ""
    #: Why the log does not start at the store's genesis (docs/contracts.md, "The store's epoch,
    #: backup and restore"); "" when it does or the chain itself is broken.
    genesis: str = ""
    epoch: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problem and not self.genesis


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Recompute the chain over ``entries`` (oldest first) and report the first break."""
    prev = ""
    count = 0
    for entry in entries:
        count += 1
        stored = entry.fields.get("hash", "")
        if entry.fields.get("prev_hash", "") != prev:
            return ChainReport(count, entry.id, "prev_hash does not match the previous entry's hash")
        if entry_hash(entry.fields) != stored:
            return ChainReport(count, entry.id, "content does not match its hash (entry altered)")
        prev = stored
    return ChainReport(count)
