"""The ``data`` schema of each message type, read from an OpenAPI document: REST and WebSocket
payloads described once.

The manifest pairs each message type with its REST path; that path's ``GET`` 200 JSON response
schema, at the feature's body locator (``rest_locators.body``, ``data`` by default), is the schema
of the type's ``data``. ``$ref``s are followed, and the schemas they name are brought along as
``#/components/schemas/<name>`` (a component of the OpenAPI document keeps its name). OpenAPI 3.0's
own keywords become JSON Schema (``nullable``, ``example``, the ``discriminator`` object).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from thorcut.errors import UsageError
from thorcut.manifest import DEFAULT_MANIFEST, Manifest
from thorcut.wire.asyncapi.document import NAME_CHARS, DataSchemas, Schema, document

_VALID_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
#: JSON Schema 2019-09/2020-12 keywords that Draft 7 (and so AsyncAPI's schema format) ignores.
_NEWER_KEYWORDS = frozenset({"prefixItems", "$defs", "unevaluatedProperties", "unevaluatedItems",
                             "dependentRequired", "dependentSchemas", "$dynamicRef", "$anchor"})  # fmt: skip


def _pointer(ref: str) -> list[str]:
    return [unquote(p).replace("~1", "/").replace("~0", "~") for p in ref.removeprefix("#").split("/")[1:]]


class _OpenApi:
    """Reads schemas out of one OpenAPI document and brings the ones they refer to along."""

    MAX_HOPS = 64

    def __init__(self, doc: Mapping[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source
        self.v30 = str(doc.get("openapi", "")).startswith("3.0")
        self.names: dict[str, str] = {}  # JSON pointer (as "#/…") -> component name
        self.components: dict[str, Schema] = {}
        self.pending: list[str] = []
        self.newer: set[str] = set()

    def lookup(self, ref: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UsageError(f"{self.source}: $ref {str(ref)[:200]!r} points outside the document; only local "
                             "references (#/…) are followed")  # fmt: skip
        node: Any = self.doc
        for part in _pointer(ref):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UsageError(f"{self.source}: $ref {ref[:200]!r} does not resolve")
        return node

    def resolve(self, node: Any) -> Any:
        for _ in range(self.MAX_HOPS):
            if not (isinstance(node, dict) and "$ref" in node):
                return node
            node = self.lookup(node["$ref"])
        raise UsageError(f"{self.source}: $refs go round in a circle (or more than {self.MAX_HOPS} deep)")

    def find(self, schema: Any, parts: list[str], type_: str, depth: int = 0) -> Schema | None:
        """The schema at ``parts`` (property names) under ``schema``, through $refs and allOf/oneOf/anyOf;
        of alternatives, those whose ``type`` is ``type_`` when some are."""
        if depth > self.MAX_HOPS:
            raise UsageError(f"{self.source}: the response schema of {type_!r} is nested too deeply to read")
        if not parts:
            return schema if isinstance(schema, dict) else None
        node = self.resolve(schema)
        if not isinstance(node, dict):
            return None
        every: list[Schema] = []  # all apply: the property itself, allOf
        props = node.get("properties")
        if isinstance(props, dict) and parts[0] in props:
            found = self.find(props[parts[0]], parts[1:], type_, depth + 1)
            if found is not None:
                every.append(found)
        for sub in node.get("allOf") or []:
            found = self.find(sub, parts, type_, depth + 1)
            if found is not None:
                every.append(found)
        alternatives = [(sub, self.find(sub, parts, type_, depth + 1)) for sub in (node.get("oneOf") or []) +
                        (node.get("anyOf") or [])]  # fmt: skip
        some = [(sub, found) for sub, found in alternatives if found is not None]
        typed = [found for sub, found in some if self._is_type(sub, type_)]
        choices = typed or [found for _, found in some]
        if len(choices) == 1:
            every.append(choices[0])
        elif choices:
            every.append({"anyOf": choices})
        if not every:
            return None
        return every[0] if len(every) == 1 else {"allOf": every}

    def _is_type(self, schema: Any, type_: str) -> bool:
        node = self.resolve(schema)
        prop = node.get("properties", {}).get("type") if isinstance(node, dict) else None
        prop = self.resolve(prop) if prop is not None else None
        if not isinstance(prop, dict):
            return False
        return prop.get("const") == type_ or prop.get("enum") == [type_]

    def bring(self, node: Any) -> Any:
        """``node`` with each $ref pointed at ``#/components/schemas/<name>`` (its target brought along)
        and OpenAPI's own keywords turned into JSON Schema."""
        if isinstance(node, list):
            return [self.bring(v) for v in node]
        if not isinstance(node, dict):
            return node
        self.newer |= _NEWER_KEYWORDS & node.keys()
        out: Schema = {}
        for key, value in node.items():
            if key == "$ref":
                out[key] = "#/components/schemas/" + self._name(value)
            elif key in ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas"):
                out[key] = {k: self.bring(v) for k, v in value.items()} if isinstance(value, dict) else value
            elif key == "discriminator" and isinstance(value, dict):  # OpenAPI's object; AsyncAPI's is a name
                if isinstance(value.get("propertyName"), str):
                    out[key] = value["propertyName"]
            elif key == "example":  # OpenAPI 3.0's single example
                out.setdefault("examples", [value])
            elif key in ("xml", "nullable"):
                continue
            elif key in ("enum", "const", "default", "examples", "required", "type"):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = self.bring(value)
        if self.v30 and node.get("nullable") is True:
            return _nullable(out)
        return out

    def _name(self, ref: Any) -> str:
        self.lookup(ref)  # raises for a reference that does not resolve or leaves the document
        if ref in self.names:
            return self.names[ref]
        parts = _pointer(ref)
        if len(parts) == 3 and parts[:2] == ["components", "schemas"] and _VALID_NAME.match(parts[2]):
            name = parts[2]
        else:
            name = NAME_CHARS.sub("_", ".".join(parts[-3:])) or "schema"
        base, n = name, 1
        while name in self.names.values():
            n += 1
            name = f"{base}_{n}"
        self.names[ref] = name
        self.pending.append(ref)
        return name

    def finish(self) -> dict[str, Schema]:
        while self.pending:
            ref = self.pending.pop()
            self.components[self.names[ref]] = self.bring(self.lookup(ref))
        return dict(sorted(self.components.items()))

    def response_schema(self, path: str) -> Schema | None:
        item = self.resolve(self.doc["paths"][path])
        get = self.resolve(item.get("get")) if isinstance(item, dict) else None
        responses = get.get("responses") if isinstance(get, dict) else None
        if not isinstance(responses, dict):
            return None
        ok = self.resolve(responses.get("200"))
        content = ok.get("content") if isinstance(ok, dict) else None
        if not isinstance(content, dict):
            return None
        media = content.get("application/json") or next((v for k, v in content.items() if "json" in k), None)
        schema = media.get("schema") if isinstance(media, dict) else None
        return schema if isinstance(schema, dict) else None


