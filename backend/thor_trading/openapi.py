"""The OpenAPI 3.1 description of the REST API, served at ``/api/openapi.json``, and the AsyncAPI
3.0 description of the WebSocket stream built from it, served at ``/api/asyncapi.json``.

One home for it: ``tests/backend/test_openapi.py`` validates real responses of a running backend
against it and runs Schemathesis over every operation. What the code already says once is taken
from there: the features, their message types and their endpoints' paths (``thor_trading.features``)
and the stages (``thorcut.flags.Stage``).
The ``data`` schemas say what ``messages.py`` builds, the ``Ops…`` schemas what the operations API
(``global_markets.ops``) answers; ``additionalProperties: false`` makes a field added there and not
here fail the tests.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings

from thor_trading.features import FEATURES, NAMES, TYPE_FEATURE, Endpoint, Feature
from thorcut.flags import Stage

Schema = dict[str, Any]

#: How ``messages.iso`` writes times (UTC, milliseconds).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
#: Market session names (``thor_trading.exchanges``); only ``regular`` is open.
SESSIONS = ("pre", "regular", "post", "closed")


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema]) -> Schema:
    """An object with exactly these properties, all required."""
    return {"type": "object", "required": list(properties), "properties": properties, "additionalProperties": False}


def _money(*names: str) -> dict[str, Schema]:
    return {name: {"type": "number"} for name in names}


TIME = _ref("Timestamp")
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}


def _nullable(type_: str, description: str = "") -> Schema:
    return {"type": [type_, "null"], **({"description": description} if description else {})}


STAGE = {"enum": [s.value for s in Stage]}
#: The statuses of a ramp (thorcut/flags/ramp.py; docs/contracts.md, "Guard and ramp").
RAMP_STATUSES = ("running", "holding", "failed", "done", "aborted", "interrupted")
#: The kinds of refusal of a stage change (``global_markets.ops``).
REFUSALS = ("transition", "gate", "stale", "reset", "refused")

#: What ``GET /api/ops/monitor`` answers (``global_markets.ops``): the stored state, as it is stored.
OPS: dict[str, Schema] = {
    "OpsVerdict": _object(
        {
            "verdict": {"enum": ["PASS", "FAIL", "PENDING"]},
            "judged_at": _nullable("string", "ISO-8601 UTC, as stored"),
            "age_s": _nullable("number", "seconds since judged_at"),
            "valid": {"type": "boolean", "description": "whether it opens the gate to live now"},
            "gate": _nullable("string", "why it does not open the gate (null when `valid`)"),
            "source": _nullable("string", "who judged it: live (`diff`, `check`), guard, ramp, …"),
            "reasons": {"type": "array", "items": STRING},
            **{name: COUNT for name in ("paired", "mismatched", "gaps", "resyncs", "duplicates")},
            "lag_ms": _object({"mean": _nullable("number"), "max": _nullable("number")}),
            "last_mismatch_path": _nullable("string", "the first differing path of the last mismatch"),
        }
    ),
    "OpsRamp": _object(
        {
            "status": {"enum": list(RAMP_STATUSES)},
            "text": {"type": "string", "description": "the status line, e.g. `ramping 25 % → 50 % in 3m 10s`"},
            "percent": INTEGER,
            "next_percent": _nullable("integer"),
            "due_in_s": _nullable("number", "seconds until the next step is due"),
            "steps": {"type": "array", "items": INTEGER},
            "index": {"type": "integer", "minimum": 1, "description": "the current step, from 1"},
            "why": _nullable("string", "what a holding step waits for, or why the ramp stopped"),
            "hold_s": {"type": "number"},
            "owner": {"oneOf": [{"type": "null"}, _object({"host": STRING, "pid": INTEGER})]},
            "started_by": _nullable("string"),
        }
    ),
    "OpsGuard": _object(
        {
            "host": STRING,
            "pid": INTEGER,
            "since": _nullable("string", "when it began guarding the feature (ISO-8601 UTC)"),
            "age_s": _nullable("number"),
            "heartbeat_age_s": _nullable("number"),
        }
    ),
    "OpsFeature": _object(
        {
            "feature": {"enum": list(NAMES)},
            "stage": STAGE,
            "percent": INTEGER,
            "version": INTEGER,
            "updated_at": _nullable("string"),
            "updated_by": _nullable("string", "`web:<username>` for a change made from the page"),
            "reason": _nullable("string"),
            "allowed": {
                "type": "array",
                "items": STAGE,
                "description": "the stages the stage machine allows from here, forward first (a live "
                "feature's percent changes with `to: live`, not listed)",
            },
            "verdict": {"oneOf": [{"type": "null"}, _ref("OpsVerdict")]},
            "ramp": {"oneOf": [{"type": "null"}, _ref("OpsRamp")]},
            "guard": {"oneOf": [{"type": "null"}, _ref("OpsGuard")]},
            "rest_reads_per_min": {
                "type": "number",
                "minimum": 0,
                "description": "REST reads of the feature's endpoints per minute, last 5 minutes (the current "
                "one partial): the sum of its `{prefix}:rest:<feature>:<minute>` hashes / 5",
            },
            "rest_readers": {
                "type": "array",
                "maxItems": 20,
                "items": _ref("OpsRestReader"),
                "description": "who read them in the last 5 minutes, biggest first (at most 20)",
            },
        }
    ),
    "OpsRestReader": _object(
        {
            "label": {
                "type": "string",
                "description": "`page/<build>`, another `X-Thor-Client` value, `token/<name>`, `anonymous`, "
                "or `other` (labels past a minute's 100th); `last_seen` is its latest read (the end of its "
                "latest minute where the backend kept no time)",
            },
            "count": COUNT,
            "last_seen": TIME,
        }
    ),
    "OpsMonitor": _object(
        {
            "server_time": TIME,
            "operator": {"type": "boolean", "description": "whether the caller may change stages"},
            "features": {"type": "array", "items": _ref("OpsFeature")},
            "sim_speed": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "simulated market seconds per real second (`THOR_SIM_SPEED`)",
            },
        }
    ),
    "StageChange": {
        "type": "object",
        "required": ["feature", "to", "reason"],
        "additionalProperties": False,
        "properties": {
            "feature": {"enum": list(NAMES)},
            "to": STAGE,
            "percent": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 100,
                "description": "live only: the share of clients on WebSocket (null: keep it, or 100)",
            },
            "reason": {
                "type": "string",
                "minLength": 1,
                "maxLength": 500,
                "pattern": r"\S",
                "description": "why (recorded in the audit log)",
            },
            "force": {
                "type": "boolean",
                "default": False,
                "description": "to live without a valid PASS verdict (recorded as forced)",
            },
            "expect_version": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "refuse (409) unless the feature is still at this version",
            },
        },
    },
    "StageChanged": _object(
        {
            "change": _object(
                {
                    "feature": {"enum": list(NAMES)},
                    "from": STAGE,
                    "to": STAGE,
                    "percent": INTEGER,
                    "version": INTEGER,
                    "changed": BOOLEAN,
                    "forced": BOOLEAN,
                    "dry_run": BOOLEAN,
                    "audit_id": _nullable("string", "the audit stream entry (null when nothing changed)"),
                }
            )
        }
    ),
    "Refusal": _object(
        {
            "error": {"type": "string", "description": "the gate's or the stage machine's message"},
            "refused": {
                "enum": list(REFUSALS),
                "description": "transition (the stage machine), gate (no valid "
                "PASS), stale (expect_version), reset (a reset store)",
            },
        }
    ),
}

#: message type -> the schema of its ``data`` (what ``messages.<type>_message`` builds)
DATA: dict[str, Schema] = {
    "account_balance": _object(
        {
            "account": STRING,
            "currency": STRING,
            **_money("cash", "equity", "unrealized_pnl", "realized_pnl", "margin_used", "buying_power"),
            "as_of": TIME,
        }
    ),
    "positions": _object(
        {
            "account": STRING,
            "positions": {"type": "array", "items": _ref("Position")},
            "as_of": TIME,
        }
    ),
    "intraday_bar": _object(
        {"symbol": STRING, "start": TIME, **_money("open", "high", "low", "close"), "volume": INTEGER}
    ),
    "vwap": _object({"symbol": STRING, "vwap": {"type": "number"}, "cum_volume": INTEGER, "as_of": TIME}),
    "market_status": _object(
        {
            "market": STRING,
            "name": STRING,
            "timezone": STRING,
            "is_open": {"type": "boolean"},
            "session": {"enum": list(SESSIONS)},
            "next_change": TIME,
        }
    ),
}


def _camel(type_: str) -> str:
    return "".join(part.capitalize() for part in type_.split("_"))


def envelope_component(type_: str) -> str:
    """The name of the envelope schema of ``type_`` under ``components/schemas`` (e.g. ``VwapEnvelope``)."""
    return f"{_camel(type_)}Envelope"


def envelope_schema(type_: str) -> Schema:
    """The envelope of one message type (docs/contracts.md, "The message envelope")."""
    return _object(
        {
            "type": {"const": type_},
            "feature": {"const": TYPE_FEATURE[type_]},
            "key": {"type": "string", "description": "the stream within the type: an account, a symbol, a market"},
            "seq": {"type": "integer", "minimum": 0, "description": "version of the state `data` was built from"},
            "ts": TIME,
            "data": _ref(f"{_camel(type_)}Data"),
        }
    )


def _schemas() -> dict[str, Schema]:
    schemas: dict[str, Schema] = {
        "Timestamp": {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN},
        "Error": _object({"error": {"type": "string", "description": "what went wrong and how to fix it"}}),
        "Position": _object(
            {
                "symbol": STRING,
                "quantity": INTEGER,
                **_money("avg_price", "last_price", "market_value", "unrealized_pnl"),
            }
        ),
        "Envelope": {"oneOf": [_ref(envelope_component(t)) for t in TYPE_FEATURE]},
        "MarketsList": _object({"markets": {"type": "array", "items": _ref(envelope_component("market_status"))}}),
        "Flag": _object(
            {
                "stage": {"enum": [s.value for s in Stage]},
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "version": {"type": "integer", "minimum": 0},
                "source": {"enum": ["rest", "websocket"], "description": "where this client reads the feature"},
                "override": {"enum": [*(s.value for s in Stage), None], "description": "WS_FEATURE_* of this process"},
            }
        ),
        "CutoverFlags": _object(
            {
                "client": STRING,
                "features": _object({feature: _ref("Flag") for feature in NAMES}),
            }
        ),
        "Health": _object(
            {
                "status": {"enum": ["ok", "degraded"]},
                "database": {"type": "boolean"},
                "flags_connected": {"type": "boolean"},
                "flags_synced": {"type": "boolean"},
            }
        ),
        "Session": {
            "oneOf": [
                _object({"authenticated": {"const": False}}),
                _object(
                    {
                        "authenticated": {"const": True},
                        "username": STRING,
                        "accounts": {"type": "array", "items": STRING},
                    }
                ),
            ]
        },
        "LoggedIn": _object({"authenticated": {"const": True}, "username": STRING}),
        "LoggedOut": _object({"authenticated": {"const": False}}),
        "Credentials": _object({"username": STRING, "password": STRING}),
    }
    for type_, data in DATA.items():
        schemas[f"{_camel(type_)}Data"] = data
        schemas[envelope_component(type_)] = envelope_schema(type_)
    return schemas | OPS


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _ref("Error")
RESPONSES: dict[str, Schema] = {
    "BadRequest": _json(ERROR, "the request cannot be read (e.g. a body that is not a JSON object)"),
    "Unauthorized": _json(ERROR, "no valid session cookie or bearer token"),
    "Forbidden": _json(ERROR, "CSRF check failed: send the `csrftoken` cookie's value in `X-CSRFToken`"),
    "NotFound": _json(ERROR, "no such key for this user (another user's account answers the same), or no state yet"),
    "MethodNotAllowed": {
        **_json(ERROR, "the path does not take this method (any method not listed here answers so)"),
        "headers": {"Allow": {"description": "the methods the path takes", "schema": STRING}},
    },
}

TAGS = dict.fromkeys([*NAMES, "cutover", "session", "operations"])
AUTHENTICATED: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]
PUBLIC: list[dict[str, list[str]]] = []


def _response(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _get(
    summary: str,
    ok: Schema,
    *,
    operation_id: str,
    tag: str,
    errors: tuple[str, ...] = ("401",),
    parameters: list[Schema] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    extra: dict[str, Schema] | None = None,
) -> Schema:
    """A GET operation: 200 ``ok``, the shared error responses named in ``errors``, and ``extra``."""
    names = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound"}
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": [tag],
            "security": AUTHENTICATED if security is None else security,
            "parameters": parameters or [],
            "responses": {"200": ok, **{code: _response(names[code]) for code in errors}, **(extra or {})},
        }
    }


def _query(name: str, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": STRING}


#: What a feature's key parameter is (``Feature.key`` names the parameter).
KEYS = {
    "account": "account code, e.g. DU1234; default: the caller's first account",
    "symbol": "e.g. ES (any case)",
    "market": "e.g. CME (any case); without it: every market",
}
#: message type -> the summary and operationId of its endpoint
OPERATIONS = {
    "account_balance": ("The account's balance", "accountBalance"),
    "positions": ("The account's positions", "accountPositions"),
    "intraday_bar": ("The current one-minute bar", "intradayBar"),
    "vwap": ("The running VWAP", "intradayVwap"),
    "market_status": ("One market's status (`?market=`), or every market's", "marketsStatus"),
}


def _key_parameter(feature: Feature, endpoint: Endpoint) -> Schema:
    if not endpoint.key_in_path:
        return _query(feature.key, KEYS[feature.key])
    return {"name": feature.key, "in": "path", "required": True, "description": KEYS[feature.key], "schema": STRING}


#: ``X-Thor-Client``: who reads, for counting REST reads (``thor_trading.rest_reads``).
CLIENT_HEADER: Schema = {
    "name": "X-Thor-Client",
    "in": "header",
    "required": False,
    "description": "who reads, for counting the feature's REST reads per client (`page/<build>` from the page; "
    "a script may name itself). Any other value is ignored: the read is counted under `token/<name>` of "
    "the bearer token, else `anonymous`",
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:/@+\-]{1,64}$"},
}


def _feature_paths() -> dict[str, Schema]:
    """Each feature endpoint of the feature table, at its path (the key named as in the URL router)."""
    answers = {  # endpoints that answer more than their envelope
        "market_status": _json(
            {"oneOf": [_ref(envelope_component("market_status")), _ref("MarketsList")]},
            'with `market`: its envelope; without: `{"markets": [envelope, …]}`',
        ),
    }
    out = {}
    for feature in FEATURES:
        for endpoint in feature.rest:
            type_ = endpoint.type
            summary, operation_id = OPERATIONS[type_]
            ok = answers.get(type_) or _json(_ref(envelope_component(type_)), f"the `{type_}` envelope")
            path = endpoint.route.replace("{key}", "{" + feature.key + "}")
            out[path] = _get(summary, ok, operation_id=operation_id, tag=feature.name, errors=("401", "404"),
                             parameters=[_key_parameter(feature, endpoint), CLIENT_HEADER])  # fmt: skip
    return out


def _csrf_post(summary: str, ok: Schema, operation_id: str, *, credentials: bool = False) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "description": "Django's CSRF check applies: send the `csrftoken` cookie (set by `GET /api/session`) "
        "and its value in `X-CSRFToken`.",
        "tags": ["session"],
        "security": PUBLIC,
        "responses": {"200": ok, "403": _response("Forbidden")},
    }
    if credentials:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref("Credentials")}}}
        operation["responses"] |= {"400": _response("BadRequest"), "401": _json(ERROR, "wrong username or password")}
    return {"post": operation}


UNAVAILABLE = _json(ERROR, "the flag store (Redis) cannot be reached")


def _ops_paths() -> dict[str, Schema]:
    """The operations API of the page (``global_markets.ops``)."""
    stage = {
        "operationId": "opsStage",
        "summary": "Change a feature's stage (operators only), through the flag store's gate; audited as "
        "`web:<username>`",
        "description": "Needs the operator permission (`thor_trading.operate_cutover`). A session cookie must "
        "come with its CSRF token in `X-CSRFToken` (a bearer token needs none). To live needs a valid PASS "
        "verdict, or `force` with the reason; to shadow from live or complete is the rollback (never gated).",
        "tags": ["cutover"],
        "security": AUTHENTICATED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("StageChange")}}},
        "responses": {
            "200": _json(_ref("StageChanged"), "changed (or already there: `changed` false)"),
            "400": _json(ERROR, "bad input: not a JSON object, an unknown feature or stage, a bad percent, no reason"),
            "401": _response("Unauthorized"),
            "403": _json(ERROR, "CSRF check failed (a session without `X-CSRFToken`), or not an operator"),
            "409": _json(_ref("Refusal"), "refused by the stage machine or the parity gate: nothing was written"),
            "503": UNAVAILABLE,
        },
    }
    return {
        "/api/ops/monitor": _get(
            "Every feature's stage, stored verdict, ramp and guard, and whether the caller may change stages",
            _json(_ref("OpsMonitor"), "one entry per feature"),
            operation_id="opsMonitor",
            tag="cutover",
            extra={"503": UNAVAILABLE},
        ),
        "/api/ops/stage": {"post": stage},
    }


def _paths() -> dict[str, Schema]:
    return {
        **_feature_paths(),
        **_ops_paths(),
        "/api/cutover/flags": _get(
            "The effective stage of every feature for this client, percent bucket applied",
            _json(_ref("CutoverFlags"), "one entry per feature"),
            operation_id="cutoverFlags",
            tag="cutover",
            parameters=[_query("client", "client id (default: `user:<id>` of the caller)")],
        ),
        "/api/health": _get(
            "Health (no auth)",
            _json(_ref("Health"), "the database answers"),
            operation_id="health",
            tag="operations",
            errors=(),
            security=PUBLIC,
            extra={"503": _json(_ref("Health"), "the database does not answer")},
        ),
        "/api/session": _get(
            "Who is logged in (and set the `csrftoken` cookie)",
            _json(_ref("Session"), "the caller, or `authenticated: false`"),
            operation_id="session",
            tag="session",
            errors=(),
            security=[{}, *AUTHENTICATED],
        ),
        "/api/session/login": _csrf_post(
            "Log in: sets the session cookie", _json(_ref("LoggedIn"), "logged in"), "login", credentials=True
        ),
        "/api/session/logout": _csrf_post("Log out", _json(_ref("LoggedOut"), "logged out"), "logout"),
        "/api/openapi.json": _get(
            "This description (no auth)",
            _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1"),
            operation_id="openapi",
            tag="operations",
            errors=(),
            security=PUBLIC,
        ),
        "/api/asyncapi.json": _get(
            "The AsyncAPI 3.0 description of the WebSocket stream `/ws/stream/` (no auth)",
            _json(
                {"type": "object", "required": ["asyncapi", "channels"]},
                "AsyncAPI 3.0: each message type's envelope, `data` with the schemas of this description",
            ),
            operation_id="asyncapi",
            tag="operations",
            errors=(),
            security=PUBLIC,
        ),
        "/metrics": _get(
            "Prometheus metrics (no auth)",
            {"description": "the text exposition format", "content": {"text/plain": {"schema": STRING}}},
            operation_id="metrics",
            tag="operations",
            errors=(),
            security=PUBLIC,
        ),
    }


def asyncapi() -> Schema:
    """Return the AsyncAPI 3.0 document of ``/ws/stream/`` (a fresh copy: callers may change it).

    thorcut writes it from its built-in manifest (the reference backend's features) with the ``data``
    schemas read from :func:`description`, exactly as ``thorcut asyncapi --openapi`` does: the
    ``DATA`` above describes REST and WebSocket payloads once. A ``flags`` message's entries are
    ``Flag``s, as ``/api/cutover/flags`` answers them.
    """
    from thorcut.wire.asyncapi import from_openapi

    rest = description()
    doc, _ = from_openapi(
        rest,
        source="thor_trading.openapi",
        components={"Flag": rest["components"]["schemas"]["Flag"]},
        title="Thor reference backend: the WebSocket stream",
        version=rest["info"]["version"],
        stages=[s.value for s in Stage],
        flag_schema=_ref("Flag"),
    )
    return doc


def description() -> Schema:
    """Return the OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "Thor reference backend",
            "version": "1",
            "description": "The REST side of the cutover (docs/contracts.md). Every feature endpoint answers "
            'the same envelope as its WebSocket messages. Errors are JSON `{"error": …}`; a method a path '
            "does not list answers 405 (`MethodNotAllowed`), an unknown `/api/` path 404.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name} for name in TAGS],
        "security": AUTHENTICATED,
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token (`thor_…`)"},
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.SESSION_COOKIE_NAME,
                    "description": "set by `POST /api/session/login`",
                },
            },
            "schemas": _schemas(),
            "responses": RESPONSES,
        },
    }
    return copy.deepcopy(doc)  # the module's schema constants are shared by many places in it
