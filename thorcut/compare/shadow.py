"""Judging shadow traffic: samples in, verdicts out. Pure (no I/O); live runs and replays share it.

The caller feeds WebSocket messages (:meth:`ShadowJudge.ws_message`, which says what REST request
pairs the message) and REST outcomes (:meth:`ShadowJudge.rest_response`), then calls
:meth:`ShadowJudge.report` with the length of the observation window. Live runs and replays feed
the same calls in the same order, so a recording replays to the verdict it was recorded with.

Counts per feature (DESIGN.md, "The parity verdict"): ``samples`` (WebSocket messages of the
feature), ``paired``, ``matched``, ``mismatched``, ``unpaired`` (REST never showed that ``seq``),
stream health from :mod:`thorcut.compare.health`, and ``errors`` (REST failures by kind plus
messages of the feature without a usable ``seq``/``key``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from thorcut.compare.engine import Comparator, Difference, Rules
from thorcut.compare.health import Counters, Event, StreamHealth, as_seq, path_get
from thorcut.compare.pairing import Pair, Pairer
from thorcut.compare.verdict import Verdict
from thorcut.manifest import Endpoint, FeatureSpec, Manifest, Thresholds
from thorcut.recording import Body, body_value


@dataclass(frozen=True)
class RestRequest:
    """A REST request that pairs the sample ``type``/``key``/``seq`` (None: made for no sample)."""

    feature: str
    type: str
    key: str
    seq: int | None
    path: str  # the endpoint path with the key filled in (URL-quoted)


@dataclass
class PathStat:
    """How often one path differed, with the first example seen."""

    path: str
    kind: str
    count: int
    ws: Any
    rest: Any
    key: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "count": self.count, "ws": self.ws, "rest": self.rest,
                "key": self.key, "seq": self.seq}  # fmt: skip


@dataclass
class Tally:
    """Everything counted for one feature."""

    spec: FeatureSpec
    samples: int = 0
    paired: int = 0
    matched: int = 0
    mismatched: int = 0
    unpaired: int = 0
    unpaired_why: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    rest_errors: Counter[str] = field(default_factory=Counter)
    paths: dict[str, PathStat] = field(default_factory=dict)
    examples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    first_at: str | None = None
    last_at: str | None = None

    @property
    def errors(self) -> int:
        return self.invalid + sum(self.rest_errors.values())


@dataclass(frozen=True)
class FeatureReport:
    """The verdict on one feature and the evidence behind it."""

    feature: str
    verdict: Verdict
    reasons: tuple[str, ...]
    counts: dict[str, int]
    health: dict[str, Any]
    rest_errors: dict[str, int]
    unpaired_why: dict[str, int]
    paths: tuple[PathStat, ...]
    examples: tuple[dict[str, Any], ...]
    window_s: float
    first_at: str | None
    last_at: str | None
    thresholds: Thresholds

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "verdict": self.verdict.value,
            "reasons": list(self.reasons),
            "counts": self.counts,
            "health": self.health,
            "rest_errors": self.rest_errors,
            "unpaired_why": self.unpaired_why,
            "paths": [p.to_dict() for p in self.paths],
            "examples": list(self.examples),
            "window_s": round(self.window_s, 3),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "thresholds": vars(self.thresholds),
        }


def judge(counts: dict[str, int], window_s: float, t: Thresholds) -> tuple[Verdict, tuple[str, ...]]:
    """Return the verdict and its reasons: FAIL if any threshold is exceeded, else PENDING until
    there are enough paired samples over a long enough window, else PASS."""
    fails = []
    paired, mismatched = counts["paired"], counts["mismatched"]
    rate = mismatched / paired if paired else 0.0
    if mismatched and rate > t.max_mismatch_rate:
        fails.append(f"mismatch rate {rate:.2%} > {t.max_mismatch_rate:.2%} ({mismatched} of {paired} pairs)")
    for name, limit, what in (("gaps", t.max_gaps, "gaps"), ("duplicates", t.max_duplicates, "duplicates"),
                              ("out_of_order", t.max_out_of_order, "out-of-order messages")):  # fmt: skip
        if counts[name] > limit:
            fails.append(f"{counts[name]} {what} > {limit} allowed")
    if fails:
        return Verdict.FAIL, tuple(fails)
    pending = []
    if paired < t.min_paired:
        pending.append(f"{paired} paired samples < {t.min_paired} needed")
    if window_s < t.min_duration:
        pending.append(f"window {window_s:.1f} s < {t.min_duration:g} s needed")
    if pending:
        return Verdict.PENDING, tuple(pending)
    return Verdict.PASS, (f"{paired} pairs over {window_s:.1f} s, all within thresholds",)


def fill_path(endpoint: Endpoint, key: str) -> str:
    from urllib.parse import quote

    return endpoint.path.replace("{key}", quote(key, safe=""))


class ShadowJudge:
    """Pair, compare and count the traffic of ``features``."""

    def __init__(self, manifest: Manifest, features: Iterable[str], *, min_paired: int | None = None,
                 keep: int = 64, path_limit: int = 50) -> None:  # fmt: skip
        self.specs: dict[str, FeatureSpec] = {}
        for name in features:
            spec = manifest.get(name)
            if min_paired is not None:
                from dataclasses import replace

                spec = replace(spec, thresholds=replace(spec.thresholds, min_paired=min_paired))
            self.specs[name] = spec
        self.by_type: dict[str, FeatureSpec] = {t: s for s in self.specs.values() for t in s.types}
        self.endpoints: dict[str, Endpoint] = {e.type: e for s in self.specs.values() for e in s.rest}
        self.comparators = {name: Comparator(Rules.from_spec(spec)) for name, spec in self.specs.items()}
        self.tallies = {name: Tally(spec) for name, spec in self.specs.items()}
        self.health = StreamHealth()
        self.pairer = Pairer(self._paired, self._unpaired, keep=keep)
        self.path_limit = path_limit
        self.non_json = 0
        self.other = 0  # JSON messages of no judged feature (heartbeats, flags, other features)

    # -- input ---------------------------------------------------------------------------------

    def ws_message(self, msg: Any, at: str, received: float | None = None, data: Body | None = None
                   ) -> RestRequest | None:  # fmt: skip
        """Take one WebSocket message; return the REST request that pairs it, or None.

        ``data``: the message's ``data`` text when a data-last recording line held it apart.
        """
        type_ = msg.get("type") if isinstance(msg, dict) else None
        spec = self.by_type.get(type_) if isinstance(type_, str) else None
        if spec is None:
            self.other += 1
            return None
        assert isinstance(type_, str)
        tally = self.tallies[spec.name]
        tally.samples += 1
        if tally.first_at is None:
            tally.first_at = at
        tally.last_at = at
        seq = as_seq(path_get(msg, spec.ws.seq))
        key = path_get(msg, spec.ws.key)
        if seq is None or not isinstance(key, str | int) or isinstance(key, bool):
            tally.invalid += 1
            return None
        key = str(key)
        ts = msg.get("ts")
        event, _ = self.health.observe(type_, key, seq, ts=ts if isinstance(ts, str) else None, received=received)
        if event is Event.DUPLICATE:
            return None  # the first copy is the sample
        body = data if data is not None and spec.ws.body == "data" else path_get(msg, spec.ws.body)
        paired_now = self.pairer.ws(type_, key, seq, body)
        endpoint = self.endpoints.get(type_)
        if paired_now or endpoint is None:
            return None
        return RestRequest(spec.name, type_, key, seq, fill_path(endpoint, key))

    def frame_not_json(self) -> None:
        self.non_json += 1

    def reconnected(self) -> None:
        """The stream reconnected: messages missed meanwhile are the connection's, not gaps."""
        self.health.reset_baseline()

    def rest_response(self, req: RestRequest, *, status: int | None, body: Any = None, error: str | None = None,
                      data: Body | None = None) -> bool:  # fmt: skip
        """Take the outcome of ``req``; return True if the sample still waits (REST is behind)."""
        tally = self.tallies[req.feature]
        spec = tally.spec
        kind = error
        if kind is None and status is not None and not 200 <= status < 300:
            kind = f"http_{status}"
        seq = as_seq(path_get(body, spec.rest_locators.seq)) if kind is None else None
        if kind is None and seq is None:
            kind = "no_seq"
        if kind is not None or seq is None:
            tally.rest_errors[kind or "no_seq"] += 1
            if req.seq is not None:
                self.pairer.give_up(req.type, req.key, req.seq, "rest_error")
            return False
        loc = spec.rest_locators.body
        self.pairer.rest(req.type, req.key, req.seq, seq,
                         data if data is not None and loc == "data" else path_get(body, loc))  # fmt: skip
        return req.seq is not None and self.pairer.waiting(req.type, req.key, req.seq)

    # -- outcomes ------------------------------------------------------------------------------

    def _paired(self, pair: Pair) -> None:
        spec = self.by_type[pair.type]
        tally = self.tallies[spec.name]
        tally.paired += 1
        ws, rest = pair.ws, pair.rest
        if type(ws) is Body and type(rest) is Body and ws.text == rest.text:
            tally.matched += 1  # identical JSON text: equal under any rule, no parsing needed
            return
        diffs = self.comparators[spec.name].compare(body_value(ws), body_value(rest))
        if not diffs:
            tally.matched += 1
            return
        tally.mismatched += 1
        self._note(tally, pair, diffs)

    def _note(self, tally: Tally, pair: Pair, diffs: list[Difference]) -> None:
        for d in diffs:
            stat = tally.paths.get(d.path)
            if stat is not None:
                stat.count += 1
            elif len(tally.paths) < self.path_limit:
                dd = d.to_dict()
                tally.paths[d.path] = PathStat(d.path, d.kind.value, 1, dd["ws"], dd["rest"], pair.key, pair.seq)
        tally.examples.append(
            {"type": pair.type, "key": pair.key, "seq": pair.seq, "differences": [d.to_dict() for d in diffs[:20]]}
        )

    def _unpaired(self, type_: str, key: str, seq: int, why: str) -> None:
        tally = self.tallies[self.by_type[type_].name]
        tally.unpaired += 1
        tally.unpaired_why[why] += 1

    def report(self, window_s: float) -> dict[str, FeatureReport]:
        """Flush what still waits and judge every feature over ``window_s`` seconds."""
        self.pairer.flush()
        out = {}
        for name, tally in self.tallies.items():
            health: Counters = self.health.totals(tally.spec.types)
            counts = {
                "samples": tally.samples,
                "paired": tally.paired,
                "matched": tally.matched,
                "mismatched": tally.mismatched,
                "unpaired": tally.unpaired,
                "gaps": health.gaps,
                "missed": health.missed,
                "duplicates": health.duplicates,
                "out_of_order": health.out_of_order,
                "errors": tally.errors,
            }
            verdict, reasons = judge(counts, window_s, tally.spec.thresholds)
            paths = tuple(sorted(tally.paths.values(), key=lambda p: (-p.count, p.path)))
            out[name] = FeatureReport(
                name, verdict, reasons, counts, health.to_dict(), dict(tally.rest_errors),
                dict(tally.unpaired_why), paths, tuple(tally.examples), window_s, tally.first_at, tally.last_at,
                tally.spec.thresholds,
            )  # fmt: skip
        return out
