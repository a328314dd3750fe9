"""``thorcut asyncapi``: the document on stdout or in a file, the data schemas of ``--openapi``, and
clear errors (exit 2 for bad input, 4 for an unreachable ``--openapi`` URL). What the document says
is tested in tests/wire/test_asyncapi.py, its validity in tests/wire/test_asyncapi_parser.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.runner import Run

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        path: {"get": {"responses": {"200": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"data": {"$ref": f"#/components/schemas/{name}"}}}}}}}}}
        for path, name in [("/api/account/balance", "Balance"), ("/api/account/positions", "Positions"),
                           ("/api/intraday/{symbol}/bar", "Bar"), ("/api/markets/status", "Market")]
    } | {"/api/intraday/{symbol}/vwap": {"get": {"responses": {"200": {"description": "no schema"}}}}},
    "components": {"schemas": {name: {"type": "object", "required": [name.lower()]}
                               for name in ("Balance", "Positions", "Bar", "Market")}},
}  # fmt: skip


def test_prints_the_document_of_the_manifest(run: Run) -> None:
    result = run("asyncapi")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["stream"]["address"] == "/ws/stream/"
    assert "servers" not in doc
    assert doc["components"]["messages"]["flags"]["payload"]["properties"]["features"]["additionalProperties"][
        "properties"
    ]["stage"] == {"enum": ["off", "shadow", "live", "complete"]}


def test_the_channel_is_the_configured_websocket_path(run: Run) -> None:
    result = run("asyncapi", env={"THORCUT_WS_URL": "wss://thor.example/streams/v2?token=abc"})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["channels"]["stream"]["address"] == "/streams/v2"
    assert "abc" not in result.stdout


def test_server_is_listed_without_its_credentials(run: Run) -> None:
    result = run("asyncapi", "--server", "https://ops:hunter2@thor.example:8443/?token=abc")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["servers"]["backend"]["host"] == "thor.example:8443"
    assert "hunter2" not in result.stdout
    assert "abc" not in result.stdout


def test_openapi_gives_the_data_schemas_and_notes_what_it_cannot(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(OPENAPI))
    result = run("asyncapi", "--openapi", str(path), "--output", str(tmp_path / "out.json"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        "note: vwap: the 200 response of GET /api/intraday/{symbol}/vwap has no JSON schema, so its data is not "
        f"described\nwrote {tmp_path / 'out.json'}\n"
    )
    doc = json.loads((tmp_path / "out.json").read_text())
    data = doc["components"]["messages"]["positions"]["payload"]["properties"]["data"]
    assert data == {"$ref": "#/components/schemas/Positions"}
    assert doc["components"]["schemas"]["Positions"] == {"type": "object", "required": ["positions"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Error: cannot read the OpenAPI document {path} (--openapi): No such file or directory"),
        ("{", "Error: the OpenAPI document {path} is not JSON: "),
        ('{"asyncapi": "3.0.0"}', "Error: the OpenAPI document {path} is not an OpenAPI 3 document"),
        ('{"openapi": "3.1.0", "paths": {"/other": {}}}',
         "Error: the OpenAPI document {path} has no path matching GET /api/account/balance (REST path of "
         "'account_balance', feature 'account_balance'); its paths: /other"),
    ],
)  # fmt: skip
def test_a_bad_openapi_document_exits_2_naming_it(run: Run, tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "openapi.json"
    if content is not None:
        path.write_text(content)
    result = run("asyncapi", "--openapi", str(path))
    assert result.exit_code == 2
    assert message.format(path=path) in result.stderr
    assert result.stdout == ""


def test_an_unreachable_openapi_url_exits_4_without_its_secrets(run: Run) -> None:
    result = run("asyncapi", "--openapi", "http://me:pw@127.0.0.1:1/api/openapi.json?token=s3cret")
    assert result.exit_code == 4
    assert "cannot reach http://me:***@127.0.0.1:1/api/openapi.json?token=*** (ConnectError)" in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "ftp://thor.example"], "bad backend URL in --server: it must start with http://"),
        (["--output", "/no/such/folder/doc.json"], "cannot write /no/such/folder/doc.json (--output)"),
        (["--timeout", "nan"], "Invalid value for '--timeout'"),
    ],
)
def test_bad_options_exit_2(run: Run, args: list[str], message: str) -> None:
    result = run("asyncapi", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_feature_type_named_like_a_servers_message_exits_2(run: Run, tmp_path: Path) -> None:
    (tmp_path / "thorcut.toml").write_text('[features.odd]\ntypes = ["heartbeat"]\nrest = []\n')
    result = run("asyncapi")
    assert result.exit_code == 2
    assert "features.odd: message type 'heartbeat' is the name of the stream's own 'heartbeat' message" in (
        result.stderr
    )
