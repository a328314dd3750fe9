"""The stage commands through the CLI: exit codes, output, JSON shapes, --wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import set_flag, set_verdict
from tests.redis_snapshot import snapshot
from tests.runner import Run
from thorcut.clock import now_iso
from thorcut.dev.stack import EmbeddedRedis
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.flags.watcher import FlagWatcher
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect

THORCUT = Path(sys.executable).with_name("thorcut")


def test_enable_without_pass_verdict_exits_3(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    result = run("enable", "positions")
    assert result.exit_code == 3
    assert "Error: refusing to enable positions: it has no parity verdict yet" in result.stderr
    assert "--force --reason" in result.stderr
    assert client.hget(keys.flag("positions"), "stage") == "shadow"


def test_enable_with_pass_verdict_goes_live_and_reports(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    set_verdict(client, keys, "positions", "PASS", now_iso())
    result = run("enable", "positions", "--percent", "10")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "positions: moved shadow → live (10%), version 1 → 2"


def test_enable_force_without_reason_exits_2(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    result = run("enable", "positions", "--force")
    assert result.exit_code == 2
    assert "--force needs --reason" in result.stderr


def test_enable_force_is_marked_in_output_and_history(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    result = run("enable", "positions", "--force", "--reason", "e2e", "--json")
    assert result.exit_code == 0, result.stderr
    change = json.loads(result.stdout)["changes"][0]
    assert change == {
        "feature": "positions",
        "from": "shadow",
        "to": "live",
        "percent": 100,
        "version": 2,
        "changed": True,
        "forced": True,
        "dry_run": False,
        "audit_id": change["audit_id"],
    }
    history = json.loads(run("history", "--json").stdout)["entries"]
    assert history[0]["forced"] is True
    assert history[0]["reason"] == "e2e"


def test_refused_transition_exits_3_and_says_how(run: Run) -> None:
    result = run("complete", "positions")
    assert result.exit_code == 3
    assert "positions is off; it cannot go to complete from there (reach complete with: complete (from live))" in (
        result.stderr.replace("\n", " ")
    )


def test_stale_expect_version_exits_3(run: Run, store: FlagStore) -> None:
    store.change("intraday", Stage.SHADOW)
    result = run("off", "intraday", "--expect-version", "0")
    assert result.exit_code == 3
    assert "intraday is at version 1, not 0" in result.stderr
    assert run("off", "intraday", "--expect-version", "1").exit_code == 0


def test_unknown_feature_exits_2_listing_valid_names(run: Run) -> None:
    result = run("enable", "balances")
    assert result.exit_code == 2
    assert "unknown feature 'balances'; valid features: account_balance, positions, intraday, global_market" in (
        result.stderr
    )


def test_dry_run_prints_plan_and_writes_nothing(run: Run, store: FlagStore) -> None:
    result = run("shadow", "positions", "--dry-run")
    assert result.exit_code == 0
    assert "would move off → shadow" in result.stdout
    assert "dry run" in result.stdout
    assert store.read("positions").version == 0


def test_noop_change_says_nothing_changed(run: Run, store: FlagStore) -> None:
    store.change("positions", Stage.SHADOW)
    result = run("disable", "positions")
    assert result.exit_code == 0
    assert "positions is already shadow; nothing changed (version 1)" in result.stdout


def test_rollback_all_needs_all_flag_and_rolls_back_everything(run: Run, client: redis.Redis, keys: Keys) -> None:
    assert run("rollback").exit_code == 2
    set_flag(client, keys, "account_balance", "live", 2, 100)
    set_flag(client, keys, "intraday", "complete", 5, 100)
    result = run("rollback", "--all", "--reason", "incident", "--json")
    assert result.exit_code == 0, result.stderr
    changes = json.loads(result.stdout)["changes"]
    assert {(c["feature"], c["to"]) for c in changes} == {("account_balance", "shadow"), ("intraday", "shadow")}
    again = run("rollback", "--all")
    assert again.exit_code == 0
    assert "nothing to roll back" in again.stderr


def test_wait_with_no_worker_says_so_plainly(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 1, 100)
    result = run("disable", "positions", "--wait")
    assert result.exit_code == 0
    assert "no backend worker is registered" in result.stdout


def test_wait_reports_propagation_to_every_registered_worker(
    run: Run, client: redis.Redis, keys: Keys, prefix: str, redis_server: EmbeddedRedis
) -> None:
    set_flag(client, keys, "positions", "live", 1, 100)
    watchers = [
        FlagWatcher(
            lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names, worker_id=f"w{i}"
        )
        for i in range(2)
    ]
    for w in watchers:
        w.start(wait=5)
    try:
        result = run("disable", "positions", "--wait", "5", "--json")
        assert result.exit_code == 0, result.stderr
        wait = json.loads(result.stdout)["wait"][0]
        assert sorted(wait["workers"]) == ["w0", "w1"]
        assert wait["missing"] == []
        assert wait["ms"] is not None
        assert wait["ms"] < 5000
        human = run("enable", "positions", "--force", "--reason", "x", "--wait")
        assert "all 2 workers applied version 3 in" in human.stdout
    finally:
        for w in watchers:
            w.stop()


def test_wait_times_out_with_exit_4_naming_the_silent_worker(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 1, 100)
    client.zadd(keys.workers, {"ghost-worker": time.time() + 60})
    started = time.monotonic()
    result = run("disable", "positions", "--wait", "0.3")
    assert result.exit_code == 4
    assert time.monotonic() - started < 3
    assert "the change is committed" in result.stderr
    assert "ghost-worker" in result.stderr
    assert client.hget(keys.flag("positions"), "stage") == "shadow"


# -- issue 9: a rollback never turns a feature on; --wait on every stage command -----------------


def test_disable_of_an_off_feature_exits_3_and_writes_nothing(
    run: Run, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    set_flag(client, keys, "positions", "off", 2)
    before = snapshot(client, prefix)
    result = run("disable", "positions", "--reason", "incident", "--wait")
    assert result.exit_code == 3
    message = " ".join(result.stderr.split())
    assert "Error: positions is off: nothing is broadcast and every client reads REST" in message
    assert "a rollback never turns a feature on" in message
    assert "run `thorcut shadow positions`" in message
    assert result.stdout == ""
    assert snapshot(client, prefix) == before


def test_disable_of_a_never_written_feature_through_the_console_script_exits_3(
    cli_env: dict[str, str], client: redis.Redis, prefix: str
) -> None:
    before = snapshot(client, prefix)
    result = subprocess.run([str(THORCUT), "disable", "intraday"], env={**os.environ, **cli_env},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.startswith("Error: intraday is off")
    assert "Traceback" not in result.stderr
    assert snapshot(client, prefix) == before


def test_rollback_all_leaves_off_features_alone(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "account_balance", "off", 7)
    set_flag(client, keys, "intraday", "live", 2, 50)
    result = run("rollback", "--all", "--reason", "incident", "--json")
    assert result.exit_code == 0, result.stderr
    assert [(c["feature"], c["from"], c["to"]) for c in json.loads(result.stdout)["changes"]] == [
        ("intraday", "live", "shadow")
    ]
    assert client.hgetall(keys.flag("account_balance")) == {"stage": "off", "version": "7", "percent": "0"}
    only_off = run("rollback", "--all")
    assert only_off.exit_code == 0
    assert "nothing to roll back" in only_off.stderr
    assert client.hget(keys.flag("account_balance"), "stage") == "off"


def test_enable_from_off_says_to_run_shadow_first(run: Run, client: redis.Redis, keys: Keys, prefix: str) -> None:
    set_verdict(client, keys, "positions", "PASS", now_iso())
    before = snapshot(client, prefix)
    result = run("enable", "positions", "--force", "--reason", "x")
    assert result.exit_code == 3
    assert "run `thorcut shadow positions` first" in " ".join(result.stderr.split())
    assert snapshot(client, prefix) == before


@pytest.mark.parametrize(
    ("command", "start", "end"),
    [("shadow", "off", "shadow"), ("off", "shadow", "off"), ("complete", "live", "complete")],
)
def test_wait_on_shadow_off_and_complete_reports_every_worker(
    run: Run,
    client: redis.Redis,
    keys: Keys,
    prefix: str,
    redis_server: EmbeddedRedis,
    command: str,
    start: str,
    end: str,
) -> None:
    set_flag(client, keys, "positions", start, 1, 100 if start == "live" else 0)
    watcher = FlagWatcher(lambda: connect(redis_server.url, 1, check=False), Keys(prefix), DEFAULT_MANIFEST.names,
                          worker_id="w-only")  # fmt: skip
    watcher.start(wait=5)
    try:
        result = run(command, "positions", "--wait", "5")
        assert result.exit_code == 0, result.stderr
        assert f"positions: moved {start} → {end}" in result.stdout
        assert "positions: all 1 workers applied version 2 in" in result.stdout
        assert watcher.stage("positions").value == end
    finally:
        watcher.stop()


def test_wait_on_a_change_that_changed_nothing_says_so(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "shadow", 1)
    client.zadd(keys.workers, {"busy-worker": time.time() + 60})  # registered, but nothing to apply
    result = run("disable", "positions", "--wait", "1")
    assert result.exit_code == 0, result.stderr
    assert "positions is already shadow; nothing changed (version 1)" in result.stdout
    assert "positions: nothing changed, so no worker has anything to apply; nothing to wait for" in result.stdout
    assert "no backend worker is registered" not in result.stdout
    doc = json.loads(run("shadow", "positions", "--wait", "--json").stdout)
    assert doc["wait"] == [{"feature": "positions", "version": 1, "workers": [], "missing": [], "ms": None,
                            "skipped": "unchanged"}]  # fmt: skip


def test_wait_with_dry_run_says_nothing_was_written(run: Run) -> None:
    result = run("shadow", "positions", "--dry-run", "--wait")
    assert result.exit_code == 0, result.stderr
    assert "positions: dry run, nothing written; nothing to wait for" in result.stdout
