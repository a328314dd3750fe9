"""Counting REST reads (``thor_trading.rest_reads``; docs/contracts.md, "Retiring REST").

Real backends (uvicorn) on the session's Redis under a fresh prefix, or on a private redis-server
that is stopped and started again; the recorder itself against the session's Redis with the time
given, for what depends on the minute (the cap of 100 labels, expiry, ``last`` moving forward).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.backend_fixtures import BACKEND, Server, start_server
from tests.conftest import start_redis
from thorcut.dev.stack import EmbeddedRedis
from thorcut.redisconn import Keys

FEATURE_PATHS = {
    "account_balance": "/api/account/balance",
    "positions": "/api/account/positions",
    "intraday": "/api/intraday/ES/bar",
    "global_market": "/api/markets/status",
}
DAY = 86400


# -- helpers ---------------------------------------------------------------------------------------


def wait_for(what: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    """Poll ``what`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {message or what}")
        time.sleep(0.02)


def minute_keys(client: redis.Redis, keys: Keys, feature: str) -> list[str]:
    return sorted(k for k in client.scan_iter(match=keys.rest(feature, 0)[:-1] + "*") if not k.endswith(":last"))


def counts(client: redis.Redis, keys: Keys, feature: str) -> dict[str, int]:
    """Every minute hash of ``feature`` added up: label -> reads."""
    total: dict[str, int] = {}
    for key in minute_keys(client, keys, feature):
        for label, n in client.hgetall(key).items():
            total[label] = total.get(label, 0) + int(n)
    return total


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def data(thor_env: dict[str, str], demo_users: object) -> None:
    """State for every feature, so that reads answer 200 (one tick of every job)."""
    from thor_trading.jobs import build_jobs

    for job in build_jobs(7):
        job.run(0)


@pytest.fixture
def servers(thor_env: dict[str, str], data: None, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start backends (flushing every 0.1 s, no page build unless given); all stopped afterwards."""
    started: list[Server] = []
    empty = tmp_path / "no-dist"
    empty.mkdir()

    def start(prefix: str, args: list[str] | None = None, **env: str) -> Server:
        extra = {"THORCUT_PREFIX": prefix, "THOR_REST_COUNT_FLUSH": "0.1", "THOR_FRONTEND_DIST": str(empty), **env}
        server = start_server(thor_env, tmp_path / f"uvicorn-{len(started)}.log", extra_env=extra, args=args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared(thor_env: dict[str, str], data: None, redis_server: EmbeddedRedis,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Keys]]:  # fmt: skip
    """One backend for the tests that read from it alone, each its own feature; no page build."""
    keys = Keys(f"reads{uuid.uuid4().hex[:8]}")
    folder = tmp_path_factory.mktemp("reads")
    (folder / "no-dist").mkdir()
    extra = {"THORCUT_PREFIX": keys.base.strip("{}"), "THOR_REST_COUNT_FLUSH": "0.1",
             "THOR_FRONTEND_DIST": str(folder / "no-dist")}  # fmt: skip
    server = start_server(thor_env, folder / "uvicorn.log", extra_env=extra)
    yield server, keys
    server.stop()
    with redis.Redis(port=redis_server.port) as client:
        names = list(client.scan_iter(match=f"{keys.base}*"))
        if names:
            client.delete(*names)


@pytest.fixture
def fresh(client: redis.Redis) -> Iterator[Keys]:
    """A prefix no other test uses; its keys deleted afterwards."""
    keys = Keys(f"reads{uuid.uuid4().hex[:8]}")
    yield keys
    names = list(client.scan_iter(match=f"{keys.base}*"))
    if names:
        client.delete(*names)


# -- labels and paths (no server) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["page/0123456789ab", "billing-report", "svc@host:8080", "a", "x" * 64, "A-Z.a_z/0:9@+-"],
)
def test_a_well_formed_header_is_the_label_as_it_is(thor_env: dict[str, str], header: str) -> None:
    from thor_trading.rest_reads import client_label

    assert client_label(header, "tests") == header


@pytest.mark.parametrize(
    "header",
    ["", "x" * 65, "x" * 100_000, "page/ab cd", "page/ab\tcd", "page/ab\ncd", "page\x00", "a,b", "päge/1",
     "page/\u202e", "\x1b[31mred", "page/<script>", 'a"b', "a;b"],
)  # fmt: skip
def test_a_malformed_header_is_ignored(thor_env: dict[str, str], header: str) -> None:
    from thor_trading.rest_reads import client_label

    assert client_label(header, "tests") == "token/tests"
    assert client_label(header, None) == "anonymous"


def test_token_names_are_sanitised_and_cut(thor_env: dict[str, str]) -> None:
    from thor_trading.rest_reads import client_label, token_label

    assert client_label(None, "nightly export") == "token/nightly_export"
    assert token_label("é\n\x00;x") == "token/____x"
    assert token_label("") == "token/_"
    assert token_label("n" * 64) == "token/" + "n" * 58
    assert client_label(None, None) == "anonymous"


def test_feature_endpoints_are_told_from_other_paths(thor_env: dict[str, str]) -> None:
    from thor_trading.features import FEATURES
    from thor_trading.rest_reads import feature_of

    for feature in FEATURES:
        for endpoint in feature.rest:
            assert feature_of(endpoint.route.replace("{key}", "NQ")) == feature.name, endpoint
    for path in ("/api/cutover/flags", "/api/ops/monitor", "/api/ops/stage", "/api/health", "/api/session",
                 "/api/intraday/ES/bar/", "/api/intraday//bar", "/api/intraday/ES/candles", "/metrics", "/",
                 "/api/account/balance/", "/api/markets/status/CME"):  # fmt: skip
        assert feature_of(path) is None, path


@pytest.mark.parametrize(
    ("content", "build"),
    [
        (None, None),  # no build.json: dev mode, or a build from before build ids
        ('{"build": "0123456789ab"}', "0123456789ab"),
        ('{"build": "release-2026.11+1"}', "release-2026.11+1"),
        ('{"build": "a b"}', None),
        ('{"build": "%s"}' % ("x" * 60), None),  # page/<id> would be 65 characters
        ('{"build": 12}', None),
        ('["0123456789ab"]', None),
        ("not json", None),
    ],
)
def test_the_page_build_is_read_from_the_dist_s_build_json(
    thor_env: dict[str, str], tmp_path: Path, content: str | None, build: str | None
) -> None:
    from django.test import override_settings

    from thor_project.frontend import build_id

    if content is not None:
        (tmp_path / "build.json").write_text(content)
    with override_settings(THOR_FRONTEND_DIST=str(tmp_path)):
        assert build_id() == build


# -- the recorder against Redis ----------------------------------------------------------------------


def recorder(port: int, keys: Keys) -> Any:
    """A recorder (a worker's) on its own connection to the session's Redis; its thread not started."""
    from thor_trading.rest_writer import Recorder

    return Recorder(redis.Redis(port=port, decode_responses=True), keys, thread=False)


def test_the_101st_label_of_a_minute_is_counted_as_other_across_writers(
    redis_server: EmbeddedRedis, client: redis.Redis, fresh: Keys
) -> None:
    """Two recorders (two workers) write 60 labels each into one minute: 100 keep their name."""
    now = time.time()
    minute = int(now // 60)
    one, two = recorder(redis_server.port, fresh), recorder(redis_server.port, fresh)
    for i in range(60):
        one.record("positions", f"a{i:02d}", now)
        two.record("positions", f"b{i:02d}", now)
        two.record("positions", f"b{i:02d}", now)
    assert one.flush() == 60
    assert two.flush() == 120
    stored = {k: int(v) for k, v in client.hgetall(fresh.rest("positions", minute)).items()}
    assert len(stored) == 101
    assert sum(stored.values()) == 180
    assert stored["other"] == 40  # b40..b59, two reads each
    assert all(stored[f"a{i:02d}"] == 1 for i in range(60))
    assert all(stored[f"b{i:02d}"] == 2 for i in range(40))
    # `last` knows the overflowing labels as `other` too: it grows no faster than the minutes.
    last = client.hgetall(fresh.rest_last("positions"))
    assert set(last) == set(stored)


def test_one_process_caps_its_own_buffer_the_same_way(
    redis_server: EmbeddedRedis, client: redis.Redis, fresh: Keys
) -> None:
    now = time.time()
    rec = recorder(redis_server.port, fresh)
    for i in range(150):
        rec.record("intraday", f"label{i:03d}", now)
    assert rec.pending() == 150
    rec.flush()
    stored = client.hgetall(fresh.rest("intraday", int(now // 60)))
    assert len(stored) == 101
    assert stored["other"] == "50"


def test_minute_hashes_expire_a_day_after_their_minute_and_last_a_day_after_its_write(
    redis_server: EmbeddedRedis, client: redis.Redis, fresh: Keys
) -> None:
    now = time.time()
    rec = recorder(redis_server.port, fresh)
    rec.record("global_market", "anonymous", now - 120)  # two minutes ago
    rec.record("global_market", "anonymous", now)
    rec.flush()
    for minute in (int((now - 120) // 60), int(now // 60)):
        key = fresh.rest("global_market", minute)
        assert client.expiretime(key) == (minute + 1) * 60 + DAY
        assert 0 < client.ttl(key) <= DAY + 60
    assert 0 < client.ttl(fresh.rest_last("global_market")) <= DAY


def test_last_moves_forward_only(redis_server: EmbeddedRedis, client: redis.Redis, fresh: Keys) -> None:
    now = time.time()
    first, second = recorder(redis_server.port, fresh), recorder(redis_server.port, fresh)
    first.record("positions", "page/abc", now)
    first.flush()
    second.record("positions", "page/abc", now - 30)  # a worker that flushes later, with an older read
    second.flush()
    assert float(client.hget(fresh.rest_last("positions"), "page/abc") or 0) == pytest.approx(now, abs=0.001)
    first.record("positions", "page/abc", now + 5)
    first.flush()
    assert float(client.hget(fresh.rest_last("positions"), "page/abc") or 0) == pytest.approx(now + 5, abs=0.001)


def test_an_unreachable_redis_drops_the_batch_after_a_bounded_retry_and_logs_once(
    client: redis.Redis, fresh: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import REGISTRY

    from thor_trading.rest_writer import Recorder

    server = start_redis(tmp_path / "redis")
    # As the backend makes its client: one try per call, the recorder tries again itself.
    own = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True, socket_timeout=1,
                      socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))  # fmt: skip
    rec = Recorder(own, fresh, where="the test's Redis", thread=False)
    dropped = REGISTRY.get_sample_value("thor_rest_reads_dropped_total", {"feature": "positions"}) or 0.0
    try:
        rec.record("positions", "anonymous")
        assert rec.flush() == 1
        server.stop()
        with caplog.at_level(logging.WARNING, logger="thor_trading.rest_reads"):
            for _ in range(3):
                rec.record("positions", "anonymous")
                started = time.monotonic()
                assert rec.flush() == 0
                assert time.monotonic() - started < 2.0  # three tries, 0.4 s of pauses
            server.start()
            rec.record("positions", "anonymous")
            assert rec.flush() == 1
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert "cannot be written to the test's Redis" in lines[0]
        assert re.search(r"again, after \d+\.\d s; 3 read\(s\) were dropped", lines[1]), lines[1]
        assert REGISTRY.get_sample_value("thor_rest_reads_dropped_total", {"feature": "positions"}) == dropped + 3
    finally:
        server.stop()


# -- real backends -------------------------------------------------------------------------------------


def test_reads_are_labelled_by_header_token_or_anonymous(
    shared: tuple[Server, Keys], client: redis.Redis, demo_users: dict[str, dict[str, str]]
) -> None:
    from thor_trading.models import ApiToken

    server, fresh = shared
    token = demo_users["demo"]["token"]
    odd = ApiToken.issue(ApiToken.objects.get(digest=ApiToken.hash(token)).user, "nightly export (é)")
    url = server.url + FEATURE_PATHS["account_balance"]
    with httpx.Client(timeout=5) as http:
        assert http.get(url, headers={**bearer(token), "X-Thor-Client": "page/0123456789ab"}).status_code == 200
        assert http.get(url, headers={"X-Thor-Client": "page/0123456789ab"}).status_code == 401  # any status
        assert http.get(url, headers=bearer(token)).status_code == 200
        assert http.get(url, headers=bearer(odd)).status_code == 200
        assert http.get(url).status_code == 401
        assert http.get(url, headers=bearer("thor_not-a-token")).status_code == 401
        # Malformed: too long, not ASCII, a tab, empty, two headers (joined by a comma): ignored.
        for value in (b"x" * 10_000, "päge/1".encode(), b"page/a\tb", b"", b"x" * 65):
            assert http.get(url, headers=[(b"Authorization", f"Bearer {token}".encode()),
                                          (b"X-Thor-Client", value)]).status_code == 200  # fmt: skip
        two = [
            (b"X-Thor-Client", b"page/a"),
            (b"X-Thor-Client", b"page/b"),
            (b"Authorization", f"Bearer {token}".encode()),
        ]
        assert http.get(url, headers=two).status_code == 200
        # Refused before the view looked the token up (a POST without CSRF: 403; with: 405): counted,
        # named by the token all the same.
        assert http.post(url, headers=bearer(token)).status_code == 403
        csrf = "c" * 32
        refused = http.post(url, headers={**bearer(token), "X-CSRFToken": csrf, "Cookie": f"csrftoken={csrf}"})
        assert refused.status_code == 405
        # Not a feature's REST endpoint: not counted.
        for path in ("/api/cutover/flags", "/api/health", "/api/ops/monitor", "/api/session"):
            http.get(server.url + path, headers=bearer(token))
    expected = {"page/0123456789ab": 2, "token/tests": 9, "token/nightly_export____": 1, "anonymous": 2}
    wait_for(lambda: counts(client, fresh, "account_balance") == expected,
             message=f"{counts(client, fresh, 'account_balance')} == {expected}")  # fmt: skip
    assert counts(client, fresh, "global_market") == {}  # no test reads it from this server
    last = client.hgetall(fresh.rest_last("account_balance"))
    assert set(last) == set(expected)
    assert all(abs(float(at) - time.time()) < 30 for at in last.values())
    assert client.get(fresh.page_build) is None  # this server serves no build


def test_the_monitor_shows_reads_per_minute_and_readers(
    shared: tuple[Server, Keys], client: redis.Redis, demo_users: dict[str, dict[str, str]]
) -> None:
    from tests.backend.test_ops import conforms

    server, fresh = shared
    token = demo_users["demo"]["token"]
    with httpx.Client(base_url=server.url, timeout=5, headers=bearer(token)) as http:
        for _ in range(7):
            http.get(FEATURE_PATHS["intraday"], headers={"X-Thor-Client": "page/old"})
        for _ in range(3):
            http.get("/api/intraday/ES/vwap")
        wait_for(lambda: sum(counts(client, fresh, "intraday").values()) == 10)
        resp = http.get("/api/ops/monitor")
    assert resp.status_code == 200
    conforms(resp, "/api/ops/monitor", "get")
    rows = {row["feature"]: row for row in resp.json()["features"]}
    assert rows["intraday"]["rest_reads_per_min"] == 2.0  # 10 reads / 5 minutes
    readers = rows["intraday"]["rest_readers"]
    assert [(r["label"], r["count"]) for r in readers] == [("page/old", 7), ("token/tests", 3)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["last_seen"]) for r in readers)
    assert rows["positions"]["rest_reads_per_min"] == 0
    assert rows["positions"]["rest_readers"] == []


def test_the_monitor_reads_damaged_rest_keys_as_empty(
    shared: tuple[Server, Keys], client: redis.Redis, demo_users: dict[str, dict[str, str]]
) -> None:
    """Another backend's (or a damaged) key never breaks the monitor: wrong types read as empty,
    a count that is not a whole number as 0."""
    server, fresh = shared
    minute = int(time.time() // 60)
    client.set(fresh.rest_last("global_market"), "not a hash")
    client.rpush(fresh.rest("global_market", minute), "not a hash")
    client.hset(fresh.rest("global_market", minute - 1), mapping={"page/x": "junk", "script/y": "-4"})
    with httpx.Client(base_url=server.url, timeout=5, headers=bearer(demo_users["demo"]["token"])) as http:
        resp = http.get("/api/ops/monitor")
    assert resp.status_code == 200, resp.text
    row = next(r for r in resp.json()["features"] if r["feature"] == "global_market")
    assert row["rest_reads_per_min"] == 0


@pytest.mark.slow
def test_counts_of_two_workers_add_up_exactly(
    servers: Callable[..., Server], client: redis.Redis, fresh: Keys, demo_users: dict[str, dict[str, str]]
) -> None:
    prefix = fresh.base.strip("{}")
    one, two = servers(prefix), servers(prefix)
    token = demo_users["demo"]["token"]
    per_server, concurrent = 150, 10

    async def load(server: Server) -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=bearer(token)) as http:
            queue = list(range(per_server))
            statuses: list[int] = []

            async def worker() -> None:
                while queue:
                    queue.pop()
                    statuses.append((await http.get(FEATURE_PATHS["positions"])).status_code)

            await asyncio.gather(*(worker() for _ in range(concurrent)))
            return statuses

    async def both() -> list[list[int]]:
        return list(await asyncio.gather(load(one), load(two)))

    statuses = asyncio.run(both())
    assert [len(s) for s in statuses] == [per_server, per_server]
    wait_for(lambda: counts(client, fresh, "positions") == {"token/tests": 2 * per_server},
             message=f"{counts(client, fresh, 'positions')}")  # fmt: skip


def test_counting_off_writes_nothing_and_a_served_build_is_published(
    servers: Callable[..., Server], client: redis.Redis, fresh: Keys, tmp_path: Path,
    demo_users: dict[str, dict[str, str]],
) -> None:  # fmt: skip
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Thor</title>")
    (dist / "build.json").write_text(json.dumps({"build": "0123456789ab"}))
    off_keys = Keys(f"readsoff{uuid.uuid4().hex[:8]}")
    off = servers(off_keys.base.strip("{}"), THOR_REST_COUNTING="0", THOR_FRONTEND_DIST=str(dist))
    on = servers(fresh.base.strip("{}"), THOR_FRONTEND_DIST=str(dist))
    token = demo_users["demo"]["token"]
    with httpx.Client(timeout=5, headers=bearer(token)) as http:
        for _ in range(5):
            assert http.get(off.url + FEATURE_PATHS["global_market"]).status_code == 200
        assert http.get(on.url + FEATURE_PATHS["global_market"]).status_code == 200
    # The server that counts has written its read (and its build) since: the other one would have too.
    wait_for(lambda: counts(client, fresh, "global_market") == {"token/tests": 1})
    assert client.get(fresh.page_build) == "0123456789ab"
    assert 0 < client.ttl(fresh.page_build) <= DAY
    assert list(client.scan_iter(match=f"{off_keys.base}:rest:*")) == []
    assert client.get(off_keys.page_build) is None


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_what_is_counted_is_written_when_the_server_stops(
    servers: Callable[..., Server], client: redis.Redis, fresh: Keys, demo_users: dict[str, dict[str, str]],
    workers: int,
) -> None:  # fmt: skip
    """One process (the app imported before serving) and workers (imported while serving) alike."""
    server = servers(fresh.base.strip("{}"), args=["--workers", str(workers)], THOR_REST_COUNT_FLUSH="60")
    reads = 40
    with httpx.Client(timeout=5, headers=bearer(demo_users["demo"]["token"])) as http:
        for _ in range(reads):
            # A connection each, so that the kernel spreads them over the workers.
            http.get(server.url + FEATURE_PATHS["positions"], headers={"X-Thor-Client": "script/exit",
                                                                        "Connection": "close"})  # fmt: skip
    assert counts(client, fresh, "positions") == {}  # the next flush is a minute away
    server.stop()  # SIGTERM: uvicorn shuts down gracefully, then each process writes what it counted
    assert counts(client, fresh, "positions") == {"script/exit": reads}


@pytest.mark.slow
def test_with_redis_stopped_reads_stay_fast_and_counting_resumes_when_it_is_back(
    servers: Callable[..., Server], tmp_path: Path, demo_users: dict[str, dict[str, str]]
) -> None:
    private = start_redis(tmp_path / "redis")
    keys = Keys(f"reads{uuid.uuid4().hex[:8]}")
    server = servers(keys.base.strip("{}"), THORCUT_REDIS_URL=private.url, THOR_CHANNEL_REDIS_URL=private.url)
    own = redis.Redis(port=private.port, decode_responses=True, socket_timeout=2)
    url = server.url + FEATURE_PATHS["account_balance"]
    try:
        with httpx.Client(timeout=5, headers=bearer(demo_users["demo"]["token"])) as http:
            for _ in range(5):
                assert http.get(url).status_code == 200
            wait_for(lambda: counts(own, keys, "account_balance") == {"token/tests": 5})
            private.stop()
            took = []
            for _ in range(20):
                started = time.monotonic()
                assert http.get(url).status_code == 200
                took.append(time.monotonic() - started)
            assert max(took) < 0.5, took  # counting never waits for Redis

            def dropped() -> float:
                metrics = http.get(server.url + "/metrics").text
                found = re.search(r'thor_rest_reads_dropped_total\{feature="account_balance"\} (\S+)', metrics)
                return float(found.group(1)) if found else 0.0

            wait_for(lambda: dropped() == 20, message=f"20 reads dropped (so far {dropped()})")
            assert "cannot be written" in server.log.read_text(errors="replace")
            private.start()  # empty: what was counted before the stop is gone with it
            for _ in range(3):
                assert http.get(url).status_code == 200
            wait_for(lambda: counts(own, keys, "account_balance") == {"token/tests": 3}, timeout=15)
        log = server.log.read_text(errors="replace")
        assert log.count("cannot be written") == 1, log[-3000:]
        assert log.count("are written to Redis at") == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        own.close()
        private.stop()


@pytest.mark.parametrize(
    ("name", "value"),
    [("THOR_REST_COUNTING", "maybe"), ("THOR_REST_COUNT_FLUSH", "0"), ("THOR_REST_COUNT_FLUSH", "soon")],
)
def test_a_bad_setting_stops_the_backend_naming_it(thor_env: dict[str, str], name: str, value: str) -> None:
    env = {**os.environ, **thor_env, name: value}
    proc = subprocess.run([sys.executable, "manage.py", "check"], cwd=BACKEND, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode != 0
    assert f"{name}={value!r}" in proc.stderr, proc.stderr[-2000:]
