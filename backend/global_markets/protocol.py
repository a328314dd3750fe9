"""The ``/ws/stream/`` protocol, the client's view (docs/contracts.md has the envelope), and its parsing.

- Query string: ``?features=positions,intraday`` chooses the features at connect (default: all);
  ``?client=<id>`` names the client for the sticky percent bucket (default ``user:<pk>``).
- Client commands (JSON text): ``{"action": "subscribe"|"unsubscribe", "features": [...]}`` →
  ``{"type": "subscribed", "features": [...]}``; ``{"action": "ping"}`` → ``{"type": "pong"}``;
  ``{"action": "flags"}`` → a ``flags`` message; ``{"action": "resume", "since": [{"type", "key",
  "seq"}, ...]}`` → for every stream of the subscribed features the client may see (its own
  accounts', every symbol's and market's; never ``heartbeat``): nothing when its ``seq`` is current,
  the missed envelopes exactly as pushed while the history holds them all (and no more than
  ``THOR_RESUME_REPLAY_MAX``), else the current envelope with ``"resync": true``; then
  ``{"type": "resumed", "replayed": N, "resynced": M}``. Envelopes pushed meanwhile come after it,
  none whose ``seq`` it already sent (docs/contracts.md, "Resuming a stream"; ``global_markets.resume``).
  ``since`` is checked whole (:func:`read_since`): at most ``MAX_SINCE`` objects, ``type`` a
  feature's message type, ``key`` a string of 1 to 64 characters, ``seq`` an integer from 0 to
  2^63 - 1 (not a boolean); a stream named twice counts with its higher ``seq``. A bad frame
  (binary, not JSON, JSON nested deeper than ``MAX_DEPTH``, not an object, unknown action or
  feature, a malformed ``since``) gets ``{"type": "error", "error": "..."}``, nothing else, and the
  connection stays.
- Server messages: ``flags`` on connect and on every flag change, then ``subscribed``, then the
  envelopes of the subscribed features plus ``heartbeat`` (always). When the worker's own path
  through the channel layer broke and healed, it brings the client back to the current state of
  every stream it had sent it, as a resume from the last ``seq`` sent would, and ends with
  ``{"type": "resumed", "replayed": N, "resynced": M, "healed": true}``.
- Close codes: 4401 not authenticated (accepted first, so the client can read the code; a
  handshake refused before ``accept`` is only an HTTP 403), 4408 too slow (its send queue
  overflowed), 1009 frame larger than ``THOR_WS_MAX_MESSAGE``, 1011 an unexpected error in the
  server (the stream is cleaned up as on any disconnect, issue 10), 1007 a text frame that is not
  UTF-8 (the WebSocket protocol layer fails it before the consumer sees it, RFC 6455 §8.1; the
  same bytes in a binary frame get an error reply), 1000 a normal close.

Liveness: the server's WebSocket pings (uvicorn ``--ws-ping-interval``/``--ws-ping-timeout``) find
dead peers; ``{"action": "ping"}`` is for clients whose API cannot see protocol pings (browsers).

The functions here only read what a client sent; the consumer acts on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from thor_trading.features import NAMES, TYPE_FEATURE

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
#: Deepest JSON nesting a command may have (commands need 2). Checked before parsing, without
#: recursion: ``"[" * 1000`` used to raise RecursionError in ``json.loads`` and kill the
#: connection without a close frame or a disconnect (issue 10).
MAX_DEPTH = 32

ACTIONS = ("subscribe", "unsubscribe", "ping", "flags", "resume")
#: A resume's ``since``: at most this many streams, keys of 1 to ``MAX_KEY`` characters, seqs up to ``MAX_SEQ``.
MAX_SINCE = 1000
MAX_KEY = 64
MAX_SEQ = 2**63 - 1
CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


@dataclass(frozen=True)
class BadFrame:
    """A frame refused with an error reply: ``reason`` labels the metric, ``error`` tells the client."""

    reason: str
    error: str


@dataclass
class Greeting:
    """What a connecting client asked for in its query string, and what was wrong with it."""

    client_id: str
    features: set[str]
    errors: list[str] = field(default_factory=list)


def nested_deeper_than(text: str, limit: int) -> bool:
    """Return whether the JSON ``text`` nests arrays/objects deeper than ``limit`` (no recursion).

    Brackets inside strings do not count. Linear in ``len(text)``, and a text with no more than
    ``limit`` opening brackets (every real command) is answered by two ``str.count`` calls.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def unknown_features(names: list[str]) -> str:
    shown = ", ".join(repr(n[:64]) for n in names[:8])
    return f"unknown feature(s) {shown}; known features: {', '.join(NAMES)}"


