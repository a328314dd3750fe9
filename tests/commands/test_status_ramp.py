"""``thorcut status`` shows each feature's ramp (``{prefix}:ramp:<feature>``): one cell per feature in
the table, a line per feature where the table does not fit, and a ``ramp`` object in ``--json``."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from tests.conftest import set_flag
from tests.runner import Run
from thorcut.flags.ramp import LEASE_S, Owner, RampState, RampStore
from thorcut.redisconn import Keys

OWNER = Owner("ramp-host.example", 4242, "s3cret-token")


def _seed(client: redis.Redis, keys: Keys, feature: str = "positions", **fields: str) -> None:
    """A ramp of ``feature`` at step 2 of 10,25,50,100 (hold 5m) run by OWNER, then ``fields`` over it."""
    state = RampState(feature, (10, 25, 50, 100), 300.0, index=2, owner=OWNER, started_by="alice",
                      started_at="2026-11-24T14:30:00.000Z", reason="JIRA-7")  # fmt: skip
    RampStore(client, keys).claim(feature, lambda _: state, resume=False)
    now = time.time()
    client.hset(keys.ramp(feature), mapping={"step_started": f"{now - 110:.3f}", "next_due": f"{now + 190.4:.3f}",
                                             **fields})  # fmt: skip


def _line(stdout: str, feature: str = "positions") -> str:
    return next(x for x in stdout.splitlines() if x.startswith(f"│ {feature}") or x.startswith(feature))


@pytest.fixture(autouse=True)
def _live(client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, percent=25)


def test_a_running_ramp_says_the_next_step_and_when(run: Run, client: redis.Redis, keys: Keys) -> None:
    _seed(client, keys)
    result = run("status")
    assert result.exit_code == 0, result.stderr
    assert "ramp" in result.stdout.splitlines()[2]  # the table's header has a ramp column
    assert re.search(r"ramping 25 % → 50 % in 3m 1[01]s", _line(result.stdout))
    assert "—" in _line(result.stdout, "intraday")  # no ramp there


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"status": "holding", "why": "12 paired samples < 50 needed"},
         "holding at 25 %: 12 paired samples < 50 needed"),
        ({"status": "interrupted", "why": "--duration 10s ended"},
         "ramp interrupted at 25 % (thorcut ramp positions --resume)"),
        ({"index": "3", "status": "failed", "why": "mismatch at data.cash"},
         "ramp failed at 50 %: mismatch at data.cash"),
        ({"index": "4", "status": "done", "why": "all 4 steps passed"}, "ramp done (100 %)"),
        ({"status": "aborted", "why": "aborted by bob"}, "ramp aborted at 25 %: aborted by bob"),
    ],
    ids=["holding", "interrupted", "failed", "done", "aborted"],
)  # fmt: skip
def test_each_state_of_a_ramp(run: Run, client: redis.Redis, keys: Keys, fields: dict[str, str], text: str) -> None:
    _seed(client, keys, **fields)
    result = run("status", env={"COLUMNS": "260"})
    assert result.exit_code == 0, result.stderr
    assert text in _line(result.stdout)
    doc = json.loads(run("status", "--json").stdout)
    row = next(r for r in doc["features"] if r["feature"] == "positions")
    assert row["ramp"]["text"] == text
    assert row["ramp"]["status"] == fields["status"]


def test_an_ended_ramp_says_when_the_feature_moved_on_since(run: Run, client: redis.Redis, keys: Keys) -> None:
    """A done ramp left positions at version 3; a guard's rollback (version 4) makes it history."""
    _seed(client, keys, index="4", status="done", flag_version="3")
    line = _line(run("status", env={"COLUMNS": "260"}).stdout)
    assert "ramp done (100 %)" in line
    assert "changed since" not in line
    set_flag(client, keys, "positions", "shadow", 4)
    line = _line(run("status", env={"COLUMNS": "260"}).stdout)
    assert "ramp done (100 %); the feature changed since (version 3 → 4)" in line
    row = next(r for r in json.loads(run("status", "--json").stdout)["features"] if r["feature"] == "positions")
    assert (row["ramp"]["flag_version"], row["version"]) == (3, 4)


def test_a_ramp_whose_owner_stopped_heartbeating_reads_interrupted(run: Run, client: redis.Redis, keys: Keys) -> None:
    _seed(client, keys, heartbeat=f"{time.time() - LEASE_S - 2:.6f}")
    result = run("status", "--json")
    ramp = next(r for r in json.loads(result.stdout)["features"] if r["feature"] == "positions")["ramp"]
    assert (ramp["status"], ramp["stored_status"]) == ("interrupted", "running")
    assert ramp["heartbeat_age_s"] > LEASE_S
    assert "ramp interrupted at 25 % (thorcut ramp positions --resume)" in _line(run("status").stdout)


def test_status_json_has_a_ramp_object_or_null(run: Run, client: redis.Redis, keys: Keys) -> None:
    _seed(client, keys)
    doc = json.loads(run("status", "--json").stdout)
    rows = {r["feature"]: r for r in doc["features"]}
    assert all(rows[n]["ramp"] is None for n in rows if n != "positions")
    ramp = rows["positions"]["ramp"]
    wanted = {"status": "running", "steps": [10, 25, 50, 100], "hold_s": 300.0, "index": 2, "percent": 25,
              "next_percent": 50, "started_by": "alice", "reason": "JIRA-7",
              "owner": {"host": "ramp-host.example", "pid": 4242}}  # fmt: skip
    assert {k: ramp[k] for k in wanted} == wanted
    assert 185 < ramp["due_in_s"] <= 190.4
    assert "s3cret-token" not in json.dumps(doc)


def test_without_any_ramp_the_table_has_no_ramp_column(run: Run) -> None:
    result = run("status")
    assert result.exit_code == 0
    assert "ramp" not in result.stdout.splitlines()[2]
    doc = json.loads(run("status", "--json").stdout)
    assert all(r["ramp"] is None for r in doc["features"])


def test_a_narrow_terminal_shows_the_ramp_as_a_line(run: Run, client: redis.Redis, keys: Keys) -> None:
    _seed(client, keys, status="holding", why="3 paired samples < 50 needed")
    result = run("status", env={"COLUMNS": "60"})
    assert result.exit_code == 0
    assert "  ramp: holding at 25 %: 3 paired samples < 50 needed" in result.stdout


def test_ramp_text_from_redis_is_escaped(run: Run, client: redis.Redis, keys: Keys) -> None:
    _seed(client, keys, status="failed", why="[bold]x[/]\x1b[2J")
    result = run("status", env={"COLUMNS": "260"})
    assert "\x1b[2J" not in result.stdout
    assert "ramp failed at 25 %: [bold]x[/]\\x1b[2J" in result.stdout
