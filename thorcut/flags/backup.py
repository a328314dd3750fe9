"""Backing the flag store up to JSON Lines and restoring it (docs/contracts.md, "The store's
epoch, backup and restore").

A backup is a header line, then one object per key or audit entry: ``meta``, every ``flag`` and
``parity`` hash, every ``mismatches`` list, and the ``audit`` entries oldest first with their
stream ids. :func:`parse` checks a file completely (JSON, shapes, the counts the header
announces, the audit hash chain) before :func:`restore` writes anything, in one MULTI/EXEC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from thorcut.clock import now_iso
from thorcut.errors import StoreHasData, UsageError
from thorcut.flags.audit import AuditEntry, entry_hash, verify_chain
from thorcut.redisconn import Keys

FORMAT = "thorcut-backup"
VERSION = 1
KINDS = ("meta", "flag", "parity", "mismatches", "audit")
_ID = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")
_GLOB = re.compile(r"([*?\[\]\\])")


@dataclass
class Backup:
    """The store's data: every record by kind, in file order."""

    meta: dict[str, str] = field(default_factory=dict)
    flags: dict[str, dict[str, str]] = field(default_factory=dict)
    parity: dict[str, dict[str, str]] = field(default_factory=dict)
    mismatches: dict[str, list[str]] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"meta": 1 if self.meta else 0, "flag": len(self.flags), "parity": len(self.parity),
                "mismatches": len(self.mismatches), "audit": len(self.audit)}  # fmt: skip


def _pattern(keys: Keys, kind: str) -> str:
    return _GLOB.sub(r"\\\1", f"{keys.base}:{kind}:") + "*"


def _scan(client: redis.Redis, keys: Keys, kind: str) -> list[str]:
    cut = len(f"{keys.base}:{kind}:")
    return sorted(str(k)[cut:] for k in client.scan_iter(match=_pattern(keys, kind), count=1000))


def stored_keys(client: redis.Redis, keys: Keys) -> list[str]:
    """Return every key a backup covers that the store holds now."""
    found = [k for k in (keys.meta, keys.audit) if client.exists(k)]
    for kind, name in (("flag", keys.flag), ("parity", keys.parity), ("mismatches", keys.mismatches)):
        found += [name(f) for f in _scan(client, keys, kind)]
    return found


def read(client: redis.Redis, keys: Keys) -> Backup:
    """Read everything a backup holds in one MULTI/EXEC, so the copy is consistent."""
    names = {kind: _scan(client, keys, kind) for kind in ("flag", "parity", "mismatches")}
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.meta)
    pipe.xrange(keys.audit)
    for f in names["flag"]:
        pipe.hgetall(keys.flag(f))
    for f in names["parity"]:
        pipe.hgetall(keys.parity(f))
    for f in names["mismatches"]:
        pipe.lrange(keys.mismatches(f), 0, -1)
    meta, audit, *rest = pipe.execute()
    out = Backup(dict(meta), audit=[AuditEntry(i, dict(fields)) for i, fields in audit])
    for kind, target in (("flag", out.flags), ("parity", out.parity), ("mismatches", out.mismatches)):
        for f in names[kind]:
            value = rest.pop(0)
            if value:  # deleted between the scan and the read
                target[f] = value
    return out


def lines(backup: Backup, prefix: str) -> Iterable[str]:
    """Yield the file's lines (without newlines): the header, then one record per line."""
    header = {"format": FORMAT, "version": VERSION, "prefix": prefix, "written_at": now_iso(),
              "counts": backup.counts()}  # fmt: skip
    yield _dump(header)
    if backup.meta:
        yield _dump({"kind": "meta", "fields": backup.meta})
    for f, fields in backup.flags.items():
        yield _dump({"kind": "flag", "feature": f, "fields": fields})
    for f, fields in backup.parity.items():
        yield _dump({"kind": "parity", "feature": f, "fields": fields})
    for f, items in backup.mismatches.items():
        yield _dump({"kind": "mismatches", "feature": f, "items": items})
    for e in backup.audit:
        yield _dump({"kind": "audit", "id": e.id, "fields": e.fields})


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{what} must be an object of strings")
    return value


def parse(text_lines: Iterable[bytes], source: str) -> Backup:
    """Return the backup in ``text_lines``; raise :class:`UsageError` naming the line of the first
    problem (not JSON, a wrong header or record, a broken audit chain, fewer or more records than
    the header announces)."""
    out = Backup()
    header: dict[str, Any] | None = None
    line_of: dict[str, int] = {}
    number = 0
    for number, raw in enumerate(text_lines, 1):
        where = f"{source}, line {number}"
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("the line is cut short (no newline at the end: a truncated file?)")
            obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            if header is None:
                if obj.get("format") != FORMAT or obj.get("version") != VERSION:
                    raise ValueError(f'not a thorcut backup header (expected "format": "{FORMAT}", "version": 1)')
                counts = obj.get("counts")
                if (
                    not isinstance(counts, dict)
                    or set(counts) != set(KINDS)
                    or not all(type(v) is int and v >= 0 for v in counts.values())
                ):
                    raise ValueError(f"the header's counts must give a number for each of {', '.join(KINDS)}")
                header = obj
                continue
            _record(out, obj, number, line_of)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    if header is None:
        raise UsageError(f"{source}: empty file, not a thorcut backup")
    if out.counts() != header["counts"]:
        raise UsageError(
            f"{source}, line {number + 1}: the file ends with {out.counts()}, but its header announces "
            f"{header['counts']} (a truncated file?)"
        )
    report = verify_chain(out.audit)
    if not report.ok:
        raise UsageError(f"{source}, line {line_of[str(report.broken_id)]}: audit chain broken at entry "
                         f"{report.broken_id}: {report.problem}")  # fmt: skip
    return out


