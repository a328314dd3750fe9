"""Checking frames against an AsyncAPI 3 document: what ``thorcut tail --validate`` asks of each frame.

A :class:`FrameChecker` reads the messages a client receives (those of ``receive`` operations and
the replies of ``send`` operations; every message of every channel in a document without
operations), keys each by the ``type`` its payload fixes (``"type": {"const": …}``), and compiles
one JSON Schema Draft 7 validator per message (Draft 7 is the base of AsyncAPI's schema format).
A frame is checked against the message of its ``type``; a type no message has is a violation, as
is a frame that is not JSON or names no type. Needs ``jsonschema`` (imported here, on first use).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thorcut.errors import UsageError

#: The base URI the document is registered under, so that ``#/components/…`` references resolve.
DOC_URI = "urn:thorcut:asyncapi"
#: Errors told per frame (more are counted in ``Violation.errors``).
ERRORS_PER_FRAME = 5
MESSAGE_CHARS = 200
#: Keywords whose values are JSON values, not schemas: a "$ref" in them is data.
_VALUES = frozenset({"enum", "const", "default", "examples"})
#: Keywords whose values map names to schemas (a property may be called "enum").
_SCHEMAS = frozenset({"properties", "patternProperties", "definitions", "dependencies"})
#: AsyncAPI payload schema formats that are JSON Schema Draft 7 (or AsyncAPI's superset of it).
_JSON_SCHEMA_FORMATS = ("application/vnd.aai.asyncapi", "application/schema+json;version=draft-07")


@dataclass(frozen=True)
class Problem:
    """One way a frame breaks its message's schema: where (``$.data.volume``) and what."""

    path: str
    message: str


@dataclass(frozen=True)
class Violation:
    """A frame that does not conform: its message type (``(not JSON)``, ``(no type)`` when it has
    none), the first problems found, and how many there were in all."""

    type: str
    problems: tuple[Problem, ...]
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "errors": self.errors,
                "problems": [{"path": p.path, "message": p.message} for p in self.problems]}  # fmt: skip


