"""Running a shadow comparison: live against a backend, or from a recording.

Live: one WebSocket connection (:mod:`thorcut.stream`, which reconnects on its own) brings the
samples; each sample's REST request goes out at once through one ``httpx.AsyncClient`` with at
most ``concurrency`` requests in flight. A response still behind the sample's ``seq`` is asked
again a few times. Everything seen can be written to a recording, which
:func:`replay` judges later with the same :class:`ShadowJudge` calls in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thorcut.compare.shadow import FeatureReport, RestRequest, ShadowJudge
from thorcut.compare.verdict import now_iso, parse_iso
from thorcut.config import redact_url
from thorcut.errors import BackendUnavailable
from thorcut.recording import RecordingReader, RecordingWriter, RestRecord, WsRecord

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


def replay(judge: ShadowJudge, path: Path) -> RunResult:
    """Judge a recording with no network. Raises RecordingError (exit 2) naming a bad line."""
    reader = RecordingReader(path)
    result = RunResult({}, 0.0, f"replay:{path.name}")
    span = Span()
    features = judge.specs
    for rec in reader:
        span.see(rec.at)
        if isinstance(rec, WsRecord):
            result.frames += 1
            if rec.raw is not None:
                result.non_json += 1
                judge.frame_not_json()
                continue
            at = parse_iso(rec.at)
            judge.ws_message(rec.msg, rec.at, at.timestamp() if at else None, rec.data)
        elif rec.feature in features:
            result.rest_requests += 1
            req = RestRequest(rec.feature, rec.type, rec.key, rec.for_seq, rec.url)
            error = rec.error if rec.error is not None else ("not_json" if rec.raw is not None else None)
            judge.rest_response(req, status=rec.status, body=rec.body, error=error, data=rec.data)
    result.reports = judge.report(span.seconds)
    result.window_s = span.seconds
    return result


def generalise(path: str) -> str:
    """``positions[symbol=ES].as_of`` / ``bars[3].t`` → ``positions[*].as_of`` / ``bars[*].t``."""
    import re

    return re.sub(r"\[[^\]]*\]", "[*]", path)


async def learn_noise(manifest: Any, names: list[str], ws_url: str, rest_base: str, headers: dict[str, str],
                      duration: float, timeout: float) -> dict[str, Any]:  # fmt: skip
    """For each sample, read its REST endpoint twice; where both reads have the same ``seq``, report
    the fields that differ (beyond the feature's current ignore rules) and the manifest lines that
    would ignore them."""
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
