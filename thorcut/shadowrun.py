"""Running a shadow comparison: live against a backend, or from a recording.

Live: one WebSocket connection (:mod:`thorcut.stream`, which reconnects on its own) brings the
samples; each sample's REST request goes out at once through one ``httpx.AsyncClient`` with at
most ``concurrency`` requests in flight. A response still behind the sample's ``seq`` is asked
again a few times. Everything seen can be written to a recording, which
:func:`replay` judges later with the same :class:`ShadowJudge` calls in the same order.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from thorcut.compare.shadow import FeatureReport, RestRequest, ShadowJudge
from thorcut.compare.verdict import iso_timestamp, now_iso, parse_iso
from thorcut.config import redact_url
from thorcut.errors import BackendUnavailable
from thorcut.manifest import FeatureSpec
from thorcut.recording import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LINE,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    RestRecord,
    WsRecord,
    body_of,
)

#: how often a response that is behind the sample's seq is asked again, and the pause before each
BEHIND_RETRIES = 3
BEHIND_PAUSE = 0.05


@dataclass
class LiveOptions:
    ws_url: str
    rest_base: str
    headers: dict[str, str]
    duration: float
    record: Path | None = None
    concurrency: int = 8
    rest_timeout: float = 2.0
    max_size: int = 4 * 2**20


@dataclass
class RunResult:
    reports: dict[str, FeatureReport]
    window_s: float
    source: str
    frames: int = 0
    non_json: int = 0
    notices: list[str] = field(default_factory=list)
    rest_requests: int = 0


class Span:
    """The observation window: from the first to the last event time seen (ISO strings, as the
    recording holds them), so a live run and the replay of its recording judge the same window."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: str | None = None

    def see(self, at: str) -> None:
        # One ISO-8601 UTC format (``now_iso``), so text order is time order.
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at

    @property
    def seconds(self) -> float:
        start = parse_iso(self.first) if self.first else None
        end = parse_iso(self.last) if self.last else None
        return max(0.0, (end - start).total_seconds()) if start and end else 0.0


def _at(ts: float) -> str:
    from datetime import UTC, datetime

    return now_iso(datetime.fromtimestamp(ts, UTC))


