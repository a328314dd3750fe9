"""``thorcut status`` shows the guard at work on each feature (``{prefix}:guard:<feature>``): a cell
per feature in the table, a line where the table does not fit, a ``guard`` object in ``--json``."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import redis

from tests.conftest import set_flag
from tests.runner import Run
from thorcut.flags.presence import PresenceWriter
from thorcut.redisconn import Keys


def _guard(client: redis.Redis, keys: Keys, *features: str, host: str = "guard-host.example") -> PresenceWriter:
    writer = PresenceWriter(client, keys, host=host, pid=4242)
    for feature in features:
        writer.hold(feature)
    writer.flush()
    return writer


def _line(stdout: str, feature: str = "positions") -> str:
    return next(x for x in stdout.splitlines() if x.startswith(f"│ {feature}") or x.startswith(feature))


def _row(run: Run, feature: str = "positions") -> dict[str, Any]:
    doc = json.loads(run("status", "--json").stdout)
    return next(r for r in doc["features"] if r["feature"] == feature)


@pytest.fixture(autouse=True)
def _live(client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, percent=100)


def test_a_guarded_feature_says_by_whom_and_since_when(run: Run, client: redis.Redis, keys: Keys) -> None:
    _guard(client, keys, "positions")
    result = run("status", env={"COLUMNS": "260"})
    assert result.exit_code == 0, result.stderr
    assert "guard" in result.stdout.splitlines()[2]  # the table's header has a guard column
    assert re.search(r"guarded by guard-host\.example:4242 since \d\d:\d\d:\d\d UTC \(\d s ago\)",
                     _line(result.stdout)), result.stdout  # fmt: skip
    assert "guarded by" not in _line(result.stdout, "intraday")


def test_status_json_has_a_guard_object_or_null(run: Run, client: redis.Redis, keys: Keys) -> None:
    _guard(client, keys, "positions")
    row = _row(run)
    guard = row["guard"]
    assert (guard["host"], guard["pid"]) == ("guard-host.example", 4242)
    assert guard["since"].endswith("Z")
    assert 0 <= guard["age_s"] < 5
    assert 0 <= guard["heartbeat_age_s"] < 5
    assert _row(run, "intraday")["guard"] is None


def test_without_a_guard_there_is_no_guard_column(run: Run) -> None:
    result = run("status")
    assert result.exit_code == 0
    assert "guard" not in result.stdout.splitlines()[2]
    assert all(r["guard"] is None for r in json.loads(run("status", "--json").stdout)["features"])


def test_a_released_feature_is_no_longer_shown_guarded(run: Run, client: redis.Redis, keys: Keys) -> None:
    writer = _guard(client, keys, "positions", "intraday")
    writer.release("positions")
    writer.flush()
    assert _row(run)["guard"] is None
    assert _row(run, "intraday")["guard"]["pid"] == 4242


def test_a_narrow_terminal_shows_the_guard_as_a_line(run: Run, client: redis.Redis, keys: Keys) -> None:
    _guard(client, keys, "positions")
    result = run("status", env={"COLUMNS": "60"})
    assert result.exit_code == 0
    assert re.search(r"^  guard: guarded by guard-host\.example:4242 since", result.stdout, re.MULTILINE), result.stdout


def test_guard_text_from_redis_is_escaped(run: Run, client: redis.Redis, keys: Keys) -> None:
    _guard(client, keys, "positions", host="[bold]x[/]\x1b[2J")
    result = run("status", env={"COLUMNS": "260"})
    assert "\x1b[2J" not in result.stdout
    assert "guarded by [bold]x[/]\\x1b[2J:4242" in result.stdout


def test_status_watch_shows_a_guard_that_starts(run: Run, client: redis.Redis, keys: Keys) -> None:
    """A guard starting is no flag change (nothing is published): --watch sees it on its re-read."""
    import threading

    def later() -> None:
        time.sleep(0.6)
        _guard(client, keys, "positions")

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    result = run("status", "--watch-for", "2", "--json")
    thread.join()
    docs = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
    guards = [next(r for r in d["features"] if r["feature"] == "positions")["guard"] for d in docs]
    assert guards[0] is None
    assert guards[-1] is not None
    assert guards[-1]["pid"] == 4242
