"""The ``/ws/stream/`` protocol, the client's view (docs/contracts.md has the envelope), and its parsing.

- Query string: ``?features=positions,intraday`` chooses the features at connect (default: all);
  ``?client=<id>`` names the client for the sticky percent bucket (default ``user:<pk>``).
- Client commands (JSON text): ``{"action": "subscribe"|"unsubscribe", "features": [...]}`` →
  ``{"type": "subscribed", "features": [...]}``; ``{"action": "ping"}`` → ``{"type": "pong"}``;
  ``{"action": "flags"}`` → a ``flags`` message. A bad frame (binary, not JSON, JSON nested deeper
  than ``MAX_DEPTH``, not an object, unknown action or feature) gets ``{"type": "error", "error":
  "..."}`` and the connection stays.
- Server messages: ``flags`` on connect and on every flag change, then ``subscribed``, then the
  envelopes of the subscribed features plus ``heartbeat`` (always).
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

from thor_trading.features import NAMES

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
#: Deepest JSON nesting a command may have (commands need 2). Checked before parsing, without
#: recursion: ``"[" * 1000`` used to raise RecursionError in ``json.loads`` and kill the
#: connection without a close frame or a disconnect (issue 10).
MAX_DEPTH = 32

ACTIONS = ("subscribe", "unsubscribe", "ping", "flags")
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
