"""``thorcut check``/``diff`` against the reference backend: real uvicorn, real job runner, real Redis.

Each scenario starts the job runner with a ``THOR_FAULTS`` setting (the WebSocket side drifts from
REST in a chosen way) and judges a few seconds of traffic under lowered thresholds
(``thorcut.toml``: 5 pairs over 2 s), so the verdicts come fast but by the same rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.backend.conftest import BACKEND, Server, start_server
from tests.backend_fixtures import stop_process
from tests.runner import Run
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys
from thorcut.wire.recording import RecordingReader, RestRecord, WsRecord

pytestmark = pytest.mark.slow

THRESHOLDS = "".join(f"[features.{f}.thresholds]\nmin_paired = 5\nmin_duration = 2\n" for f in DEFAULT_MANIFEST.names)


@pytest.fixture(scope="module")
def server(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(thor_env, tmp_path_factory.mktemp("live") / "uvicorn.log")
    yield srv
    srv.stop()


@pytest.fixture
def store(thor_env: dict[str, str]) -> Iterator[FlagStore]:
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    s = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="tests")
    for feature in DEFAULT_MANIFEST.names:
        if s.read(feature).stage is Stage.OFF:
            s.change(feature, Stage.SHADOW)
    yield s
    for feature in DEFAULT_MANIFEST.names:  # leave the shared prefix as other tests expect it: all off
        while (stage := s.read(feature).stage) is not Stage.OFF:
            s.change(feature, Stage.SHADOW if stage in (Stage.LIVE, Stage.COMPLETE) else Stage.OFF)
        client.delete(s.keys.parity(feature), s.keys.mismatches(feature))
    client.close()


class Jobs:
    """The job runner with a THOR_FAULTS setting, for the length of a ``with`` block."""

    def __init__(self, env: dict[str, str], log: Path, faults: str = "") -> None:
        self.env = {**os.environ, **env, "THOR_TICK": "0.1", "THOR_FAULTS": faults}
        self.log = log

    def __enter__(self) -> Jobs:
        out = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND, env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        out.close()
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, 15)


@pytest.fixture
def cli(run: Run, server: Server, thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], store: FlagStore,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:  # fmt: skip
    """``run`` pointed at this backend and its flag prefix, with the lowered thresholds."""
    monkeypatch.setenv("THORCUT_BACKEND_URL", server.url)
    monkeypatch.setenv("THORCUT_TOKEN", demo_users["demo"]["token"])
    monkeypatch.setenv("THORCUT_PREFIX", thor_env["THORCUT_PREFIX"])
    (tmp_path / "thorcut.toml").write_text(THRESHOLDS)
    return run


def judged(result: Any) -> dict[str, Any]:
    assert result.exit_code in (0, 1, 5), result.stdout + result.stderr
    return {name: f for name, f in json.loads(result.stdout)["features"].items()}


def paths(f: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["path"], p["kind"]) for p in f["paths"]}


def test_faults_off_every_feature_passes_and_verdicts_open_the_gate(
    cli: Run, thor_env: dict[str, str], store: FlagStore, tmp_path: Path
) -> None:
    with Jobs(thor_env, tmp_path / "jobs.log"):
        result = cli("check", "--all", "--duration", "4", "--json")
    features = judged(result)
    assert result.exit_code == 0, {
        n: (f["verdict"], f["reasons"], f["paths"]) for n, f in features.items() if f["verdict"] != "PASS"
    }
    for name, f in features.items():
        assert f["counts"]["paired"] >= 5, name
        assert f["counts"]["mismatched"] == 0, (name, f["paths"])
    # The verdicts are in Redis: status shows them and enable accepts them.
    status = json.loads(cli("status", "--json").stdout)
    assert {row["parity"]["verdict"] for row in status["features"]} == {"PASS"}
    enabled = cli("enable", "account_balance")
    assert enabled.exit_code == 0, enabled.stderr
    assert store.read("account_balance").stage is Stage.LIVE


def test_faults_each_fail_the_right_feature_naming_the_path_or_counter(
    cli: Run, thor_env: dict[str, str], tmp_path: Path
) -> None:
    faults = "account_balance:drop_field,positions:reorder,intraday:skip_seq,global_market:duplicate"
    with Jobs(thor_env, tmp_path / "jobs.log", faults):
        result = cli("check", "--all", "--duration", "4", "--json")
    f = judged(result)
    assert result.exit_code == 1
    assert f["account_balance"]["verdict"] == "FAIL"
    assert paths(f["account_balance"]) == {("margin_used", "missing_on_ws")}
    assert f["positions"]["verdict"] == "PASS", f["positions"]  # reordered, but keyed by symbol
    assert f["intraday"]["verdict"] == "FAIL"
    assert f["intraday"]["counts"]["gaps"] > 0
    assert f["intraday"]["counts"]["mismatched"] == 0
    assert f["global_market"]["verdict"] == "FAIL"
    assert f["global_market"]["counts"]["duplicates"] > 0
    assert f["global_market"]["counts"]["mismatched"] == 0


def test_more_faults_round_drop_and_lag(cli: Run, thor_env: dict[str, str], tmp_path: Path) -> None:
    faults = "account_balance:round_price,positions:drop_field,intraday:lag_seq"
    with Jobs(thor_env, tmp_path / "jobs.log", faults):
        result = cli("check", "--all", "--duration", "4", "--json")
    f = judged(result)
    assert f["account_balance"]["verdict"] == "FAIL"
    assert paths(f["account_balance"]) <= {("equity", "changed"), ("cash", "changed")}
    assert paths(f["account_balance"])
    assert f["positions"]["verdict"] == "FAIL"
    dropped = paths(f["positions"])
    assert dropped
    assert all(p.startswith("positions[symbol=") and p.endswith("].unrealized_pnl") and k == "missing_on_ws"
               for p, k in dropped)  # fmt: skip
    assert f["intraday"]["verdict"] == "FAIL"
    assert f["intraday"]["counts"]["mismatched"] > 0  # data of the next state under the previous seq
    assert f["global_market"]["verdict"] == "PASS"


def test_diff_records_and_the_replay_gives_the_same_verdict(cli: Run, thor_env: dict[str, str], tmp_path: Path) -> None:
    recording = tmp_path / "shadow.jsonl"
    with Jobs(thor_env, tmp_path / "jobs.log", "account_balance:drop_field"):
        live = cli("diff", "--all", "--duration", "4", "--record", str(recording), "--json", "--no-store")
    replayed = cli("check", "--all", "--replay", str(recording), "--json")
    live_f, replay_f = judged(live), judged(replayed)
    assert json.loads(replayed.stdout)["window_s"] == json.loads(live.stdout)["window_s"]  # the same window
    for name in DEFAULT_MANIFEST.names:
        assert replay_f[name]["verdict"] == live_f[name]["verdict"], name
        assert replay_f[name]["counts"] == live_f[name]["counts"], name
    reader = RecordingReader(recording)
    records = list(reader)
    assert any(isinstance(r, WsRecord) and isinstance(r.msg, dict) and r.msg.get("type") == "positions"
               for r in records)  # fmt: skip
    assert any(isinstance(r, RestRecord) and r.status == 200 and r.for_seq is not None for r in records)


def test_learn_noise_finds_nothing_on_a_deterministic_backend(
    cli: Run, thor_env: dict[str, str], tmp_path: Path
) -> None:
    with Jobs(thor_env, tmp_path / "jobs.log"):
        result = cli("diff", "positions", "--learn-noise", "--duration", "3", "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)["positions"]
    assert body["compared"] > 0
    assert body["paths"] == {}


def test_backend_not_running_exits_4(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from thorcut.dev.stack import free_port

    monkeypatch.setenv("THORCUT_BACKEND_URL", f"http://127.0.0.1:{free_port()}")
    result = cli("check", "--all", "--duration", "2")
    assert result.exit_code == 4
    assert "Traceback" not in result.stderr


def test_rejected_token_exits_4_with_a_hint(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THORCUT_TOKEN", "not-a-real-token")
    result = cli("diff", "positions", "--duration", "2")
    assert result.exit_code == 4
    assert "THORCUT_TOKEN" in result.stderr
    assert "not-a-real-token" not in result.stderr + result.stdout
