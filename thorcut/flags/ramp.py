"""A ramp's state in Redis: ``{prefix}:ramp:<feature>`` (docs/contracts.md, "Guard and ramp").

``thorcut ramp`` raises a feature's percent step by step; this hash says which step it is at,
when the next is due, what a holding step waits for, and who runs it, so that ``status`` shows it
from any terminal and a ramp that stopped can be resumed or abandoned. Every write is one Lua
script: :meth:`RampStore.claim` takes the ramp (compare-and-set on the state it judged), and
:meth:`RampStore.write` — progress, heartbeat and the end — goes through only for the owner's
token while the ramp runs; :meth:`RampStore.abort` may come from anyone.

One ramp per feature: a claim is refused while the owner's heartbeat (every
:data:`HEARTBEAT_S`, written with Redis' clock) is younger than :data:`LEASE_S`, unless the owner
is a process of this host that no longer exists. A ramp whose owner is gone reads as
``interrupted``.

Fields, all text: ``feature``, ``steps`` ("10,25,50,100"), ``hold_s``, ``index`` (the current step,
1-based), ``percent`` (its percent), ``status`` (:data:`STATUSES`), ``step_started`` and ``next_due``
(Unix seconds; empty before the step is taken), ``why`` (what a holding step waits for, or why the
ramp stopped), ``owner`` (JSON ``{"host", "pid", "token"}``), ``heartbeat`` (Unix seconds),
``started_by``, ``started_at`` (ISO), ``reason``, ``flag_version`` (the feature's version after
the ramp's last change of it: any other version means someone else changed it).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from thorcut.errors import RampRunning, Refused, UsageError
from thorcut.flags.state import FlagState
from thorcut.redisconn import Keys

__all__ = ["Beat", "Owner", "RampState", "RampStore", "format_span", "parse_hold", "parse_steps"]

RUNNING, HOLDING, FAILED, DONE, ABORTED, INTERRUPTED = "running", "holding", "failed", "done", "aborted", "interrupted"
STATUSES = (RUNNING, HOLDING, FAILED, DONE, ABORTED, INTERRUPTED)
#: a ramp in these has an owner that writes its progress
ACTIVE = frozenset({RUNNING, HOLDING})
#: a ramp in these is over: a new ramp of the feature replaces it
ENDED = frozenset({FAILED, DONE, ABORTED})

#: seconds between the owner's heartbeats, and how old the last may be before the owner counts as gone
HEARTBEAT_S = 1.0
LEASE_S = 3.0

#: bounds of --hold (seconds)
MAX_HOLD_S = 7 * 86400.0

# The owner's writes: only its token, and only while the ramp runs (an abort ends it for good).
# Returns what the owner must know: the feature's flag as stored, read in the same script.
_WRITE = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'owner', 'why')
if not cur[1] then return {'gone'} end
local ok, owner = pcall(cjson.decode, cur[2] or '')
if not ok or type(owner) ~= 'table' or owner.token ~= ARGV[1] then return {'lost', cur[2] or ''} end
if cur[1] ~= 'running' and cur[1] ~= 'holding' then return {'ended', cur[1], cur[3] or ''} end
local t = redis.call('TIME')
local beat = string.format('%s.%06d', t[1], tonumber(t[2]))
redis.call('HSET', KEYS[1], 'heartbeat', beat, unpack(cjson.decode(ARGV[2])))
local f = redis.call('HMGET', KEYS[2], 'stage', 'percent', 'version', 'updated_by', 'reason')
return {'ok', beat, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or ''}
"""

# Take the ramp: only if it is still in the state the claim was judged on (status, owner, heartbeat).
_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'owner', 'heartbeat')
if (cur[1] or '') ~= ARGV[1] or (cur[2] or '') ~= ARGV[2] or (cur[3] or '') ~= ARGV[3] then return {'race'} end
local t = redis.call('TIME')
local beat = string.format('%s.%06d', t[1], tonumber(t[2]))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'heartbeat', beat, unpack(cjson.decode(ARGV[4])))
return {'ok', beat}
"""

# Give a claim back (the owner's token only): the hash as it was before the claim, or none.
_RELEASE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local ok, o = pcall(cjson.decode, owner or '')
if not ok or type(o) ~= 'table' or o.token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local fields = cjson.decode(ARGV[2])
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
return 1
"""

