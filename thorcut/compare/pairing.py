"""Pairing WebSocket messages with REST responses of the same (type, key, seq). Pure, no I/O.

Every WebSocket message of a judged feature is a *sample*. For each one the caller fetches the
type's REST endpoint for the message's key (live) or reads the REST record made for it (replay),
and reports the response with :meth:`Pairer.rest`, naming the ``seq`` it was fetched for. Then:

* a response at the message's ``seq`` pairs with it;
* a response at a **newer** ``seq`` means REST has moved on: the message is *unpaired* (not a
  mismatch) unless a response at its ``seq`` was already seen. The response itself is kept, since
  the message of that newer ``seq`` may still arrive (REST ahead of the stream);
* a response at an **older** ``seq`` (REST behind, e.g. a lagging replica) leaves the message
  waiting: the caller may ask again; what is still waiting at :meth:`Pairer.flush` is unpaired
  (``rest_ahead`` if a response newer than it was seen meanwhile, else ``rest_behind``).

Memory is bounded: per (type, key) at most ``keep`` responses and ``keep`` waiting messages are
held; older ones are let go (the messages as unpaired), so a replay of any length runs in flat
memory. A response that has paired stays held (a later copy of its message, e.g. one resent after a
reconnect, pairs with it too); given a way to get its body ``again`` (a replay re-reads the
line), it is held as that instead of as the parsed body.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_NONE = object()  # "no such entry" in the maps, where a stored body may be None (JSON null)


# Slotted, not frozen: a frozen __init__ sets each field through object.__setattr__ (1 µs a pair).
@dataclass(slots=True)
class Pair:
    """A WebSocket body and the REST body of the same (type, key, seq)."""

    type: str
    key: str
    seq: int
    ws: Any
    rest: Any


class _Again:
    """The body of a response that has paired, to be got again if it ever pairs once more.

    Holding 64 parsed 7 KB bodies per stream until they are let go kept ~2 MB of objects out of
    the CPU cache, so each new line was parsed into cold memory: releasing them at once made a
    replay of 20,000 pairs 0.1 s (8 %) faster (docs/benchmarks.md, section 7).
    """

    __slots__ = ("get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        self.get = get


@dataclass
class _Stream:
    # OrderedDict, not dict: letting the oldest go is popitem(last=False), O(1). On a plain dict,
    # next(iter(d)) after many deletions at the front walks the dead slots (measured 18 µs).
    waiting: OrderedDict[int, Any] = field(default_factory=OrderedDict)  # seq -> WebSocket body, arrival order
    responses: OrderedDict[int, Any] = field(default_factory=OrderedDict)  # seq -> REST body, arrival order
    newest: int = -1  # the newest seq any response showed


class Pairer:
    """Match samples with responses; ``on_pair``/``on_unpaired`` report each outcome once."""

    def __init__(
        self,
        on_pair: Callable[[Pair], None],
        on_unpaired: Callable[[str, str, int, str], None],
        *,
        keep: int = 64,
    ) -> None:
        self.on_pair = on_pair
        self.on_unpaired = on_unpaired  # (type, key, seq, why): "rest_ahead" | "rest_behind" | "evicted"
        self.keep = keep
        self.streams: dict[tuple[str, str], _Stream] = {}

    def _stream(self, type_: str, key: str) -> _Stream:
        s = self.streams.get((type_, key))
        if s is None:
            s = self.streams[(type_, key)] = _Stream()
        return s

    def ws(self, type_: str, key: str, seq: int, body: Any) -> bool:
        """Add a sample; return True if it paired at once with a response already held."""
        s = self._stream(type_, key)
        if seq in s.responses:
            rest = s.responses[seq]
            if type(rest) is _Again:
                rest = s.responses[seq] = rest.get()
            self.on_pair(Pair(type_, key, seq, body, rest))
            return True
        if seq in s.waiting:  # a duplicate of a waiting message: the first copy decides
            return False
        s.waiting[seq] = body
        if len(s.waiting) > self.keep:
            old, _ = s.waiting.popitem(last=False)
            self.on_unpaired(type_, key, old, "evicted")
        return False

    def rest(self, type_: str, key: str, for_seq: int | None, seq: int, body: Any,
             again: Callable[[], Any] | None = None) -> None:  # fmt: skip
        """Add a response at ``seq``, fetched for the sample ``for_seq`` (None: not for one).

        ``again``: returns ``body`` anew (an equal value); once the response has paired, it is held
        as that rather than as ``body``.
        """
        s = self._stream(type_, key)
        s.responses[seq] = body
        if seq > s.newest:
            s.newest = seq
        if len(s.responses) > self.keep:  # let the longest held go
            s.responses.popitem(last=False)
        waiting = s.waiting.pop(seq, _NONE)  # a body may be null: None cannot mean "not waiting"
        if waiting is not _NONE:
            self.on_pair(Pair(type_, key, seq, waiting, body))
            if again is not None and seq in s.responses:
                s.responses[seq] = _Again(again)
        if for_seq is not None and for_seq < seq and for_seq in s.waiting:
            del s.waiting[for_seq]
            self.on_unpaired(type_, key, for_seq, "rest_ahead")

    def waiting(self, type_: str, key: str, seq: int) -> bool:
        """Return True while the sample ``seq`` has neither paired nor been given up."""
        s = self.streams.get((type_, key))
        return s is not None and seq in s.waiting

    def give_up(self, type_: str, key: str, seq: int, why: str = "rest_behind") -> None:
        """Stop waiting for ``seq`` (REST never reached it): report it unpaired."""
        s = self.streams.get((type_, key))
        if s is not None and s.waiting.pop(seq, _NONE) is not _NONE:
            self.on_unpaired(type_, key, seq, why)

    def flush(self) -> None:
        """End of input: every sample still waiting is unpaired."""
        for (type_, key), s in self.streams.items():
            for seq in list(s.waiting):
                self.on_unpaired(type_, key, seq, "rest_ahead" if s.newest > seq else "rest_behind")
            s.waiting.clear()
