"""The page's operations API (issue 15): the cutover at a glance, and stage changes for operators.

``GET /api/ops/monitor`` (anyone logged in) reads every feature's flag, stored verdict, ramp and
guard, and who read its REST endpoints in the last 5 minutes, from the documented Redis keys
(docs/contracts.md, "Redis keys") in one round trip, with the moves the stage machine allows from
each stage and whether the caller may make them.
``POST /api/ops/stage`` (operators only: ``thor_trading.operate_cutover``) changes one feature
through thorcut's flag store: the same atomic, gated, audited change as the command line's (a
valid PASS verdict, or ``force`` with a reason, lets a feature go live), with ``web:<username>``
as the audit entry's ``by``.

A browser's session must send the CSRF token (``X-CSRFToken``) with the change; a bearer token,
which no browser sends on its own, needs none. Neither answer holds a secret (no ramp owner's
token, no Redis URL). When Redis cannot be reached both answer 503 at once (a refused connection
is not retried; a Redis that does not answer is given :data:`TIMEOUT`).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from redis.backoff import NoBackoff
from redis.retry import Retry

from thor_trading.auth import bearer
from thor_trading.features import NAMES
from thor_trading.market import sim_step
from thor_trading.messages import iso
from thor_trading.users import is_operator
from thor_trading.views import authenticated, csrf_failure, require_GET, require_POST
from thorcut.flags import (
    FlagState,
    FlagStore,
    GuardPresence,
    Keys,
    ParityRecord,
    RampState,
    Refused,
    Stage,
    ThorcutError,
    Unreachable,
    UsageError,
    allowed,
    gate,
    parse_redis_url,
    restreads,
)

#: Seconds a Redis call may take before the answer is 503 (a change that waits for replicas is
#: given their ``wait_timeout`` on top).
TIMEOUT = 2.0
#: The longest reason a change may give (it is stored in the flag and its audit entry).
MAX_REASON = 500
#: The fields of a change's JSON body; ``feature``, ``to`` and ``reason`` are required.
FIELDS = ("feature", "to", "percent", "reason", "force", "expect_version")
#: Stages in the order of a cutover: the moves from a stage are listed forward first, then back.
ORDER = (Stage.OFF, Stage.SHADOW, Stage.LIVE, Stage.COMPLETE)
#: The percent a stage other than live always has.
FIXED_PERCENT = {Stage.OFF: 0, Stage.SHADOW: 0, Stage.COMPLETE: 100}

_clients: dict[tuple[str, float], redis.Redis] = {}
_clients_lock = threading.Lock()


def _error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


# -- the flag store ------------------------------------------------------------------------------


def _client(url: str, timeout: float) -> redis.Redis:
    """One client (and connection pool) per URL for this process. A command that meets a dropped
    connection is tried once more on a new one (Redis restarted meanwhile); a refused connection
    or a timeout is not retried, so a Redis that is down is a quick 503."""
    with _clients_lock:
        client = _clients.get((url, timeout))
        if client is None:
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            client = _clients[(url, timeout)] = parse_redis_url(url).client(timeout, retry=retry)
        return client


def _validity() -> float:
    """How long a PASS verdict opens the gate: ``THORCUT_VERDICT_VALIDITY`` seconds, as for the CLI."""
    raw = getattr(settings, "THORCUT_VERDICT_VALIDITY", None) or os.environ.get("THORCUT_VERDICT_VALIDITY")
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        value = 0.0
    return value if math.isfinite(value) and value > 0 else 24 * 3600.0


def flag_store(operator: str = "web") -> FlagStore:
    """The flag store of ``THORCUT_REDIS_URL`` / ``THORCUT_PREFIX``, changing as ``operator``, with
    the URL's ``wait_replicas`` and ``wait_timeout`` and the CLI's verdict validity."""
    url = settings.THORCUT_REDIS_URL
    target = parse_redis_url(url)
    # A change's WAIT for its replicas must end before the socket read does (as thorcut.cli.session).
    wait = target.wait_timeout + 1.0 if target.wait_replicas else 0.0
    return FlagStore(
        _client(url, max(TIMEOUT, wait)),
        Keys(settings.THORCUT_PREFIX),
        NAMES,
        operator=operator,
        validity=_validity(),
        wait_replicas=target.wait_replicas,
        wait_timeout=target.wait_timeout,
    )


def _unreachable(exc: Exception) -> JsonResponse:
    # redis-py's text can hold the host; the URL (and its password) never reaches the answer.
    detail = str(exc) if isinstance(exc, Unreachable) else type(exc).__name__
    return _error(503, f"the flag store (Redis) cannot be reached now ({detail}); nothing was changed unless "
                       "this says otherwise — retry in a moment")  # fmt: skip


# -- the monitor ---------------------------------------------------------------------------------


def moves(stage: Stage) -> list[str]:
    """The stages the stage machine allows ``stage`` to move to, forward first (``shadow`` →
    ``["live", "off"]``). A live feature's percent changes with ``to: "live"``, not listed."""
    here = ORDER.index(stage)
    forward = [s for s in ORDER[here + 1 :] if allowed(stage, s)]
    back = [s for s in reversed(ORDER[:here]) if allowed(stage, s)]
    return [s.value for s in forward + back]


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None