_ABORT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'none'} end
if status ~= 'running' and status ~= 'holding' and status ~= 'interrupted' then return {'ended', status} end
redis.call('HSET', KEYS[1], 'status', 'aborted', 'why', ARGV[1])
return {'ok', status}
"""


# -- the values people give ---------------------------------------------------------------------

_STEPS_EXAMPLE = "such as --steps 10,25,50,100"
_SPAN = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)", re.ASCII)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_steps(text: str) -> tuple[int, ...]:
    """Return the percents of ``--steps`` ("10,25,50,100"): ascending, unique, whole, 1 to 100.
    Raises :class:`UsageError` (exit 2) with an example."""
    parts = [p.strip() for p in text.split(",")]
    bad = next((p for p in parts if not (p.isascii() and p.isdigit() and 1 <= int(p) <= 100)), None)
    if bad is not None:
        what = "an empty step" if bad == "" else repr(bad)
        raise UsageError(f"--steps must be whole percents from 1 to 100 separated by commas, {_STEPS_EXAMPLE}; "
                         f"{what} is not one")  # fmt: skip
    steps = tuple(int(p) for p in parts)
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise UsageError(f"--steps must rise, each percent once, {_STEPS_EXAMPLE}; not {text.strip()!r}")
    return steps


def parse_hold(text: str) -> float:
    """Return the seconds of ``--hold``: ``90``, ``90s``, ``5m``, ``1h``, ``1m30s`` (more than 0, at most
    7 days). Raises :class:`UsageError` (exit 2) with an example."""
    raw = text.strip().lower()
    example = "such as --hold 90, 90s, 5m, 1h or 1m30s"
    seconds: float | None = None
    if re.fullmatch(r"\d+(?:\.\d+)?", raw, re.ASCII):
        seconds = float(raw)
    elif raw and "".join(m.group() for m in _SPAN.finditer(raw)) == raw:
        units = [m.group(2) for m in _SPAN.finditer(raw)]
        if units == sorted(set(units), key=list(_UNITS).index):  # each unit once, largest first
            seconds = sum(float(m.group(1)) * _UNITS[m.group(2)] for m in _SPAN.finditer(raw))
    if seconds is None or not math.isfinite(seconds):
        raise UsageError(f"--hold must be a duration, {example}; not {text!r}")
    if not 0 < seconds <= MAX_HOLD_S:
        raise UsageError(f"--hold must be more than 0 and at most 7 days, {example}; not {text!r}")
    return seconds


def format_span(seconds: float) -> str:
    """Return ``seconds`` for people: ``45s``, ``3m 10s``, ``1h 5m``, ``2d 3h`` (``0.5s`` below 10 s)."""
    tenths = round(max(seconds, 0.0), 1)
    if tenths < 10 and tenths != int(tenths):
        return f"{tenths:.1f}s"
    left = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


# -- the state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The process running a ramp: its host and pid, and a token no other process knows."""

    host: str
    pid: int
    token: str

    @classmethod
    def here(cls) -> Owner:
        import secrets  # only a ramp that runs needs one (``status`` reads ramps, and starts fast)

        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    @classmethod
    def from_text(cls, text: str) -> Owner | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), str(data["token"]))
        except (ValueError, TypeError, KeyError):
            return None

    def to_text(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "token": self.token}, separators=(",", ":"))

    def gone(self) -> bool:
        """True when the owner was a process of this host that no longer runs (a zombie counts as gone)."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # someone else's process: it exists
            return False
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return False

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True)
class RampState:
    """One feature's ramp as stored (see the module docstring for the fields)."""

    feature: str
    steps: tuple[int, ...]
    hold_s: float
    index: int = 1
    status: str = RUNNING
    step_started: float | None = None
    next_due: float | None = None
    why: str = ""
    owner: Owner | None = None
    heartbeat: float | None = None
    started_by: str = ""
    started_at: str = ""
    reason: str = ""
    flag_version: int = 0

    @property
    def percent(self) -> int:
        return self.steps[self.index - 1]

    @property
    def next_percent(self) -> int | None:
        return self.steps[self.index] if self.index < len(self.steps) else None

    @property
    def step(self) -> str:
        """``2/4``"""
        return f"{self.index}/{len(self.steps)}"

    @classmethod
    def from_hash(cls, feature: str, data: Mapping[str, str]) -> RampState | None:
        """Build from the stored hash; None when there is none (or it is not a ramp's)."""
        if not data:
            return None
        try:
            steps = tuple(int(p) for p in data.get("steps", "").split(","))
            index = min(max(1, int(data.get("index", "1"))), len(steps))
            hold = float(data.get("hold_s", "0"))
        except ValueError:
            return None
        status = data.get("status", "")
        return cls(
            feature,
            steps,
            hold,
            index,
            status if status in STATUSES else INTERRUPTED,
            _float(data.get("step_started")),
            _float(data.get("next_due")),
            data.get("why", ""),
            Owner.from_text(data.get("owner", "")),
            _float(data.get("heartbeat")),
            data.get("started_by", ""),
            data.get("started_at", ""),
            data.get("reason", ""),
            int(data["flag_version"]) if data.get("flag_version", "").isdigit() else 0,
        )

    def to_hash(self) -> dict[str, str]:
        """The fields to store (``heartbeat`` is written by the scripts, with Redis' clock)."""
        return {
            "feature": self.feature,
            "steps": ",".join(str(s) for s in self.steps),
            "hold_s": f"{self.hold_s:g}",
            "index": str(self.index),
            "percent": str(self.percent),
            "status": self.status,
            "step_started": _text(self.step_started),
            "next_due": _text(self.next_due),
            "why": self.why,
            "owner": self.owner.to_text() if self.owner else "",
            "started_by": self.started_by,
            "started_at": self.started_at,
            "reason": self.reason,
            "flag_version": str(self.flag_version),
        }

    def owner_gone(self, now: float) -> bool:
        """True when the ramp should be running but its owner has stopped heartbeating (or, on
        this host, no longer exists)."""
        if self.status not in ACTIVE:
            return False
        if self.heartbeat is None or now - self.heartbeat > LEASE_S:
            return True
        return self.owner is not None and self.owner.gone()

    def effective_status(self, now: float) -> str:
        """The status, with a running ramp whose owner is gone read as ``interrupted``."""
        return INTERRUPTED if self.owner_gone(now) else self.status

    def describe(self, now: float) -> str:
        """One line for ``status``: "ramping 25 % → 50 % in 3m 10s", "holding at 25 %: …", …"""
        status = self.effective_status(now)
        at = f"{self.percent} %"
        if status == RUNNING:
            if self.next_due is None:
                return f"ramp starting at {at}" + (f": {self.why}" if self.why else "")
            left = format_span(max(0.0, self.next_due - now))
            nxt = self.next_percent
            return f"ramping {at} → {nxt} % in {left}" if nxt is not None else f"ramping at {at}, done in {left}"
        if status == HOLDING:
            return f"holding at {at}: {self.why}" if self.why else f"holding at {at}"
        if status == INTERRUPTED:
            return f"ramp interrupted at {at} (thorcut ramp {self.feature} --resume)"
        if status == FAILED:
            return f"ramp failed at {at}: {self.why}"
        if status == DONE:
            return f"ramp done ({at})"
        return f"ramp aborted at {at}" + (f": {self.why}" if self.why else "")

    def to_dict(self, now: float) -> dict[str, Any]:
        """The ``ramp`` object of ``status --json``."""
        return {
            "status": self.effective_status(now),
            "stored_status": self.status,
            "steps": list(self.steps),
            "hold_s": self.hold_s,
            "index": self.index,
            "percent": self.percent,
            "next_percent": self.next_percent,
            "step_started": self.step_started,
            "next_due": self.next_due,
            "due_in_s": round(max(0.0, self.next_due - now), 3) if self.next_due is not None else None,
            "why": self.why or None,
            "owner": {"host": self.owner.host, "pid": self.owner.pid} if self.owner else None,
            "heartbeat_age_s": round(now - self.heartbeat, 3) if self.heartbeat is not None else None,
            "started_by": self.started_by or None,
            "started_at": self.started_at or None,
            "reason": self.reason or None,
            "flag_version": self.flag_version or None,
            "text": self.describe(now),
        }