def json_path(parts: Any) -> str:
    """``$.data.positions[0].symbol`` from a sequence of keys and indexes."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + _quoted(str(part)) + "]"
    return out


def _quoted(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


class FrameChecker:
    """Checks frames against one AsyncAPI 3 document (see the module's docstring).

    Raises UsageError (exit 2) for a document it cannot use: not AsyncAPI 3, no message a client
    receives, a payload that is not a valid JSON Schema, a ``$ref`` that does not resolve.
    """

    def __init__(self, doc: Mapping[str, Any], *, source: str = "the AsyncAPI document") -> None:
        from jsonschema import Draft7Validator  # type: ignore[import-untyped]
        from referencing import Registry
        from referencing.jsonschema import DRAFT7

        version = doc.get("asyncapi")
        if not isinstance(version, str) or not version.startswith("3."):
            raise UsageError(f"{source} is not an AsyncAPI 3 document (its \"asyncapi\" is "
                             f"{str(version)[:40]!r}, not \"3.x.x\")")  # fmt: skip
        self.source = source
        self.doc = doc
        self.notes: list[str] = []
        self.registry: Any = Registry().with_resource(DOC_URI, DRAFT7.create_resource(dict(doc)))
        self.validators: dict[str, list[Any]] = {}  # by type: a frame conforms when one of them says so
        self._inlined: dict[str, Any] = {}
        untyped: list[Any] = []
        for pointer in self._received():
            payload_pointer = self._payload(pointer)
            if payload_pointer is None:
                continue
            schema = self._resolve(payload_pointer)[1]
            self._check_schema(schema, payload_pointer)
            try:  # references replaced by what they name: a third of the cost per frame
                validator = Draft7Validator(self._inline(schema, ()))
            except _Circular:
                validator = Draft7Validator({"$ref": f"{DOC_URI}#{payload_pointer}"}, registry=self.registry)
            types = self._types(schema)
            if not types:
                untyped.append(validator)
            for type_ in types:
                self.validators.setdefault(type_, []).append(validator)
        if not self.validators and not untyped:
            raise UsageError(f"{source} describes no message a client receives")
        self.untyped = tuple(untyped)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.validators)

    # -- reading the document ------------------------------------------------------------------

    def _resolve(self, pointer: str) -> tuple[str, Any]:
        """Follow ``$ref``s from ``pointer`` ("/components/…"): the final pointer and its node."""
        seen = set()
        while True:
            node: Any = self.doc
            for part in pointer.split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    raise UsageError(f"{self.source}: #{pointer} does not resolve")
            ref = node.get("$ref") if isinstance(node, dict) else None
            if not isinstance(ref, str):
                return pointer, node
            if not ref.startswith("#/") or ref in seen:
                raise UsageError(f"{self.source}: $ref {ref[:200]!r} leaves the document or goes round in a circle")
            seen.add(ref)
            pointer = ref[1:]

    def _received(self) -> Iterator[str]:
        """Pointers to the messages a client receives, each once."""
        seen: set[str] = set()
        operations = self.doc.get("operations")
        refs: list[str] = []
        if isinstance(operations, dict) and operations:
            for name, op in operations.items():
                if not isinstance(op, dict):
                    raise UsageError(f"{self.source}: operation {str(name)[:80]!r} is not an object")
                if op.get("action") == "receive":
                    refs += [m.get("$ref", "") for m in op.get("messages") or [] if isinstance(m, dict)]
                reply = op.get("reply")
                if op.get("action") == "send" and isinstance(reply, dict):
                    refs += [m.get("$ref", "") for m in reply.get("messages") or [] if isinstance(m, dict)]
            if not refs:  # an operation's messages default to all of its channel's
                refs += self._channel_messages()
        else:
            refs += self._channel_messages()
        for ref in refs:
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise UsageError(f"{self.source}: a message reference {str(ref)[:200]!r} is not a local $ref")
            pointer = self._resolve(ref[1:])[0]
            if pointer not in seen:
                seen.add(pointer)
                yield pointer

    def _channel_messages(self) -> list[str]:
        channels = self.doc.get("channels")
        out = []
        for cname, channel in channels.items() if isinstance(channels, dict) else []:
            messages = channel.get("messages") if isinstance(channel, dict) else None
            for mname in messages if isinstance(messages, dict) else []:
                out.append(f"#/channels/{_escape(str(cname))}/messages/{_escape(str(mname))}")
        return out

    def _payload(self, pointer: str) -> str | None:
        """The pointer to a message's payload schema (inside a multi-format schema object), or None."""
        _, message = self._resolve(pointer)
        if not isinstance(message, dict) or "payload" not in message:
            return None
        at, payload = self._resolve(pointer + "/payload")
        if isinstance(payload, dict) and "schemaFormat" in payload and "schema" in payload:
            fmt = str(payload["schemaFormat"])
            if not fmt.startswith(_JSON_SCHEMA_FORMATS):
                self.notes.append(f"{message.get('name') or pointer}: payload in {fmt[:80]}, not checked")
                return None
            at = self._resolve(at + "/schema")[0]
        return at

    def _check_schema(self, schema: Any, pointer: str) -> None:
        """Raise UsageError unless ``schema`` and every schema it refers to is valid Draft 7."""
        from jsonschema import Draft7Validator
        from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

        todo, done = [(pointer, schema)], set()
        while todo:
            at, node = todo.pop()
            if at in done:
                continue
            done.add(at)
            try:
                Draft7Validator.check_schema(node)
            except SchemaError as exc:
                raise UsageError(f"{self.source}: #{at} is not a valid JSON Schema: {_short(exc.message)}") from None
            for ref in _refs(node):
                if not ref.startswith("#/"):
                    raise UsageError(f"{self.source}: $ref {ref[:200]!r} in #{at} leaves the document")
                todo.append(self._resolve(ref[1:]))

    def _inline(self, node: Any, trail: tuple[str, ...]) -> Any:
        """``node`` with every ``$ref`` replaced by the schema it names (Draft 7 ignores a ``$ref``'s
        siblings); a schema named twice is one shared object. Raises _Circular for a recursive one."""
        if isinstance(node, list):
            return [self._inline(v, trail) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in trail:
                raise _Circular
            if ref not in self._inlined:
                self._inlined[ref] = self._inline(self._resolve(ref[1:])[1], (*trail, ref))
            return self._inlined[ref]
        return {
            k: v if k in _VALUES else {n: self._inline(s, trail) for n, s in v.items()} if k in _SCHEMAS and
            isinstance(v, dict) else self._inline(v, trail) for k, v in node.items()
        }  # fmt: skip

    def _types(self, schema: Any, depth: int = 0) -> list[str]:
        """The values of ``type`` a payload allows, when it fixes them (``const``, ``enum``)."""
        if depth > 16 or not isinstance(schema, dict):
            return []
        if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith("#/"):
            return self._types(self._resolve(schema["$ref"][1:])[1], depth + 1)
        prop = schema.get("properties", {}).get("type") if isinstance(schema.get("properties"), dict) else None
        if isinstance(prop, dict):
            if "const" in prop and isinstance(prop["const"], str):
                return [prop["const"]]
            if isinstance(prop.get("enum"), list):
                return [v for v in prop["enum"] if isinstance(v, str)]
        out: list[str] = []
        for part in schema.get("allOf") or []:
            out += self._types(part, depth + 1)
        return out

    # -- checking frames -------------------------------------------------------------------------

    def check(self, msg: Any) -> Violation | None:
        """Return how the parsed frame ``msg`` breaks the document, or None when it conforms."""
        type_ = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(type_, str):
            label = "(no type)"
            validators: Sequence[Any] = self.untyped
            if not validators:
                return Violation(label, (Problem("$.type", 'no "type": every message of the document names one'),), 1)
        else:
            label = type_
            validators = self.validators.get(type_) or self.untyped
            if not validators:
                shown = ", ".join(sorted(self.validators)[:12]) + (", …" if len(self.validators) > 12 else "")
                return Violation(label, (Problem("$.type", f"no message of the document has type {type_!r} "
                                                           f"(it has {shown})"),), 1)  # fmt: skip
        try:
            if any(v.is_valid(msg) for v in validators):
                return None
            errors = list(validators[0].iter_errors(msg))
        except RecursionError:
            return Violation(label, (Problem("$", "nested too deeply to check"),), 1)
        return Violation(label, tuple(_problem(e) for e in _by_relevance(errors)[:ERRORS_PER_FRAME]), len(errors))

    @staticmethod
    def not_json(error: str) -> Violation:
        """The violation of a frame that is not JSON (``error`` says why)."""
        return Violation("(not JSON)", (Problem("$", _short(error)),), 1)


class _Circular(Exception):
    """A schema refers to itself: it is checked through references instead."""


def _refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` inside ``node`` (not through them)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                yield ref
            for key, value in item.items():
                if key in _SCHEMAS and isinstance(value, dict):
                    stack += value.values()
                elif key not in _VALUES:
                    stack.append(value)
        elif isinstance(item, list):
            stack += item


def _by_relevance(errors: list[Any]) -> list[Any]:
    from jsonschema.exceptions import best_match, relevance

    # The best match inside each anyOf/oneOf, so the path points at the field that is wrong.
    return [best_match([e]) for e in sorted(errors, key=relevance, reverse=True)]


def _problem(error: Any) -> Problem:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            return Problem(json_path([*path, missing[0]]), _short(error.message))
    return Problem(json_path(path), _short(error.message))