def _last_mismatch_path(text: str | None) -> str | None:
    """The first differing path of the stored last mismatch (``(body)`` for the whole body)."""
    example = _json(text)
    differences = example.get("differences") if isinstance(example, dict) else None
    first = differences[0] if isinstance(differences, list) and differences else None
    path = first.get("path") if isinstance(first, dict) else None
    return (path or "(body)") if isinstance(path, str) else None


def verdict_view(record: ParityRecord, now: datetime, validity: float) -> dict[str, Any] | None:
    """A stored verdict for the monitor, or None when the feature has none."""
    if record.verdict is None:
        return None
    raw = record.raw or {}
    counts = record.counts or {}
    health = _json(raw.get("health"))
    health = health if isinstance(health, dict) else {}
    measured = bool(_number(health.get("messages")))  # no message, no lag measured
    age = record.age(now)
    why = gate(record, validity, now)
    return {
        "verdict": record.verdict.value,
        "judged_at": record.judged_at or None,
        "age_s": round(age, 3) if age is not None else None,
        "valid": why is None,
        "gate": why,
        "source": raw.get("source") or None,
        "reasons": [r for r in raw.get("reasons", "").split("; ") if r],
        **{name: counts.get(name, 0) for name in ("paired", "mismatched", "gaps", "resyncs", "duplicates")},
        "lag_ms": {
            "mean": _number(health.get("lag_ms_mean")) if measured else None,
            "max": _number(health.get("lag_ms_max")) if measured else None,
        },
        "last_mismatch_path": _last_mismatch_path(raw.get("last_mismatch")),
    }


def ramp_view(ramp: RampState | None, now: float) -> dict[str, Any] | None:
    """A ramp for the monitor (its owner's host and pid, never its token), or None."""
    if ramp is None:
        return None
    full = ramp.to_dict(now)
    keep = ("status", "text", "percent", "next_percent", "due_in_s", "steps", "index", "why", "hold_s", "owner",
            "started_by")  # fmt: skip
    return {k: full[k] for k in keep}


def feature_view(name: str, raw: Mapping[str, Mapping[str, str]], now: datetime, validity: float) -> dict[str, Any]:
    """One feature's row of the monitor, from its four hashes (``flag``, ``parity``, ``ramp``, ``guard``)."""
    state = FlagState.from_hash(name, dict(raw["flag"]))
    guard = GuardPresence.from_hash(name, raw["guard"])
    return {
        **state.to_dict(),
        "allowed": moves(state.stage),
        "verdict": verdict_view(ParityRecord.from_hash(dict(raw["parity"])), now, validity),
        "ramp": ramp_view(RampState.from_hash(name, raw["ramp"]), now.timestamp()),
        "guard": guard.to_dict(now) if guard is not None else None,
    }


