"""A live parity run against a backend.

One WebSocket connection (:mod:`thorcut.wire.stream`, which reconnects on its own) brings the
samples; each sample's REST request goes out at once through one ``httpx.AsyncClient`` with at
most ``concurrency`` requests in flight. A response still behind the sample's ``seq`` is asked
again a few times. Everything seen can be written to a recording, which
:func:`thorcut.parity.replay.replay` judges later with the same :class:`ShadowJudge` calls in the
same order.

After a reconnect the stream is resumed (``LiveOptions.resume``, the manifest's ``[stream]
resume``): the judge is told so, and the recording marks the first line after the reconnect
(``"reconnected": "resume"``, or ``"reset"`` when no resume was sent) so that its replay judges
the same.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thorcut.clock import now_iso
from thorcut.compare.shadow import RestRequest, ShadowJudge
from thorcut.errors import BackendUnavailable
from thorcut.parity.result import RunResult, Span
from thorcut.values import redact_url
from thorcut.wire.recording import (
    RecordingWriter,
    RestRecord,
)

if TYPE_CHECKING:
    import asyncio

#: how often a response that is behind the sample's seq is asked again, and the pause before each
BEHIND_RETRIES = 3
BEHIND_PAUSE = 0.05


@dataclass
class LiveOptions:
    ws_url: str
    rest_base: str
    headers: dict[str, str]
    duration: float | None  # seconds to sample; None: until stopped (run_live's ``stop``)
    record: Path | None = None
    concurrency: int = 8
    rest_timeout: float = 2.0
    max_size: int = 4 * 2**20
    resume: bool = True  # resume the stream after a reconnect (the manifest's [stream] resume)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` (unless it has ended) and wait until it has."""
    import asyncio

    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    on_event: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """Sample for ``opts.duration`` seconds (None: until ``stop`` is set) and judge.

    ``on_event`` is called after every WebSocket frame and every REST outcome the judge took (a
    guard checks its windows there); an exception it raises stops the run and is raised from here.
    ``stop``, once set, ends the run early (the requests in flight still finish, bounded).
    Raises BackendUnavailable (exit 4) when the WebSocket cannot be opened at all, or when every
    REST request failed to connect."""
    import asyncio  # here, not at the top: a replay never needs it (14 ms of start-up)

    import httpx

    from thorcut.wire.jsonfast import loads
    from thorcut.wire.stream import Notice, StreamClient

    writer = RecordingWriter(opts.record, manifest) if opts.record else None
    result = RunResult({}, 0.0, "live")
    span = Span()
    sem = asyncio.Semaphore(opts.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    connect_failures = 0
    stop = stop if stop is not None else asyncio.Event()
    failed: list[BaseException] = []  # what on_event raised, raised again when the run has ended

    def judged() -> None:
        if on_event is None or failed:
            return
        try:
            on_event()
        except Exception as exc:  # raised again from run_live, whichever task it came from
            failed.append(exc)
            stop.set()

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
            judged()
            if not still_waiting:
                return
            if attempt < BEHIND_RETRIES:
                await asyncio.sleep(BEHIND_PAUSE * (attempt + 1))
        # Still behind: the sample keeps waiting (a later response may carry its seq) until it is
        # evicted or the run ends, exactly as a replay of this run will treat it.

    started = time.monotonic()
    stream = StreamClient(opts.ws_url, opts.headers, max_size=opts.max_size, open_timeout=opts.rest_timeout,
                          resume=judge.resume_since if opts.resume else None)  # fmt: skip
    first = True
    reconnected: str | None = None  # the mark of the next recorded frame: "resume" or "reset"

    async def consume(client: httpx.AsyncClient) -> None:
        nonlocal first, reconnected
        async for item in stream.frames():
            if isinstance(item, Notice):
                text = f"{item.kind}: {item.detail}"
                if item.kind == "connected":
                    if not first:
                        judge.reconnected(resume=item.resume is not None)
                        reconnected = "reset" if item.resume is None else "resume"
                        if item.resume is not None:
                            text += f" (resuming {item.resume} stream{'' if item.resume == 1 else 's'})"
                    first = False
                if item.kind != "connected" or result.notices:
                    result.notices.append(text)
                    if on_notice:
                        on_notice(text)
                continue
            result.frames += 1
            at = _at(item.received)
            span.see(at)
            if item.msg is None:
                result.non_json += 1
                judge.frame_not_json()
                if writer is not None:
                    writer.ws(at, raw=item.text, reconnected=reconnected)
                reconnected = None
                judged()
                continue
            if writer is not None:
                writer.ws(at, msg=item.msg, reconnected=reconnected)
            reconnected = None
            req = judge.ws_message(item.msg, at, item.received)
            if req is not None:
                task = asyncio.create_task(fetch(client, req))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            judged()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.25)
            if on_tick:
                on_tick(judge, time.monotonic() - started)

    async with httpx.AsyncClient(base_url=opts.rest_base, headers=opts.headers, timeout=opts.rest_timeout) as client:
        tick = asyncio.create_task(ticker())
        consumer = asyncio.create_task(consume(client))
        stopped = asyncio.create_task(stop.wait())
        try:
            timeout = None if opts.duration is None else max(0.0, started + opts.duration - time.monotonic())
            await asyncio.wait((consumer, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # the stream's own end, or its error (BackendUnavailable)
            await _cancel(consumer)  # no frame is taken after the deadline
            if tasks and not failed:  # let the last samples' requests finish (bounded)
                await asyncio.wait(set(tasks), timeout=opts.rest_timeout * (BEHIND_RETRIES + 1) + 1)
            for t in list(tasks):
                t.cancel()
        finally:
            stopped.cancel()
            tick.cancel()
            await _cancel(consumer)
            if writer is not None:
                writer.close()
    if failed:
        raise failed[0]
    if result.rest_requests and connect_failures == result.rest_requests:
        raise BackendUnavailable(
            f"every REST request to {redact_url(opts.rest_base)} failed to connect; is the backend running? "
            "(set THORCUT_BACKEND_URL or --backend-url)"
        )
    result.reports = judge.report(span.seconds)
    result.window_s = span.seconds
    result.resumes = judge.health.resumes.to_dict()
    return result
