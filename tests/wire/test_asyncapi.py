"""``thorcut.wire.asyncapi``: the AsyncAPI 3.0 document generated from the manifest, the ``data``
schemas read from an OpenAPI document, and frames checked against the result.

Whether the documents are valid AsyncAPI is the third-party parser's to say
(tests/wire/test_asyncapi_parser.py); here: what they say, and that checking frames with them finds
what breaks them and nothing else.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from thorcut.errors import ConfigError, UsageError
from thorcut.manifest import DEFAULT_MANIFEST, build_manifest
from thorcut.wire.asyncapi import document, openapi_data_schemas, server_object
from thorcut.wire.asyncapi.document import TIMESTAMP_PATTERN
from thorcut.wire.asyncapi.validate import FrameChecker, json_path

TYPES = [t for f in DEFAULT_MANIFEST.features for t in f.types]
TS = "2026-11-24T14:30:00.123Z"


def envelope(type_: str = "positions", key: str = "DU1", seq: int = 1, **extra: Any) -> dict[str, Any]:
    feature = next(f.name for f in DEFAULT_MANIFEST.features if type_ in f.types)
    return {"type": type_, "feature": feature, "key": key, "seq": seq, "ts": TS, "data": {"n": 1}, **extra}


def payload(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["messages"][name]["payload"]  # type: ignore[no-any-return]


def problems(checker: FrameChecker, msg: Any) -> list[tuple[str, str]]:
    violation = checker.check(msg)
    return [] if violation is None else [(p.path, p.message) for p in violation.problems]


# -- the document -------------------------------------------------------------------------------------


def test_document_has_a_message_per_type_the_servers_messages_and_the_commands() -> None:
    doc = document(DEFAULT_MANIFEST)
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {"stream"}
    assert doc["channels"]["stream"]["address"] == "/ws/stream/"
    messages = doc["components"]["messages"]
    control = ["heartbeat", "flags", "subscribed", "pong", "resumed", "error"]
    commands = [f"{a}Command" for a in ("subscribe", "unsubscribe", "resume", "ping", "flags")]
    assert list(messages) == [*TYPES, *control, *commands]
    assert set(doc["channels"]["stream"]["messages"]) == set(messages)
    for type_ in TYPES:
        assert messages[type_]["name"] == type_
        assert payload(doc, type_)["properties"]["type"] == {"const": type_}
    assert "servers" not in doc  # none unless a server is given


def test_envelope_is_the_contracts_with_an_optional_resync_and_nothing_else() -> None:
    positions = payload(document(DEFAULT_MANIFEST), "positions")
    assert positions["required"] == ["type", "feature", "key", "seq", "ts", "data"]
    assert positions["additionalProperties"] is False
    assert positions["properties"]["feature"] == {"const": "positions"}
    assert positions["properties"]["seq"]["type"] == "integer"
    assert positions["properties"]["seq"]["minimum"] == 0
    assert positions["properties"]["ts"]["pattern"] == TIMESTAMP_PATTERN
    assert positions["properties"]["resync"]["const"] is True
    assert "type" not in positions["properties"]["data"]  # any value: no data schema was given


def test_commands_are_send_operations_whose_replies_are_on_the_channel() -> None:
    ops = document(DEFAULT_MANIFEST)["operations"]
    replies = {
        name[len("send_") :]: [m["$ref"].rsplit("/", 1)[1] for m in op["reply"]["messages"]]
        for name, op in ops.items()
        if op["action"] == "send"
    }
    assert replies == {
        "subscribe": ["subscribed", "error"],
        "unsubscribe": ["subscribed", "error"],
        "resume": ["resumed", "error"],
        "ping": ["pong"],
        "flags": ["flags"],
    }
    received = {op["messages"][0]["$ref"].rsplit("/", 1)[1] for op in ops.values() if op["action"] == "receive"}
    assert received == {*TYPES, "heartbeat", "flags", "subscribed", "pong", "resumed", "error"}
    for op in ops.values():
        assert op["channel"] == {"$ref": "#/channels/stream"}


def test_resume_since_has_the_contracts_bounds() -> None:
    resume = Draft7Validator(payload(document(DEFAULT_MANIFEST), "resumeCommand"))
    entry = {"type": "positions", "key": "DU1", "seq": 2**63 - 1}
    assert resume.is_valid({"action": "resume", "since": [entry]})
    assert resume.is_valid({"action": "resume", "since": [entry] * 1000})
    assert not resume.is_valid({"action": "resume", "since": [entry] * 1001})
    for bad in (
        {"seq": 2**63},
        {"seq": -1},
        {"seq": True},
        {"seq": 1.5},
        {"key": ""},
        {"key": "k" * 65},
        {"type": "heartbeat"},
        {"type": "nope"},
    ):
        assert not resume.is_valid({"action": "resume", "since": [{**entry, **bad}]}), bad
    assert not resume.is_valid({"action": "resume", "since": [{"type": "positions", "key": "DU1"}]})


def test_resumed_may_say_healed_and_nothing_else() -> None:
    resumed = Draft7Validator(payload(document(DEFAULT_MANIFEST), "resumed"))
    assert resumed.is_valid({"type": "resumed", "replayed": 2, "resynced": 0})
    assert resumed.is_valid({"type": "resumed", "replayed": 0, "resynced": 3, "healed": True})
    assert not resumed.is_valid({"type": "resumed", "replayed": 0, "resynced": 3, "healed": False})
    assert not resumed.is_valid({"type": "resumed", "replayed": -1, "resynced": 0})


def test_a_stream_without_resume_has_no_resume_command_nor_resumed_message() -> None:
    doc = document(build_manifest(None, stream={"resume": False}))
    assert "resumeCommand" not in doc["components"]["messages"]
    assert "resumed" not in doc["components"]["messages"]
    assert "send_resume" not in doc["operations"]
    assert "no `resume` command" in doc["info"]["description"]


def test_flags_entries_are_stages_unless_an_exact_flag_schema_is_given() -> None:
    loose = Draft7Validator(payload(document(DEFAULT_MANIFEST, stages=["off", "shadow"]), "flags"))
    entry = {"stage": "shadow", "percent": 0, "version": 3}
    assert loose.is_valid({"type": "flags", "client": "c", "features": {"positions": entry, "extra": entry}})
    assert not loose.is_valid({"type": "flags", "client": "c", "features": {"positions": {**entry, "stage": "on"}}})
    exact = document(DEFAULT_MANIFEST, flag_schema={"type": "object"})
    strict = Draft7Validator(payload(exact, "flags"))
    every: dict[str, Any] = {name: {} for name in DEFAULT_MANIFEST.names}
    assert strict.is_valid({"type": "flags", "client": "c", "features": every})
    assert not strict.is_valid({"type": "flags", "client": "c", "features": {**every, "extra": {}}})


def test_other_shapes_are_described_by_their_locators_not_as_the_reference_envelope() -> None:
    manifest = build_manifest(
        {
            "quotes": {
                "types": ["quote"],
                "rest": [{"type": "quote", "path": "/q/{key}"}],
                "ws": {"seq": "meta.version", "key": "meta.id", "body": "payload"},
            }
        }
    )
    doc = document(manifest)
    quote = payload(doc, "quote")
    assert "meta.version" in quote["description"]
    assert "payload" in quote["description"]
    checker = FrameChecker(doc)
    assert checker.check({"type": "quote", "meta": {"version": 4, "id": "ES"}, "payload": [1], "other": True}) is None
    assert problems(checker, {"type": "quote", "meta": {"version": "4", "id": "ES"}, "payload": {}}) == [
        ("$.meta.version", "'4' is not of type 'integer'")
    ]
    assert ("$.meta", "'meta' is a required property") in problems(
        checker, {"type": "quote", "seq": 4, "key": "ES", "payload": {}}
    )
    # The reference features keep the contract's envelope.
    assert payload(doc, "positions")["required"][0] == "type"


def test_a_body_locator_of_the_whole_message_adds_the_data_schema_to_it() -> None:
    manifest = build_manifest({"raw": {"types": ["raw"], "rest": [], "ws": {"seq": "v", "key": "", "body": ""}}})
    doc = document(manifest, data_schemas={"raw": {"required": ["price"]}})
    checker = FrameChecker(doc)
    assert checker.check({"type": "raw", "v": 1, "price": 2}) is None
    assert problems(checker, {"type": "raw", "v": 1}) == [("$.price", "'price' is a required property")]


def test_a_feature_type_named_like_one_of_the_servers_messages_is_refused() -> None:
    manifest = build_manifest({"odd": {"types": ["pong"], "rest": []}})
    with pytest.raises(ConfigError, match=r"features.odd: message type 'pong' is the name of the stream's own"):
        document(manifest)


def test_message_names_are_made_of_the_characters_asyncapi_allows() -> None:
    manifest = build_manifest({"odd": {"types": ["a b/c", "a_b_c"], "rest": []}})
    messages = document(manifest)["components"]["messages"]
    assert messages["a_b_c"]["name"] == "a b/c"
    assert messages["a_b_c_2"]["name"] == "a_b_c"


def test_channel_address_is_the_configured_stream_path() -> None:
    assert document(DEFAULT_MANIFEST, ws_path="/stream/v2")["channels"]["stream"]["address"] == "/stream/v2"


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("http://127.0.0.1:8000", {"host": "127.0.0.1:8000", "protocol": "ws"}),
        ("https://user:secret@thor.example/?token=abc#x", {"host": "thor.example", "protocol": "wss"}),
        ("https://thor.example/trading/", {"host": "thor.example", "protocol": "wss", "pathname": "/trading"}),
        ("wss://thor.example:9443/ws/stream/?token=abc", {"host": "thor.example:9443", "protocol": "wss"}),
        ("ws://[::1]:8000/ws/stream/", {"host": "[::1]:8000", "protocol": "ws"}),
    ],
)
def test_server_is_ws_or_wss_host_and_path_and_never_a_secret(url: str, server: dict[str, str]) -> None:
    doc = document(DEFAULT_MANIFEST, server=url)
    got = doc["servers"]["backend"]
    assert {k: v for k, v in got.items() if k != "security"} == server
    assert got["security"] == [{"$ref": "#/components/securitySchemes/bearerAuth"}]
    text = json.dumps(doc)
    assert "secret" not in text
    assert "abc" not in text


@pytest.mark.parametrize("url", ["ftp://host", "http://", "thor.example:8000", "http://256.1.1.1"])
def test_server_that_is_not_a_backend_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--server"):
        server_object(url)


# -- data schemas from an OpenAPI document ---------------------------------------------------------------

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        "/api/account/balance": {"get": {"responses": {"200": {"$ref": "#/components/responses/Balance"}}}},
        "/api/account/positions": {
            "get": {
                "responses": {
                    "200": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PositionsEnvelope"}}}
                    }
                }
            }
        },
        "/api/intraday/{symbol}/bar": {
            "get": {
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "allOf": [
                                        {"$ref": "#/components/schemas/Meta"},
                                        {"properties": {"data": {"type": "object", "required": ["close"]}}},
                                    ]
                                }
                            }
                        }
                    }
                }
            }
        },
        "/api/intraday/{symbol}/vwap": {"get": {"responses": {"200": {"description": "no schema"}}}},
        "/api/markets/status": {
            "get": {
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/MarketEnvelope"},
                                        {"$ref": "#/components/schemas/Other"},
                                        {"type": "object", "properties": {"markets": {"type": "array"}}},
                                    ]
                                }
                            }
                        }
                    }
                }
            }
        },
    },
    "components": {
        "responses": {
            "Balance": {
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": {"data": {"type": "object", "required": ["cash"]}}}
                    }
                }
            }
        },
        "schemas": {
            "PositionsEnvelope": {
                "type": "object",
                "properties": {"type": {"const": "positions"}, "data": {"$ref": "#/components/schemas/Data"}},
            },
            "Data": {
                "type": "object",
                "properties": {"rows": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}}},
            },
            "Row": {"type": "object", "required": ["symbol"], "properties": {"symbol": {"type": "string"}}},
            "Meta": {"type": "object"},
            "MarketEnvelope": {"properties": {"type": {"const": "market_status"}, "data": {"required": ["open"]}}},
            "Other": {"properties": {"type": {"const": "other"}, "data": {"required": ["closed"]}}},
            "Unused": {"type": "string"},
        },
    },
}


def test_data_schemas_come_from_each_types_rest_path_with_the_components_they_name() -> None:
    data = openapi_data_schemas(DEFAULT_MANIFEST, OPENAPI)
    assert data.by_type["account_balance"] == {"type": "object", "required": ["cash"]}  # through a response $ref
    assert data.by_type["positions"] == {"$ref": "#/components/schemas/Data"}  # the name kept
    assert data.by_type["intraday_bar"] == {"type": "object", "required": ["close"]}  # from an allOf
    assert data.by_type["market_status"] == {"required": ["open"]}  # the oneOf branch of its own type
    assert set(data.components) == {"Data", "Row"}  # what they name, and nothing else
    assert "vwap" not in data.by_type
    assert data.notes == (
        "vwap: the 200 response of GET /api/intraday/{symbol}/vwap has no JSON schema, so its data is not described",
    )


def test_openapi_without_a_manifest_path_is_bad_input_naming_it() -> None:
    doc = copy.deepcopy(OPENAPI)
    del doc["paths"]["/api/account/positions"]
    with pytest.raises(UsageError, match=r"has no path matching GET /api/account/positions \(REST path of 'positions'"):
        openapi_data_schemas(DEFAULT_MANIFEST, doc)


def test_openapi_paths_under_a_server_base_path_are_found() -> None:
    manifest = build_manifest({"positions": {"rest": [{"type": "positions", "path": "/v2/api/account/positions"}]}})
    doc = {**OPENAPI, "servers": [{"url": "https://h/v2"}]}
    assert openapi_data_schemas(manifest, doc).by_type["positions"] == {"$ref": "#/components/schemas/Data"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"swagger": "2.0", "paths": {}}, "is not an OpenAPI 3 document"),
        ({"openapi": "3.1.0"}, "is not an OpenAPI 3 document"),
    ],
)
def test_a_document_that_is_not_openapi_3_is_bad_input(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        openapi_data_schemas(DEFAULT_MANIFEST, doc)


@pytest.mark.parametrize(
    ("ref", "message"),
    [("other.json#/Data", "points outside the document"), ("#/components/schemas/Nope", "does not resolve")],
)
def test_a_ref_that_cannot_be_followed_is_bad_input(ref: str, message: str) -> None:
    doc = copy.deepcopy(OPENAPI)
    doc["components"]["schemas"]["Row"]["properties"]["symbol"] = {"$ref": ref}
    with pytest.raises(UsageError, match=message):
        openapi_data_schemas(DEFAULT_MANIFEST, doc)


def test_a_ref_circle_is_bad_input() -> None:
    doc = copy.deepcopy(OPENAPI)
    doc["components"]["schemas"]["PositionsEnvelope"] = {"$ref": "#/components/schemas/PositionsEnvelope"}
    with pytest.raises(UsageError, match="circle"):
        openapi_data_schemas(DEFAULT_MANIFEST, doc)


def test_openapi_30_keywords_become_json_schema() -> None:
    doc = copy.deepcopy(OPENAPI)
    doc["openapi"] = "3.0.3"
    doc["components"]["schemas"]["Row"]["properties"] = {
        "symbol": {"type": "string", "nullable": True, "example": "ES", "xml": {"name": "s"}},
        "side": {"type": "string", "enum": ["buy", "sell"], "nullable": True},
        "kind": {"allOf": [{"$ref": "#/components/schemas/Meta"}], "nullable": True},
        "pet": {"oneOf": [{"type": "object"}], "discriminator": {"propertyName": "kind"}},
    }
    row = openapi_data_schemas(DEFAULT_MANIFEST, doc).components["Row"]["properties"]
    assert row["symbol"] == {"type": ["string", "null"], "examples": ["ES"]}
    assert row["side"] == {"type": ["string", "null"], "enum": ["buy", "sell", None]}
    assert row["kind"] == {"anyOf": [{"allOf": [{"$ref": "#/components/schemas/Meta"}]}, {"type": "null"}]}
    assert row["pet"]["discriminator"] == "kind"


def test_a_body_locator_elsewhere_reads_the_schema_there_and_a_missing_one_is_noted() -> None:
    manifest = build_manifest({"positions": {"rest_locators": {"body": "data.rows"}}})
    data = openapi_data_schemas(manifest, OPENAPI)
    assert data.by_type["positions"] == {"type": "array", "items": {"$ref": "#/components/schemas/Row"}}
    manifest = build_manifest({"positions": {"rest_locators": {"body": "result"}}})
    data = openapi_data_schemas(manifest, OPENAPI)
    assert "positions" not in data.by_type
    assert any(
        n.startswith("positions: the 200 response of GET /api/account/positions has no `result`") for n in data.notes
    )


def test_a_type_without_a_rest_path_is_noted_not_refused() -> None:
    manifest = build_manifest({"ticks": {"types": ["tick"], "rest": []}})
    data = openapi_data_schemas(manifest, OPENAPI)
    assert "tick: the manifest names no REST path for it, so its data is not described" in data.notes


def test_newer_json_schema_keywords_are_noted() -> None:
    doc = copy.deepcopy(OPENAPI)
    doc["components"]["schemas"]["Row"]["prefixItems"] = [{"type": "string"}]
    assert any("prefixItems" in n for n in openapi_data_schemas(DEFAULT_MANIFEST, doc).notes)


# -- checking frames --------------------------------------------------------------------------------------


def test_checker_reports_the_path_of_each_problem() -> None:
    checker = FrameChecker(document(DEFAULT_MANIFEST))
    assert checker.check(envelope()) is None
    assert checker.check(envelope(resync=True)) is None
    assert problems(checker, envelope(seq="3")) == [("$.seq", "'3' is not of type 'integer'")]
    assert problems(checker, {k: v for k, v in envelope().items() if k != "data"}) == [
        ("$.data", "'data' is a required property")
    ]
    assert problems(checker, envelope(ts="yesterday"))[0][0] == "$.ts"
    assert problems(checker, envelope(extra=1)) == [
        ("$", "Additional properties are not allowed ('extra' was unexpected)")
    ]
    violation = checker.check(envelope(seq=-1, key=5, ts=None))
    assert violation is not None
    assert violation.type == "positions"
    assert violation.errors == 3
    assert {p.path for p in violation.problems} == {"$.seq", "$.key", "$.ts"}


def test_checker_counts_an_unknown_type_no_type_and_not_json_as_violations() -> None:
    checker = FrameChecker(document(DEFAULT_MANIFEST))
    unknown = checker.check({"type": "surprise"})
    assert unknown is not None
    assert unknown.type == "surprise"
    assert unknown.problems[0].path == "$.type"
    assert "no message of the document has type 'surprise'" in unknown.problems[0].message
    untyped = checker.check([1, 2])
    assert untyped is not None
    assert untyped.type == "(no type)"
    assert checker.not_json("not JSON: Expecting value").to_dict() == {
        "type": "(not JSON)",
        "errors": 1,
        "problems": [{"path": "$", "message": "not JSON: Expecting value"}],
    }


def test_checker_never_takes_a_command_for_a_message_the_server_sends() -> None:
    checker = FrameChecker(document(DEFAULT_MANIFEST))
    assert "ping" not in checker.types
    assert checker.check({"action": "ping"}) is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(asyncapi="2.6.0"), "is not an AsyncAPI 3 document"),
        (lambda d: d.pop("asyncapi"), "is not an AsyncAPI 3 document"),
        (lambda d: d["components"]["messages"]["positions"]["payload"].update(type=5), "is not a valid JSON Schema"),
        (
            lambda d: d["components"]["messages"]["positions"]["payload"]["properties"].update(
                data={"$ref": "#/components/schemas/Gone"}
            ),
            "does not resolve",
        ),
        (lambda d: d["operations"]["receive_positions"]["messages"].append({"$ref": "http://x/y"}), "not a local"),
        (lambda d: d.update(operations={}, channels={}), "describes no message a client receives"),
    ],
)
def test_checker_refuses_a_document_it_cannot_use(change: Any, message: str) -> None:
    doc = document(DEFAULT_MANIFEST)
    change(doc)
    with pytest.raises(UsageError, match=message):
        FrameChecker(doc, source="doc.json")


def test_checker_follows_a_recursive_schema_through_references() -> None:
    tree = {
        "type": "object",
        "properties": {
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}},
            "n": {"type": "integer"},
        },
    }
    doc = document(
        DEFAULT_MANIFEST, data_schemas={"positions": {"$ref": "#/components/schemas/Tree"}}, components={"Tree": tree}
    )
    checker = FrameChecker(doc)
    deep = {"n": 1, "children": [{"n": 2, "children": [{"n": 3}]}]}
    assert checker.check(envelope(data=deep)) is None
    deep["children"][0]["children"][0]["n"] = "3"
    assert problems(checker, envelope(data=deep)) == [
        ("$.data.children[0].children[0].n", "'3' is not of type 'integer'")
    ]


def test_checker_of_a_document_without_operations_takes_every_channel_message() -> None:
    doc = {
        "asyncapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "channels": {
            "c": {
                "messages": {
                    "tick": {
                        "payload": {
                            "type": "object",
                            "properties": {"type": {"const": "tick"}, "n": {"type": "integer"}},
                        }
                    },
                    "any": {"payload": {"type": "object", "required": ["free"]}},
                }
            }
        },
    }
    checker = FrameChecker(doc)
    assert checker.types == {"tick"}
    assert checker.check({"type": "tick", "n": 1}) is None
    assert checker.check({"type": "tick", "n": "1"}) is not None
    assert checker.check({"type": "other", "free": 1}) is None  # an untyped message takes any type
    assert checker.check({"type": "other"}) is not None


def test_json_path_quotes_what_is_not_a_name() -> None:
    assert json_path(["data", "positions", 0, "symbol"]) == "$.data.positions[0].symbol"
    assert json_path(["a b", "ü", 3]) == '$["a b"].ü[3]'


# -- generated envelopes against the reference backend's document -----------------------------------------


@pytest.fixture(scope="module")
def reference(thor_env: dict[str, str]) -> dict[str, Any]:
    from thor_trading.openapi import asyncapi

    return asyncapi()


def test_reference_document_describes_data_with_the_rest_descriptions_schemas(reference: dict[str, Any]) -> None:
    from thor_trading.openapi import DATA, _camel, description

    schemas = reference["components"]["schemas"]
    for type_, schema in DATA.items():
        data = payload(reference, type_)["properties"]["data"]
        assert data == {"$ref": f"#/components/schemas/{_camel(type_)}Data"}
        assert schemas[f"{_camel(type_)}Data"] == schema
    rest = description()["components"]["schemas"]
    for name, schema in schemas.items():
        assert schema == rest[name], name  # brought along unchanged: one description of each payload


def _strategy(doc: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that conform to ``schema``: the subset of JSON Schema the reference document uses."""
    if "$ref" in schema:
        target: Any = doc
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        return st.deferred(lambda: _strategy(doc, target))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema or "anyOf" in schema:
        return st.one_of([_strategy(doc, s) for s in schema.get("oneOf", schema.get("anyOf"))])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_strategy(doc, {**schema, "type": k}) for k in kind])
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = {k: _strategy(doc, props[k]) for k in schema.get("required", [])}
        optional = {k: _strategy(doc, v) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "array":
        return st.lists(_strategy(doc, schema.get("items", {})), max_size=3)
    if kind == "string":
        if schema.get("pattern") == TIMESTAMP_PATTERN:
            return st.datetimes(min_value=datetime(1000, 1, 1)).map(
                lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
            )
        return st.text(max_size=8)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(2**40)), max_value=schema.get("maximum", 2**53))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.integers()  # any value


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _messages(doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    received = [name for name, m in doc["components"]["messages"].items() if not name.endswith("Command")]
    return st.one_of([_strategy(doc, doc["components"]["messages"][n]["payload"]) for n in received])


@pytest.fixture(scope="module")
def reference_checker(reference: dict[str, Any]) -> FrameChecker:
    return FrameChecker(reference)


def test_generated_messages_conform_and_each_wrong_typed_leaf_is_found(
    reference: dict[str, Any], reference_checker: FrameChecker
) -> None:
    @settings(max_examples=60, deadline=None, database=None)
    @given(msg=_messages(reference), data=st.data())
    def check(msg: Any, data: st.DataObject) -> None:
        assert reference_checker.check(msg) is None, msg
        leaves = list(_leaves(msg))
        path = data.draw(st.sampled_from(leaves))
        broken = copy.deepcopy(msg)
        target = broken
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = [target[path[-1]]]  # no scalar of these schemas may be a list
        violation = reference_checker.check(broken)
        assert violation is not None, (path, broken)
        where = json_path(path)
        assert any(where.startswith(p.path) or p.path == "$.type" for p in violation.problems), (where, violation)

    check()


def test_generated_envelopes_with_any_data_conform_to_the_manifests_document() -> None:
    checker = FrameChecker(document(DEFAULT_MANIFEST))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=8,
    )

    @settings(max_examples=60, deadline=None, database=None)
    @given(
        type_=st.sampled_from(TYPES),
        key=st.text(max_size=10),
        seq=st.integers(0, 2**63),
        data=json_values,
        wrong=st.sampled_from(["seq-string", "seq-negative", "seq-bool", "key-int", "ts", "feature", "type"]),
    )
    def check(type_: str, key: str, seq: int, data: Any, wrong: str) -> None:
        msg = envelope(type_, key, seq, data=data)
        assert checker.check(msg) is None
        field = wrong.partition("-")[0]
        bad = {
            "seq-string": str(seq),
            "seq-negative": -1 - seq,
            "seq-bool": True,
            "key-int": 7,
            "ts": TS.replace("T", " "),
            "feature": "positions" if type_ != "positions" else "intraday",
            "type": "x" + type_,
        }[wrong]
        violation = checker.check({**msg, field: bad})
        assert violation is not None
        assert violation.problems[0].path == f"$.{field}"

    check()