def _hash(reply: Any) -> Any:
    """A pipeline reply of the monitor's own keys: an error (a key of another type) is raised, as
    before the pipeline stopped raising for the REST-reads keys, which read as empty."""
    if isinstance(reply, Exception):
        raise reply
    return reply


#: The monitor lists at most this many readers of a feature, biggest first.
MAX_READERS = 20


def rest_view(reads: restreads.RestReads) -> dict[str, Any]:
    """A feature's REST reads for the monitor, read as ``thorcut status`` reads them
    (``thorcut.flags.restreads``): reads per minute over the last 5 minutes (the current one
    partial) and the biggest readers (``last_seen`` the end of a reader's latest minute where the
    backend kept no ``last``)."""
    readers = sorted(reads.readers, key=lambda r: (-r.reads, r.label))[:MAX_READERS]
    return {
        "rest_reads_per_min": reads.per_minute,
        "rest_readers": [
            {"label": r.label, "count": r.reads, "last_seen": iso(datetime.fromtimestamp(r.last_seen, UTC))}
            for r in readers
        ],
    }


def monitor_document(store: FlagStore, *, operator: bool) -> dict[str, Any]:
    """The monitor's answer: every feature read in one round trip. Raises redis-py's errors."""
    kinds: tuple[tuple[str, Callable[[str], str]], ...] = (
        ("flag", store.keys.flag), ("parity", store.keys.parity), ("ramp", store.keys.ramp),
        ("guard", store.keys.guard),
    )  # fmt: skip
    now = datetime.now(UTC)
    windows = [restreads.Window.status(name, now.timestamp()) for name in store.features]
    pipe = store.client.pipeline(transaction=False)
    for name, window in zip(store.features, windows, strict=True):
        for _, key in kinds:
            pipe.hgetall(key(name))
        restreads.queue(pipe, store.keys, window)
    raw = pipe.execute(raise_on_error=False)  # a REST-reads key of another type reads as empty
    rows = []
    base = 0
    for name, window in zip(store.features, windows, strict=True):
        hashes = {kind: _hash(raw[base + j]) for j, (kind, _) in enumerate(kinds)}
        base += len(kinds)
        reads = restreads.collect(window, raw[base : base + window.replies])
        base += window.replies
        rows.append({**feature_view(name, hashes, now, store.validity), **rest_view(reads)})
    # The market clock runs this many times faster than the wall clock (THOR_SIM_SPEED): the page says so.
    speed = sim_step(1.0).total_seconds()
    return {"server_time": iso(now), "operator": operator, "features": rows, "sim_speed": speed}


@require_GET
@authenticated
def monitor(request: HttpRequest) -> HttpResponse:
    """Every feature's stage, verdict, ramp and guard, and whether the caller may change stages."""
    try:
        doc = monitor_document(flag_store(), operator=is_operator(request.thor_user))
    except redis.RedisError as exc:
        return _unreachable(exc)
    return JsonResponse(doc)


# -- changing a stage ------------------------------------------------------------------------------


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, run by a view (as Django REST framework does for session users)."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_refusal(request: HttpRequest) -> str | None:
    """Why the request fails Django's CSRF check, or None when it passes."""
    check = _CsrfCheck(lambda _: HttpResponse())
    check.process_request(request)
    reason: str | None = check.process_view(request, lambda _: HttpResponse(), (), {})
    return reason


USAGE = ('send a JSON object {"feature": …, "to": "off"|"shadow"|"live"|"complete", "percent": 0-100 or null, '
         '"reason": "why", "force": false}')  # fmt: skip


class BadChange(ValueError):
    """A change's body that cannot be used: the message says why (400)."""


