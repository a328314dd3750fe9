"""The operations API (``global_markets.ops``) on the session's real Redis and database: the monitor
shows each feature's stage, verdict, ramp and guard as stored (and no secret); an operator's stage
change goes through the flag store's gate and is audited as ``web:<username>``; a viewer, a session
without its CSRF token and bad input are refused with nothing written; Redis away is a quick 503.

Each test has its own key prefix (``override_settings``), so the session's shared prefix stays as
other tests expect it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.backend.test_openapi import validate
from tests.backend_fixtures import Server, start_server
from tests.conftest import set_flag, start_redis
from thorcut.clock import now_iso
from thorcut.dev.stack import free_port
from thorcut.flags.presence import PresenceWriter
from thorcut.flags.ramp import STATUSES, Owner, RampState, RampStore
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys
from thorcut.verdict import ParityRecord, Verdict

FEATURES = ("account_balance", "positions", "intraday", "global_market")
OWNER = Owner("ramp-host.example", 4242, "s3cret-owner-token")


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def users(demo_users: dict[str, dict[str, str]]) -> Iterator[dict[str, dict[str, str]]]:
    """``demo`` as an operator (as ``dev up`` makes it; put back as it was afterwards) and ``viewer``."""
    from django.contrib.auth import get_user_model

    from thor_trading.users import OPERATE, ensure_user

    demo = get_user_model().objects.get(username="demo")
    was = demo.has_perm(OPERATE)
    ensure_user("demo", "demo-pass", "DU1234", operator=True)
    viewer = ensure_user("viewer", "viewer-pass", "DU9012", token_name="tests", operator=False)
    yield {"demo": demo_users["demo"], "viewer": viewer}
    ensure_user("demo", "demo-pass", "DU1234", operator=was)


@pytest.fixture
def ops(thor_env: dict[str, str], users: object) -> Iterator[FlagStore]:
    """A fresh prefix for the backend's flag store, and a store on it to set up and check with."""
    from django.test import override_settings

    prefix = f"ops{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    with override_settings(THORCUT_PREFIX=prefix):
        yield FlagStore(client, Keys(prefix), FEATURES, operator="tests")
    client.close()


