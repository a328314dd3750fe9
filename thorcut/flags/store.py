"""The flag store: read and change feature stages in Redis (docs/contracts.md, "Redis keys").

Every change is one Lua script that compare-and-sets the feature's ``version`` (and the store's
epoch, the audit chain head, and for ``enable`` the PASS verdict it relied on), writes the flag
hash, appends the hash-chained audit entry and publishes on ``{prefix}:changes``; the store's
first change also writes ``{prefix}:meta`` (thorcut/flags/epoch.py). Either all of that happens
or none of it; a lost race is retried from a fresh read, or reported as stale when the caller
pinned ``expect_version``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from thorcut.clock import now_iso
from thorcut.errors import NotReplicated, StaleVersion, StoreWasReset, UsageError
from thorcut.flags.audit import AuditEntry, ChainReport, entry_hash, verify_chain
from thorcut.flags.epoch import GENESIS, StoreEpoch, genesis_problem, new_epoch, read_epoch
from thorcut.flags.plan import Plan, Request, plan_change
from thorcut.flags.stages import Stage
from thorcut.flags.state import FlagState, check_text
from thorcut.verdict import ParityRecord

__all__ = ["FlagStore", "Outcome"]
from thorcut.redisconn import Keys

_COMMIT = """
local p = cjson.decode(ARGV[1])
local epoch = redis.call('HGET', KEYS[2], 'epoch') or ''
if epoch ~= p.epoch then return {'epoch', epoch} end
local head = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local f = last[1][2]
  for i = 1, #f, 2 do if f[i] == 'hash' then head = f[i + 1] end end
end
if head ~= p.head then return {'chain', head} end
for i, c in ipairs(p.changes) do
  local v = tonumber(redis.call('HGET', KEYS[2 * i + 1], 'version') or '0')
  if v ~= c.expect then return {'stale', c.feature, tostring(v)} end
  if c.evidence then
    local e = redis.call('HMGET', KEYS[2 * i + 2], 'verdict', 'judged_at')
    if e[1] ~= 'PASS' or e[2] ~= c.evidence then return {'evidence', c.feature} end
  end
end
if p.new_epoch then redis.call('HSET', KEYS[2], 'epoch', p.new_epoch, 'created_at', p.at) end
local ids = {}
for i, c in ipairs(p.changes) do
  redis.call('HSET', KEYS[2 * i + 1], unpack(c.flag))
  ids[i] = redis.call('XADD', KEYS[1], '*', unpack(c.audit))