def test_checking_costs_well_under_a_millisecond_per_envelope(reference_checker: FrameChecker) -> None:
    import time

    msg = {
        "type": "positions",
        "feature": "positions",
        "key": "DU1234",
        "seq": 5,
        "ts": TS,
        "data": {
            "account": "DU1234",
            "as_of": TS,
            "positions": [
                {
                    "symbol": s,
                    "quantity": 3,
                    "avg_price": 1.5,
                    "last_price": 2.0,
                    "market_value": 6.0,
                    "unrealized_pnl": 1.5,
                }
                for s in ("ES", "NQ", "CL")
            ],
        },
    }
    assert reference_checker.check(msg) is None
    started = time.perf_counter()
    for _ in range(200):
        reference_checker.check(msg)
    per_frame = (time.perf_counter() - started) / 200
    assert per_frame < 0.005, f"{per_frame * 1e6:.0f} µs per frame"  # ~150 µs measured; generous for CI


def test_reference_document_is_plain_json() -> None:
    text = json.dumps(document(DEFAULT_MANIFEST, server="http://127.0.0.1:8000"))
    assert re.search(r"\$ref\": \"#/", text)
    assert json.loads(text)["servers"]["backend"]["host"] == "127.0.0.1:8000"


def test_a_type_two_messages_share_conforms_to_either() -> None:
    def tick(required: str) -> dict[str, Any]:
        return {"payload": {"type": "object", "required": [required], "properties": {"type": {"const": "tick"}}}}

    doc = {"asyncapi": "3.0.0", "channels": {"c": {"messages": {"small": tick("n"), "big": tick("m")}}}}
    checker = FrameChecker(doc)
    assert checker.check({"type": "tick", "n": 1}) is None
    assert checker.check({"type": "tick", "m": 1}) is None
    assert problems(checker, {"type": "tick"}) == [("$.n", "'n' is a required property")]
