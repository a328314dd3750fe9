"""The OpenAPI description (``thor_trading.openapi``) against a real backend.

Real responses of a real server validate against it (``jsonschema``), every ``/api/`` route is in
it, and Schemathesis fuzzes every operation: no 5xx, and every status, content type, header and
body is one the description names.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.backend_fixtures import Server, start_server

DOC_URI = "urn:thor:openapi"
#: A CSRF secret is any 32 characters of Django's alphabet; the cookie and the header must agree.
CSRF = secrets.token_hex(16)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def doc(thor_env: dict[str, str]) -> dict[str, Any]:
    from thor_trading.openapi import description

    return description()


@pytest.fixture(scope="module")
def server(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One backend for the module, with state for every feature (one tick of every job)."""
    from thor_trading.jobs import build_jobs

    for job in build_jobs(7):
        job.run(0)
    server = start_server(thor_env, tmp_path_factory.mktemp("openapi") / "uvicorn.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(demo_users: dict[str, dict[str, str]]) -> str:
    return demo_users["demo"]["token"]


def _pointer(ref: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in ref.removeprefix("#/").split("/")]


def _deref(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in _pointer(node["$ref"]):
            target = target[part]
        node = target
    return node


def declared(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The response object the description gives for ``method path`` answering ``status``."""
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which the description does not list"
    return _deref(doc, responses[str(status)])


def assert_conforms(doc: dict[str, Any], path: str, method: str, resp: httpx.Response) -> None:
    """Assert that ``resp`` has a status, media type, headers and body the description declares."""
    response = declared(doc, path, method, resp.status_code)
    media_type = resp.headers["content-type"].split(";")[0].strip()
    assert media_type in response["content"], (path, media_type)
    for name in response.get("headers", {}):
        assert name in resp.headers, (path, name)
    if media_type == "application/json":
        validate(doc, response["content"][media_type]["schema"], resp.json())


def validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate ``instance`` against ``schema``, a part of ``doc`` whose ``#/…`` references point into it."""
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    Draft202012Validator(_rebase(schema), registry=registry).validate(instance)


def _rebase(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (DOC_URI + v if k == "$ref" and v.startswith("#/") else _rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


FEATURES = [
    ("/api/account/balance", "/api/account/balance", "account_balance"),
    ("/api/account/positions?account=DU1234", "/api/account/positions", "positions"),
    ("/api/intraday/ES/bar", "/api/intraday/{symbol}/bar", "intraday_bar"),
    ("/api/intraday/nq/vwap", "/api/intraday/{symbol}/vwap", "vwap"),
    ("/api/markets/status?market=CME", "/api/markets/status", "market_status"),
]


def test_description_names_every_message_type_and_valid_schemas(doc: dict[str, Any]) -> None:
    from thor_trading.features import TYPE_FEATURE
    from thor_trading.openapi import DATA

    assert set(DATA) == set(TYPE_FEATURE)
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_description_lists_every_api_route(doc: dict[str, Any]) -> None:
    from django.urls import URLResolver, get_resolver

    def routes(patterns: list[Any], prefix: str) -> set[str]:
        out: set[str] = set()
        for p in patterns:
            path = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(p.pattern))
            out |= routes(p.url_patterns, path) if isinstance(p, URLResolver) else {path}
        return out

    api = {r for r in routes(get_resolver().url_patterns, "/") if r.startswith("/api/")}
    assert api == set(doc["paths"]) - {"/metrics"}


def test_every_feature_endpoint_is_routed_to_its_type(doc: dict[str, Any]) -> None:
    """The feature table's REST paths are the ones the URL router serves and the description lists."""
    from django.urls import resolve

    from thor_trading.features import FEATURES
    from thor_trading.urls import FEATURE_VIEWS

    for feature in FEATURES:
        for endpoint in feature.rest:
            url = endpoint.route.replace("{key}", "ES")
            assert resolve(url).func is FEATURE_VIEWS[endpoint.type], url
            assert endpoint.route.replace("{key}", "{" + feature.key + "}") in doc["paths"]
    assert set(FEATURE_VIEWS) == {e.type for f in FEATURES for e in f.rest}


def test_openapi_json_served_without_auth_equals_description(server: Server, doc: dict[str, Any]) -> None:
    resp = httpx.get(f"{server.url}/api/openapi.json")
    assert resp.status_code == 200
    assert resp.json() == doc
    assert_conforms(doc, "/api/openapi.json", "GET", resp)


@pytest.mark.parametrize(("url", "path", "type_"), FEATURES)
def test_feature_envelope_conforms(
    server: Server, doc: dict[str, Any], token: str, url: str, path: str, type_: str
) -> None:
    resp = httpx.get(server.url + url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == type_
    assert_conforms(doc, path, "GET", resp)
    # And the envelope of exactly this type, not merely one of the path's answers.
    from thor_trading.openapi import envelope_component

    validate(doc, {"$ref": f"#/components/schemas/{envelope_component(type_)}"}, resp.json())


@pytest.mark.parametrize(("url", "path", "type_"), FEATURES)
def test_feature_without_auth_401_conforms(
    server: Server, doc: dict[str, Any], url: str, path: str, type_: str
) -> None:
    resp = httpx.get(server.url + url)
    assert resp.status_code == 401
    assert_conforms(doc, path, "GET", resp)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/api/account/balance?account=DU5678", "/api/account/balance"),
        ("/api/account/positions?account=DU0000", "/api/account/positions"),
        ("/api/intraday/ZZZ/bar", "/api/intraday/{symbol}/bar"),
        ("/api/intraday/ZZZ/vwap", "/api/intraday/{symbol}/vwap"),
        ("/api/markets/status?market=NOPE", "/api/markets/status"),
    ],
)
def test_unknown_key_404_conforms(server: Server, doc: dict[str, Any], token: str, url: str, path: str) -> None:
    resp = httpx.get(server.url + url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 404
    assert_conforms(doc, path, "GET", resp)


@pytest.mark.parametrize(
    ("url", "path", "auth"),
    [
        ("/api/markets/status", "/api/markets/status", True),
        ("/api/cutover/flags?client=browser-1", "/api/cutover/flags", True),
        ("/api/health", "/api/health", False),
        ("/api/session", "/api/session", False),
        ("/api/session", "/api/session", True),
        ("/metrics", "/metrics", False),
    ],
)
def test_other_get_conforms(server: Server, doc: dict[str, Any], token: str, url: str, path: str, auth: bool) -> None:
    headers = {"Authorization": f"Bearer {token}"} if auth else {}
    resp = httpx.get(server.url + url, headers=headers)
    assert resp.status_code == 200, resp.text
    assert_conforms(doc, path, "GET", resp)


def test_login_refusals_and_success_conform(server: Server, doc: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url) as browser:
        csrf = browser.get("/api/session").cookies["csrftoken"]
        no_csrf = browser.post("/api/session/login", json={"username": "demo", "password": "demo-pass"})
        assert no_csrf.status_code == 403
        assert_conforms(doc, "/api/session/login", "POST", no_csrf)
        headers = {"X-CSRFToken": csrf}
        for body, status in [
            (b"not json", 400),
            (b"[]", 400),
            (b'{"username": 1, "password": "x"}', 400),
            (b'{"username": "demo", "password": "nope"}', 401),
            (b'{"username": "demo", "password": "demo-pass"}', 200),
        ]:
            resp = browser.post("/api/session/login", content=body, headers=headers)
            assert resp.status_code == status, (body, resp.text)
            assert_conforms(doc, "/api/session/login", "POST", resp)
        # Logging in rotates the CSRF secret.
        out = browser.post("/api/session/logout", headers={"X-CSRFToken": browser.cookies["csrftoken"]})
        assert out.status_code == 200
        assert_conforms(doc, "/api/session/logout", "POST", out)


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("POST", "/api/account/balance", "GET"),
        ("DELETE", "/api/health", "GET"),
        ("GET", "/api/session/login", "POST"),
        ("PUT", "/api/openapi.json", "GET"),
    ],
)
def test_wrong_method_405_json_with_allow(
    server: Server, doc: dict[str, Any], token: str, method: str, url: str, allow: str
) -> None:
    resp = httpx.request(
        method,
        server.url + url,
        headers={"Authorization": f"Bearer {token}", "X-CSRFToken": CSRF},
        cookies={"csrftoken": CSRF},
    )
    assert resp.status_code == 405
    assert resp.headers["allow"] == allow
    assert resp.headers["content-type"] == "application/json"
    method_not_allowed = doc["components"]["responses"]["MethodNotAllowed"]
    validate(doc, method_not_allowed["content"]["application/json"]["schema"], resp.json())


@pytest.mark.parametrize("url", ["/api/nope", "/api/intraday/ES", "/ws/nope"])
def test_unknown_api_path_404_json(server: Server, url: str) -> None:
    resp = httpx.get(server.url + url)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert set(resp.json()) == {"error"}


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_nonconformance(server: Server, token: str) -> None:
    """Every operation, positive and negative examples (25 each), as the demo user with a CSRF pair.

    Schemathesis' own pytest loaders (``schemathesis.pytest.from_fixture``) read a private attribute
    pytest 9 dropped (``Function._nodeid``), so each operation gets a plain Hypothesis test here.
    """
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    headers = {"Authorization": f"Bearer {token}", "X-CSRFToken": CSRF}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {f"{m.upper()} {p}" for p, item in schema.raw_schema["paths"].items() for m in item}
    # Schemathesis leaves out the operation that serves the schema it loaded (tested above).
    assert {o.label for o in operations} == described - {"GET /api/openapi.json"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def fuzz(case: Any) -> None:
                case.call_and_validate(base_url=server.url, headers=headers, cookies={"csrftoken": CSRF},
                                       checks=CHECKS)  # fmt: skip

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): only positive examples exist.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
