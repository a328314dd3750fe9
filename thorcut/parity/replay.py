"""Judging a recording: every line fed to the :class:`ShadowJudge` in order, as the live run
that wrote it did (docs/contracts.md, "Recordings"), with no network."""

from __future__ import annotations

import gc
from dataclasses import replace
from functools import partial
from pathlib import Path

from thorcut.clock import iso_timestamp
from thorcut.compare.shadow import ShadowJudge
from thorcut.manifest import FeatureSpec
from thorcut.parity.result import RunResult, Span
from thorcut.wire.recording import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LINE,
    RecordingError,
    RecordingReader,
    RestRecord,
    WsRecord,
    body_of,
)


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
    result.resumes = judge.health.resumes.to_dict()
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
                if rec.reconnected is not None:  # as the live run was told at the reconnect
                    judge.reconnected(resume=rec.reconnected == "resume")
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