def _record(out: Backup, obj: dict[str, Any], number: int, line_of: dict[str, int]) -> None:
    kind = obj.get("kind")
    if kind == "meta":
        if out.meta:
            raise ValueError("a second meta record")
        out.meta = _strings(obj.get("fields"), "fields")
        if not out.meta.get("epoch"):
            raise ValueError('the meta record has no "epoch"')
        return
    if kind == "audit":
        entry_id, fields = obj.get("id"), _strings(obj.get("fields"), "fields")
        if not isinstance(entry_id, str) or not (match := _ID.match(entry_id)) or entry_id == "0-0":
            raise ValueError(f"audit id {entry_id!r} is not a stream id such as 1718000000000-0")
        if out.audit and _order(out.audit[-1].id) >= (int(match[1]), int(match[2])):
            raise ValueError(f"audit id {entry_id} does not come after {out.audit[-1].id}")
        if "hash" not in fields or fields["hash"] != entry_hash(fields):
            raise ValueError(f"audit entry {entry_id} does not match its hash (entry altered)")
        out.audit.append(AuditEntry(entry_id, fields))
        line_of[entry_id] = number
        return
    feature = obj.get("feature")
    if not isinstance(feature, str) or not feature:
        raise ValueError('a record needs a "feature" (non-empty text)')
    if kind in ("flag", "parity"):
        target = out.flags if kind == "flag" else out.parity
        fields = _strings(obj.get("fields"), "fields")
        if feature in target or not fields:
            raise ValueError(f"a second or empty {kind} record for {feature!r}")
        target[feature] = fields
    elif kind == "mismatches":
        items = obj.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise ValueError("mismatches items must be a non-empty list of strings")
        if feature in out.mismatches:
            raise ValueError(f"a second mismatches record for {feature!r}")
        out.mismatches[feature] = items
    else:
        raise ValueError(f"unknown record kind {kind!r} (expected one of {', '.join(KINDS)})")


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def restore(
    client: redis.Redis, keys: Keys, backup: Backup, *, force: bool, reason: str, operator: str
) -> tuple[list[str], str | None]:
    """Write ``backup`` into the store in one MULTI/EXEC; return (keys replaced, id of the audit entry
    recording a forced restore).

    Over a store with data it raises :class:`StoreHasData` unless ``force``; then the store's keys
    are replaced and an audit entry (``event`` = ``restore``) chained after the backup's records the
    reason. Watchers hear a notification for every restored flag.
    """
    with client.pipeline(transaction=True) as pipe:
        watched = [keys.meta, keys.audit, *(keys.flag(f) for f in backup.flags)]
        pipe.watch(*watched)  # type: ignore[no-untyped-call]
        present = stored_keys(client, keys)
        if present and not force:
            raise StoreHasData(
                f"the store under {keys.base} already has data ({len(present)} keys, e.g. {present[0]}); "
                "restoring over it needs --force --reason TEXT (recorded in the audit log)"
            )
        pipe.multi()
        if present:
            pipe.delete(*present)
        if backup.meta:
            pipe.hset(keys.meta, mapping=backup.meta)  # type: ignore[arg-type]
        for f, fields in backup.flags.items():
            pipe.hset(keys.flag(f), mapping=fields)  # type: ignore[arg-type]
        for f, fields in backup.parity.items():
            pipe.hset(keys.parity(f), mapping=fields)  # type: ignore[arg-type]
        for f, items in backup.mismatches.items():
            pipe.rpush(keys.mismatches(f), *items)
        for e in backup.audit:
            pipe.xadd(keys.audit, e.fields, id=e.id)  # type: ignore[arg-type]
        recorded = present and force
        if recorded:
            entry = _restore_entry(backup, reason, operator, len(present))
            pipe.xadd(keys.audit, entry)  # type: ignore[arg-type]
        for f, fields in backup.flags.items():
            notify = {"feature": f, "stage": fields.get("stage", "off"), "percent": _int(fields.get("percent")),
                      "version": _int(fields.get("version")), "epoch": fields.get("epoch", "")}  # fmt: skip
            pipe.publish(keys.changes, json.dumps(notify, separators=(",", ":")))
        try:
            replies = pipe.execute()
        except redis.WatchError:
            raise StoreHasData("the store changed while it was being restored; nothing was written — retry") from None
    audit_id = str(replies[-1 - len(backup.flags)]) if recorded else None
    return present, audit_id


def _restore_entry(backup: Backup, reason: str, operator: str, replaced: int) -> dict[str, str]:
    entry = {"feature": "", "from": "", "to": "", "percent": "0", "version": "0", "by": operator,
             "reason": f"restore over {replaced} keys: {reason}", "forced": "1", "at": now_iso(),
             "prev_hash": backup.audit[-1].fields["hash"] if backup.audit else "", "event": "restore"}  # fmt: skip
    if backup.meta.get("epoch"):
        entry["epoch"] = backup.meta["epoch"]
    entry["hash"] = entry_hash(entry)
    return entry


def _int(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0
