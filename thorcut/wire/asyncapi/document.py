"""The AsyncAPI 3.0 document of a backend's WebSocket stream, generated from the manifest.

:func:`document` writes one channel (the stream's path, ``/ws/stream/`` by default) with a message
per message type of every feature (its envelope, docs/contracts.md "The message envelope"), the
server's own messages (``heartbeat``, ``flags``, ``subscribed``, ``pong``, ``resumed``, ``error``)
and the client's commands (``subscribe``, ``unsubscribe``, ``resume``, ``ping``, ``flags``) as
``send`` operations with their replies. It is written from a client's point of view: ``receive``
is what the server pushes, ``send`` what a client may send.

A feature whose manifest locators put ``seq``, ``key`` or the body elsewhere is described by those
paths only, never as the reference envelope. ``data`` is any JSON value unless data schemas are
given (:mod:`thorcut.wire.asyncapi.openapi` reads them from an OpenAPI document). The document holds
no secret: a server's userinfo and query are left out.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from thorcut.errors import ConfigError
from thorcut.manifest import Locators, Manifest
from thorcut.values import check_url
from thorcut.wire.urls import WS_PATH

Schema = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
CHANNEL = "stream"
#: How envelopes stamp ``ts`` (ISO-8601 UTC with milliseconds; docs/contracts.md).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
#: The bounds of a resume's ``since`` (docs/contracts.md, "The ``resume`` command").
MAX_SINCE = 1000
MAX_KEY = 64
MAX_SEQ = 2**63 - 1
#: The server's own messages, by ``type``: a feature may not use these names for its messages.
CONTROL_TYPES = ("heartbeat", "flags", "subscribed", "pong", "resumed", "error")
ACTIONS = ("subscribe", "unsubscribe", "resume", "ping", "flags")
NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")

TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "pattern": TIMESTAMP_PATTERN,
    "description": "ISO-8601 UTC with milliseconds",
}
SEQ: Schema = {"type": "integer", "minimum": 0, "description": "the version of the state the message was built from"}
ANY_DATA: Schema = {"description": "any JSON value: no schema of it was given (`thorcut asyncapi --openapi` reads one)"}
HEARTBEAT_DATA: Schema = {
    "type": "object",
    "required": ["tick"],
    "properties": {"tick": {"type": "integer", "minimum": 0, "description": "the heartbeat tick it went out on"}},
}


@dataclass(frozen=True)
class DataSchemas:
    """The ``data`` schema of each message type, the component schemas they refer to
    (``#/components/schemas/<name>``), and notes on what could not be described."""

    by_type: dict[str, Schema]
    components: dict[str, Schema]
    notes: tuple[str, ...] = ()


def _ref(*parts: str) -> Schema:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _object(properties: Mapping[str, Schema], *, optional: Mapping[str, Schema] | None = None,
            closed: bool = True) -> Schema:  # fmt: skip
    """An object with these required properties (and ``optional`` ones)."""
    out: Schema = {"type": "object", "required": list(properties), "properties": {**properties, **(optional or {})}}
    if closed:
        out["additionalProperties"] = False
    return out


def _at(path: str, schema: Schema) -> Schema:
    """``schema`` placed at the dotted ``path`` of an object (``""``: the whole payload)."""
    for part in reversed(path.split(".") if path else []):
        schema = {"type": "object", "required": [part], "properties": {part: schema}}
    return schema


def envelope_payload(type_: str, feature: str, locators: Locators, data: Schema) -> Schema:
    """The payload of one message type: the contract's envelope for the default locators, else an
    object with ``type`` and whatever the locators say, and nothing more claimed."""
    if locators == Locators():
        return _object(
            {
                "type": {"const": type_},
                "feature": {"const": feature},
                "key": {"type": "string", "description": "the stream within the type: an account, a symbol, a market"},
                "seq": SEQ,
                "ts": TIMESTAMP,
                "data": data,
            },
            optional={"resync": {"const": True, "description": "a resume skipped versions: the current state"}},
        )
    parts: list[Schema] = [{"type": "object", "required": ["type"], "properties": {"type": {"const": type_}}}]
    said = []
    if locators.seq:
        parts.append(_at(locators.seq, SEQ))
        said.append(f"`seq` at `{locators.seq}`")
    if locators.key:
        parts.append(_at(locators.key, {"type": ["string", "integer"]}))
        said.append(f"the key at `{locators.key}`")
    parts.append(_at(locators.body, data))
    said.append(f"the body at `{locators.body or '(the whole message)'}`")
    return {
        "description": f"`{type_}` messages of feature `{feature}` in the backend's own shape, as the manifest "
        f"describes it: {', '.join(said)}; other fields are not described.",
        "allOf": parts,
    }


def _flag(stages: Sequence[str]) -> Schema:
    stage: Schema = {"enum": list(stages)} if stages else {"type": "string"}
    return _object(
        {
            "stage": stage,
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "version": {"type": "integer", "minimum": 0},
        },
        closed=False,
    )


def _control_payloads(
    manifest: Manifest, flag: Schema, strict_flags: bool, data: Mapping[str, Schema]
) -> dict[str, Schema]:
    """The payloads of the server's own messages, by type."""
    names = list(manifest.names)
    features: Schema = {"type": "object", "properties": dict.fromkeys(names, flag)}
    if strict_flags:
        features |= {"required": names, "additionalProperties": False}
    else:
        features["additionalProperties"] = flag
    count: Schema = {"type": "integer", "minimum": 0}
    return {
        "heartbeat": _object(
            {
                "type": {"const": "heartbeat"},
                "feature": {"const": None},
                "key": {"type": "string"},
                "seq": {**SEQ, "description": "counts heartbeats: a missed one shows as a gap"},
                "ts": TIMESTAMP,
                "data": data.get("heartbeat", HEARTBEAT_DATA),
            }
        ),
        "flags": _object(
            {
                "type": {"const": "flags"},
                "client": {"type": "string", "description": "the client id the percent bucket was applied to"},
                "features": features,
            }
        ),
        "subscribed": _object(
            {"type": {"const": "subscribed"}, "features": {"type": "array", "items": {"enum": names}}}
        ),
        "pong": _object({"type": {"const": "pong"}}),
        "resumed": _object(
            {"type": {"const": "resumed"}, "replayed": count, "resynced": count},
            optional={"healed": {"const": True, "description": "sent unasked: the server healed its own stream"}},
        ),
        "error": _object({"type": {"const": "error"}, "error": {"type": "string"}}),
    }


def _command_payloads(manifest: Manifest) -> dict[str, Schema]:
    """The payloads of the client's commands, by action."""
    features: Schema = {"type": "array", "items": {"enum": list(manifest.names)}}
    types = [t for f in manifest.features for t in f.types]
    since = {
        "type": "array",
        "maxItems": MAX_SINCE,
        "items": {
            "type": "object",
            "required": ["type", "key", "seq"],
            "properties": {
                "type": {"enum": types},
                "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
                "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
            },
        },
        "description": f"the last `seq` held per stream, at most {MAX_SINCE} (a stream named twice counts with "
        "its higher `seq`); the frame stays under 64 KiB",
    }
    return {
        "subscribe": _object({"action": {"const": "subscribe"}, "features": features}, closed=False),
        "unsubscribe": _object({"action": {"const": "unsubscribe"}, "features": features}, closed=False),
        "resume": _object({"action": {"const": "resume"}, "since": since}, closed=False),
        "ping": _object({"action": {"const": "ping"}}, closed=False),
        "flags": _object({"action": {"const": "flags"}}, closed=False),
    }


_CONTROL_TEXT = {
    "heartbeat": ("A heartbeat", "Every 30 heartbeat ticks, to every connection, whatever it subscribed to."),
    "flags": ("The client's flags", "On connecting, after every flag change, and in answer to `flags`."),
    "subscribed": ("The features subscribed to", "On connecting, and in answer to `subscribe`/`unsubscribe`."),
    "pong": ("The answer to `ping`", "For clients whose API cannot see WebSocket pings."),
    "resumed": (
        "A resume was answered",
        "After the replayed or resynced envelopes of a resume; with "
        "`healed` when the server brought the stream back on its own.",
    ),
    "error": ("A refused frame", "A bad frame or command is answered with it; the connection stays open."),
}
_COMMAND_TEXT = {
    "subscribe": ("Subscribe to features", ["subscribed", "error"]),
    "unsubscribe": ("Unsubscribe from features", ["subscribed", "error"]),
    "resume": (
        "Resume from the last seq held per stream: the missed envelopes (or the current one marked "
        "`resync`) come first, then `resumed`",
        ["resumed", "error"],
    ),
    "ping": ("Ask for a `pong`", ["pong"]),
    "flags": ("Ask for the client's flags", ["flags"]),
}


def _message(name: str, title: str, summary: str, payload: Schema) -> Schema:
    return {"name": name, "title": title, "summary": summary, "contentType": "application/json", "payload": payload}


def _names(manifest: Manifest) -> dict[str, str]:
    """message type -> its name under ``components/messages`` (AsyncAPI allows ``[A-Za-z0-9._-]``)."""
    taken = set(CONTROL_TYPES) | {f"{a}Command" for a in ACTIONS}
    out: dict[str, str] = {}
    for spec in manifest.features:
        for type_ in spec.types:
            if type_ in CONTROL_TYPES:
                raise ConfigError(f"features.{spec.name}: message type {type_!r} is the name of the stream's own "
                                  f"{type_!r} message; give the feature's messages another type")  # fmt: skip
            name = NAME_CHARS.sub("_", type_) or "message"
            base, n = name, 1
            while name in taken:
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
            out[type_] = name
    return out


def server_object(url: str, ws_path: str = WS_PATH) -> Schema:
    """The AsyncAPI server of a backend ``url`` (http(s):// or ws(s)://): ws or wss, host and port,
    and the URL's path as ``pathname`` (less the stream's path for a ws(s):// URL that ends with it).

    No userinfo, query or fragment is kept: the document must not carry a secret. Raises
    ConfigError (exit 2) for a URL that is not http(s):// or ws(s):// with a host.
    """
    check_url(url, "--server", ("http", "https", "ws", "wss"), "backend URL")
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    out: Schema = {
        "host": f"{host}:{parts.port}" if parts.port else host,
        "protocol": "wss" if parts.scheme in ("https", "wss") else "ws",
    }
    path = unquote(parts.path)
    if parts.scheme in ("ws", "wss") and path.rstrip("/") == ws_path.rstrip("/"):
        path = ""
    path = path.rstrip("/")
    if path:
        out["pathname"] = path
    out["security"] = [_ref("components", "securitySchemes", "bearerAuth")]
    return out


def document(
    manifest: Manifest,
    *,
    data_schemas: Mapping[str, Schema] | None = None,
    components: Mapping[str, Schema] | None = None,
    server: str | None = None,
    ws_path: str = WS_PATH,
    title: str = "WebSocket stream",
    version: str = "1",
    description: str = "",
    stages: Sequence[str] = (),
    flag_schema: Schema | None = None,
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document of the stream ``manifest`` describes (a new dict).

    ``data_schemas`` maps a message type to the schema of its ``data`` (default: any value), whose
    ``$ref``s point at ``components`` (``#/components/schemas/<name>``). ``server`` is the backend's
    URL (no server is listed without one). ``stages`` are the values a flag's ``stage`` may take;
    ``flag_schema`` is the exact schema of one feature's entry in a ``flags`` message (then every
    feature must be there, and no other). Raises ConfigError (exit 2) when a feature's message type
    is the name of one of the server's own messages, or ``server`` is not a usable URL.
    """
    data = dict(data_schemas or {})
    names = _names(manifest)
    messages: dict[str, Schema] = {}
    for spec in manifest.features:
        for type_ in spec.types:
            payload = envelope_payload(type_, spec.name, spec.ws, data.get(type_, ANY_DATA))
            summary = f"The state of one `{type_}` stream (feature `{spec.name}`), pushed when it changes."
            messages[names[type_]] = _message(type_, f"{type_} envelope", summary, payload)
    flag = flag_schema if flag_schema is not None else _flag(stages)
    controls = _control_payloads(manifest, flag, flag_schema is not None, data)
    if not manifest.stream.resume:
        del controls["resumed"]
    for type_, payload in controls.items():
        title_, summary = _CONTROL_TEXT[type_]
        messages[type_] = _message(type_, title_, summary, payload)
    commands = _command_payloads(manifest)
    if not manifest.stream.resume:
        del commands["resume"]
    for action, payload in commands.items():
        messages[f"{action}Command"] = _message(action, f"{action} command", _COMMAND_TEXT[action][0], payload)

    channel_ref = _ref("channels", CHANNEL)

    def on_channel(name: str) -> Schema:
        return _ref("channels", CHANNEL, "messages", name)

    operations: dict[str, Schema] = {}
    command_names = {f"{action}Command" for action in commands}
    for name, message in messages.items():
        if name not in command_names:
            operations[f"receive_{name}"] = {
                "action": "receive",
                "channel": channel_ref,
                "summary": message["summary"],
                "messages": [on_channel(name)],
            }
    for action in commands:
        summary, replies = _COMMAND_TEXT[action]
        operations[f"send_{action}"] = {
            "action": "send",
            "channel": channel_ref,
            "summary": summary,
            "messages": [on_channel(f"{action}Command")],
            "reply": {"channel": channel_ref, "messages": [on_channel(r) for r in replies]},
        }
    channel: Schema = {
        "address": ws_path,
        "title": "The stream",
        "description": "One connection carries every subscribed feature's envelopes, the flags and the "
        "heartbeat. thorcut authenticates with `Authorization: Bearer <token>` (`THORCUT_TOKEN`); the "
        "reference backend closes a connection without valid credentials with 4401.",
        "messages": {name: _ref("components", "messages", name) for name in messages},
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": {
                        "features": {
                            "type": "string",
                            "description": f"the features to subscribe to at connect, comma-separated (default: "
                            f"all): {', '.join(manifest.names)}",
                        },
                        "client": {"type": "string", "description": "the client id for the sticky percent bucket"},
                    },
                },
                "bindingVersion": "0.1.0",
            }
        },
    }
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description or _description(manifest)},
        "defaultContentType": "application/json",
    }
    if server is not None:
        doc["servers"] = {"backend": server_object(server, ws_path)}
    doc["channels"] = {CHANNEL: channel}
    doc["operations"] = operations
    doc["components"] = {
        "messages": messages,
        **({"schemas": dict(components)} if components else {}),
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token (`THORCUT_TOKEN`)"}
        },
    }
    return copy.deepcopy(doc)  # the module's schema constants are shared by many places in it


def _description(manifest: Manifest) -> str:
    resume = (
        " After a reconnect a client may `resume` from the last `seq` it holds per stream."
        if manifest.stream.resume
        else " The stream has no `resume` command: after a reconnect each stream starts afresh."
    )
    return (
        "The WebSocket stream of a backend cut over by thorcut, written from a client's point of view: "
        "`receive` operations are what the server pushes, `send` operations the commands a client may send, "
        "with their replies. Every message names its `type`; a feature's messages carry `seq`, the version of "
        "the state they were built from, per (type, key): a jump is a gap, a repeat a duplicate, a jump marked "
        f'`resync` a resync (docs/contracts.md, "The message envelope").{resume}'
    )
