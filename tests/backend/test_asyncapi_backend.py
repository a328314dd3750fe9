"""``GET /api/asyncapi.json``: the reference backend's AsyncAPI description of ``/ws/stream/``.

It is served without authentication, as ``/api/openapi.json`` is, and is what ``thorcut asyncapi
--openapi <backend>/api/openapi.json`` writes for its feature messages: REST and WebSocket payloads
described once (``thor_trading.openapi.DATA``). Its validity as AsyncAPI 3.0 is checked by the
third-party parser in tests/wire/test_asyncapi_parser.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backend.test_openapi import CSRF, assert_conforms
from tests.backend_fixtures import Server, start_server
from tests.runner import Run
from thorcut.manifest import DEFAULT_MANIFEST

TYPES = [t for f in DEFAULT_MANIFEST.features for t in f.types]


@pytest.fixture(scope="module")
def server(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(thor_env, tmp_path_factory.mktemp("asyncapi") / "uvicorn.log")
    yield srv
    srv.stop()


def test_asyncapi_json_is_served_without_auth_as_the_openapi_description_says(server: Server) -> None:
    from thor_trading.openapi import asyncapi, description

    resp = httpx.get(f"{server.url}/api/asyncapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == asyncapi()
    assert resp.json()["asyncapi"] == "3.0.0"
    assert_conforms(description(), "/api/asyncapi.json", "GET", resp)


def test_asyncapi_json_takes_get_only(server: Server) -> None:
    resp = httpx.put(f"{server.url}/api/asyncapi.json", headers={"X-CSRFToken": CSRF}, cookies={"csrftoken": CSRF})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"


def test_feature_messages_are_what_thorcut_writes_from_the_openapi_description(
    server: Server, run: Run, tmp_path: Any
) -> None:
    served = httpx.get(f"{server.url}/api/asyncapi.json").json()
    result = run("asyncapi", "--openapi", f"{server.url}/api/openapi.json", "--output", str(tmp_path / "doc.json"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote {tmp_path / 'doc.json'}\n"  # no note: every type's data is described
    written = json.loads((tmp_path / "doc.json").read_text())
    for type_ in TYPES:
        assert written["components"]["messages"][type_] == served["components"]["messages"][type_], type_
    written_schemas = written["components"]["schemas"]
    assert written_schemas == {k: v for k, v in served["components"]["schemas"].items() if k in written_schemas}
    assert set(served["components"]["schemas"]) - set(written_schemas) == {"Flag"}
    # The backend's own document knows a flags message exactly (every feature, a Flag each).
    flags = served["components"]["messages"]["flags"]["payload"]["properties"]["features"]
    assert flags["required"] == list(DEFAULT_MANIFEST.names)
    assert flags["additionalProperties"] is False