def bearer(user: dict[str, str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {user['token']}"}


def session(username: str, password: str) -> tuple[Any, str]:
    """A browser's session: logged in with the CSRF dance; returns (client, its current CSRF token)."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.get("/api/session")
    csrf = browser.cookies["csrftoken"].value
    login = browser.post("/api/session/login", {"username": username, "password": password},
                         content_type="application/json", HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
    assert login.status_code == 200, login.content
    return browser, browser.cookies["csrftoken"].value  # login rotates the token


def monitor(headers: dict[str, str] | None = None, client: Any = None) -> Any:
    from django.test import Client

    return (client or Client()).get("/api/ops/monitor", **(headers or {}))


def post_stage(body: Any, headers: dict[str, str], client: Any = None) -> Any:
    from django.test import Client

    data = body if isinstance(body, bytes) else json.dumps(body)
    return (client or Client()).post("/api/ops/stage", data, content_type="application/json", **headers)


def row(doc: dict[str, Any], feature: str) -> dict[str, Any]:
    return next(r for r in doc["features"] if r["feature"] == feature)


def conforms(resp: Any, path: str, method: str) -> None:
    """The answer is one the OpenAPI description names for this path, method and status."""
    from thor_trading.openapi import description

    doc = description()
    responses = doc["paths"][path][method]["responses"]
    assert str(resp.status_code) in responses, (path, resp.status_code)
    declared = responses[str(resp.status_code)]
    if "$ref" in declared:
        declared = doc["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    validate(doc, declared["content"]["application/json"]["schema"], resp.json())


def record(verdict: Verdict, *, age_s: float = 5.0, source: str = "live", reasons: tuple[str, ...] = (),
           counts: dict[str, int] | None = None, health: dict[str, Any] | None = None,
           last_mismatch: Any = None) -> ParityRecord:  # fmt: skip
    judged = datetime.now(UTC) - timedelta(seconds=age_s)
    return ParityRecord.judged(
        verdict, judged_at=now_iso(judged), source=source, reasons=reasons, window=(None, None, 65.0),
        thresholds={"min_paired": 50}, health=health or {}, rest_errors={}, counts=counts or {"paired": 60},
        last_mismatch=last_mismatch,
    )  # fmt: skip


def audit(store: FlagStore, feature: str) -> list[dict[str, str]]:
    return [e.fields for e in store.history(feature)]


# -- the monitor ------------------------------------------------------------------------------------


def test_monitor_without_login_is_401(ops: FlagStore) -> None:
    resp = monitor()
    assert resp.status_code == 401
    assert "authentication required" in resp.json()["error"]
    conforms(resp, "/api/ops/monitor", "get")


def test_monitor_of_a_fresh_store_every_feature_off(ops: FlagStore, users: dict[str, Any]) -> None:
    resp = monitor(bearer(users["viewer"]))
    assert resp.status_code == 200, resp.content
    doc = resp.json()
    assert doc["operator"] is False
    assert doc["sim_speed"] == float(os.environ.get("THOR_SIM_SPEED") or 60)
    assert abs(datetime.fromisoformat(doc["server_time"]).timestamp() - time.time()) < 5
    assert [r["feature"] for r in doc["features"]] == list(FEATURES)
    assert row(doc, "positions") == {
        "feature": "positions", "stage": "off", "percent": 0, "version": 0, "updated_at": None, "updated_by": None,
        "reason": None, "allowed": ["shadow"], "verdict": None, "ramp": None, "guard": None,
        "rest_reads_per_min": 0.0, "rest_readers": [],
    }  # fmt: skip
    conforms(resp, "/api/ops/monitor", "get")
    assert monitor(bearer(users["demo"])).json()["operator"] is True


@pytest.mark.parametrize(
    ("stage", "allowed"),
    [("off", ["shadow"]), ("shadow", ["live", "off"]), ("live", ["complete", "shadow"]), ("complete", ["shadow"])],
)
def test_monitor_lists_the_moves_the_stage_machine_allows(ops: FlagStore, users: dict[str, Any], stage: str,
                                                          allowed: list[str]) -> None:  # fmt: skip
    set_flag(ops.client, ops.keys, "intraday", stage, 3, 100 if stage == "complete" else 0)
    assert row(monitor(bearer(users["viewer"])).json(), "intraday")["allowed"] == allowed


def test_monitor_shows_a_passing_verdict_that_opens_the_gate(ops: FlagStore, users: dict[str, Any]) -> None:
    counts = {"paired": 64, "matched": 64, "mismatched": 0, "gaps": 0, "resyncs": 1, "duplicates": 0}
    health = {"messages": 130, "lag_ms_mean": 12.5, "lag_ms_max": 80.0}
    ops.record_parity("positions", record(Verdict.PASS, age_s=30, counts=counts, health=health), [])
    resp = monitor(bearer(users["viewer"]))
    verdict = row(resp.json(), "positions")["verdict"]
    assert {k: v for k, v in verdict.items() if k not in ("judged_at", "age_s")} == {
        "verdict": "PASS", "valid": True, "gate": None, "source": "live", "reasons": [], "paired": 64,
        "mismatched": 0, "gaps": 0, "resyncs": 1, "duplicates": 0, "lag_ms": {"mean": 12.5, "max": 80.0},
        "last_mismatch_path": None,
    }  # fmt: skip
    assert 29 < verdict["age_s"] < 40
    assert verdict["judged_at"].endswith("Z")
    conforms(resp, "/api/ops/monitor", "get")


def test_monitor_shows_a_failing_verdict_with_its_reasons_and_last_mismatch(ops: FlagStore,
                                                                            users: dict[str, Any]) -> None:  # fmt: skip
    mismatch = {"type": "positions", "key": "DU1234", "seq": 55,
                "differences": [{"path": "positions[symbol=ES].last_price", "kind": "changed"}]}  # fmt: skip
    reasons = ("mismatch rate 2.0% > 0.0%", "2 gaps > 0 allowed")
    counts = {"paired": 100, "mismatched": 2, "gaps": 2, "resyncs": 0, "duplicates": 1}
    ops.record_parity("positions", record(Verdict.FAIL, source="guard", reasons=reasons, counts=counts,
                                          last_mismatch=mismatch), [json.dumps(mismatch)])  # fmt: skip
    resp = monitor(bearer(users["viewer"]))
    verdict = row(resp.json(), "positions")["verdict"]
    assert (verdict["verdict"], verdict["valid"], verdict["source"]) == ("FAIL", False, "guard")
    assert verdict["gate"] == "its parity verdict is FAIL, not PASS"
    assert verdict["reasons"] == list(reasons)
    assert (verdict["mismatched"], verdict["gaps"], verdict["duplicates"]) == (2, 2, 1)
    assert verdict["last_mismatch_path"] == "positions[symbol=ES].last_price"
    assert verdict["lag_ms"] == {"mean": None, "max": None}  # no message measured: no lag, not 0 ms
    conforms(resp, "/api/ops/monitor", "get")


@pytest.mark.parametrize(
    ("verdict", "age_s", "valid", "gate"),
    [
        (Verdict.PENDING, 5.0, False, "its parity verdict is PENDING, not PASS"),
        (Verdict.PASS, 3 * 86400.0, False, "its PASS verdict is 72.0 h old; a verdict is valid for 24.0 h"),
    ],
    ids=["pending", "pass too old"],
)
def test_monitor_says_why_a_verdict_does_not_open_the_gate(ops: FlagStore, users: dict[str, Any], verdict: Verdict,
                                                           age_s: float, valid: bool, gate: str) -> None:  # fmt: skip
    ops.record_parity("account_balance", record(verdict, age_s=age_s), [])
    shown = row(monitor(bearer(users["viewer"])).json(), "account_balance")["verdict"]
    assert (shown["verdict"], shown["valid"], shown["gate"]) == (verdict.value, valid, gate)


def _ramp(store: FlagStore, **fields: str) -> None:
    state = RampState("positions", (10, 25, 50, 100), 300.0, index=2, owner=OWNER, started_by="alice",
                      started_at="2026-11-24T14:30:00.000Z", reason="JIRA-7")  # fmt: skip
    RampStore(store.client, store.keys).claim("positions", lambda _: state, resume=False)
    now = time.time()
    store.client.hset(store.keys.ramp("positions"), mapping={"step_started": f"{now - 110:.3f}",
                                                              "next_due": f"{now + 190.4:.3f}", **fields})  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({}, "running", "ramping 25 % → 50 % in 3m 1"),
        ({"status": "holding", "why": "12 paired samples < 50 needed"}, "holding",
         "holding at 25 %: 12 paired samples < 50 needed"),
        ({"heartbeat": f"{time.time() - 60:.3f}"}, "interrupted", "ramp interrupted at 25 %"),
        ({"index": "3", "status": "failed", "why": "mismatch at data.cash"}, "failed",
         "ramp failed at 50 %: mismatch at data.cash"),
    ],
    ids=["running", "holding", "owner gone", "failed"],
)  # fmt: skip
def test_monitor_shows_a_ramp_without_its_owner_token(ops: FlagStore, users: dict[str, Any], fields: dict[str, str],
                                                      status: str, text: str) -> None:  # fmt: skip
    set_flag(ops.client, ops.keys, "positions", "live", 3, 25)
    _ramp(ops, **fields)
    resp = monitor(bearer(users["viewer"]))
    ramp = row(resp.json(), "positions")["ramp"]
    assert ramp["status"] == status
    assert ramp["text"].startswith(text), ramp["text"]
    assert ramp["steps"] == [10, 25, 50, 100]
    assert (ramp["owner"], ramp["started_by"]) == ({"host": "ramp-host.example", "pid": 4242}, "alice")
    if status == "running":
        assert (ramp["percent"], ramp["next_percent"], ramp["index"]) == (25, 50, 2)
        assert 185 < ramp["due_in_s"] <= 190.4
    assert "s3cret-owner-token" not in resp.content.decode()
    conforms(resp, "/api/ops/monitor", "get")


def test_monitor_shows_the_guard_at_work(ops: FlagStore, users: dict[str, Any]) -> None:
    set_flag(ops.client, ops.keys, "positions", "live", 3, 100)
    writer = PresenceWriter(ops.client, ops.keys, host="guard-host.example", pid=31337)
    writer.hold("positions")
    writer.flush()
    resp = monitor(bearer(users["viewer"]))
    guard = row(resp.json(), "positions")["guard"]
    assert (guard["host"], guard["pid"]) == ("guard-host.example", 31337)
    assert 0 <= guard["age_s"] < 5
    assert guard["since"].endswith("Z")
    assert row(resp.json(), "account_balance")["guard"] is None
    conforms(resp, "/api/ops/monitor", "get")


def test_monitor_holds_no_secret(ops: FlagStore, users: dict[str, Any], thor_env: dict[str, str]) -> None:
    set_flag(ops.client, ops.keys, "positions", "live", 3, 25)
    _ramp(ops)
    body = monitor(bearer(users["demo"])).content.decode()
    for secret in ("s3cret-owner-token", users["demo"]["token"], users["viewer"]["token"], "token",
                   thor_env["THORCUT_REDIS_URL"], "redis://", "password"):  # fmt: skip
        assert secret not in body


# -- changing a stage -------------------------------------------------------------------------------


def test_operator_moves_shadow_to_live_with_a_pass_and_history_names_the_web_user(
    ops: FlagStore, users: dict[str, Any]
) -> None:
    ops.change("positions", Stage.SHADOW, reason="setup")
    ops.record_parity("positions", record(Verdict.PASS), [])
    browser, csrf = session("demo", "demo-pass")
    move = {"feature": "positions", "to": "live", "percent": 25, "reason": "parity PASS", "force": False}
    resp = post_stage(move, {"HTTP_X_CSRFTOKEN": csrf}, browser)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"change": {"feature": "positions", "from": "shadow", "to": "live", "percent": 25,
                                      "version": 2, "changed": True, "forced": False, "dry_run": False,
                                      "audit_id": resp.json()["change"]["audit_id"]}}  # fmt: skip
    conforms(resp, "/api/ops/stage", "post")
    entry = ops.history("positions", limit=1)[0]
    assert entry.id == resp.json()["change"]["audit_id"]
    assert {k: entry.fields[k] for k in ("by", "from", "to", "percent", "reason", "forced")} == {
        "by": "web:demo", "from": "shadow", "to": "live", "percent": "25", "reason": "parity PASS", "forced": "0",
    }  # fmt: skip
    assert ops.read("positions").updated_by == "web:demo"
    assert ops.verify().ok
    after = row(monitor(client=browser).json(), "positions")
    assert (after["stage"], after["percent"], after["updated_by"]) == ("live", 25, "web:demo")


def test_thorcut_history_shows_the_web_user(ops: FlagStore, users: dict[str, Any], run: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    assert post_stage({"feature": "intraday", "to": "shadow", "reason": "start parity"},
                      bearer(users["demo"])).status_code == 200  # fmt: skip
    monkeypatch.setenv("THORCUT_PREFIX", ops.keys.prefix)
    result = run("history", "intraday", "--json")
    assert result.exit_code == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    assert [(e["by"], e["to"], e["reason"]) for e in entries] == [("web:demo", "shadow", "start parity")]


def test_without_a_pass_the_move_to_live_is_409_with_the_gate_message_and_nothing_written(
    ops: FlagStore, users: dict[str, Any]
) -> None:
    ops.change("positions", Stage.SHADOW, reason="setup")
    before, entries = ops.read("positions"), audit(ops, "positions")
    resp = post_stage({"feature": "positions", "to": "live", "percent": None, "reason": "try", "force": False},
                      bearer(users["demo"]))  # fmt: skip
    assert resp.status_code == 409
    assert resp.json() == {
        "error": "refusing to enable positions: it has no parity verdict yet — run `thorcut diff` while it is in "
        "shadow. Override with --force --reason TEXT (recorded in the audit log)",
        "refused": "gate",
    }
    conforms(resp, "/api/ops/stage", "post")
    ops.record_parity("positions", record(Verdict.FAIL, reasons=("mismatch rate 5.0% > 0.0%",)), [])
    failed = post_stage({"feature": "positions", "to": "live", "reason": "try", "force": False}, bearer(users["demo"]))
    assert failed.status_code == 409
    assert "its parity verdict is FAIL, not PASS" in failed.json()["error"]
    assert (ops.read("positions"), audit(ops, "positions")) == (before, entries)


def test_force_with_a_reason_goes_live_and_is_recorded_as_forced(ops: FlagStore, users: dict[str, Any]) -> None:
    ops.change("account_balance", Stage.SHADOW, reason="setup")
    browser, csrf = session("demo", "demo-pass")
    move = {"feature": "account_balance", "to": "live", "percent": None, "reason": "incident 4211: vendor says ok",
            "force": True}  # fmt: skip
    resp = post_stage(move, {"HTTP_X_CSRFTOKEN": csrf}, browser)
    assert resp.status_code == 200, resp.content
    change = resp.json()["change"]
    assert (change["to"], change["percent"], change["forced"]) == ("live", 100, True)
    entry = audit(ops, "account_balance")[0]
    assert (entry["by"], entry["forced"], entry["reason"]) == ("web:demo", "1", "incident 4211: vendor says ok")


def test_to_shadow_from_live_is_the_rollback_and_never_gated(ops: FlagStore, users: dict[str, Any]) -> None:
    set_flag(ops.client, ops.keys, "positions", "live", 2, 50)
    ops.record_parity("positions", record(Verdict.FAIL), [])
    resp = post_stage({"feature": "positions", "to": "shadow", "reason": "mismatch on avg_price"},
                      bearer(users["demo"]))  # fmt: skip
    assert resp.status_code == 200, resp.content
    assert (resp.json()["change"]["from"], resp.json()["change"]["to"]) == ("live", "shadow")
    assert audit(ops, "positions")[0]["by"] == "web:demo"
    # and a percent change of a live feature is to: live with the new percent
    set_flag(ops.client, ops.keys, "intraday", "live", 2, 10)
    ops.record_parity("intraday", record(Verdict.PASS), [])
    wider = post_stage({"feature": "intraday", "to": "live", "percent": 50, "reason": "wider"}, bearer(users["demo"]))
    assert (wider.status_code, wider.json()["change"]["percent"]) == (200, 50)


@pytest.mark.parametrize(
    ("setup", "move", "kind", "message"),
    [
        ("off", {"to": "live"}, "transition", "positions is off; it cannot go to live from there"),
        ("off", {"to": "complete"}, "transition", "positions is off; it cannot go to complete from there"),
        ("shadow", {"to": "shadow", "expect_version": 7}, "stale", "positions is at version 2, not 7"),
    ],
    ids=["off to live", "off to complete", "stale version"],
)
def test_refusals_are_409_and_write_nothing(ops: FlagStore, users: dict[str, Any], setup: str, move: dict[str, Any],
                                            kind: str, message: str) -> None:  # fmt: skip
    set_flag(ops.client, ops.keys, "positions", setup, 2)
    before = ops.read("positions")
    resp = post_stage({"feature": "positions", "reason": "try", **move}, bearer(users["demo"]))
    assert resp.status_code == 409, resp.content
    assert resp.json()["refused"] == kind
    assert resp.json()["error"].startswith(message), resp.json()["error"]
    assert ops.read("positions") == before
    assert audit(ops, "positions") == []


def test_a_viewer_is_refused_403_and_nothing_is_written(ops: FlagStore, users: dict[str, Any]) -> None:
    ops.change("positions", Stage.SHADOW, reason="setup")
    ops.record_parity("positions", record(Verdict.PASS), [])
    before, entries = ops.read("positions"), audit(ops, "positions")
    move = {"feature": "positions", "to": "live", "percent": None, "reason": "viewer tries", "force": True}
    browser, csrf = session("viewer", "viewer-pass")
    for resp in (post_stage(move, {"HTTP_X_CSRFTOKEN": csrf}, browser), post_stage(move, bearer(users["viewer"])),
                 post_stage(b"not even json", bearer(users["viewer"]))):  # fmt: skip
        assert resp.status_code == 403, resp.content
        assert "viewer may watch the cutover but not change it" in resp.json()["error"]
        conforms(resp, "/api/ops/stage", "post")
    assert (ops.read("positions"), audit(ops, "positions")) == (before, entries)


def test_a_session_post_without_the_csrf_token_is_403_and_nothing_is_written(
    ops: FlagStore, users: dict[str, Any]
) -> None:
    browser, csrf = session("demo", "demo-pass")
    move = {"feature": "positions", "to": "shadow", "percent": None, "reason": "start parity", "force": False}
    for headers in ({}, {"HTTP_X_CSRFTOKEN": "x" * 32}):
        resp = post_stage(move, headers, browser)
        assert resp.status_code == 403, resp.content
        assert resp.json()["error"].startswith("CSRF check failed")
        conforms(resp, "/api/ops/stage", "post")
    assert ops.read("positions").version == 0
    assert audit(ops, "positions") == []
    # A form carrying the token passes the CSRF check, but a change is JSON.
    form = browser.post("/api/ops/stage", {"csrfmiddlewaretoken": csrf, **{k: str(v) for k, v in move.items()}})
    assert form.status_code == 400, form.content
    assert form.json()["error"].startswith("the body is a form, not JSON")
    assert audit(ops, "positions") == []
    assert post_stage(move, {"HTTP_X_CSRFTOKEN": csrf}, browser).status_code == 200  # the same with the token


def test_without_login_the_change_is_401(ops: FlagStore) -> None:
    resp = post_stage({"feature": "positions", "to": "shadow", "reason": "x"}, {})
    assert resp.status_code == 401
    conforms(resp, "/api/ops/stage", "post")


def test_only_post_changes_a_stage(ops: FlagStore, users: dict[str, Any]) -> None:
    from django.test import Client

    resp = Client().get("/api/ops/stage", **bearer(users["demo"]))
    assert (resp.status_code, resp["Allow"]) == (405, "POST")
    assert Client().post("/api/ops/monitor", **bearer(users["demo"])).status_code == 405


BAD = [
    (b"{not json", "the body is not JSON"),
    (b'["positions", "shadow"]', "send a JSON object"),
    (b"", "send a JSON object"),
    (b"[" * 100_000, "the body is not JSON"),
    ({"feature": "orders", "to": "shadow", "reason": "x"}, "unknown feature 'orders'; valid features: account_balance"),
    ({"feature": 7, "to": "shadow", "reason": "x"}, "unknown feature 7"),
    ({"to": "shadow", "reason": "x"}, "unknown feature None"),
    ({"feature": "positions", "to": "enabled", "reason": "x"}, "`to` must be one of off, shadow, live, complete"),
    ({"feature": "positions", "to": ["live"], "reason": "x"}, "`to` must be one of"),
    ({"feature": "positions", "to": "live", "percent": 101, "reason": "x"}, "`percent` must be a whole number"),
    ({"feature": "positions", "to": "live", "percent": -1, "reason": "x"}, "`percent` must be a whole number"),
    ({"feature": "positions", "to": "live", "percent": 50.5, "reason": "x"}, "`percent` must be a whole number"),
    ({"feature": "positions", "to": "live", "percent": "50", "reason": "x"}, "`percent` must be a whole number"),
    ({"feature": "positions", "to": "live", "percent": True, "reason": "x"}, "`percent` must be a whole number"),
    ({"feature": "positions", "to": "shadow", "percent": 50, "reason": "x"}, "`percent` applies to live only"),
    ({"feature": "positions", "to": "shadow", "reason": ""}, "`reason` is required"),
    ({"feature": "positions", "to": "shadow", "reason": "  \n"}, "`reason` is required"),
    ({"feature": "positions", "to": "shadow"}, "`reason` is required"),
    ({"feature": "positions", "to": "shadow", "reason": 42}, "`reason` is required"),
    ({"feature": "positions", "to": "shadow", "reason": "x" * 501}, "`reason` is 501 characters long; at most 500"),
    ({"feature": "positions", "to": "shadow", "reason": "\ud800"}, "`reason` is not valid UTF-8 text"),
    ({"feature": "positions", "to": "live", "reason": "x", "force": "yes"}, "`force` must be true or false"),
    ({"feature": "positions", "to": "live", "reason": "x", "force": 1}, "`force` must be true or false"),
    ({"feature": "positions", "to": "live", "reason": "x", "froce": True}, "unknown field(s) 'froce'"),
    ({"feature": "positions", "to": "live", "reason": "x", "expect_version": -1}, "`expect_version` must be"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=range(len(BAD)))
def test_bad_input_is_400_and_writes_nothing(ops: FlagStore, users: dict[str, Any], body: Any, message: str) -> None:
    resp = post_stage(body, bearer(users["demo"]))
    assert resp.status_code == 400, resp.content
    assert message in resp.json()["error"], resp.json()["error"]
    conforms(resp, "/api/ops/stage", "post")
    assert ops.read("positions").version == 0
    assert ops.history() == []


def test_the_description_holds_the_limits_the_view_applies(thor_env: dict[str, str]) -> None:
    from global_markets.ops import FIELDS, MAX_REASON
    from thor_trading.openapi import OPS, RAMP_STATUSES

    change = OPS["StageChange"]
    assert change["properties"]["reason"]["maxLength"] == MAX_REASON
    assert tuple(change["properties"]) == FIELDS
    assert set(RAMP_STATUSES) == set(STATUSES)


# -- Redis away ---------------------------------------------------------------------------------------


def test_redis_down_is_a_quick_503(ops: FlagStore, users: dict[str, Any]) -> None:
    from django.test import override_settings

    url = f"redis://ops-user:hunter2@127.0.0.1:{free_port()}/0"
    with override_settings(THORCUT_REDIS_URL=url):
        move = {"feature": "positions", "to": "shadow", "reason": "x"}
        for call in (lambda: monitor(bearer(users["viewer"])), lambda: post_stage(move, bearer(users["demo"]))):
            started = time.monotonic()
            resp = call()
            assert time.monotonic() - started < 1.0
            assert resp.status_code == 503, resp.content
            assert resp.json()["error"].startswith("the flag store (Redis) cannot be reached now")
            assert "hunter2" not in resp.content.decode()
            conforms(resp, "/api/ops/monitor" if "monitor" in resp.request["PATH_INFO"] else "/api/ops/stage",
                     resp.request["REQUEST_METHOD"].lower())  # fmt: skip


@pytest.mark.slow
def test_a_frozen_redis_is_a_503_within_the_timeout(ops: FlagStore, users: dict[str, Any], tmp_path: Path) -> None:
    from django.test import override_settings

    from global_markets.ops import TIMEOUT

    server = start_redis(tmp_path / "redis")
    assert server.process is not None
    try:
        with override_settings(THORCUT_REDIS_URL=server.url):
            assert monitor(bearer(users["viewer"])).status_code == 200  # connected, then frozen
            os.kill(server.process.pid, signal.SIGSTOP)
            started = time.monotonic()
            resp = monitor(bearer(users["viewer"]))
            assert resp.status_code == 503
            assert time.monotonic() - started < TIMEOUT + 1.0
            os.kill(server.process.pid, signal.SIGCONT)
            assert monitor(bearer(users["viewer"])).status_code == 200  # and back once it answers
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


# -- a real server, as the page meets it --------------------------------------------------------------


@pytest.fixture
def web(thor_env: dict[str, str], users: object, tmp_path: Path) -> Iterator[tuple[Server, FlagStore]]:
    prefix = f"opsweb{uuid.uuid4().hex[:8]}"
    server = start_server(thor_env, tmp_path / "uvicorn.log", extra_env={"THORCUT_PREFIX": prefix})
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    try:
        yield server, FlagStore(client, Keys(prefix), FEATURES, operator="tests")
    finally:
        server.stop()
        client.close()


def test_a_browser_session_on_a_real_server_watches_and_changes(web: tuple[Server, FlagStore]) -> None:
    server, store = web
    with httpx.Client(base_url=server.url) as browser:
        csrf = browser.get("/api/session").cookies["csrftoken"]
        login = browser.post("/api/session/login", json={"username": "demo", "password": "demo-pass"},
                             headers={"X-CSRFToken": csrf})  # fmt: skip
        assert login.status_code == 200
        assert browser.get("/api/ops/monitor").json()["operator"] is True
        move = {"feature": "global_market", "to": "shadow", "percent": None, "reason": "from the page", "force": False}
        assert browser.post("/api/ops/stage", json=move).status_code == 403  # no CSRF token
        resp = browser.post("/api/ops/stage", json=move, headers={"X-CSRFToken": browser.cookies["csrftoken"]})
        assert resp.status_code == 200, resp.text
        shown = row(browser.get("/api/ops/monitor").json(), "global_market")
        assert (shown["stage"], shown["updated_by"], shown["allowed"]) == ("shadow", "web:demo", ["live", "off"])
    assert store.history("global_market", limit=1)[0].fields["by"] == "web:demo"


@pytest.mark.slow
def test_schemathesis_as_an_operator_finds_no_5xx_and_no_nonconformance(web: tuple[Server, FlagStore],
                                                                        users: dict[str, Any]) -> None:  # fmt: skip
    """``tests/backend/test_openapi.py`` fuzzes every operation as a user who may not change stages (403);
    here an operator's changes really happen (on this test's own prefix): 200, 400 and 409 conform."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    from tests.backend.test_openapi import CHECKS, CSRF

    server, store = web
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    headers = {"Authorization": f"Bearer {users['demo']['token']}", "X-CSRFToken": CSRF}
    seen: set[int] = set()
    for path in ("/api/ops/stage", "/api/ops/monitor"):
        operation = next(r.ok() for r in schema.get_all_operations() if r.ok().path == path)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def fuzz(case: Any) -> None:
                resp = case.call_and_validate(base_url=server.url, headers=headers, cookies={"csrftoken": CSRF},
                                              checks=CHECKS)  # fmt: skip
                seen.add(resp.status_code)

            fuzz()
    assert {200, 400} <= seen, seen
    assert store.verify().ok  # every change the fuzz made is in one unbroken audit chain


# -- who is an operator ---------------------------------------------------------------------------------


def test_thor_user_grants_and_takes_away_the_operator_permission(thor_env: dict[str, str]) -> None:
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from thor_trading.users import is_operator

    def thor_user(*flags: str) -> str:
        out = io.StringIO()
        call_command("thor_user", "erin", "--password", "erin-pass", "--account", "DU7401", *flags, stdout=out)
        return out.getvalue()

    def erin() -> Any:
        return get_user_model().objects.get(username="erin")  # fresh: permissions are cached per object

    assert thor_user() == "user erin owns account DU7401\n"
    assert not is_operator(erin())
    assert thor_user("--operator") == "user erin owns account DU7401 (operator)\n"
    assert is_operator(erin())
    assert thor_user() == "user erin owns account DU7401\n"  # neither flag: left as it is
    assert is_operator(erin())
    assert thor_user("--no-operator") == "user erin owns account DU7401 (not an operator)\n"
    assert not is_operator(erin())
