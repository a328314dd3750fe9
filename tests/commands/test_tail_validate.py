"""``thorcut tail --validate``: every frame checked against the stream's AsyncAPI document.

Small ``websockets`` servers (tests/wire/ws_server.py) send chosen frames and answer plain HTTP
``GET /api/asyncapi.json`` on the same port (200 with a document, or 404); the real Thor backend
with its job runner gives a minute of real traffic (slow). Every CLI run passes ``--duration`` as a
safety net, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.backend_fixtures import BACKEND, Server, start_server, stop_process
from tests.runner import Run
from tests.wire.ws_server import StartWsServer, WsServer, ndjson, sender
from tests.wire.ws_server import env as plain_envelope
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys
from thorcut.wire.asyncapi import document

FEATURE = {t: f.name for f in DEFAULT_MANIFEST.features for t in f.types}
BAR = {"type": "object", "required": ["symbol", "volume"], "properties": {"volume": {"type": "integer"}}}
DOC = document(DEFAULT_MANIFEST, data_schemas={"intraday_bar": BAR})


def env(type_: str, key: str, seq: int, **data: Any) -> dict[str, Any]:
    """An envelope of ``type_`` with its manifest feature (the contract's envelope, stamped now)."""
    return {**plain_envelope(type_, key, seq, **data), "feature": FEATURE[type_]}


def http(answers: dict[str, tuple[int, Any]], seen: list[dict[str, str]] | None = None) -> Any:
    """A ``process_request`` that answers plain HTTP GETs of ``answers``' paths (status, JSON body)."""

    def process(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if seen is not None:
            seen.append({k: request.headers.get(k, "") for k in ("Authorization", "X-Trace")})
        status, body = answers.get(request.path, (404, {"error": "no such endpoint"}))
        return connection.respond(HTTPStatus(status), json.dumps(body))

    return process


def serve(ws_server: StartWsServer, *frames: Any, doc: Any = None, status: int = 200) -> WsServer:
    answers = {} if doc is None else {"/api/asyncapi.json": (status, doc)}
    return ws_server(sender(*frames), process_request=http(answers))


def tail(run: Run, server: WsServer, *args: str, **environ: str | None) -> Any:
    return run("tail", "--url", server.url, "--duration", "10", *args,
               env={"THORCUT_BACKEND_URL": f"http://127.0.0.1:{server.port}", **environ})  # fmt: skip


# -- what is found, and how it is told -------------------------------------------------------------------


def test_a_frame_with_a_wrong_type_is_reported_with_its_path_and_exits_1(run: Run, ws_server: StartWsServer) -> None:
    server = serve(ws_server, env("positions", "DU1", 1), {**env("positions", "DU1", 2), "seq": "2"}, doc=DOC)
    result = tail(run, server, "--validate", "--count", "2")
    assert result.exit_code == 1, result.stderr
    assert f"validating every shown frame against http://127.0.0.1:{server.port}/api/asyncapi.json" in result.stderr
    assert "violation: positions DU1: $.seq: '2' is not of type 'integer'" in result.stderr
    assert re.search(r"  positions  DU1  #-  \S+  ✗ invalid: \$\.seq  n=2\n", result.stdout)
    assert (f"validation against http://127.0.0.1:{server.port}/api/asyncapi.json: 2 frames checked, "
            "1 violation (positions 1)") in result.stderr  # fmt: skip


def test_data_missing_a_field_of_the_backends_schema_is_reported(run: Run, ws_server: StartWsServer) -> None:
    bar = env("intraday_bar", "ES", 7, symbol="ES")  # no volume
    server = serve(ws_server, bar, env("intraday_bar", "ES", 8, symbol="ES", volume=3), doc=DOC)
    result = tail(run, server, "--validate", "--count", "2")
    assert result.exit_code == 1, result.stderr
    assert "violation: intraday_bar ES #7: $.data.volume: 'volume' is a required property" in result.stderr
    assert "#8" not in result.stderr  # the frame that conforms is not mentioned


def test_conforming_frames_of_every_kind_exit_0(run: Run, ws_server: StartWsServer) -> None:
    frames = [
        {"type": "flags", "client": "c", "features": {"positions": {"stage": "shadow", "percent": 0, "version": 2}}},
        {"type": "subscribed", "features": ["positions"]},
        env("positions", "DU1", 1),
        {**env("positions", "DU1", 3), "resync": True},
        {"type": "heartbeat", "feature": None, "key": "", "seq": 1, "ts": env("positions", "", 0)["ts"],
         "data": {"tick": 30}},
        {"type": "resumed", "replayed": 0, "resynced": 1, "healed": True},
        {"type": "pong"},
        {"type": "error", "error": "unknown action"},
    ]  # fmt: skip
    server = serve(ws_server, *frames, doc=DOC)
    result = tail(run, server, "--validate", "--count", str(len(frames)))
    assert result.exit_code == 0, result.stderr
    assert "violation:" not in result.stderr
    assert "8 frames checked, 0 violations" in result.stderr


def test_without_a_backend_document_the_manifests_is_used_and_that_is_said(run: Run, ws_server: StartWsServer) -> None:
    server = serve(ws_server, env("positions", "DU1", 1), {**env("positions", "DU1", 2), "key": 5})
    result = tail(run, server, "--validate", "--count", "2")
    assert result.exit_code == 1, result.stderr
    assert (f"note: http://127.0.0.1:{server.port}/api/asyncapi.json answered 404: the backend serves no AsyncAPI "
            "document, so frames are checked against the one generated from the manifest") in result.stderr  # fmt: skip
    assert "violation: positions 5 #2: $.key: 5 is not of type 'string'" in result.stderr
    assert "validation against the document generated from the manifest: 2 frames checked, 1 violation" in (
        result.stderr
    )


def test_an_unknown_type_a_frame_without_one_and_one_that_is_not_json_are_violations(
    run: Run, ws_server: StartWsServer
) -> None:
    server = serve(ws_server, {"type": "surprise", "n": 1}, [1, 2], "not json {", doc=DOC)
    result = tail(run, server, "--validate", "--count", "3")
    assert result.exit_code == 1, result.stderr
    assert "violation: surprise: $.type: no message of the document has type 'surprise'" in result.stderr
    assert 'violation: (no type): $.type: no "type": every message of the document names one' in result.stderr
    assert "violation: (not JSON): $: not JSON" in result.stderr
    assert "3 frames checked, 3 violations (surprise 1, (no type) 1, (not JSON) 1)" in result.stderr


def test_json_output_carries_each_violation_and_ends_with_the_counts(run: Run, ws_server: StartWsServer) -> None:
    server = serve(ws_server, env("positions", "DU1", 1), {**env("positions", "DU1", 2), "seq": -2}, "nope", doc=DOC)
    result = tail(run, server, "--validate", "--json", "--count", "3")
    assert result.exit_code == 1, result.stderr
    lines = ndjson(result.stdout)
    assert len(lines) == 4
    assert "violation" not in lines[0]
    assert lines[1]["msg"]["seq"] == -2
    assert lines[1]["violation"] == {
        "type": "positions", "errors": 1, "problems": [{"path": "$.seq", "message": "-2 is less than the minimum of 0"}]
    }  # fmt: skip
    assert lines[2]["violation"]["type"] == "(not JSON)"
    assert lines[3] == {"validation": {"document": f"http://127.0.0.1:{server.port}/api/asyncapi.json",
                                       "checked": 3, "violations": 2,
                                       "by_type": {"positions": 1, "(not JSON)": 1}}}  # fmt: skip


def test_a_flood_of_violations_shows_the_first_20_and_counts_them_all(run: Run, ws_server: StartWsServer) -> None:
    frames = [{**env("positions", "DU1", n), "seq": str(n)} for n in range(60)]
    server = serve(ws_server, *frames, doc=DOC)
    result = tail(run, server, "--validate", "--count", "60")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("violation: positions") == 20
    assert "(the first 20 violations are shown; the rest are counted in the summary)" in result.stderr
    assert "60 frames checked, 60 violations (positions 60)" in result.stderr


def test_the_filter_decides_which_frames_are_checked(run: Run, ws_server: StartWsServer) -> None:
    server = serve(ws_server, {**env("vwap", "ES", 1), "seq": "x"}, env("positions", "DU1", 1), doc=DOC)
    result = tail(run, server, "--validate", "--type", "positions", "--count", "1")
    assert result.exit_code == 0, result.stderr
    assert "1 frames checked, 0 violations" in result.stderr


# -- where the document comes from, and what goes wrong there ---------------------------------------------


def test_asyncapi_file_is_used_and_implies_validate(run: Run, ws_server: StartWsServer, tmp_path: Path) -> None:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(DOC))
    server = serve(ws_server, {**env("intraday_bar", "ES", 1), "data": {"symbol": "ES", "volume": "many"}})
    result = tail(run, server, "--asyncapi", str(path), "--count", "1")
    assert result.exit_code == 1, result.stderr
    assert f"validating every shown frame against {path}" in result.stderr
    assert "violation: intraday_bar ES #1: $.data.volume: 'many' is not of type 'integer'" in result.stderr


def test_asyncapi_url_is_fetched_with_the_token_and_headers(run: Run, ws_server: StartWsServer) -> None:
    seen: list[dict[str, str]] = []
    server = ws_server(sender(env("positions", "DU1", 1)),
                       process_request=http({"/doc.json": (200, DOC)}, seen))  # fmt: skip
    url = f"http://127.0.0.1:{server.port}/doc.json"
    result = tail(run, server, "--asyncapi", url, "--header", "X-Trace: t1", "--count", "1", THORCUT_TOKEN="tok")
    assert result.exit_code == 0, result.stderr
    assert seen == [{"Authorization": "Bearer tok", "X-Trace": "t1"}]
    assert "tok" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the AsyncAPI document {path} (--asyncapi): No such file or directory"),
        ("{not json", "the AsyncAPI document {path} is not JSON: "),
        ("[1]", "the AsyncAPI document {path} is JSON, but not an object"),
        ('{"openapi": "3.1.0"}', "{path} is not an AsyncAPI 3 document"),
        ('{"asyncapi": "3.0.0", "channels": {}}', "{path} describes no message a client receives"),
    ],
)
def test_an_asyncapi_file_that_cannot_be_used_exits_2(run: Run, tmp_path: Path, content: str | None,
                                                     message: str) -> None:  # fmt: skip
    path = tmp_path / "doc.json"
    if content is not None:
        path.write_text(content)
    result = run("tail", "--asyncapi", str(path), "--url", "ws://127.0.0.1:1/", "--duration", "5")
    assert result.exit_code == 2, result.stderr
    assert message.format(path=path) in result.stderr


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (404, 2, "{url} answered HTTP 404, not the AsyncAPI document — check the URL (--asyncapi)"),
        (302, 2, "{url} answered HTTP 302, not the AsyncAPI document"),  # never followed: the token stays here
        (401, 4, "{url} rejected the credentials (HTTP 401) — set THORCUT_TOKEN"),
        (503, 4, "{url} failed (HTTP 503) — see the backend's log"),
    ],
)
def test_an_asyncapi_url_that_does_not_answer_a_document_exits_2_or_4(
    run: Run, ws_server: StartWsServer, status: int, code: int, message: str
) -> None:
    server = ws_server(sender(), process_request=http({"/doc.json": (status, {"error": "no"})}))
    url = f"http://127.0.0.1:{server.port}/doc.json"
    result = tail(run, server, "--asyncapi", url)
    assert result.exit_code == code, result.stderr
    assert message.format(url=url) in result.stderr