def read_greeting(query_string: bytes, user_pk: object) -> Greeting:
    """The client id (default ``user:<pk>``) and features (default: all) of a connect's query string."""
    params = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    client = (params.get("client") or [""])[-1]
    greeting = Greeting(client if CLIENT_ID.fullmatch(client) else f"user:{user_pk}", set())
    if client and client != greeting.client_id:
        greeting.errors.append("invalid client id (1-128 of A-Z a-z 0-9 . _ : @ -); using " + greeting.client_id)
    wanted = list(NAMES)
    if "features" in params:
        wanted = [f.strip() for value in params["features"] for f in value.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in NAMES]
    if unknown:
        greeting.errors.append(unknown_features(unknown))
    greeting.features = {f for f in wanted if f in NAMES}
    return greeting


def frame_size(text_data: str | None, bytes_data: bytes | None) -> int:
    """The frame's size in bytes (a text frame's UTF-8 length)."""
    if text_data is not None:
        return len(text_data) if text_data.isascii() else len(text_data.encode("utf-8"))
    return len(bytes_data or b"")


def read_command(text_data: str | None) -> dict[str, Any] | BadFrame:
    """The command of a frame (a JSON object with a known ``action``), or why it is refused."""
    if text_data is None:
        return BadFrame("binary", "binary frames are not supported: send JSON text")
    if nested_deeper_than(text_data, MAX_DEPTH):
        return BadFrame("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        command = json.loads(text_data)
    except RecursionError:  # not reachable after the depth check; kept as the last line of defence
        return BadFrame("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    except ValueError:  # malformed, or an integer of more than 4300 digits
        return BadFrame("not_json", "malformed JSON")
    if not isinstance(command, dict):
        return BadFrame("not_object", 'a command is a JSON object such as {"action": "ping"}')
    action = command.get("action")
    if action not in ACTIONS:
        shown = repr(action[:64]) if isinstance(action, str) else f"of type {type(action).__name__}"
        return BadFrame("unknown_action", f"unknown action {shown}; known actions: {', '.join(ACTIONS)}")
    return command


def read_features(action: str, names: object) -> list[str] | BadFrame:
    """The features a (un)subscribe names, all known; a command applies whole or not at all."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return BadFrame("bad_features", f'"{action}" needs "features": a list of feature names')
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        return BadFrame("unknown_feature", unknown_features(unknown))
    return names


#: A stream a resume names: (message type, key).
Stream = tuple[str, str]


def read_since(since: object) -> dict[Stream, int] | BadFrame:
    """A resume's ``since`` as stream -> seq (the higher one for a stream named twice), or why it is refused.

    Nothing of the client's is echoed but the position of the bad entry: an error must not become
    a way to reflect text (or learn anything) through the server.
    """
    usage = f'"resume" needs "since": a list of at most {MAX_SINCE} objects {{"type", "key", "seq"}}'
    if not isinstance(since, list) or len(since) > MAX_SINCE:
        return BadFrame("bad_since", usage)
    out: dict[Stream, int] = {}
    for i, entry in enumerate(since):
        if not isinstance(entry, dict):
            return BadFrame("bad_since", f"since[{i}] is not an object: {usage}")
        type_, key, seq = entry.get("type"), entry.get("key"), entry.get("seq")
        if not isinstance(type_, str) or type_ not in TYPE_FEATURE:
            return BadFrame("bad_since", f'since[{i}]: "type" must be a feature\'s message type: '
                                         f"{', '.join(TYPE_FEATURE)}")  # fmt: skip
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
            return BadFrame("bad_since", f'since[{i}]: "key" must be a string of 1 to {MAX_KEY} characters')
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:  # bool is an int subclass: refused too
            return BadFrame("bad_since", f'since[{i}]: "seq" must be an integer from 0 to 2^63 - 1')
        stream = (type_, key)
        if seq > out.get(stream, -1):
            out[stream] = seq
    return out