@dataclass(frozen=True)
class Beat:
    """What an owner's write found: ``ok`` (written; ``flag`` is the feature as stored), ``lost``
    (another process holds the ramp: ``holder``), ``ended`` (someone ended it: ``status``, ``why``)
    or ``gone`` (the hash was deleted)."""

    kind: str
    heartbeat: float | None = None
    flag: FlagState | None = None
    status: str = ""
    why: str = ""
    holder: Owner | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class RampStore:
    """Reads and writes the ramps of one store (``{prefix}:ramp:<feature>``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._write = client.register_script(_WRITE)
        self._claim = client.register_script(_CLAIM)
        self._abort = client.register_script(_ABORT)
        self._release = client.register_script(_RELEASE)

    def read(self, feature: str) -> RampState | None:
        raw: Any = self.client.hgetall(self.keys.ramp(feature))
        return RampState.from_hash(feature, raw)

    def now(self) -> float:
        """Redis' clock (heartbeats are written with it, so owners on other hosts agree)."""
        secs, micros = self.client.time()
        return float(secs) + float(micros) / 1e6

    def claim(
        self, feature: str, build: Callable[[RampState | None], RampState], *, resume: bool, attempts: int = 20
    ) -> tuple[RampState, dict[str, str]]:
        """Take the ramp of ``feature``; return it as stored, and the hash it replaced (for
        :meth:`release`).

        ``build`` is given the current state (None: no ramp, or one that ended) and returns the
        state to store (its ``owner`` is the new owner); it may raise to refuse. Without ``resume``
        a ramp that ended is replaced; with it, only a ramp that was interrupted (or whose owner is
        gone) is taken over. Raises :class:`RampRunning` (exit 3) while another owner's heartbeat is
        fresh, or when a ramp must be resumed or aborted first, and :class:`Refused` when there is
        nothing to resume.
        """
        for _ in range(attempts):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.ramp(feature))
            pipe.time()
            raw, (secs, micros) = pipe.execute()
            now = float(secs) + float(micros) / 1e6
            current = RampState.from_hash(feature, raw)
            self._check_claim(feature, current, now, resume=resume)
            new = build(current if current is not None and current.status not in ENDED else None)
            fields = new.to_hash()
            fields.pop("heartbeat", None)
            expected = [raw.get("status", ""), raw.get("owner", ""), raw.get("heartbeat", "")]
            flat = [x for kv in fields.items() for x in kv]
            reply: Any = self._claim(keys=[self.keys.ramp(feature)], args=[*expected, json.dumps(flat)])
            if reply[0] == "ok":
                return replace(new, heartbeat=float(reply[1])), dict(raw)
        raise RampRunning(f"the ramp of {feature} kept changing while it was being taken; retry")

    def _check_claim(self, feature: str, current: RampState | None, now: float, *, resume: bool) -> None:
        how = f"resume it with `thorcut ramp {feature} --resume`, or abandon it with `thorcut ramp {feature} --abort`"
        if current is None or current.status in ENDED:
            if resume:
                last = f" (its last ramp is {current.status}: {current.describe(now)})" if current else ""
                raise Refused(f"there is no interrupted ramp of {feature} to resume{last}; start one with "
                              f"`thorcut ramp {feature} --steps 10,25,50,100 --hold 5m`")  # fmt: skip
            return
        if current.status in ACTIVE and not current.owner_gone(now):
            seen = format_span(max(0.0, now - (current.heartbeat or now)))
            who = str(current.owner) if current.owner else "an unknown process"
            raise RampRunning(
                f"a ramp of {feature} is already running ({who}, last seen {seen} ago, step {current.step} at "
                f"{current.percent} %); two ramps of one feature cannot run at once — wait for it to end, or stop "
                f"it with `thorcut ramp {feature} --abort`"
            )
        if not resume:
            gone = " (its process is gone)" if current.status in ACTIVE else ""
            why = f": {current.why}" if current.why else ""
            raise RampRunning(f"a ramp of {feature} was interrupted at step {current.step} ({current.percent} %)"
                              f"{gone}{why} — {how}")  # fmt: skip

    def write(self, feature: str, token: str, fields: Mapping[str, str] | None = None) -> Beat:
        """As the owner holding ``token``: heartbeat, store ``fields``, and read the feature's flag,
        in one script. Nothing is written unless the ramp is still this owner's and running."""
        flat = [x for kv in (fields or {}).items() for x in kv]
        keys = [self.keys.ramp(feature), self.keys.flag(feature)]
        reply: Any = self._write(keys=keys, args=[token, json.dumps(flat)])
        kind = str(reply[0])
        if kind == "ok":
            stage, percent, version, by, reason = (str(x) for x in reply[2:7])
            data = {"stage": stage, "percent": percent, "version": version, "updated_by": by, "reason": reason}
            return Beat(kind, float(reply[1]), FlagState.from_hash(feature, {k: v for k, v in data.items() if v}))
        if kind == "lost":
            return Beat(kind, holder=Owner.from_text(str(reply[1])))
        if kind == "ended":
            return Beat(kind, status=str(reply[1]), why=str(reply[2]))
        return Beat("gone")

    def release(self, feature: str, token: str, previous: Mapping[str, str]) -> bool:
        """Give back a claim that never took a step: put ``previous`` (the hash the claim replaced;
        empty: none) back, if the ramp is still ``token``'s. Return whether it was."""
        flat = [x for kv in previous.items() for x in kv]
        return bool(self._release(keys=[self.keys.ramp(feature)], args=[token, json.dumps(flat)]))

    def abort(self, feature: str, why: str) -> str:
        """End the ramp of ``feature`` for good (status ``aborted``, ``why``); return the status it
        had. Its owner, if it still runs, finds out at its next write. Raises :class:`Refused` when
        there is no ramp, or it already ended."""
        reply: Any = self._abort(keys=[self.keys.ramp(feature)], args=[why])
        if reply[0] == "none":
            raise Refused(f"there is no ramp of {feature} to abort")
        if reply[0] == "ended":
            raise Refused(f"the ramp of {feature} already ended ({reply[1]}); there is nothing to abort")
        return str(reply[1])


def _float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
