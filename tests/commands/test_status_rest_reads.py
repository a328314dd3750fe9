"""``thorcut status`` shows how often each feature's REST endpoints are still read: a "REST reads/min
(last 5 min)" column while anything reads, ``rest_reads_per_min`` and ``rest_readers`` in ``--json``,
refreshed by ``--watch``. The keys are written with redis-py as any backend would."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from tests.commands.test_status_watch import watching
from tests.flags.test_restreads import count_reads
from tests.runner import Run
from thorcut.redisconn import Keys


def _row(run: Run, feature: str = "positions") -> dict[str, Any]:
    result = run("status", "--json")
    assert result.exit_code == 0, result.stderr
    return next(r for r in json.loads(result.stdout)["features"] if r["feature"] == feature)


def _line(stdout: str, feature: str = "positions") -> str:
    return next(x for x in stdout.splitlines() if x.startswith(f"│ {feature}"))


def test_status_json_has_reads_per_minute_over_five_minutes_and_the_readers(
    run: Run, client: redis.Redis, keys: Keys
) -> None:
    now = time.time()
    # The current minute and the three before it: inside the five minute buckets even if the minute
    # turns before status reads; six minutes ago is outside either way.
    for minutes_ago, n in ((0, 4), (1, 6), (3, 10)):
        count_reads(client, keys, "positions", "page/abc", n, at=now - 60 * minutes_ago)
    count_reads(client, keys, "positions", "token/ci", 5, at=now - 2, last=False)
    count_reads(client, keys, "positions", "token/old", 1000, at=now - 360)
    row = _row(run)
    assert row["rest_reads_per_min"] == 5.0  # (4 + 6 + 10 + 5) / 5
    readers = {r["label"]: r for r in row["rest_readers"]}
    assert set(readers) == {"page/abc", "token/ci"}
    assert set(readers["page/abc"]) == {"label", "count", "last_seen", "last_seen_age_s", "last_seen_approximate"}
    assert (readers["page/abc"]["count"], readers["page/abc"]["last_seen_approximate"]) == (20, False)
    assert readers["page/abc"]["last_seen"].endswith("Z")
    assert (readers["token/ci"]["count"], readers["token/ci"]["last_seen_approximate"]) == (5, True)
    intraday = _row(run, "intraday")
    assert (intraday["rest_reads_per_min"], intraday["rest_readers"]) == (0, [])


def test_status_table_shows_the_rate_and_the_readers_while_anything_reads(
    run: Run, client: redis.Redis, keys: Keys
) -> None:
    quiet = run("status", env={"COLUMNS": "160"})
    assert "REST reads/min" not in quiet.stdout  # nothing reads: the table as it was (it fits 80 columns)
    count_reads(client, keys, "positions", "page/abc", 12)
    count_reads(client, keys, "positions", "token/ci", 3)
    result = run("status", env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[2:4]
    assert "REST reads/min" in header[0]
    assert "(last 5 min)" in header[1]
    assert "│ 3 · 2 clients " in _line(result.stdout)
    assert "│ 0 " in _line(result.stdout, "intraday")


def test_status_without_room_for_a_table_says_the_same_per_feature(run: Run, client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "page/abc", 5)
    result = run("status", env={"COLUMNS": "60"})
    assert "  REST reads/min (last 5 min): 1 · 1 client" in result.stdout.splitlines()
    assert "  REST reads/min (last 5 min): 0" in result.stdout.splitlines()


def test_status_survives_hostile_rest_keys(run: Run, client: redis.Redis, keys: Keys) -> None:
    minute = int(time.time() // 60)
    client.hset(keys.rest("positions", minute), mapping={b"\xff\x1b[2J": b"x", b"ok": b"2"})
    client.hset(keys.rest_last("positions"), mapping={b"\xfe": b"nan"})
    client.set(keys.rest("intraday", minute), "not a hash")
    result = run("status", env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.stderr
    assert "\x1b[2J" not in result.stdout
    row = _row(run)
    assert {r["label"]: r["count"] for r in row["rest_readers"]} == {"\\xff\x1b[2J": 0, "ok": 2}
    assert _row(run, "intraday")["rest_readers"] == []


def test_status_watch_shows_new_reads_within_2s(cli_env: dict[str, str], client: redis.Redis, keys: Keys) -> None:
    with watching(cli_env, "--json") as watch:
        watch.until(lambda line: '"rest_reads_per_min": 0' in line, within=10)
        count_reads(client, keys, "global_market", "svc-dashboard", 15)
        line = watch.until(lambda line: "svc-dashboard" in line, within=2)
    row = next(r for r in json.loads(line)["features"] if r["feature"] == "global_market")
    assert row["rest_reads_per_min"] == 3.0
    assert [r["label"] for r in row["rest_readers"]] == ["svc-dashboard"]