def test_an_unreachable_document_exits_4_naming_it(run: Run) -> None:
    # The document is asked of the stream's host (the WebSocket URL's), password redacted.
    result = run("tail", "--validate", "--url", "ws://user:pw@127.0.0.1:1/", "--duration", "5")
    assert result.exit_code == 4
    assert "cannot reach http://user:***@127.0.0.1:1/api/asyncapi.json (ConnectError) — start the backend" in (
        result.stderr
    )
    assert "pw" not in result.stderr.replace("pw@", "")  # the password never shows
    url = run("tail", "--asyncapi", "http://127.0.0.1:1/doc.json?token=s3cret", "--url", "ws://127.0.0.1:1/",
              "--duration", "5")  # fmt: skip
    assert url.exit_code == 4
    assert "s3cret" not in url.stderr


# -- a minute of real traffic from the Thor backend --------------------------------------------------------


@pytest.fixture
def thor_traffic(thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], tmp_path: Path) -> Iterator[Any]:
    """A Thor server and a job runner (with ``THOR_FAULTS`` when asked), every feature in shadow; back to
    ``off`` afterwards. Yields ``start(faults)`` → the server."""
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="tests")
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[Server] = []

    def start(faults: str = "") -> Server:
        for feature in DEFAULT_MANIFEST.names:
            if store.read(feature).stage is Stage.OFF:
                store.change(feature, Stage.SHADOW, reason="tail --validate test")
        servers.append(start_server(thor_env, tmp_path / "uvicorn.log"))
        with (tmp_path / "jobs.log").open("wb") as log:
            procs.append(subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND,
                                          env={**os.environ, **thor_env, "THOR_FAULTS": faults},
                                          stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        return servers[-1]

    try:
        yield start
    finally:
        try:
            for feature in DEFAULT_MANIFEST.names:  # other tests expect the shared prefix all off
                while (stage := store.read(feature).stage) is not Stage.OFF:
                    store.change(feature, Stage.SHADOW if stage in (Stage.LIVE, Stage.COMPLETE) else Stage.OFF)
        finally:
            for proc in procs:
                stop_process(proc)
            for server in servers:
                server.stop()
            client.close()


@pytest.mark.slow
def test_a_minute_of_real_traffic_has_no_violation(run: Run, thor_traffic: Any,
                                                   demo_users: dict[str, dict[str, str]]) -> None:  # fmt: skip
    server = thor_traffic()
    result = run("tail", "--validate", "--json", "--url", server.ws_url, "--timeout", "10", "--duration", "60",
                 env={"THORCUT_TOKEN": demo_users["demo"]["token"], "THORCUT_BACKEND_URL": server.url})  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:]
    lines = ndjson(result.stdout)
    validation = lines[-1]["validation"]
    assert validation["violations"] == 0, [line for line in lines if "violation" in line][:5]
    assert validation["document"] == f"{server.url}/api/asyncapi.json"
    seen = {line["msg"]["type"] for line in lines[:-1]}
    assert seen >= {"flags", "subscribed", "heartbeat", *(t for f in DEFAULT_MANIFEST.features for t in f.types)}
    assert validation["checked"] == len(lines) - 1 > 200


@pytest.mark.slow
def test_a_backend_that_drops_a_field_is_caught_with_its_path(
    run: Run, thor_traffic: Any, demo_users: dict[str, dict[str, str]]
) -> None:
    server = thor_traffic("account_balance:drop_field")
    result = run("tail", "--validate", "--feature", "account_balance", "--count", "3", "--url", server.ws_url,
                 "--timeout", "10", "--duration", "30",
                 env={"THORCUT_TOKEN": demo_users["demo"]["token"], "THORCUT_BACKEND_URL": server.url})  # fmt: skip
    assert result.exit_code == 1, result.stderr[-3000:]
    assert "violation: account_balance DU1234 #" in result.stderr
    assert "$.data.margin_used: 'margin_used' is a required property" in result.stderr
