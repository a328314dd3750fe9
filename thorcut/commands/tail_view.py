"""What ``thorcut tail`` shows: which messages (:class:`Filter`), and one line per message with
its stream health (:class:`TailView`), or NDJSON; the recording it writes on the way.

After a reconnect on which the stream was resumed, the server's ``resumed`` reply (and a
``healed`` one it sends unasked) is told on stderr and counted, never judged as an envelope; an
``error`` while the resume waits makes each stream start afresh (docs/contracts.md, "Resuming a
stream").

With a :class:`~thorcut.wire.asyncapi.validate.FrameChecker` (``--validate``), every frame shown is
checked against the stream's AsyncAPI document: a violation is told on stderr (the first
:data:`VIOLATIONS_SHOWN` in full, then only counted), marked on its line (in its NDJSON object under
``"violation"``), and counted per message type in the summary."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from thorcut.cli.output import out
from thorcut.clock import parse_iso
from thorcut.compare.health import Event, Reply, StreamHealth
from thorcut.compare.locators import as_seq, path_get
from thorcut.config import Settings
from thorcut.manifest import Locators
from thorcut.text import safe
from thorcut.wire.recording import RecordingWriter
from thorcut.wire.stream import Frame, Notice
from thorcut.wire.urls import describe_headers

if TYPE_CHECKING:
    from thorcut.wire.asyncapi.validate import FrameChecker, Violation

_DEFAULT_LOCATORS = Locators()
#: the warning shown on a message's line, by how it relates to its stream (none: nothing to say)
_WARNINGS = {
    Event.GAP: "gap: {skipped} missed before #{seq}",
    Event.RESYNC: "resync: {skipped} skipped before #{seq}",
    Event.AHEAD: "ahead: {skipped} before #{seq} not replayed yet",
    Event.DUPLICATE: "duplicate #{seq}",
    Event.RESENT: "resent #{seq}",
    Event.OUT_OF_ORDER: "out of order #{seq}",
}
_RED = "gap"
#: Violations told in full on stderr; the rest are counted in the summary.
VIOLATIONS_SHOWN = 20
_ENVELOPE = frozenset({"type", "feature", "key", "seq", "ts"})


@dataclass(frozen=True)
class Filter:
    """Which JSON messages to show; kinds combine with AND, values of one kind with OR."""

    types: frozenset[str] | None = None  # from --type
    feature_types: frozenset[str] | None = None  # the manifest types of --feature
    key: str | None = None

    @property
    def active(self) -> bool:
        return self.types is not None or self.feature_types is not None or self.key is not None

    def wants(self, type_: str | None, key: str | None) -> bool:
        if self.types is not None and type_ not in self.types:
            return False
        if self.feature_types is not None and type_ not in self.feature_types:
            return False
        return self.key is None or key == self.key


def summarize(value: Any, limit: int = 8) -> str:
    """Return a one-line sketch of a JSON value: scalar fields as ``k=v``, containers by size."""

    def scalar(v: Any) -> str:
        if isinstance(v, str):
            return v if len(v) <= 40 else v[:39] + "…"
        if isinstance(v, list):
            return f"[{len(v)}]"
        if isinstance(v, dict):
            return "{…}"
        return json.dumps(v)

    if isinstance(value, dict):
        return " ".join(f"{k}={scalar(v)}" for k, v in list(value.items())[:limit])
    if isinstance(value, list):
        return f"[{len(value)} items] " + " ".join(scalar(v) for v in value[:limit])
    return scalar(value)


class _IsoClock:
    """``now_iso``'s format for receipt times, with the date part formatted once per second.

    A strftime per frame cost more than parsing the frame (profile of benchmarks/tail_throughput.py).
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, received: float) -> str:
        second = int(received)
        micros = round((received - second) * 1e6)  # as datetime.fromtimestamp rounds
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._prefix}{micros // 1000:03d}Z"


def _clock(received: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(received)) + f".{int(received * 1000) % 1000:03d}"


def _span(secs: float) -> str:
    """Return a signed duration as ``35ms``, ``3.2s``, ``4min``, ``2h`` or ``3d``."""
    size = abs(secs)
    if size < 1:
        return f"{secs * 1000:.0f}ms"
    if size < 120:
        return f"{secs:.1f}s"
    if size < 7200:
        return f"{secs / 60:.0f}min"
    if size < 172800:
        return f"{secs / 3600:.0f}h"
    return f"{secs / 86400:.0f}d"


def _age(ts: str | None, received: float) -> tuple[str, str]:
    """Return the age at arrival of a message stamped ``ts`` (``+35ms``; "" if unknown) and its colour."""
    sent = parse_iso(ts) if ts else None
    if sent is None:
        return "", "dim"
    secs = received - sent.timestamp()
    return ("+" if secs >= 0 else "") + _span(secs), "green" if secs < 1 else "yellow" if secs < 5 else "red"


class TailView:
    """Shows (or writes as NDJSON), records and counts the frames the filter lets through."""

    def __init__(self, settings: Settings, filt: Filter, *, as_json: bool, recorder: RecordingWriter | None,
                 checker: FrameChecker | None = None, checked_against: str = "") -> None:  # fmt: skip
        self.filter = filt
        self.as_json = as_json
        self.recorder = recorder
        self.locators = {t: f.ws for f in settings.manifest.features for t in f.types}
        self.health = StreamHealth()
        self.out: Console | None = None if as_json else out()
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.types: Counter[str] = Counter()
        self.shown = self.filtered = self.non_json = self.reconnects = 0
        self.started: float | None = None  # first connection
        self.ended: float | None = None
        self.broken = False  # stdout's reader left (`| head`)
        self.on_broken: Any = None  # set by the runner: stops the loop
        self._flush_pending = False
        self._widths = [0, 0]
        self._iso = _IsoClock()
        self._filtering = filt.active
        self._reconnected: str | None = None  # the recording's mark of the next recorded frame
        self.checker = checker
        self.checked_against = checked_against
        self.checked = 0
        self.violations: Counter[str] = Counter()  # frames that broke the document, per message type

    def resume_since(self) -> list[dict[str, Any]] | None:
        """The ``since`` of a resume: the last seq seen per stream of a manifest type (None: none)."""
        return self.health.since(frozenset(self.locators)) or None

    # -- frames ------------------------------------------------------------------------------

    def frame(self, frame: Frame) -> None:
        """Show, record and count one frame, unless the filter leaves it out."""
        at = self._iso(frame.received)
        if frame.error is not None:  # never filtered: there is nothing to filter on, and it is news
            violation = None
            if self.checker is not None:
                violation = self._checked(self.checker.not_json(frame.error), "", None)
            self._emit_raw(frame, at, violation)
            self.non_json += 1
            return
        msg = frame.msg
        type_ = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(type_, str):
            if self._filtering:
                self.filtered += 1
                return
            violation = self._check(msg, "", None)
            line = None
            if not self.as_json:
                head = Text("json", style="dim cyan")
                if violation is not None:
                    head.append(f"  ✗ invalid: {violation.problems[0].path}", style="bold red")
                line = self._line(frame, head, summarize(msg))
            self._emit_json(frame, at, line, violation)
            self.types["(not an envelope)"] += 1
            return
        # A resume's answer is counted (and recorded, for the replay) whatever the filter shows.
        control = (type_ == "resumed" or type_ == "error") and self._control(type_, msg)
        loc = self.locators.get(type_, _DEFAULT_LOCATORS)
        raw_key = path_get(msg, loc.key)
        key = None if raw_key is None else str(raw_key)
        if self._filtering and not self.filter.wants(type_, key):
            self.filtered += 1
            if control:
                self._record(frame, at)
            return
        seq = as_seq(path_get(msg, loc.seq))
        ts = msg.get("ts")
        if not isinstance(ts, str):
            ts = None
        warning = ""
        if seq is not None:
            event, skipped = self.health.observe(type_, key or "", seq, ts=ts, received=frame.received,
                                                 resync=msg.get("resync") is True)  # fmt: skip
            warning = _WARNINGS.get(event, "").format(seq=seq, skipped=skipped)
            if event is Event.RESENT and skipped:
                warning += f" (resync: {skipped} skipped)"
        violation = self._check(msg, key or "", seq)
        if self.as_json:
            self._emit_json(frame, at, None, violation)
            if warning:
                self.err.print(safe(f"warning: {type_} {key or ''}: {warning}"), style="yellow")
        else:
            invalid = "" if violation is None else violation.problems[0].path
            line = self._envelope_line(frame, msg, loc, type_, key or "", seq, ts, warning, invalid)
            self._emit_json(frame, at, line)
        self.types[type_] += 1

    def _envelope_line(self, frame: Frame, msg: dict[str, Any], loc: Locators, type_: str, key: str,
                       seq: int | None, ts: str | None, warning: str, invalid: str = "") -> Text:  # fmt: skip
        shown_type, shown_key = safe(type_).plain, safe(key).plain
        self._widths = [max(self._widths[0], len(shown_type)), max(self._widths[1], len(shown_key))]
        head = Text.assemble(
            (shown_type.ljust(self._widths[0]), "cyan"),
            "  ",
            (shown_key.ljust(self._widths[1]), "magenta"),
            (f"  #{seq}" if seq is not None else "  #-", "bold"),
        )
        age, style = _age(ts, frame.received)
        if age:
            head.append(f"  {age}", style=style)
        if invalid:  # before the summary, so truncation never hides it (nor the warning)
            head.append(f"  ✗ invalid: {invalid}", style="bold red")
        if warning:
            head.append(f"  ⚠ {warning}", style="bold red" if warning.startswith(_RED) else "bold yellow")
        body = path_get(msg, loc.body)
        if body is None:
            body = {k: v for k, v in msg.items() if k not in _ENVELOPE}
        return self._line(frame, head, summarize(body))

    def _line(self, frame: Frame, head: Text, summary: str) -> Text:
        line = Text(_clock(frame.received), style="dim")
        line.append("  ")
        line.append_text(head)
        if summary:
            line.append("  ")
            line.append_text(safe(summary))
        return line

    def _emit_raw(self, frame: Frame, at: str, violation: Violation | None = None) -> None:
        if self.as_json:
            doc: dict[str, Any] = {"at": at, "raw": frame.text, "error": frame.error}
            if frame.binary:
                doc["binary"] = True
            if violation is not None:
                doc["violation"] = violation.to_dict()
            self._write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        else:
            label = Text(frame.error.split(":")[0] if frame.error else "", style="bold yellow")
            self._print(self._line(frame, label, frame.text))
        self._record(frame, at)

    def _emit_json(self, frame: Frame, at: str, line: Text | None, violation: Violation | None = None) -> None:
        if line is None:
            text = frame.text
            if frame.binary or "\n" in text or "\r" in text:  # NDJSON: one line per frame
                text = json.dumps(frame.msg, ensure_ascii=False, separators=(",", ":"))
            extra = ""
            if violation is not None:
                extra = ',"violation":' + json.dumps(violation.to_dict(), ensure_ascii=False, separators=(",", ":"))
            # The frame's own text, not a re-encoding: exact numbers, the server's key order.
            self._write(f'{{"at":"{at}","msg":{text.strip()}{extra}}}')
        else:
            self._print(line)
        self._record(frame, at)

    def _print(self, line: Text) -> None:
        assert self.out is not None
        line.truncate(self.out.width, overflow="ellipsis")
        self.out.print(line, markup=False, highlight=False, emoji=False)
        self.shown += 1

    def _write(self, line: str) -> None:
        # Written in blocks and flushed when the loop next waits for the network: a burst costs
        # one write(2), and `| jq` still sees every line as soon as the stream pauses.
        sys.stdout.write(line + "\n")
        self.shown += 1
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            if not self.broken and self.on_broken is not None:
                self.on_broken()
            self.broken = True

    # -- validation (--validate) ---------------------------------------------------------------

    def _check(self, msg: Any, key: str, seq: int | None) -> Violation | None:
        if self.checker is None:
            return None
        return self._checked(self.checker.check(msg), key, seq)

    def _checked(self, violation: Violation | None, key: str, seq: int | None) -> Violation | None:
        """Count a checked frame (and its violation), and tell the first ones on stderr."""
        self.checked += 1
        if violation is None:
            return None
        self.violations[violation.type] += 1
        told = sum(self.violations.values())
        if told <= VIOLATIONS_SHOWN:
            where = " ".join(filter(None, (violation.type, key, f"#{seq}" if seq is not None else "")))
            more = violation.errors - len(violation.problems)
            for problem in violation.problems:
                self.err.print(safe(f"violation: {where}: {problem.path}: {problem.message}"), style="red")
            if more > 0:
                self.err.print(safe(f"violation: {where}: … and {more} more"), style="red")
        if told == VIOLATIONS_SHOWN:
            self.err.print(f"(the first {VIOLATIONS_SHOWN} violations are shown; the rest are counted in the summary)",
                           style="red")  # fmt: skip
        return violation

    def validation(self) -> dict[str, Any]:
        """What ``--validate`` found: the document, frames checked, violations in all and per type."""
        return {
            "document": self.checked_against,
            "checked": self.checked,
            "violations": sum(self.violations.values()),
            "by_type": dict(self.violations.most_common()),
        }

    def _record(self, frame: Frame, at: str) -> None:
        if self.recorder is None:
            return
        mark, self._reconnected = self._reconnected, None
        if frame.error is not None:
            self.recorder.ws(at, raw=frame.text, reconnected=mark)
        else:
            self.recorder.ws(at, msg=frame.msg, reconnected=mark)

    def _control(self, type_: str, msg: dict[str, Any]) -> bool:
        """Take a reply to a resume (or a server's own ``healed`` one), or an ``error`` while one
        waits; return whether ``msg`` was one."""
        if type_ == "error":
            if not self.health.resume_refused():
                return False
            why = msg.get("error")
            self.err.print(safe(f"the server refused the resume ({why if isinstance(why, str) else 'error'}): "
                                "each stream starts afresh on this connection"), style="yellow")  # fmt: skip
            return True
        reply = Reply.parse(msg)
        if reply is None:
            return False
        waited = self.health.resuming
        held = self.health.resume_answered(reply)
        what = f"{reply.replayed} replayed, {reply.resynced} resynced"
        if reply.healed:
            self.err.print(safe(f"the server healed its stream and resumed it unasked: {what}"), style="green")
        else:
            self.err.print(safe(f"resumed: {what}" + ("" if waited else " (no resume was waiting)")), style="green")
        for h in held:
            if h.missing:
                self.err.print(safe(f"warning: {h.type} {h.key}: gap: {h.missing} missed before #{h.seq} "
                                    "(not replayed by the resume)"), style="yellow")  # fmt: skip
        return True

    # -- connection notices and the summary (stderr) -----------------------------------------

    def notice(self, notice: Notice, headers: dict[str, str]) -> None:
        if notice.kind == "connected":
            if self.started is None:
                self.started = time.monotonic()
                message = f"connected to {notice.detail} (headers: {describe_headers(headers)})"
                self.err.print(safe(message), style="dim")
            elif notice.resume is not None:  # judged against the seqs held: the server replays what was missed
                self.reconnects += 1
                self.health.begin_resume()
                self._reconnected = "resume"
                n = notice.resume
                self.err.print(safe(f"reconnected to {notice.detail}; resuming {n} stream{'' if n == 1 else 's'} "
                                    "from the last seq seen"), style="green")  # fmt: skip
            else:
                self.reconnects += 1
                self.health.reset_baseline()  # what was sent while away is a lost connection, not a gap
                self._reconnected = "reset"
                self.err.print(safe(f"reconnected to {notice.detail}"), style="green")
        elif notice.kind == "disconnected":
            self.err.print(safe(f"disconnected: {notice.detail}"), style="bold yellow")
        elif notice.kind == "reconnecting":
            message = f"reconnecting in {notice.delay:.2f} s (attempt {notice.attempt}; {notice.detail})"
            self.err.print(safe(message), style="yellow")

    def summary(self) -> None:
        now = time.monotonic()
        elapsed = max((self.ended or now) - (self.started or now), 1e-9)
        totals = self.health.totals()
        noun = "message" if self.shown == 1 else "messages"
        per_type = ", ".join(f"{t} {n}" for t, n in self.types.most_common()) or "none"
        lines = [
            f"{self.shown} {noun} in {elapsed:.1f} s ({self.shown / elapsed:.1f} msgs/s): {per_type}",
            f"gaps {totals.gaps} ({totals.missed} missed) · resyncs {totals.resyncs} ({totals.resynced_missed} "
            f"skipped) · duplicates {totals.duplicates} · out of order {totals.out_of_order} · "
            f"non-JSON frames {self.non_json} · filtered out {self.filtered} · reconnections {self.reconnects}",
        ]
        resumes = self.health.resumes
        if resumes.sent or resumes.healed:
            lines.append(resumes.text())
        if totals.lag_samples:
            mean, most = _span(totals.lag_ms_mean / 1000), _span(totals.lag_ms_max / 1000)
            lines.append(f"age at arrival: mean {mean}, max {most}")
        bad = totals.gaps or totals.duplicates or totals.out_of_order
        self.err.print(safe("\n".join(lines)), style="yellow" if bad else "dim")
        if self.checker is None:
            return
        found = self.validation()
        per_type = ", ".join(f"{t} {n}" for t, n in self.violations.most_common())
        noun = "violation" if found["violations"] == 1 else "violations"
        self.err.print(safe(f"validation against {self.checked_against}: {self.checked} frames checked, "
                            f"{found['violations']} {noun}" + (f" ({per_type})" if per_type else "")),
                       style="bold red" if found["violations"] else "green")  # fmt: skip
        if self.as_json and not self.broken:  # the last NDJSON line; the loop that flushes has ended
            sys.stdout.write(json.dumps({"validation": found}, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.flush()