end
for i, c in ipairs(p.changes) do redis.call('PUBLISH', p.channel, c.notify) end
return {'ok', unpack(ids)}
"""

#: How many times a change is re-planned after losing a race before giving up.
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class Outcome:
    """What a change did (or, with ``dry_run``, would do)."""

    before: FlagState
    after: FlagState
    forced: bool = False
    entry_id: str | None = None
    dry_run: bool = False
    #: Set when this change started the store's epoch over a reset store: why it looked reset.
    reset: str | None = None

    @property
    def changed(self) -> bool:
        return (self.before.stage, self.before.percent) != (self.after.stage, self.after.percent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.before.feature,
            "from": self.before.stage.value,
            "to": self.after.stage.value,
            "percent": self.after.percent,
            "version": self.after.version,
            "changed": self.changed,
            "forced": self.forced,
            "dry_run": self.dry_run,
            "audit_id": self.entry_id,
        }


@dataclass
class FlagStore:
    """Reads and changes stages for the features of one manifest in one Redis."""

    client: redis.Redis
    keys: Keys
    features: tuple[str, ...]
    operator: str = "unknown"
    validity: float = 24 * 3600.0
    #: Replicas that must acknowledge each change (Redis ``WAIT``) before it is reported done, and
    #: how long to wait for them (a Redis URL's ``wait_replicas``/``wait_timeout``: redisurl.py).
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    _commit: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._commit = self.client.register_script(_COMMIT)

    # -- reading ------------------------------------------------------------------------

    def read(self, feature: str) -> FlagState:
        """Return the stored state of ``feature``."""
        raw: Any = self.client.hgetall(self.keys.flag(feature))
        return FlagState.from_hash(feature, raw)

    def read_all(self) -> dict[str, FlagState]:
        """Return every feature's state in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name in self.features:
            pipe.hgetall(self.keys.flag(name))
        return {n: FlagState.from_hash(n, d) for n, d in zip(self.features, pipe.execute(), strict=True)}

    def parity(self, feature: str) -> ParityRecord:
        """Return the stored parity verdict of ``feature`` (``verdict`` None if none)."""
        raw: Any = self.client.hgetall(self.keys.parity(feature))
        return ParityRecord.from_hash(raw)

    def parity_all(self) -> dict[str, ParityRecord]:
        pipe = self.client.pipeline(transaction=False)
        for name in self.features:
            pipe.hgetall(self.keys.parity(name))
        return {n: ParityRecord.from_hash(d) for n, d in zip(self.features, pipe.execute(), strict=True)}

    def record_parity(self, feature: str, record: ParityRecord, examples: list[str], *, limit: int = 1000) -> None:
        """Replace ``feature``'s verdict hash with ``record`` and push ``examples`` (JSON, newest
        first) onto its bounded mismatch list, in one transaction."""
        if feature not in self.features:
            raise UsageError(f"unknown feature {feature!r}; valid features: {', '.join(self.features)}")
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.parity(feature))
        pipe.hset(self.keys.parity(feature), mapping=record.to_hash())  # type: ignore[arg-type]
        if examples:
            pipe.lpush(self.keys.mismatches(feature), *examples)
            pipe.ltrim(self.keys.mismatches(feature), 0, limit - 1)
        pipe.execute()

    def mismatches(self, feature: str, count: int = 20) -> list[str]:
        """Return up to ``count`` recent mismatch examples of ``feature`` (JSON text, newest first)."""
        raw: Any = self.client.lrange(self.keys.mismatches(feature), 0, count - 1)
        return list(raw)

    # -- changing -----------------------------------------------------------------------

    def change(
        self,
        feature: str,
        to: Stage,
        *,
        percent: int | None = None,
        reason: str = "",
        force: bool = False,
        expect_version: int | None = None,
        dry_run: bool = False,
        rollback: bool = False,
    ) -> Outcome:
        """Move ``feature`` to ``to`` atomically and return what happened.

        With ``rollback`` (``thorcut disable``) the move is only ever live|complete → shadow:
        a feature that is ``off`` is refused, because a rollback never starts broadcasting.

        Raises :class:`TransitionRefused` for a move the stage machine forbids,
        :class:`EvidenceRefused` when entering ``live`` without a valid PASS (unless ``force``),
        :class:`StaleVersion` when ``expect_version`` is not the stored version, and
        :class:`StoreWasReset` on a reset store (data but no ``meta``) unless ``force`` or
        ``rollback`` — and always with ``expect_version``, which cannot be checked across a reset.
        """
        check_text(reason, "--reason")
        if force and not reason.strip():
            raise UsageError("--force needs --reason explaining why the parity gate (or a reset store) is overridden")
        if percent is not None and not 0 <= percent <= 100:
            raise UsageError(f"percent must be between 0 and 100, not {percent}")
        outcomes = self._apply([Request(feature, to, percent, rollback)], reason, force, expect_version, dry_run)
        return outcomes[0]

    def rollback_all(self, *, reason: str = "", dry_run: bool = False) -> list[Outcome]:
        """Move every live or complete feature back to shadow in one atomic step."""
        check_text(reason, "--reason")
        current = self.read_all()
        wanted = [
            Request(f, Stage.SHADOW, rollback=True)
            for f, s in current.items()
            if s.stage in (Stage.LIVE, Stage.COMPLETE)
        ]
        if not wanted:
            return []
        return self._apply(wanted, reason, False, None, dry_run, only_if_still_rollbackable=True)

    def _apply(
        self,
        requests: list[Request],
        reason: str,
        force: bool,
        expect_version: int | None,
        dry_run: bool,
        only_if_still_rollbackable: bool = False,
    ) -> list[Outcome]:
        for _attempt in range(MAX_ATTEMPTS):
            epoch = read_epoch(self.client, self.keys, self.features)
            head = self._chain_head()
            pipe = self.client.pipeline(transaction=False)
            for r in requests:
                pipe.hgetall(self.keys.flag(r.feature))
                pipe.hgetall(self.keys.parity(r.feature))
            raw = pipe.execute()
            if epoch.reset:
                self._check_reset(epoch, requests, force, expect_version, dry_run)
            plans: list[Plan] = []
            for i, r in enumerate(requests):
                before = FlagState.from_hash(r.feature, raw[2 * i])
                if expect_version is not None and before.version != expect_version:
                    raise StaleVersion(
                        f"{r.feature} is at version {before.version}, not {expect_version}; "
                        "read `thorcut status` and retry",
                        current=before.version,
                    )
                if only_if_still_rollbackable and before.stage not in (Stage.LIVE, Stage.COMPLETE):
                    continue
                plans.append(
                    plan_change(r, before, ParityRecord.from_hash(raw[2 * i + 1]), force=force, validity=self.validity)
                )
            if epoch.reset and force:  # the reset was overridden: that is recorded as forced
                plans = [replace(p, forced=True) if p.changes else p for p in plans]
            pending = [p for p in plans if p.changes]
            if dry_run or not pending:
                return [Outcome(p.before, p.after, p.forced, None, dry_run) for p in plans]
            ids = self._commit_plans(pending, head, reason, epoch)
            if ids is not None:
                by_feature = dict(zip((p.before.feature for p in pending), ids, strict=True))
                why = epoch.problem(self.keys) if epoch.reset else None
                return [
                    Outcome(p.before, p.after, p.forced, by_feature.get(p.before.feature), reset=why) for p in plans
                ]
        raise StaleVersion("gave up after losing the race for this change too many times; retry", current=-1)

    def _check_reset(
        self, epoch: StoreEpoch, requests: list[Request], force: bool, expect_version: int | None, dry_run: bool
    ) -> None:
        """Refuse a change on a reset store unless it is acknowledged (docs/contracts.md, "The
        store's epoch, backup and restore"): a rollback goes through (it is never gated), anything
        else needs ``--force --reason``, and ``--expect-version`` is refused outright — a version
        read before the reset says nothing about the store now."""
        problem = epoch.problem(self.keys)
        fix = "restore a backup (`thorcut restore FILE`), or check `thorcut status` and"
        if expect_version is not None:
            raise StoreWasReset(
                f"{problem}; --expect-version {expect_version} cannot be checked across a reset — {fix} "
                "retry without --expect-version"
            )
        if dry_run or force or all(r.rollback for r in requests):
            return
        raise StoreWasReset(
            f"{problem}; refusing to change it as if nothing happened — {fix} acknowledge the reset with "
            "--force --reason TEXT (recorded in the audit log; the change starts a new epoch)"
        )

    def _commit_plans(
        self, plans: list[Plan], head: str, reason: str, epoch: StoreEpoch | None = None
    ) -> list[str] | None:
        """Run the script; return the new audit ids, or None if a race was lost (re-plan).

        ``epoch`` is the store's epoch the plans were made on (read now if not given). On a store
        without one, the commit starts a new epoch; over a reset store the first entry says why.
        """
        if epoch is None:
            epoch = read_epoch(self.client, self.keys, self.features)
        at = now_iso()
        started = new_epoch() if epoch.epoch is None else None
        current = epoch.epoch or started or ""
        reset = epoch.problem(self.keys) if epoch.reset else None
        changes = []
        prev = head
        keys = [self.keys.audit, self.keys.meta]
        for p in plans:
            before, after = p.before, p.after
            audit = {
                "feature": after.feature,
                "from": before.stage.value,
                "to": after.stage.value,
                "percent": str(after.percent),
                "version": str(after.version),
                "by": self.operator,
                "reason": reason,
                "forced": "1" if p.forced else "0",
                "at": at,
                "prev_hash": prev,
                "epoch": current,
            }
            if reset:
                audit["reset"], reset = reset, None  # recorded once, on the epoch's first entry
            audit["hash"] = prev = entry_hash(audit)
            flag = {
                "stage": after.stage.value,
                "percent": str(after.percent),
                "version": str(after.version),
                "updated_at": at,
                "updated_by": self.operator,
                "reason": reason,
                "epoch": current,
            }
            notify = {
                "feature": after.feature,
                "stage": after.stage.value,
                "percent": after.percent,
                "version": after.version,
                "epoch": current,
            }
            change: dict[str, Any] = {
                "feature": after.feature,
                "expect": before.version,
                "flag": [x for kv in flag.items() for x in kv],
                "audit": [x for kv in audit.items() for x in kv],
                "notify": json.dumps(notify, separators=(",", ":")),
            }
            if p.evidence is not None:
                change["evidence"] = p.evidence
            changes.append(change)
            keys += [self.keys.flag(after.feature), self.keys.parity(after.feature)]
        payload: dict[str, Any] = {"head": head, "channel": self.keys.changes, "changes": changes,
                                   "epoch": epoch.epoch or "", "at": at}  # fmt: skip
        if started is not None:
            payload["new_epoch"] = started
        if not self.wait_replicas:
            reply = self._commit(keys=keys, args=[json.dumps(payload)])
        else:  # WAIT counts the writes of its own connection: script and WAIT share one pipeline
            pipe = self.client.pipeline(transaction=False)
            self._commit(keys=keys, args=[json.dumps(payload)], client=pipe)
            pipe.execute_command("WAIT", self.wait_replicas, max(1, round(self.wait_timeout * 1000)))  # type: ignore[no-untyped-call]
            reply, acked = pipe.execute()
            if reply[0] == "ok" and int(acked) < self.wait_replicas:
                raise NotReplicated(
                    f"{', '.join(f'{p.after.feature} → {p.after.stage.value}' for p in plans)} is written on the "
                    f"Redis primary, but {acked} of the {self.wait_replicas} replica(s) asked for acknowledged it "
                    f"within {self.wait_timeout:g} s: if the primary fails before they catch up, the change can be "
                    "lost — check the replicas, then `thorcut status` (and re-run the command if it is gone)"
                )
        if reply[0] == "ok":
            return [str(x) for x in reply[1:]]
        return None  # 'epoch', 'chain', 'stale' or 'evidence': someone else wrote first; re-read and re-plan

    def _chain_head(self) -> str:
        last: Any = self.client.xrevrange(self.keys.audit, count=1)
        return str(last[0][1].get("hash", "")) if last else ""

    # -- audit log ----------------------------------------------------------------------

    def history(self, feature: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Return audit entries, newest first, optionally only ``feature``'s, at most ``limit``."""
        out: list[AuditEntry] = []
        upper = "+"
        while limit is None or len(out) < limit:
            page: Any = self.client.xrevrange(self.keys.audit, max=upper, min="-", count=500)
            if not page:
                break
            for entry_id, fields in page:
                if feature is None or fields.get("feature") == feature:
                    out.append(AuditEntry(entry_id, fields))
                    if limit is not None and len(out) >= limit:
                        break
            upper = "(" + page[-1][0]
        return out

    def iter_audit(self, page_size: int = 1000) -> Iterator[AuditEntry]:
        """Yield every audit entry, oldest first, reading in pages."""
        lower = "-"
        while True:
            page: Any = self.client.xrange(self.keys.audit, min=lower, max="+", count=page_size)
            yield from (AuditEntry(i, f) for i, f in page)
            if len(page) < page_size:
                return
            lower = "(" + page[-1][0]

    def epoch(self) -> StoreEpoch:
        """Return what ``{prefix}:meta`` and a cheap look at the data say about the store's epoch."""
        return read_epoch(self.client, self.keys, self.features)

    def verify(self) -> ChainReport:
        """Recompute the audit chain and check that it starts at the store's genesis; the report
        names the first broken entry, or says why the log does not start at the genesis."""
        report = verify_chain(self.iter_audit())
        epoch = self.epoch()
        if not report.ok:
            return report
        entry_id, why = genesis_problem(self.iter_audit(), epoch, self.keys)
        genesis = f"{GENESIS}: {why}" if why else ""
        return ChainReport(report.checked, entry_id if genesis else None, "", genesis, epoch.epoch)

    # -- workers and acknowledgements (``--wait``) ------------------------------------------

    def live_workers(self, now: float | None = None) -> list[str]:
        """Return the ids of workers whose registration has not lapsed."""
        return [str(w) for w in self.client.zrangebyscore(self.keys.workers, now or time.time(), "+inf")]

    def worker_overrides(self) -> dict[str, dict[str, str]]:
        """Return, for each live worker with env overrides, ``{feature: forced stage}``."""
        live = set(self.live_workers())
        raw: Any = self.client.hgetall(self.keys.overrides)
        out: dict[str, dict[str, str]] = {}
        for worker, blob in raw.items():
            try:
                forced = json.loads(blob)
            except ValueError:
                continue
            if worker in live and isinstance(forced, dict):
                out[str(worker)] = {str(k): str(v) for k, v in forced.items()}
        return out

    def acks(self, feature: str, version: int) -> dict[str, float]:
        """Return worker id -> Unix time it applied ``version`` of ``feature``."""
        raw: Any = self.client.hgetall(self.keys.ack(feature, version))
        return {str(w): float(t) for w, t in raw.items()}
