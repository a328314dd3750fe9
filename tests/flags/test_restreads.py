"""The REST read model (thorcut/flags/restreads.py) over the real Redis of the test: the keys are
written with redis-py the way any backend following docs/contracts.md ("Retiring REST") would, and
read at a fixed clock so that window boundaries are exact."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import set_flag
from thorcut.flags.restreads import (
    STATUS_MINUTES,
    RestReads,
    Window,
    collect,
    queue,
    read_retirement,
    short,
    span,
)
from thorcut.flags.stages import Stage
from thorcut.redisconn import Keys

#: The clock the model is read at: 30 s into the minute before the current one. Fixed per run (the
#: keys expire a day after their minute, so it cannot be a date in the past) and minute-aligned,
#: so that window boundaries are exact.
MINUTE = math.floor(time.time() / 60) - 1
NOW = MINUTE * 60 + 30.0


def _iso(unix: float, fmt: str = "%Y-%m-%dT%H:%M:%S.000Z") -> str:
    return datetime.fromtimestamp(unix, UTC).strftime(fmt)


def count_reads(
    client: redis.Redis, keys: Keys, feature: str, label: str | bytes, n: int = 1, *,
    at: float | None = None, last: bool = True,
) -> None:  # fmt: skip
    """Count ``n`` REST reads of ``feature`` by ``label`` at ``at`` (default: now) as a backend does:
    HINCRBY in the minute's hash (expiring a day after the minute), and the label's latest read
    in ``:last`` (only moving forward) unless ``last`` is false."""
    at = time.time() if at is None else at
    minute = math.floor(at / 60)
    pipe = client.pipeline()
    pipe.hincrby(keys.rest(feature, minute), label, n)
    pipe.expireat(keys.rest(feature, minute), (minute + 1) * 60 + 86400)
    pipe.execute()
    if last:
        before = client.hget(keys.rest_last(feature), label)
        if before is None or float(before) < at:
            client.hset(keys.rest_last(feature), label, f"{at:.3f}")
        client.expire(keys.rest_last(feature), 86400)


def reads(client: redis.Redis, keys: Keys, window: Window) -> RestReads:
    pipe = client.pipeline(transaction=False)
    queue(pipe, keys, window)
    return collect(window, pipe.execute(raise_on_error=False))


def labels(result: RestReads) -> list[str]:
    return [r.label for r in result.readers]


# -- windows ----------------------------------------------------------------------------------------


def test_a_window_covers_every_minute_bucket_that_overlaps_it() -> None:
    assert Window.last("f", 5, NOW).minutes == range(MINUTE, MINUTE + 1)
    assert Window.last("f", 31, NOW).minutes == range(MINUTE - 1, MINUTE + 1)
    assert Window.last("f", 30, NOW).minutes == range(MINUTE, MINUTE + 1)  # starts exactly at the minute
    assert Window.last("f", 86400, NOW).minutes == range(MINUTE - 1440, MINUTE + 1)
    assert Window.last("f", 5, NOW).replies == 2


def test_the_status_window_is_the_current_minute_and_the_four_before() -> None:
    window = Window.status("f", NOW)
    assert window.minutes == range(MINUTE - 4, MINUTE + 1)
    assert len(window.minutes) == STATUS_MINUTES


def test_span_says_a_window_for_people() -> None:
    assert [span(s) for s in (900, 5, 3600, 90, 86400, 1.5)] == ["15 min", "5 s", "1 h", "90 s", "1 d", "1.5 s"]


# -- readers ----------------------------------------------------------------------------------------


def test_a_label_last_seen_10s_ago_is_outside_a_5s_window_and_inside_15s(client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "page/old123", 3, at=NOW - 10)
    assert labels(reads(client, keys, Window.last("positions", 5, NOW))) == []
    inside = reads(client, keys, Window.last("positions", 15, NOW))
    assert labels(inside) == ["page/old123"]
    reader = inside.readers[0]
    assert (reader.reads, reader.last_seen, reader.approximate) == (3, NOW - 10, False)
    assert inside.resolution == "second"
    assert reader.to_dict(NOW) == {"label": "page/old123", "count": 3, "last_seen": _iso(NOW - 10),
                                   "last_seen_age_s": 10.0, "last_seen_approximate": False}  # fmt: skip


def test_the_window_boundary_is_inclusive(client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "token/ci", at=NOW - 10)
    assert labels(reads(client, keys, Window.last("positions", 10, NOW))) == ["token/ci"]
    assert labels(reads(client, keys, Window.last("positions", 9.999, NOW))) == []


def test_without_last_readers_are_known_to_the_minute(client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "token/ci", 4, at=NOW - 40, last=False)  # the minute before
    # [NOW-5, NOW] lies inside the current minute: the previous bucket does not overlap it
    assert labels(reads(client, keys, Window.last("positions", 5, NOW))) == []
    result = reads(client, keys, Window.last("positions", 31, NOW))
    assert result.resolution == "minute"
    (reader,) = result.readers
    assert (reader.label, reader.reads, reader.approximate, reader.minute) == ("token/ci", 4, True, MINUTE - 1)
    assert reader.last_seen == MINUTE * 60  # the end of its bucket
    assert reader.describe_seen(NOW) == f"in the minute from {_iso(NOW - 90, '%Y-%m-%dT%H:%MZ')} (at most 2 min ago)"


def test_a_label_read_in_the_current_minute_is_last_seen_now_at_the_latest(client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "anonymous", at=NOW - 1, last=False)
    (reader,) = reads(client, keys, Window.last("positions", 5, NOW)).readers
    assert reader.last_seen == NOW
    assert reader.to_dict(NOW)["last_seen_age_s"] == 0.0


def test_a_label_missing_from_last_falls_back_to_its_buckets(client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "page/a", at=NOW - 100)
    count_reads(client, keys, "positions", "svc-b", at=NOW - 2, last=False)
    result = reads(client, keys, Window.last("positions", 60, NOW))
    assert result.resolution == "second"
    assert [(r.label, r.approximate) for r in result.readers] == [("svc-b", True)]


def test_counts_add_up_over_the_buckets_inside_the_window_only(client: redis.Redis, keys: Keys) -> None:
    for minutes_ago, n in ((0, 5), (3, 7), (14, 11), (16, 13)):
        count_reads(client, keys, "positions", "token/ci", n, at=NOW - 60 * minutes_ago - 1)
    result = reads(client, keys, Window.last("positions", 900, NOW))
    assert [(r.label, r.reads) for r in result.readers] == [("token/ci", 5 + 7 + 11)]
    assert result.total == 23


def test_status_rate_is_the_five_buckets_summed_over_five(client: redis.Redis, keys: Keys) -> None:
    for minutes_ago, n in ((0, 2), (1, 3), (4, 5), (5, 100)):
        count_reads(client, keys, "positions", "page/x", n, at=NOW - 60 * minutes_ago)
    assert reads(client, keys, Window.status("positions", NOW)).per_minute == 2.0  # (2 + 3 + 5) / 5
    assert reads(client, keys, Window.status("intraday", NOW)).per_minute == 0.0


def test_readers_are_listed_most_recent_first(client: redis.Redis, keys: Keys) -> None:
    for label, ago in (("b", 30), ("a", 30), ("c", 5), ("d", 50)):
        count_reads(client, keys, "positions", label, at=NOW - ago)
    assert labels(reads(client, keys, Window.last("positions", 60, NOW))) == ["c", "a", "b", "d"]


def test_the_other_label_past_100_labels_is_a_reader_like_any(client: redis.Redis, keys: Keys) -> None:
    for i in range(100):
        count_reads(client, keys, "positions", f"script-{i}", at=NOW - 3, last=False)
    count_reads(client, keys, "positions", "other", 57, at=NOW - 3, last=False)
    result = reads(client, keys, Window.last("positions", 60, NOW))
    assert len(result.readers) == 101
    assert next(r for r in result.readers if r.label == "other").reads == 57


# -- hostile contents ----------------------------------------------------------------------------


def test_hostile_labels_counts_and_times_are_read_without_failing(client: redis.Redis, keys: Keys) -> None:
    bucket, last = keys.rest("positions", MINUTE), keys.rest_last("positions")
    hostile: dict[str | bytes, str | int] = {b"\xff\xfe page": 2, "\x1b[2J\x07bell": 1, "L" * 10_000: 4}
    hostile |= {"bad-count": "abc", "negative": "-3", "float": "1e5", "huge": "9" * 30, "max": str(2**63 - 1)}
    client.hset(bucket, mapping=hostile)  # type: ignore[arg-type]
    client.hset(last, mapping={"nan": "nan", "inf": "inf", "neg": "-1", "text": "soon", "future": "1e300"})
    result = reads(client, keys, Window.last("positions", 60, NOW))
    by_label = {r.label: r for r in result.readers}
    assert by_label["\\xff\\xfe page"].reads == 2  # not UTF-8: backslash escapes
    assert by_label["\x1b[2J\x07bell"].reads == 1  # kept as stored; printing makes it inert
    assert by_label["L" * 10_000].reads == 4
    assert [by_label[x].reads for x in ("bad-count", "negative", "float", "huge")] == [0, 0, 0, 0]
    assert by_label["max"].reads == 2**63 - 1
    assert by_label["future"].last_seen == NOW  # a clock ahead of ours reads as now
    assert not any(x in by_label for x in ("nan", "inf", "neg", "text"))  # no time, no bucket: not readers
    json.dumps([r.to_dict(NOW) for r in result.readers])
    assert short("L" * 10_000) == "L" * 79 + "… (10000 characters)"


def test_a_key_of_the_wrong_type_reads_as_empty(client: redis.Redis, keys: Keys) -> None:
    client.set(keys.rest("positions", MINUTE), "not a hash")
    client.rpush(keys.rest_last("positions"), "x")
    result = reads(client, keys, Window.last("positions", 60, NOW))
    assert (result.readers, result.total, result.resolution) == ((), 0, "minute")


_BYTES = st.binary(max_size=40) | st.sampled_from([b"page/x", b"other", b"anonymous", b"\xff", b"nan", b"1e999"])
_VALUES = (
    st.binary(max_size=24)
    | st.integers(-(2**70), 2**70).map(lambda i: str(i).encode())
    | st.floats().map(lambda f: repr(f).encode())
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    buckets=st.dictionaries(st.integers(0, 3), st.dictionaries(_BYTES, _VALUES, min_size=1, max_size=6), max_size=4),
    last=st.dictionaries(_BYTES, _VALUES, max_size=6),
    flag=st.dictionaries(_BYTES, _BYTES, max_size=4),
    build=st.none() | _BYTES,
    seconds=st.floats(1, 86400),
)
def test_any_stored_contents_never_fail_a_read(
    client: redis.Redis, keys: Keys, buckets: dict[int, dict[bytes, bytes]], last: dict[bytes, bytes],
    flag: dict[bytes, bytes], build: bytes | None, seconds: float,
) -> None:  # fmt: skip
    client.delete(*(keys.rest("positions", MINUTE - i) for i in range(4)), keys.rest_last("positions"),
                  keys.flag("positions"), keys.page_build)  # fmt: skip
    for ago, mapping in buckets.items():
        client.hset(keys.rest("positions", MINUTE - ago), mapping=mapping)  # type: ignore[arg-type]
    if last:
        client.hset(keys.rest_last("positions"), mapping=last)  # type: ignore[arg-type]
    if flag:
        client.hset(keys.flag("positions"), mapping=flag)  # type: ignore[arg-type]
    if build is not None:
        client.set(keys.page_build, build)
    verdict = read_retirement(client, keys, "positions", seconds, NOW)
    doc = json.loads(json.dumps(verdict.to_dict()))
    assert doc["ok"] is (verdict.stage is Stage.COMPLETE and not doc["readers"])
    assert all(r["count"] >= 0 and r["last_seen_age_s"] >= 0 for r in doc["readers"])
    assert verdict.reason
    for reader in verdict.reads.readers:
        reader.describe_seen(NOW)
    verdict.unswitched()


# -- the verdict ----------------------------------------------------------------------------------


def test_retirement_is_ok_only_when_complete_and_nobody_read(client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "complete", 4, 100)
    verdict = read_retirement(client, keys, "positions", 900, NOW)
    assert (verdict.stage, verdict.ok, verdict.current_build) == (Stage.COMPLETE, True, None)
    assert verdict.reason == "positions is complete and nobody read its REST endpoints in the last 15 min"
    count_reads(client, keys, "positions", "page/old123", at=NOW - 60)
    verdict = read_retirement(client, keys, "positions", 900, NOW)
    assert not verdict.ok
    assert verdict.reason == "1 client read positions's REST endpoints in the last 15 min: page/old123"


def test_retirement_of_a_feature_not_complete_says_its_stage(client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    count_reads(client, keys, "positions", "token/ci", at=NOW - 1)
    verdict = read_retirement(client, keys, "positions", 900, NOW)
    assert verdict.reason == (
        "positions is live, not complete: clients still poll its REST endpoints; "
        "1 client read positions's REST endpoints in the last 15 min: token/ci"
    )
    assert read_retirement(client, keys, "intraday", 60, NOW).reason == (
        "intraday is off, not complete: clients still poll its REST endpoints"
    )


def test_old_page_builds_are_told_from_the_current_one(client: redis.Redis, keys: Keys) -> None:
    for label in ("page/old123", "page/cur456", "token/ci", "anonymous", "other"):
        count_reads(client, keys, "positions", label, at=NOW - 2)
    unknown = read_retirement(client, keys, "positions", 60, NOW)
    assert unknown.old_page_build(unknown.reads.readers[0]) is None
    groups = unknown.unswitched()
    assert groups.old_pages == ()
    assert sorted(r.label for r in groups.pages) == ["page/cur456", "page/old123"]
    client.set(keys.page_build, "cur456")
    verdict = read_retirement(client, keys, "positions", 60, NOW)
    assert verdict.current_build == "cur456"
    groups = verdict.unswitched()
    assert [r.label for r in groups.old_pages] == ["page/old123"]
    assert groups.pages == ()
    assert sorted(r.label for r in groups.clients) == ["anonymous", "other", "token/ci"]
    rows = {r["label"]: (r["kind"], r["old_page_build"]) for r in verdict.to_dict()["readers"]}
    assert rows == {"page/old123": ("page", True), "page/cur456": ("page", False), "token/ci": ("client", None),
                    "anonymous": ("client", None), "other": ("client", None)}  # fmt: skip
    assert "page/old123 (old page build)" in verdict.reason


def test_only_current_page_readers_leave_nothing_unswitched(client: redis.Redis, keys: Keys) -> None:
    client.set(keys.page_build, "cur456")
    count_reads(client, keys, "positions", "page/cur456", at=NOW - 2)
    assert not read_retirement(client, keys, "positions", 300, NOW).unswitched()


@pytest.mark.parametrize("readers", [12, 3])
def test_the_reason_names_at_most_ten_readers(client: redis.Redis, keys: Keys, readers: int) -> None:
    for i in range(readers):
        count_reads(client, keys, "positions", f"svc-{i:02d}", at=NOW - 2)
    reason = read_retirement(client, keys, "positions", 60, NOW).reason
    assert reason.endswith(" and 2 more") is (readers == 12)
    assert reason.count("svc-") == min(readers, 10)