async def run_live(
    judge: ShadowJudge,
    opts: LiveOptions,
    manifest: dict[str, Any],
    *,
    on_tick: Callable[[ShadowJudge, float], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RunResult:
    """Sample for ``opts.duration`` seconds and judge. Raises BackendUnavailable (exit 4) when the
    WebSocket cannot be opened at all, or when every REST request failed to connect."""
    import asyncio  # here, not at the top: a replay never needs it (14 ms of start-up)

    import httpx

    from thorcut.jsonfast import loads
    from thorcut.stream import Notice, StreamClient

    writer = RecordingWriter(opts.record, manifest) if opts.record else None
    result = RunResult({}, 0.0, "live")
    span = Span()
    sem = asyncio.Semaphore(opts.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    connect_failures = 0

    async def fetch(client: httpx.AsyncClient, req: RestRequest) -> None:
        nonlocal connect_failures
        for attempt in range(BEHIND_RETRIES + 1):
            status: int | None = None
            body: Any = None
            raw: str | None = None
            error: str | None = None
            started = time.perf_counter()
            async with sem:
                try:
                    resp = await client.get(req.path)
                    status = resp.status_code
                    try:
                        body = loads(resp.content)
                    except ValueError:
                        raw, error = resp.text[:2000], "not_json"
                except httpx.TimeoutException:
                    error = "timeout"
                except httpx.ConnectError:
                    error, connect_failures = "connect", connect_failures + 1
                except httpx.HTTPError as exc:
                    error = f"http_error:{type(exc).__name__}"
            result.rest_requests += 1
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            at = now_iso()
            span.see(at)
            if writer is not None:
                writer.rest(RestRecord(at, req.feature, req.type, req.key, req.path, status, elapsed,
                                       body=body, raw=raw, error=error, for_seq=req.seq))  # fmt: skip
            still_waiting = judge.rest_response(req, status=status, body=body, error=error)
            if not still_waiting:
                return
            if attempt < BEHIND_RETRIES:
                await asyncio.sleep(BEHIND_PAUSE * (attempt + 1))
        # Still behind: the sample keeps waiting (a later response may carry its seq) until it is
        # evicted or the run ends, exactly as a replay of this run will treat it.

    started = time.monotonic()
    deadline = started + opts.duration
    stream = StreamClient(opts.ws_url, opts.headers, max_size=opts.max_size, open_timeout=opts.rest_timeout)
    first = True

    async def consume(client: httpx.AsyncClient) -> None:
        nonlocal first
        async for item in stream.frames():
            if isinstance(item, Notice):
                if item.kind == "connected":
                    if not first:
                        judge.reconnected()
                    first = False
                if item.kind != "connected" or result.notices:
                    result.notices.append(f"{item.kind}: {item.detail}")
                    if on_notice:
                        on_notice(f"{item.kind}: {item.detail}")
                continue
            result.frames += 1
            at = _at(item.received)
            span.see(at)
            if item.msg is None:
                result.non_json += 1
                judge.frame_not_json()
                if writer is not None:
                    writer.ws(at, raw=item.text)
                continue
            if writer is not None:
                writer.ws(at, msg=item.msg)
            req = judge.ws_message(item.msg, at, item.received)
            if req is not None:
                task = asyncio.create_task(fetch(client, req))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.25)
            if on_tick:
                on_tick(judge, time.monotonic() - started)

    async with httpx.AsyncClient(base_url=opts.rest_base, headers=opts.headers, timeout=opts.rest_timeout) as client:
        tick = asyncio.create_task(ticker())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consume(client), timeout=max(0.0, deadline - time.monotonic()))
            if tasks:  # let the last samples' requests finish (bounded)
                await asyncio.wait(set(tasks), timeout=opts.rest_timeout * (BEHIND_RETRIES + 1) + 1)
            for t in list(tasks):
                t.cancel()
        finally:
            tick.cancel()
            if writer is not None:
                writer.close()
    if result.rest_requests and connect_failures == result.rest_requests:
        raise BackendUnavailable(
            f"every REST request to {redact_url(opts.rest_base)} failed to connect; is the backend running? "
            "(set THORCUT_BACKEND_URL or --backend-url)"
        )
    result.reports = judge.report(span.seconds)
    result.window_s = span.seconds
    return result


def replay(judge: ShadowJudge, path: Path, *, named: bool = True, max_line: int = DEFAULT_MAX_LINE,
           max_depth: int = DEFAULT_MAX_DEPTH) -> RunResult:  # fmt: skip
    """Judge a recording with no network, deterministically.

    ``named=False`` (no feature was named): ``judge`` judges every feature, and the result keeps
    those the recording holds: the ones its header lists (``"features"``), else those with messages
    in it, else (none) all of them, PENDING. A judged feature without messages in the recording is
    PENDING with a reason that says so. What a REST line lacks (``type``, ``key``) is derived from
    its body or URL (:meth:`ShadowJudge.locate`).

    Raises RecordingError (exit 2) naming a bad line: one the reader refuses, a header listing a
    feature the manifest does not know, a REST line of a judged feature whose message type and key
    nothing tells.
    """
    reader = RecordingReader(path, max_line=max_line, max_depth=max_depth)
    listed = reader.header.features
    if not named and listed is not None:
        unknown = [f for f in listed if f not in judge.specs]
        if unknown:
            reader.close()
            raise RecordingError(f"{path}, line 1: the header lists {', '.join(map(repr, unknown))}, which the "
                                 f"manifest does not define (features: {', '.join(judge.specs)})")  # fmt: skip
    result = RunResult({}, 0.0, f"replay:{path.name}")
    span = Span()
    # Each line allocates hundreds of containers, so the cyclic GC ran every few lines and walked
    # every body the pairing holds: a fifth of the replay's time (docs/benchmarks.md, section 7).
    # Nothing here builds a cycle (parsed JSON, frozen records), so reference counting frees it all.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _feed(judge, reader, path, result, span)
    finally:
        if gc_was_enabled:
            gc.enable()
    reports = judge.report(span.seconds)
    for name, report in reports.items():
        if report.counts["samples"] == 0:
            reports[name] = replace(report, reasons=(f"the recording holds no {name} messages", *report.reasons))
    if not named:
        keep = list(listed) if listed is not None else [n for n, r in reports.items() if r.counts["samples"]]
        reports = {n: reports[n] for n in keep} if keep else reports
    result.reports = reports
    result.window_s = span.seconds
    return result


def _feed(judge: ShadowJudge, reader: RecordingReader, path: Path, result: RunResult, span: Span) -> None:
    """Feed every record to ``judge`` in order, as the live run that wrote them did. It runs once a
    line, so Span.see is inlined and REST lines go to ``rest_outcome`` without a RestRequest."""
    specs = judge.specs
    ws_message, rest_outcome, locate = judge.ws_message, judge.rest_outcome, judge.locate
    first, last = span.first, span.last
    frames = non_json = rest_requests = 0
    try:
        for rec in reader:
            at = rec.at  # one ISO-8601 UTC format (now_iso), so text order is time order
            if first is None or at < first:
                first = at
            if last is None or at > last:
                last = at
            if type(rec) is WsRecord:
                frames += 1
                if rec.raw is not None:
                    non_json += 1
                    judge.frame_not_json()
                    continue
                ws_message(rec.msg, at, iso_timestamp(at), request=False, maybe_bool=rec.maybe_bool)
                continue
            assert isinstance(rec, RestRecord)
            feature = rec.feature
            if feature not in specs:
                continue
            rest_requests += 1
            type_, key = rec.type, rec.key
            if type_ is None or key is None:
                found_type, found_key = locate(feature, rec.url, rec.body)
                type_ = type_ if type_ is not None else found_type
                key = key if key is not None else found_key
            type_, key = _target(path, rec, type_, key, specs[feature])
            error = rec.error if rec.error is not None else ("not_json" if rec.raw is not None else None)
            reread = None if rec.text is None else partial(body_of, rec.text)  # holds the text, not the body
            rest_outcome(feature, type_, key, rec.for_seq, rec.status, rec.body, error, rec.maybe_bool, reread)
    finally:
        span.first, span.last = first, last
        result.frames += frames
        result.non_json += non_json
        result.rest_requests += rest_requests


def _target(path: Path, rec: RestRecord, type_: str | None, key: str | None, spec: FeatureSpec) -> tuple[str, str]:
    """Return the (type, key) of a REST line; refuse it, naming the line, when they cannot be told."""
    if type_ is None or key is None:
        what = " and ".join(w for w, v in (("message type", type_), ("key", key)) if v is None)
        templates = ", ".join(e.path for e in spec.rest) or "none"
        raise RecordingError(
            f"{path}, line {rec.line}: cannot tell the {what} of this {rec.feature} REST response: the line has no "
            f"'type'/'key', and neither its body nor its URL {rec.url!r} names one (endpoints: {templates})"
        )
    if type_ not in spec.types:
        raise RecordingError(f"{path}, line {rec.line}: {type_!r} is not a message type of {rec.feature} "
                             f"(its types: {', '.join(spec.types)})")  # fmt: skip
    return type_, key


def generalise(path: str) -> str:
    """``positions[symbol=ES].as_of`` / ``bars[3].t`` → ``positions[*].as_of`` / ``bars[*].t``."""
    import re

    return re.sub(r"\[[^\]]*\]", "[*]", path)


async def learn_noise(manifest: Any, names: list[str], ws_url: str, rest_base: str, headers: dict[str, str],
                      duration: float, timeout: float) -> dict[str, Any]:  # fmt: skip
    """For each sample, read its REST endpoint twice; where both reads have the same ``seq``, report
    the fields that differ (beyond the feature's current ignore rules) and the manifest lines that
    would ignore them."""
    import asyncio
    from collections import Counter

    import httpx

    from thorcut.compare.engine import Comparator, Rules
    from thorcut.compare.health import as_seq, path_get
    from thorcut.compare.shadow import fill_path
    from thorcut.jsonfast import loads
    from thorcut.stream import Notice, StreamClient

    specs = {n: manifest.get(n) for n in names}
    by_type = {t: s for s in specs.values() for t in s.types}
    endpoints = {e.type: e for s in specs.values() for e in s.rest}
    comparators = {n: Comparator(Rules(ignore=s.ignore)) for n, s in specs.items()}
    compared: Counter[str] = Counter()
    different_seq: Counter[str] = Counter()
    paths: dict[str, Counter[str]] = {n: Counter() for n in names}
    busy: set[tuple[str, str]] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def read(client: httpx.AsyncClient, path: str) -> Any:
        try:
            resp = await client.get(path)
            return loads(resp.content) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def twice(client: httpx.AsyncClient, type_: str, key: str) -> None:
        spec = by_type[type_]
        try:
            path = fill_path(endpoints[type_], key)
            first, second = await read(client, path), await read(client, path)
            if first is None or second is None:
                return
            loc = spec.rest_locators
            if as_seq(path_get(first, loc.seq)) != as_seq(path_get(second, loc.seq)):
                different_seq[spec.name] += 1
                return
            compared[spec.name] += 1
            for d in comparators[spec.name].explain(path_get(first, loc.body), path_get(second, loc.body)):
                paths[spec.name][generalise(d.path)] += 1
        finally:
            busy.discard((type_, key))

    async def consume(client: httpx.AsyncClient) -> None:
        async for item in StreamClient(ws_url, headers, open_timeout=timeout).frames():
            if isinstance(item, Notice) or not isinstance(item.msg, dict):
                continue
            type_, spec = item.msg.get("type"), by_type.get(str(item.msg.get("type")))
            key = path_get(item.msg, spec.ws.key) if spec else None
            if spec is None or type_ not in endpoints or not isinstance(key, str | int) or isinstance(key, bool):
                continue
            if (str(type_), str(key)) in busy:
                continue
            busy.add((str(type_), str(key)))
            task = asyncio.create_task(twice(client, str(type_), str(key)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with httpx.AsyncClient(base_url=rest_base, headers=headers, timeout=timeout) as client:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consume(client), timeout=duration)
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout * 2 + 1)
    out: dict[str, Any] = {}
    for name in names:
        found = dict(sorted(paths[name].items(), key=lambda kv: (-kv[1], kv[0])))
        ignore = list(dict.fromkeys([*specs[name].ignore, *found]))
        import json

        toml = f"[features.{name}]\nignore = {json.dumps(ignore)}" if found else ""
        out[name] = {"compared": compared[name], "seq_moved": different_seq[name], "paths": found, "toml": toml}
    return out
