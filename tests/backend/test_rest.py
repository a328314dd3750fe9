"""REST endpoints on a real database and the session's real Redis: envelopes, auth, isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

ENVELOPE_KEYS = {"type", "feature", "key", "seq", "ts", "data"}
FEATURE_PATHS = [
    ("/api/account/balance", "account_balance"),
    ("/api/account/positions", "positions"),
    ("/api/intraday/ES/bar", "intraday_bar"),
    ("/api/intraday/nq/vwap", "vwap"),
    ("/api/markets/status?market=NYSE", "market_status"),
]


@pytest.fixture(scope="module", autouse=True)
def _stop_flag_watcher() -> Iterator[None]:
    """/api/health and /api/cutover/flags start this process's flag watcher: stop it afterwards."""
    yield
    from global_markets.services import websocket_features

    websocket_features.stop()


@pytest.fixture
def seeded(thor_env: dict[str, str], demo_users: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """State for every feature (one tick of every job), and the demo users."""
    from thor_trading.jobs import build_jobs

    for job in build_jobs(7):
        job.run(0)
    return demo_users


def get(path: str, token: str | None = None, client: Any = None) -> Any:
    from django.test import Client

    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return (client or Client()).get(path, **headers)


@pytest.mark.parametrize(("path", "type_"), FEATURE_PATHS)
def test_feature_endpoint_with_token_returns_envelope(seeded: dict[str, Any], path: str, type_: str) -> None:
    resp = get(path, seeded["demo"]["token"])
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["type"] == type_
    assert body["seq"] >= 1
    if type_ in ("account_balance", "positions"):
        assert body["key"] == body["data"]["account"] == "DU1234"


@pytest.mark.parametrize(("path", "type_"), FEATURE_PATHS)
def test_feature_endpoint_without_auth_401_json(seeded: object, path: str, type_: str) -> None:
    resp = get(path)
    assert resp.status_code == 401
    assert "authentication required" in resp.json()["error"]


def test_feature_endpoint_bad_token_401(seeded: object) -> None:
    resp = get("/api/account/balance", "thor_not-a-real-token")
    assert resp.status_code == 401
    assert "error" in resp.json()


def test_session_login_then_cookie_reads_balance(seeded: dict[str, Any]) -> None:
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    assert browser.get("/api/session").json() == {"authenticated": False}
    csrf = browser.cookies["csrftoken"].value
    refused = browser.post("/api/session/login", {"username": "demo", "password": "demo-pass"},
                           content_type="application/json")  # fmt: skip
    assert refused.status_code == 403  # no CSRF header
    wrong = browser.post("/api/session/login", {"username": "demo", "password": "nope"},
                         content_type="application/json", HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
    assert wrong.status_code == 401
    ok = browser.post("/api/session/login", {"username": "demo", "password": "demo-pass"},
                      content_type="application/json", HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
    assert ok.status_code == 200
    assert ok.json() == {"authenticated": True, "username": "demo"}
    assert browser.get("/api/session").json()["accounts"] == ["DU1234"]
    resp = browser.get("/api/account/balance")
    assert resp.status_code == 200
    assert resp.json()["key"] == "DU1234"


def test_session_logout_then_read_401(seeded: object) -> None:
    from django.test import Client

    browser = Client()
    assert browser.post("/api/session/login", {"username": "other", "password": "other-pass"},
                        content_type="application/json").status_code == 200  # fmt: skip
    assert browser.get("/api/account/positions").json()["key"] == "DU5678"
    browser.post("/api/session/logout")
    assert browser.get("/api/account/positions").status_code == 401


@pytest.mark.parametrize("path", ["/api/account/balance", "/api/account/positions"])
def test_account_of_another_user_404_without_its_data(seeded: dict[str, Any], path: str) -> None:
    resp = get(f"{path}?account=DU5678", seeded["demo"]["token"])
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}
    own = get(f"{path}?account=DU5678", seeded["other"]["token"])
    assert own.status_code == 200
    assert own.json()["key"] == "DU5678"
    unknown = get(f"{path}?account=DU0000", seeded["demo"]["token"])
    assert (unknown.status_code, unknown.json().keys()) == (404, resp.json().keys())


@pytest.mark.parametrize(
    "path",
    [
        "/api/intraday/ZZZ/bar",
        "/api/intraday/ZZZ/vwap",
        "/api/markets/status?market=NOPE",
    ],
)
def test_unknown_key_404_json(seeded: dict[str, Any], path: str) -> None:
    resp = get(path, seeded["demo"]["token"])
    assert resp.status_code == 404
    assert resp["Content-Type"] == "application/json"
    assert "error" in resp.json()


def test_health_without_auth_200(thor_env: dict[str, str]) -> None:
    resp = get("/api/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["database"] is True


def test_cutover_flags_fresh_prefix_all_four_features_off(
    seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    from global_markets.services import websocket_features

    for var in ("WS_FEATURE_ACCOUNT_BALANCE", "WS_FEATURE_POSITIONS", "WS_FEATURE_INTRADAY",
                "WS_FEATURE_GLOBAL_MARKET"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    # A prefix nobody has written: what a backend sees before anyone runs `thorcut` commands.
    websocket_features.stop()
    try:
        with override_settings(THORCUT_PREFIX=f"fresh{uuid.uuid4().hex[:8]}"):
            resp = get("/api/cutover/flags?client=browser-1", seeded["demo"]["token"])
    finally:
        websocket_features.stop()  # the next user starts a watcher on the session's prefix again
    assert resp.status_code == 200
    body = resp.json()
    assert body["client"] == "browser-1"
    assert set(body["features"]) == {"account_balance", "positions", "intraday", "global_market"}
    for flag in body["features"].values():
        assert flag["stage"] == "off"
        assert flag["source"] == "rest"


def test_cutover_flags_without_auth_401(thor_env: dict[str, str]) -> None:
    assert get("/api/cutover/flags").status_code == 401


def test_markets_status_without_market_lists_every_exchange(seeded: dict[str, Any]) -> None:
    from thor_trading.exchanges import EXCHANGES

    resp = get("/api/markets/status", seeded["demo"]["token"])
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"markets"}
    assert {m["key"] for m in body["markets"]} >= set(EXCHANGES)
    for m in body["markets"]:
        assert set(m) == ENVELOPE_KEYS
        assert m["type"] == "market_status"
        assert m["data"]["session"] in ("pre", "regular", "post", "closed")
    one = get("/api/markets/status?market=lse", seeded["demo"]["token"]).json()
    assert one == next(m for m in body["markets"] if m["key"] == "LSE")


def test_feature_endpoint_post_405(seeded: dict[str, Any]) -> None:
    from django.test import Client

    resp = Client().post("/api/account/balance", HTTP_AUTHORIZATION=f"Bearer {seeded['demo']['token']}")
    assert resp.status_code == 405


def post_login(body: bytes) -> Any:
    from django.test import Client

    return Client().post("/api/session/login", body, content_type="application/json")


@pytest.mark.parametrize("body", [b"[]", b'"demo"', b"7", b"null", b'["demo", "demo-pass"]'])
def test_login_body_not_a_json_object_400(seeded: object, body: bytes) -> None:
    # Schemathesis found these: a JSON value that is not an object had no .get, a 500.
    resp = post_login(body)
    assert resp.status_code == 400
    assert "JSON object" in resp.json()["error"]


@pytest.mark.parametrize(
    "body",
    [b'{"username": "demo", "password": 7}', b'{"username": 7, "password": "demo-pass"}',
     b'{"username": "demo", "password": null}', b'{"username": ["demo"], "password": "demo-pass"}'],
)  # fmt: skip
def test_login_credentials_not_strings_400(seeded: object, body: bytes) -> None:
    # Schemathesis found these: Django's make_password raised TypeError on a non-string password, a 500.
    resp = post_login(body)
    assert resp.status_code == 400
    assert set(resp.json()) == {"error"}


def test_login_username_with_nul_401(seeded: object) -> None:
    # PostgreSQL refuses NUL in text: the lookup would be a 500 there (the suite runs again on PostgreSQL).
    resp = post_login(b'{"username": "demo\\u0000", "password": "demo-pass"}')
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/api/account/balance?account=DU%001234",
        "/api/account/positions?account=%00",
        "/api/intraday/E%00S/bar",
        "/api/intraday/%00/vwap",
        "/api/markets/status?market=CM%00E",
    ],
)
def test_key_with_nul_404_json(seeded: dict[str, Any], path: str) -> None:
    # PostgreSQL refuses NUL in text: the lookup would be a 500 there (the suite runs again on PostgreSQL).
    resp = get(path, seeded["demo"]["token"])
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("post", "/api/account/balance", "GET"), ("delete", "/api/health", "GET"), ("put", "/api/cutover/flags", "GET"),
     ("get", "/api/session/login", "POST"), ("get", "/api/session/logout", "POST")],
)  # fmt: skip
def test_wrong_method_405_json_with_allow(seeded: dict[str, Any], method: str, path: str, allow: str) -> None:
    from django.test import Client

    resp = getattr(Client(), method)(path, HTTP_AUTHORIZATION=f"Bearer {seeded['demo']['token']}")
    assert resp.status_code == 405
    assert resp["Allow"] == allow
    assert resp["Content-Type"] == "application/json"
    assert allow in resp.json()["error"]


@pytest.mark.parametrize("path", ["/api/nope", "/api/account", "/api/intraday/ES", "/ws/nope"])
def test_unknown_api_path_404_json(thor_env: dict[str, str], path: str) -> None:
    resp = get(path)
    assert resp.status_code == 404
    assert resp["Content-Type"] == "application/json"
    assert set(resp.json()) == {"error"}


def test_login_without_csrf_403_json(seeded: object) -> None:
    from django.test import Client

    resp = Client(enforce_csrf_checks=True).post("/api/session/login", {"username": "demo", "password": "demo-pass"},
                                                 content_type="application/json")  # fmt: skip
    assert resp.status_code == 403
    assert resp["Content-Type"] == "application/json"
    assert "X-CSRFToken" in resp.json()["error"]


def test_openapi_json_without_auth_200(thor_env: dict[str, str]) -> None:
    from thor_trading.openapi import description

    resp = get("/api/openapi.json")
    assert resp.status_code == 200
    assert resp.json() == description()
