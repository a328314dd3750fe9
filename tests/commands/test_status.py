"""``thorcut status`` through the CLI: the table and its JSON, colour and escaping, tables where there
is no terminal, a reset store (issue 10) and the persistence warning. ``status --watch`` is in
test_status_watch.py."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import set_flag, set_verdict
from tests.runner import Run
from thorcut.clock import now_iso
from thorcut.dev.stack import find_redis_server, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys


def test_status_json_lists_every_feature_with_stable_fields(run: Run, store: FlagStore) -> None:
    store.change("positions", Stage.SHADOW, reason="start parity")
    result = run("status", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [f["feature"] for f in doc["features"]] == list(DEFAULT_MANIFEST.names)
    positions = doc["features"][1]
    assert {k: positions[k] for k in ("stage", "percent", "version", "updated_by", "reason", "reads_from")} == {
        "stage": "shadow",
        "percent": 0,
        "version": 1,
        "updated_by": "tester",
        "reason": "start parity",
        "reads_from": "REST (WebSocket shadow)",
    }
    assert positions["parity"] == {"verdict": None, "judged_at": None, "age_s": None, "counts": {}, "stream": None}
    # issue 10: the store's epoch and whether the flag Redis persists its data are part of it too
    assert set(doc) == {"redis", "prefix", "workers", "features", "store", "persistence"}


def test_status_table_shows_stage_reader_verdict_and_last_change(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "account_balance", "shadow", 1)
    set_verdict(client, keys, "account_balance", "PASS", now_iso())
    store.change("account_balance", Stage.LIVE, percent=25, reason="canary")
    result = run("status")
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if "account_balance" in x)
    for part in ("live 25%", "WS 25% · REST 75%", "tester", "canary", "PASS"):
        assert part in line, (part, line)
    assert "no verdict yet" in next(x for x in result.stdout.splitlines() if "positions" in x)
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes


def test_no_color_is_respected_even_when_colour_is_forced(run: Run) -> None:
    result = run("status", env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert result.exit_code == 0
    assert "\x1b[3" not in result.stdout
    assert "\x1b[1" not in result.stdout


def test_text_from_redis_is_escaped_before_printing(run: Run, client: redis.Redis, keys: Keys) -> None:
    client.hset(
        keys.flag("positions"),
        mapping={"stage": "shadow", "version": 1, "updated_by": "[bold]x[/]\x1b[2J", "reason": "r"},
    )
    result = run("status")
    assert "\x1b[2J" not in result.stdout
    assert "\\x1b[2J" in result.stdout
    assert "[bold]x[/]" in result.stdout


# -- issue 9: tables stay readable where there is no terminal -------------------------------------


@pytest.mark.parametrize("columns", ["80", "60"])
def test_status_without_a_terminal_keeps_every_verdict_and_reason_whole(
    run: Run, client: redis.Redis, keys: Keys, store: FlagStore, columns: str
) -> None:
    store.change("positions", Stage.SHADOW, reason="start parity on the positions feature today")
    client.hset(keys.parity("positions"), mapping={"verdict": "PENDING", "judged_at": now_iso(), "paired": 3,
                                                  "gaps": 0, "duplicates": 0})  # fmt: skip
    set_flag(client, keys, "intraday", "shadow", 1)
    set_verdict(client, keys, "intraday", "FAIL", now_iso())
    result = run("status", env={"COLUMNS": columns})
    assert result.exit_code == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= int(columns) for line in table), result.stdout  # other lines are never cut
    assert "…" not in result.stdout
    words = set(result.stdout.replace("│", " ").split())
    for word in ("PENDING", "FAIL", "verdict", "start", "parity", "positions", "feature", "today",
                 "account_balance", "global_market", "(WebSocket", "shadow)", "tester"):  # fmt: skip
        assert word in words, (word, result.stdout)


def test_status_at_200_columns_is_still_one_table_row_per_feature(run: Run, store: FlagStore) -> None:
    store.change("positions", Stage.SHADOW, reason="r")
    result = run("status")
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("│ ")) == 4


# -- issue 10: a reset store, and a Redis that keeps nothing --------------------------------------


def test_status_shows_a_reset_store_in_red_and_exits_0(
    run: Run, store: FlagStore, client: redis.Redis, keys: Keys
) -> None:
    store.change("positions", Stage.SHADOW)
    assert json.loads(run("status", "--json").stdout)["store"]["reset"] is False
    client.delete(keys.meta)
    result = run("status", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "Store reset" in x)
    assert "no {" in line
    assert re.search(r"\x1b\[[0-9;]*31m\s*Store reset", result.stdout)  # red
    doc = json.loads(run("status", "--json").stdout)
    assert doc["store"]["reset"] is True
    assert doc["store"]["epoch"] is None


def test_status_warns_once_when_redis_has_no_persistence(run: Run) -> None:
    result = run("status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["persistence"]["configured"] is False
    (line,) = result.stderr.splitlines()
    assert line.startswith("Warning: the flag Redis has no persistence configured")


def test_status_says_it_cannot_tell_when_config_is_disabled(run: Run, tmp_path: Path) -> None:
    binary = find_redis_server()
    assert binary is not None
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
            "--appendonly", "no", "--rename-command", "CONFIG", ""]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            probe = redis.Redis(port=port, socket_connect_timeout=0.2)
            for _ in range(200):  # until it answers; no timing is asserted
                try:
                    probe.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            result = run("status", "--json", "--redis-url", f"redis://127.0.0.1:{port}/0")
            assert result.exit_code == 0, result.stderr
            assert json.loads(result.stdout)["persistence"]["configured"] is None
            (line,) = result.stderr.splitlines()
            assert line.startswith("Warning: cannot tell whether the flag Redis persists its data: CONFIG GET is not "
                                   "allowed")  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