def parse_change(body: bytes) -> dict[str, Any]:
    """The change a request's body asks for; raises :class:`BadChange` saying what is wrong."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise BadChange(f"the body is not JSON: {USAGE}") from None
    if not isinstance(data, dict):
        raise BadChange(USAGE)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadChange(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
    feature, to, reason = data.get("feature"), data.get("to"), data.get("reason")
    if not isinstance(feature, str) or feature not in NAMES:
        raise BadChange(f"unknown feature {feature!r}; valid features: {', '.join(NAMES)}")
    if not isinstance(to, str) or to not in {s.value for s in Stage}:
        raise BadChange(f"`to` must be one of {', '.join(s.value for s in ORDER)}, not {to!r}")
    stage = Stage(to)
    if not isinstance(reason, str) or not reason.strip():
        raise BadChange("`reason` is required: say why the stage changes (it is recorded in the audit log)")
    if len(reason) > MAX_REASON:
        raise BadChange(f"`reason` is {len(reason)} characters long; at most {MAX_REASON}")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can spell ("\ud800") but Redis cannot store
        raise BadChange("`reason` is not valid UTF-8 text; write it in UTF-8") from None
    percent = data.get("percent")
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100):
        raise BadChange(f"`percent` must be a whole number from 0 to 100, or null, not {percent!r}")
    if stage is not Stage.LIVE and percent not in (None, FIXED_PERCENT[stage]):
        raise BadChange(f"`percent` applies to live only: {stage.value} is always {FIXED_PERCENT[stage]} %")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise BadChange(f"`force` must be true or false, not {force!r}")
    expect = data.get("expect_version")
    if expect is not None and (isinstance(expect, bool) or not isinstance(expect, int) or expect < 0):
        raise BadChange(f"`expect_version` must be a version (a whole number from 0), or null, not {expect!r}")
    return {"feature": feature, "to": stage, "percent": percent, "reason": reason, "force": force,
            "expect_version": expect}  # fmt: skip


def _refusal_kind(exc: Refused) -> str:
    """What kind of refusal ``exc`` is, for the page (``refused`` of a 409): the classes of
    thorcut.errors, which the flag store's public API does not name one by one."""
    names = {"TransitionRefused": "transition", "EvidenceRefused": "gate", "StaleVersion": "stale",
             "StoreWasReset": "reset"}  # fmt: skip
    return names.get(type(exc).__name__, "refused")


@csrf_exempt  # checked in the view for session users: a bearer token is never sent by a browser on its own
@require_POST
@authenticated
def change_stage(request: HttpRequest) -> HttpResponse:
    """Move one feature to another stage through the flag store, as ``web:<username>``."""
    if not bearer(request.META):
        refusal = _csrf_refusal(request)
        if refusal is not None:
            return csrf_failure(request, refusal)
    user = request.thor_user
    if not is_operator(user):
        return _error(403, f"{user.get_username()} may watch the cutover but not change it: changing a stage "
                           "needs the operator permission (thor_trading.operate_cutover; `manage.py thor_user "
                           "NAME --password … --account … --operator`)")  # fmt: skip
    try:
        wanted = parse_change(request.body)
    except BadChange as exc:
        return _error(400, str(exc))
    except RawPostDataException:  # a multipart form, which the CSRF check read as a form
        return _error(400, f"the body is a form, not JSON: {USAGE}")
    store = flag_store(f"web:{user.get_username()}")
    feature, to = wanted["feature"], wanted["to"]
    try:
        # Back to shadow from live or complete is the rollback (`thorcut disable`): never gated.
        rollback = to is Stage.SHADOW and store.read(feature).stage in (Stage.LIVE, Stage.COMPLETE)
        outcome = store.change(feature, to, percent=wanted["percent"], reason=wanted["reason"],
                               force=wanted["force"], expect_version=wanted["expect_version"],
                               rollback=rollback)  # fmt: skip
    except Refused as exc:
        return _error(409, str(exc), refused=_refusal_kind(exc))
    except UsageError as exc:
        return _error(400, str(exc))
    except (Unreachable, redis.RedisError) as exc:
        return _unreachable(exc)
    except ThorcutError as exc:  # no other kind is raised by a change today; say it rather than a 500
        return _error(409, str(exc), refused="refused")
    return JsonResponse({"change": outcome.to_dict()})