def _nullable(schema: Schema) -> Schema:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema: null is allowed too."""
    kind = schema.get("type")
    if isinstance(kind, str):
        out = {**schema, "type": [kind, "null"]}
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _match(template: str, paths: Sequence[str]) -> str | None:
    """The OpenAPI path that ``template`` (a manifest path, ``{key}`` in it) names: the same segments,
    any ``{parameter}`` standing for any other."""
    want = template.partition("?")[0].rstrip("/").split("/")
    for path in paths:
        have = path.rstrip("/").split("/")
        if len(have) == len(want) and all(
            a == b or (a.startswith("{") and a.endswith("}") and b.startswith("{") and b.endswith("}"))
            for a, b in zip(want, have, strict=True)
        ):
            return path
    return None


def _base_path(openapi: Mapping[str, Any]) -> str:
    servers = openapi.get("servers")
    url = servers[0].get("url") if isinstance(servers, list) and servers and isinstance(servers[0], dict) else None
    return urlsplit(url).path.rstrip("/") if isinstance(url, str) else ""


def openapi_data_schemas(
    manifest: Manifest, openapi: Mapping[str, Any], *, source: str = "the OpenAPI document"
) -> DataSchemas:
    """Return the ``data`` schema of every message type of ``manifest`` that has a REST path, read from
    ``openapi``: the 200 JSON response of ``GET`` on the type's path, at the feature's body locator
    (``rest_locators.body``), its ``$ref``s following it into the returned components.

    Raises UsageError (exit 2) naming what is wrong: not an OpenAPI 3 document, a REST path of the
    manifest that the document does not have, a ``$ref`` that does not resolve or leaves the document.
    """
    version = openapi.get("openapi")
    if not isinstance(version, str) or not version.startswith("3.") or not isinstance(openapi.get("paths"), dict):
        raise UsageError(f'{source} is not an OpenAPI 3 document (it needs "openapi": "3.x" and "paths")')
    reader = _OpenApi(openapi, source)
    paths = [p for p in openapi["paths"] if isinstance(p, str)]
    base = _base_path(openapi)
    by_type: dict[str, Schema] = {}
    notes: list[str] = []
    for spec in manifest.features:
        rest = {e.type: e.path for e in spec.rest}
        for type_ in spec.types:
            template = rest.get(type_)
            if template is None:
                notes.append(f"{type_}: the manifest names no REST path for it, so its data is not described")
                continue
            path = _match(template, paths)
            if path is None and base and template.startswith(base + "/"):
                path = _match(template.removeprefix(base), paths)
            if path is None:
                shown = ", ".join(sorted(paths)[:12]) + (", …" if len(paths) > 12 else "")
                raise UsageError(f"{source} has no path matching GET {template.partition('?')[0]} (REST path of "
                                 f"{type_!r}, feature {spec.name!r}); its paths: {shown or 'none'}")  # fmt: skip
            response = reader.response_schema(path)
            where = spec.rest_locators.body
            found = None if response is None else reader.find(response, where.split(".") if where else [], type_)
            if found is None:
                what = "has no JSON schema" if response is None else f"has no `{where}` in its schema"
                notes.append(f"{type_}: the 200 response of GET {path} {what}, so its data is not described")
                continue
            by_type[type_] = reader.bring(found)
    components = reader.finish()
    if reader.newer:
        notes.append(f"schemas use keywords JSON Schema Draft 7 does not know ({', '.join(sorted(reader.newer))}): "
                     "AsyncAPI's schema format ignores them")  # fmt: skip
    return DataSchemas(by_type, components, tuple(notes))


def from_openapi(
    openapi: Mapping[str, Any],
    *,
    manifest: Manifest = DEFAULT_MANIFEST,
    source: str = "the OpenAPI document",
    components: Mapping[str, Schema] | None = None,
    **options: Any,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the AsyncAPI document of ``manifest``'s stream (default: the built-in manifest, the
    reference backend's features) with the ``data`` schemas of ``openapi``
    (:func:`openapi_data_schemas`), and the notes on what could not be described.

    ``components`` are schemas added to the document's (those ``flag_schema`` refers to, say);
    ``options`` go to :func:`~thorcut.wire.asyncapi.document.document`. What ``thorcut asyncapi
    --openapi`` prints, and what a backend serves of itself. Raises as both of those do.
    """
    data = openapi_data_schemas(manifest, openapi, source=source)
    doc = document(manifest, data_schemas=data.by_type, components={**data.components, **(components or {})},
                   **options)  # fmt: skip
    return doc, data.notes
