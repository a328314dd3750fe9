"""Judging shadow traffic: samples in, verdicts out. Pure (no I/O); live runs and replays share it.

The caller feeds WebSocket messages (:meth:`ShadowJudge.ws_message`, which says what REST request
pairs the message) and REST outcomes (:meth:`ShadowJudge.rest_response`), then calls
:meth:`ShadowJudge.report` with the length of the observation window. Live runs and replays feed
the same calls in the same order, so a recording replays to the verdict it was recorded with.

Counts per feature (docs/contracts.md, "The parity verdict"): ``samples`` (WebSocket messages of the
feature), ``paired``, ``matched``, ``mismatched``, ``unpaired`` (REST never showed that ``seq``),
stream health from :mod:`thorcut.compare.health` (gaps, and apart from them the resyncs: jumps
marked ``"resync": true``), and ``errors`` (REST failures by kind plus messages of the feature
without a usable ``seq``/``key``).

After a reconnect the caller says whether it resumed the stream (:meth:`ShadowJudge.reconnected`);
the server's answers to a resume (``resumed``, or ``error`` while one waits) are not samples: they
end the resume (:attr:`ShadowJudge.health`'s ``resumes`` counts them).

A REST response names the sample it was made for (``RestRequest.seq``) when the caller knows it
(live runs, recordings thorcut writes). When it does not (``seq`` None: a recording written by
another tool or by hand), the response pairs whichever waiting sample of its (type, key) has the
same ``seq``, and a sample that no response ever matched is unpaired when the input ends: as
``rest_ahead`` if REST showed a newer ``seq`` of its stream meanwhile, else ``rest_behind``.
Verdicts and counts are the same either way; only a REST failure cannot be charged to a sample
without it, so such a sample is counted unpaired at the end instead of as ``rest_error``.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from thorcut.clock import iso_timestamp
from thorcut.compare.engine import Comparator, Difference
from thorcut.compare.health import Counters, Event, Reply, StreamHealth
from thorcut.compare.locators import as_seq, path_get
from thorcut.compare.pairing import Pair, Pairer
from thorcut.compare.rules import Rules
from thorcut.manifest import Endpoint, FeatureSpec, Manifest, Thresholds
from thorcut.verdict import Verdict


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


@dataclass(frozen=True)
class Fault:
    """The newest event behind one counter that can fail a verdict, so that a caller can name it in
    one line (``thorcut guard``'s rollback reason): which stream, which ``seq``, and when its
    WebSocket message arrived (``received``, Unix seconds; None when unknown)."""

    counter: str  # "mismatched", "gaps", "resyncs", "duplicates" or "out_of_order"
    type: str
    key: str
    seq: int
    received: float | None
    skipped: int = 0  # gaps and resyncs: the versions jumped over
    difference: dict[str, Any] | None = None  # mismatches: the first difference (Difference.to_dict())


#: The counter each health event grows, for :attr:`Tally.faults`.
_EVENT_COUNTER = {Event.GAP: "gaps", Event.RESYNC: "resyncs", Event.DUPLICATE: "duplicates",
                  Event.OUT_OF_ORDER: "out_of_order"}  # fmt: skip


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
    faults: dict[str, Fault] = field(default_factory=dict)  # counter -> its newest Fault

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


def failures(counts: dict[str, int], t: Thresholds) -> list[tuple[str, str]]:
    """Return ``(counter, reason)`` for each threshold ``counts`` exceed, in :func:`judge`'s order:
    ``mismatched`` (the mismatch rate), ``gaps``, ``resyncs``, ``duplicates``, ``out_of_order``."""
    fails = []
    paired, mismatched = counts["paired"], counts["mismatched"]
    rate = mismatched / paired if paired else 0.0
    if mismatched and rate > t.max_mismatch_rate:
        fails.append(
            ("mismatched", f"mismatch rate {rate:.2%} > {t.max_mismatch_rate:.2%} ({mismatched} of {paired} pairs)")
        )
    for name, limit, what in (("gaps", t.max_gaps, "gaps"), ("resyncs", t.max_resyncs, "resyncs"),
                              ("duplicates", t.max_duplicates, "duplicates"),
                              ("out_of_order", t.max_out_of_order, "out-of-order messages")):  # fmt: skip
        if counts.get(name, 0) > limit:
            fails.append((name, f"{counts[name]} {what} > {limit} allowed"))
    return fails


def judge(counts: dict[str, int], window_s: float, t: Thresholds) -> tuple[Verdict, tuple[str, ...]]:
    """Return the verdict and its reasons: FAIL if any threshold is exceeded, else PENDING until
    there are enough paired samples over a long enough window, else PASS."""
    fails = failures(counts, t)
    if fails:
        return Verdict.FAIL, tuple(reason for _, reason in fails)
    paired = counts["paired"]
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


class UrlMatcher:
    """Does a request URL fit an endpoint template, and with which key?

    The URL may be absolute (``http://host/api/...``) or carry a prefix before the template's path
    (a backend mounted under ``/thor``); its query may hold more parameters, in any order. The
    path part of ``{key}`` is URL-decoded, like the query's.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        parts = urlsplit(endpoint.path)
        literal = [re.escape(p) for p in parts.path.split("{key}")]
        self.path = re.compile("(?:.*?)" + "(?P<key>[^/]+)".join(literal) + "/?")
        self.query = parse_qsl(parts.query, keep_blank_values=True)

    def key(self, url: str) -> str | None:
        """Return the key that ``url`` fills the template with ("" if it holds none), or None."""
        parts = urlsplit(url)
        m = self.path.fullmatch(parts.path)
        if m is None:
            return None
        key = unquote(m.group("key")) if "key" in m.groupdict() else ""
        if self.query:
            given = dict(parse_qsl(parts.query, keep_blank_values=True))
            for name, value in self.query:
                if name not in given:
                    return None
                if value == "{key}":
                    key = given[name]
                elif value != given[name]:
                    return None
        return key


def _same_json(a: Any, b: Any) -> bool:
    """True if ``a`` and ``b`` are the same JSON value (same types, same numbers, any key order).

    One canonical serialisation each (orjson, keys sorted): about 7.5 µs for a 7 KB body, where the
    engine's walk of a pair whose keys come in another order took 80 µs (docs/benchmarks.md). Equal
    bytes mean identical values, which are equal under any rule; ``1`` and ``1.0``, ``true`` and
    ``1`` serialise apart and go to the engine. Integers beyond 64 bits (orjson refuses them) go to
    the engine too. Only for values without NaN/Infinity, which orjson writes as ``null``.
    """
    try:
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate
        return False


class ShadowJudge:
    """Pair, compare and count the traffic of ``features``.

    **Equal pairs, fast.** With ``strict_json`` (no NaN/Infinity) two bodies that are the same JSON
    value are equal under any rule, with no engine walk. Python's ``==`` (4.4 µs a pair of 7 KB
    bodies, any key order) agrees with the engine but for ``True == 1``/``False == 0.0``: it decides
    for streams none of whose messages or responses may hold a bool (``maybe_bool=False``, known to
    a replay from each line's text), :func:`_same_json` (15 µs) for the others. What is not found
    equal goes to the engine."""

    def __init__(self, manifest: Manifest, features: Iterable[str], *, min_paired: int | None = None,
                 keep: int = 64, path_limit: int = 50, strict_json: bool = False) -> None:  # fmt: skip
        """``strict_json``: every body comes from RFC 8259 JSON (no NaN or Infinity, as a recording's
        reader guarantees), so two bodies whose canonical serialisations are the same bytes are
        equal under any rule, decided without the engine's walk."""
        self.strict_json = strict_json
        self.specs: dict[str, FeatureSpec] = {}
        for name in features:
            spec = manifest.get(name)
            if min_paired is not None:
                from dataclasses import replace

                spec = replace(spec, thresholds=replace(spec.thresholds, min_paired=min_paired))
            self.specs[name] = spec
        self.by_type: dict[str, FeatureSpec] = {t: s for s in self.specs.values() for t in s.types}
        self.endpoints: dict[str, Endpoint] = {e.type: e for s in self.specs.values() for e in s.rest}
        self._matchers: dict[str, list[UrlMatcher]] = {}
        self.comparators = {name: Comparator(Rules.from_spec(spec)) for name, spec in self.specs.items()}
        self.tallies = {name: Tally(spec) for name, spec in self.specs.items()}
        self.health = StreamHealth()
        self.pairer = Pairer(self._paired, self._unpaired, keep=keep)
        self.path_limit = path_limit
        self.non_json = 0
        self.other = 0  # JSON messages of no judged feature (heartbeats, flags, other features, resume replies)
        # The (type, key) streams that had a message or response that may hold a true/false (all
        # of them unless the caller says otherwise, as a replay does from each line's text).
        self._maybe_bool: set[tuple[str, str]] = set()
        # When each sample's WebSocket message arrived, kept only once asked (track_arrivals): a
        # mismatch found later, when REST answers, then names the time its message arrived.
        self._arrivals: OrderedDict[tuple[str, str, int], float] | None = None
        self._arrivals_keep = 0

    def track_arrivals(self, keep: int = 4096) -> None:
        """Remember when the last ``keep`` samples' messages arrived, so that a mismatch's
        :class:`Fault` says when its message arrived (live runs; a replay does not need it)."""
        if self._arrivals is None:
            self._arrivals = OrderedDict()
        self._arrivals_keep = keep

    # -- input ---------------------------------------------------------------------------------

    def ws_message(self, msg: Any, at: str, received: float | None = None, *, request: bool = True,
                   maybe_bool: bool = True) -> RestRequest | None:  # fmt: skip
        """Take one WebSocket message; return the REST request that pairs it, or None.

        ``request=False`` (replays): the request is not needed, so it is not built.
        ``maybe_bool=False``: the message certainly holds no ``true``/``false``.
        """
        type_ = msg.get("type") if isinstance(msg, dict) else None
        spec = self.by_type.get(type_) if isinstance(type_, str) else None
        if spec is None:
            self.other += 1
            if type_ == "resumed":
                reply = Reply.parse(msg)
                if reply is not None:
                    for held in self.health.resume_answered(reply):
                        if held.missing and held.type in self.by_type:
                            tally = self.tallies[self.by_type[held.type].name]
                            tally.faults["gaps"] = Fault("gaps", held.type, held.key, held.seq, received,
                                                         held.missing)  # fmt: skip
            elif type_ == "error":
                self.health.resume_refused()
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
        clock = iso_timestamp(at) if self.health.resuming else None  # the recording's time, live and replayed
        event, skipped = self.health.observe(type_, key, seq, ts=ts if isinstance(ts, str) else None,
                                             received=received, resync=msg.get("resync") is True,
                                             clock=clock)  # fmt: skip
        if event is not Event.NEXT and event is not Event.FIRST:
            counter = "resyncs" if event is Event.RESENT and skipped else _EVENT_COUNTER.get(event)
            if counter is not None:
                tally.faults[counter] = Fault(counter, type_, key, seq, received, skipped)
            if event is Event.DUPLICATE or event is Event.RESENT:
                return None  # the first copy is the sample
        if self._arrivals is not None and received is not None:
            self._arrivals[(type_, key, seq)] = received
            if len(self._arrivals) > self._arrivals_keep:
                self._arrivals.popitem(last=False)
        if maybe_bool:
            self._maybe_bool.add((type_, key))
        paired_now = self.pairer.ws(type_, key, seq, path_get(msg, spec.ws.body))
        endpoint = self.endpoints.get(type_)
        if paired_now or endpoint is None or not request:
            return None
        return RestRequest(spec.name, type_, key, seq, fill_path(endpoint, key))

    def frame_not_json(self) -> None:
        self.non_json += 1

    def reconnected(self, *, resume: bool = False) -> None:
        """The stream reconnected. ``resume``: a resume was sent with :meth:`resume_since`, so what
        follows is judged against the kept baseline (replayed envelopes are the next versions, a
        marked jump is a resync, an unmarked one a gap); else messages missed meanwhile are the
        connection's, not gaps (a new baseline)."""
        if resume:
            self.health.begin_resume()
        else:
            self.health.reset_baseline()

    def resume_since(self) -> list[dict[str, Any]] | None:
        """The ``since`` of a resume for the judged features' streams, or None when none is held."""
        return self.health.since(frozenset(self.by_type)) or None

    def rest_response(self, req: RestRequest, *, status: int | None, body: Any = None, error: str | None = None,
                      maybe_bool: bool = True) -> bool:  # fmt: skip
        """Take the outcome of ``req``; return True if the sample still waits (REST is behind).
        ``maybe_bool=False``: ``body`` certainly holds no ``true``/``false``."""
        return self.rest_outcome(req.feature, req.type, req.key, req.seq, status, body, error, maybe_bool)

    def rest_outcome(self, feature: str, type_: str, key: str, for_seq: int | None, status: int | None, body: Any,
                     error: str | None = None, maybe_bool: bool = True,
                     reread: Callable[[], Any] | None = None) -> bool:  # fmt: skip
        """:meth:`rest_response` without a :class:`RestRequest` (a replay has no request to send;
        building the frozen dataclass cost 1.5 µs a REST line). ``reread`` returns ``body`` anew,
        so that the response is not held as a parsed body once it has paired (:class:`Pairer`)."""
        tally = self.tallies[feature]
        spec = tally.spec
        kind = error
        if kind is None and status is not None and not 200 <= status < 300:
            kind = f"http_{status}"
        seq = as_seq(path_get(body, spec.rest_locators.seq)) if kind is None else None
        if kind is None and seq is None:
            kind = "no_seq"
        if kind is not None or seq is None:
            tally.rest_errors[kind or "no_seq"] += 1
            if for_seq is not None:
                self.pairer.give_up(type_, key, for_seq, "rest_error")
            return False
        if maybe_bool:
            self._maybe_bool.add((type_, key))
        where = spec.rest_locators.body
        again = None if reread is None else (lambda: path_get(reread(), where))
        self.pairer.rest(type_, key, for_seq, seq, path_get(body, where), again)
        return for_seq is not None and self.pairer.waiting(type_, key, for_seq)

    def locate(self, feature: str, url: str, body: Any) -> tuple[str | None, str | None]:
        """The (type, key) a REST response of ``feature`` answers, from what it holds: the body's
        own ``type`` and its key (the feature's ``rest_locators``), else the URL matched against
        the feature's endpoint templates; a feature of one type is that type. None where nothing
        tells."""
        spec = self.specs[feature]
        type_ = body.get("type") if isinstance(body, dict) else None
        type_ = type_ if isinstance(type_, str) and type_ in spec.types else None
        key = path_get(body, spec.rest_locators.key) if spec.rest_locators.key else None
        key = str(key) if isinstance(key, str | int) and not isinstance(key, bool) else None
        if type_ is None or key is None:
            matchers = self._matchers.get(feature)
            if matchers is None:
                matchers = self._matchers[feature] = [UrlMatcher(e) for e in spec.rest]
            for m in matchers:
                if type_ is not None and m.endpoint.type != type_:
                    continue
                found = m.key(url)
                if found is not None:
                    type_ = m.endpoint.type
                    key = key if key is not None else found
                    break
        if type_ is None and len(spec.types) == 1:
            type_ = spec.types[0]
        return type_, key

    # -- outcomes ------------------------------------------------------------------------------

    def _paired(self, pair: Pair) -> None:
        spec = self.by_type[pair.type]
        tally = self.tallies[spec.name]
        tally.paired += 1
        ws, rest = pair.ws, pair.rest
        if self.strict_json:  # == where no bool can blur it, else the canonical bytes (class docstring)
            exact = (pair.type, pair.key) not in self._maybe_bool
            if ws == rest if exact else _same_json(ws, rest):
                tally.matched += 1  # identical JSON values: equal under any rule
                return
        diffs = self.comparators[spec.name].compare(ws, rest)
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
        differences = [d.to_dict() for d in diffs[:20]]
        tally.examples.append({"type": pair.type, "key": pair.key, "seq": pair.seq, "differences": differences})
        received = self._arrivals.get((pair.type, pair.key, pair.seq)) if self._arrivals is not None else None
        tally.faults["mismatched"] = Fault("mismatched", pair.type, pair.key, pair.seq, received,
                                           difference=differences[0])  # fmt: skip

    def _unpaired(self, type_: str, key: str, seq: int, why: str) -> None:
        tally = self.tallies[self.by_type[type_].name]
        tally.unpaired += 1
        tally.unpaired_why[why] += 1

    def counts(self, feature: str) -> dict[str, int]:
        """``feature``'s counts so far (the keys of :attr:`FeatureReport.counts`), without ending
        anything: samples still waiting for REST stay waiting (:meth:`report` flushes them)."""
        tally = self.tallies[feature]
        return _counts(tally, self.health.totals(tally.spec.types))

    def report(self, window_s: float) -> dict[str, FeatureReport]:
        """Flush what still waits and judge every feature over ``window_s`` seconds."""
        self.pairer.flush()
        out = {}
        for name, tally in self.tallies.items():
            health: Counters = self.health.totals(tally.spec.types)
            counts = _counts(tally, health)
            verdict, reasons = judge(counts, window_s, tally.spec.thresholds)
            paths = tuple(sorted(tally.paths.values(), key=lambda p: (-p.count, p.path)))
            out[name] = FeatureReport(
                name, verdict, reasons, counts, health.to_dict(), dict(tally.rest_errors),
                dict(tally.unpaired_why), paths, tuple(tally.examples), window_s, tally.first_at, tally.last_at,
                tally.spec.thresholds,
            )  # fmt: skip
        return out


def _counts(tally: Tally, health: Counters) -> dict[str, int]:
    return {
        "samples": tally.samples,
        "paired": tally.paired,
        "matched": tally.matched,
        "mismatched": tally.mismatched,
        "unpaired": tally.unpaired,
        "gaps": health.gaps,
        "missed": health.missed,
        "resyncs": health.resyncs,
        "resynced_missed": health.resynced_missed,
        "duplicates": health.duplicates,
        "out_of_order": health.out_of_order,
        "errors": tally.errors,
    }
