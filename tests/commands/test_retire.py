"""``thorcut retire`` and the warning of ``thorcut complete`` over the real Redis of the test, the
REST read keys written with redis-py as any backend following docs/contracts.md ("Retiring REST")
would; and end to end with the real Thor backend counting a poller's reads."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.backend_fixtures import Server, start_server
from tests.conftest import set_flag
from tests.flags.test_restreads import count_reads
from tests.runner import Run
from thorcut.dev.stack import free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys


@pytest.fixture
def complete(client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "complete", 4, 100)


# -- exit 0 and 3 ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("complete")
def test_a_complete_feature_nobody_reads_exits_0(run: Run) -> None:
    result = run("retire", "positions")
    assert result.exit_code == 0, result.stderr
    assert "nobody read positions's REST endpoints in the last 15 min" in result.stdout
    assert (
        "OK: positions is complete and nobody read its REST endpoints in the last 15 min — its REST endpoints can "
        "be deleted." in result.stdout
    )


@pytest.mark.usefixtures("complete")
def test_readers_keep_a_complete_feature_at_exit_3_naming_them(run: Run, client: redis.Redis, keys: Keys) -> None:
    client.set(keys.page_build, "cur456")
    count_reads(client, keys, "positions", "page/old123", 42, at=time.time() - 12)
    count_reads(client, keys, "positions", "page/cur456", 2)
    count_reads(client, keys, "positions", "token/ci", 3, at=time.time() - 5)
    result = run("retire", "positions")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "positions · complete · REST reads in the last 15 min (to the second)"
    old = next(x for x in lines if "page/old123" in x)
    assert re.fullmatch(r"  page/old123  42 reads · last read 1[23] s ago \(20\S+Z\) · old page build", old), old
    assert next(x for x in lines if "page/cur456" in x).endswith(" · current page build")
    assert "current page build: cur456" in lines
    assert result.stderr.replace("\n", " ").strip() == (
        "Error: 3 clients read positions's REST endpoints in the last 15 min: page/cur456, token/ci, "
        "page/old123 (old page build)"
    )


def test_a_feature_not_complete_exits_3_with_its_stage(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    result = run("retire", "positions")
    assert result.exit_code == 3
    assert "Error: positions is live, not complete: clients still poll its REST endpoints" in result.stderr
    count_reads(client, keys, "positions", "anonymous")
    both = run("retire", "positions").stderr.replace("\n", " ")
    assert "positions is live, not complete: clients still poll its REST endpoints; 1 client read positions's " in both
    assert both.strip().endswith("in the last 15 min: anonymous")


def test_retire_json_has_the_documented_fields(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "complete", 4, 100)
    client.set(keys.page_build, "cur456")
    count_reads(client, keys, "positions", "page/old123", 7, at=time.time() - 3)
    result = run("retire", "positions", "--window", "1h", "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert set(doc) == {"feature", "stage", "window_s", "readers", "current_page_build", "resolution", "ok", "reason"}
    assert (doc["feature"], doc["stage"], doc["window_s"], doc["current_page_build"], doc["resolution"], doc["ok"]) == (
        "positions", "complete", 3600.0, "cur456", "second", False,
    )  # fmt: skip
    (reader,) = doc["readers"]
    assert {k: reader[k] for k in ("label", "count", "kind", "old_page_build", "last_seen_approximate")} == {
        "label": "page/old123", "count": 7, "kind": "page", "old_page_build": True, "last_seen_approximate": False,
    }  # fmt: skip
    assert 2 <= reader["last_seen_age_s"] < 10
    assert reader["last_seen"].endswith("Z")
    assert doc["reason"] == "1 client read positions's REST endpoints in the last 1 h: page/old123 (old page build)"
    assert "Error: 1 client read" in result.stderr
    client.delete(*client.keys(f"{keys.base}:rest:*"))
    ok = run("retire", "positions", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["ok"] is True
    assert ok.stderr.startswith("Note: no {")  # minute resolution (no `:last` any more)


# -- windows ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("complete")
def test_a_reader_last_seen_10s_ago_is_outside_5s_and_inside_15s(run: Run, client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "page/old123", at=time.time() - 10)
    assert run("retire", "positions", "--window", "5s").exit_code == 0
    inside = run("retire", "positions", "--window", "15s")
    assert inside.exit_code == 3
    assert "page/old123" in inside.stderr


@pytest.mark.usefixtures("complete")
def test_without_last_readers_are_known_to_the_minute_and_it_says_so(run: Run, client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "svc-report", 2, last=False)
    result = run("retire", "positions", "--window", "5s", "--json")
    assert result.exit_code == 3  # read in this minute, which overlaps any window
    doc = json.loads(result.stdout)
    assert doc["resolution"] == "minute"
    assert doc["readers"][0]["last_seen_approximate"] is True
    note = result.stderr.replace("\n", " ")
    assert f"Note: no {keys.rest_last('positions')} hash" in note
    assert "readers are known to the minute" in note
    shown = run("retire", "positions").stdout
    assert "positions · complete · REST reads in the last 15 min (to the minute)" in shown
    assert "svc-report  2 reads · last read in the minute from " in shown


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("0.5s", "must be from 1s to 1d"),
        ("2d", "must be from 1s to 1d"),
        ("86401", "must be from 1s to 1d"),
        ("0", "must be positive"),
        ("abc", "must be a duration such as 2, 2s, 500ms or 24h, not 'abc'"),
        ("1e309", "must be a duration such as"),
        ("nan", "must be a duration such as"),
        ("-5s", "must be a duration such as"),
    ],
)
def test_a_bad_window_exits_2_saying_why(run: Run, window: str, message: str) -> None:
    result = run("retire", "positions", "--window", window)
    assert result.exit_code == 2
    assert "Invalid value for '--window'" in result.stderr
    assert message in result.stderr.replace("\n", " ")


@pytest.mark.usefixtures("complete")
@pytest.mark.parametrize("window", ["1s", "1d", "24h", "86400", "90"])
def test_windows_from_1s_to_1d_are_accepted(run: Run, window: str) -> None:
    assert run("retire", "positions", "--window", window).exit_code == 0


def test_an_unknown_feature_exits_2(run: Run) -> None:
    result = run("retire", "balances")
    assert result.exit_code == 2
    assert "unknown feature 'balances'; valid features: account_balance, positions, intraday, global_market" in (
        result.stderr
    )


def test_redis_unreachable_exits_4(run: Run) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run("retire", "positions", "--redis-url", url, "--timeout", "0.5")
    assert result.exit_code == 4
    assert f"Redis at {url} is unreachable" in result.stderr


# -- what readers can be ----------------------------------------------------------------------------


@pytest.mark.usefixtures("complete")
def test_the_other_label_of_a_full_minute_is_shown(run: Run, client: redis.Redis, keys: Keys) -> None:
    for i in range(100):
        count_reads(client, keys, "positions", f"script-{i:03d}", at=time.time() - 20)
    count_reads(client, keys, "positions", "other", 250)
    result = run("retire", "positions")
    assert result.exit_code == 3
    line = next(x for x in result.stdout.splitlines() if x.startswith("  other "))
    assert "250 reads" in line
    assert line.endswith("reads past the backend's 100 labels in a minute, counted together")
    assert "101 clients read" in result.stderr
    assert result.stderr.replace("\n", " ").strip().endswith(" and 91 more")
    doc = json.loads(run("retire", "positions", "--json").stdout)
    assert len(doc["readers"]) == 101
    assert doc["readers"][0]["label"] == "other"


@pytest.mark.usefixtures("complete")
def test_hostile_labels_are_shown_inert(run: Run, client: redis.Redis, keys: Keys) -> None:
    for label in (b"\x1b[2J\x07[bold]evil[/]", b"\xff\xfenot-utf8", b"L" * 5000):
        count_reads(client, keys, "positions", label)
    result = run("retire", "positions")
    assert result.exit_code == 3
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream
        assert "\x07" not in stream
        assert "\\x1b[2J\\x07[bold]evil[/]" in stream  # escaped, markup shown as text
        assert "\\xff\\xfenot-utf8" in stream
        assert "L" * 79 + "… (5000 characters)" in stream.replace("\n", "")
        assert "L" * 81 not in stream
    doc = json.loads(run("retire", "positions", "--json").stdout)
    assert {r["label"] for r in doc["readers"]} == {"\x1b[2J\x07[bold]evil[/]", "\\xff\\xfenot-utf8", "L" * 5000}


# -- complete warns ----------------------------------------------------------------------------------


def test_complete_warns_of_an_old_build_and_a_token_reader_not_the_current_build(
    run: Run, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    client.set(keys.page_build, "cur456")
    count_reads(client, keys, "positions", "page/old123", 42, at=time.time() - 12)
    count_reads(client, keys, "positions", "page/cur456", 9)
    count_reads(client, keys, "positions", "token/nightly-report", 3, at=time.time() - 30)
    result = run("complete", "positions")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "positions: moved live → complete, version 3 → 4"
    warning = result.stderr.splitlines()
    assert warning[0] == (
        "Warning: positions's REST endpoints were read in the last 5 min by clients that complete does not switch "
        "to WebSocket:"
    )
    assert re.fullmatch(
        r"  old page builds still open: page/old123 \(42 reads, last 1[23] s ago \(20\S+Z\)\)", warning[1]
    )
    assert re.fullmatch(
        r"  scripts or services that poll REST: token/nightly-report \(3 reads, last 3[01] s ago \(20\S+Z\)\)",
        warning[2],
    )
    assert warning[3] == "Run `thorcut retire positions` before deleting the endpoint: it exits 0 once nobody reads it."
    assert len(warning) == 4
    assert "cur456" not in result.stderr


def test_complete_json_stays_json_on_stdout_with_the_warning_on_stderr(
    run: Run, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    count_reads(client, keys, "positions", "anonymous")
    result = run("complete", "positions", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["changes"][0]["to"] == "complete"
    assert "scripts or services that poll REST: anonymous (1 read, last " in result.stderr


def test_complete_with_an_unknown_current_build_lists_every_page_build(
    run: Run, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    count_reads(client, keys, "positions", "page/cur456")
    result = run("complete", "positions")
    assert result.exit_code == 0
    text = result.stderr.replace("\n", " ")
    assert f"page builds (the current build is unknown: {keys.page_build} is not set): page/cur456 (1 read" in text
    assert "old page builds" not in text


def test_complete_says_nothing_when_only_the_current_build_reads(run: Run, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    client.set(keys.page_build, "cur456")
    count_reads(client, keys, "positions", "page/cur456", 9)
    count_reads(client, keys, "positions", "token/ci", at=time.time() - 301)  # before the last 5 minutes
    result = run("complete", "positions")
    assert result.exit_code == 0
    assert result.stderr == ""


def test_complete_refused_warns_of_nothing(run: Run, client: redis.Redis, keys: Keys) -> None:
    count_reads(client, keys, "positions", "token/ci")
    result = run("complete", "positions")
    assert result.exit_code == 3
    assert "Warning" not in result.stderr


def test_complete_keeps_exit_0_when_the_counts_cannot_be_read(
    run: Run, client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)

    def redis_gone(*args: object, **kwargs: object) -> None:  # Redis lost between the change and the read
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr("thorcut.flags.restreads.read_retirement", redis_gone)
    result = run("complete", "positions")
    assert result.exit_code == 0
    assert "moved live → complete" in result.stdout
    assert result.stderr.replace("\n", " ").strip() == (
        "Note: could not read who still reads positions's REST endpoints (Connection reset by peer)."
    )


# -- the real Thor backend ----------------------------------------------------------------------------


class Poller:
    """A client of the Thor backend reading positions over REST as an old page build, in a thread."""

    def __init__(self, server: Server, token: str, label: str) -> None:
        self.url = f"{server.url}/api/account/positions"
        self.headers = {"Authorization": f"Bearer {token}", "X-Thor-Client": label}
        self.stop = threading.Event()
        self.reads = 0
        self.last_started = 0.0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                self.last_started = time.time()
                try:
                    response = http.get(self.url, headers=self.headers)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                else:
                    # 404 until the job runner (not started here) has made positions: counted all the same
                    if response.status_code not in (200, 404):
                        self.errors.append(f"{response.status_code} {response.text[:200]}")
                    self.reads += 1
                self.stop.wait(0.05)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


FLUSH_S = 0.2


@pytest.fixture
def counting_backend(
    thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], tmp_path: Path
) -> Iterator[tuple[Server, str, str, FlagStore]]:
    """The Thor backend counting REST reads (flushed every 0.2 s) under a prefix of its own, serving
    a page build ``cur999``; returns it, a token, the prefix and its flag store."""
    prefix = f"retire{uuid.uuid4().hex[:8]}"
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "build.json").write_text('{"build": "cur999"}')
    extra = {"THORCUT_PREFIX": prefix, "THOR_REST_COUNT_FLUSH": str(FLUSH_S), "THOR_FRONTEND_DIST": str(dist)}
    server = start_server(thor_env, tmp_path / "uvicorn.log", extra_env=extra)
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    try:
        yield (
            server,
            demo_users["demo"]["token"],
            prefix,
            FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names, operator="tests"),
        )
    finally:
        server.stop()
        left = client.keys(f"{{{prefix}}}:*")
        if left:
            client.delete(*left)
        client.close()


def _until_exit(run: Run, prefix: str, code: int, *args: str, within: float) -> tuple[float, str]:
    """Run ``retire`` until it exits ``code``; return when (Unix time) and its stderr. Fails after ``within``."""
    deadline = time.monotonic() + within
    while True:
        result = run("retire", *args, env={"THORCUT_PREFIX": prefix})
        if result.exit_code == code:
            return time.time(), result.stderr
        assert result.exit_code in (0, 3), result.stderr
        assert time.monotonic() < deadline, f"retire {args} did not exit {code} within {within} s: {result.stderr}"
        time.sleep(0.1)


@pytest.mark.slow
def test_an_old_page_build_polling_the_real_backend_keeps_retire_at_3_until_it_stops(
    run: Run, counting_backend: tuple[Server, str, str, FlagStore]
) -> None:
    server, token, prefix, store = counting_backend
    store.change("positions", Stage.SHADOW, reason="retire test")
    store.change("positions", Stage.LIVE, percent=100, force=True, reason="retire test")
    store.change("positions", Stage.COMPLETE, reason="retire test")
    with Poller(server, token, "page/old123") as poller:
        _, named = _until_exit(run, prefix, 3, "positions", within=10)  # 0 until the first counts land
        assert "1 client read positions's REST endpoints in the last 15 min: page/old123 (old page build)" in named
        doc = json.loads(run("retire", "positions", "--json", env={"THORCUT_PREFIX": prefix}).stdout)
        assert (doc["resolution"], doc["current_page_build"]) == ("second", "cur999")
        assert any(r["label"] == "page/old123" and r["old_page_build"] for r in doc["readers"])
        assert run("retire", "positions", "--window", "5s", env={"THORCUT_PREFIX": prefix}).exit_code == 3
    assert not poller.errors, poller.errors[:3]
    assert poller.reads > 0
    stopped, last_started = time.time(), poller.last_started
    at, _ = _until_exit(run, prefix, 0, "positions", "--window", "5s", within=5 + FLUSH_S + 10)
    # exit 0 only once 5 s passed since its last read: it began at `last_started` at the earliest
    assert at >= last_started + 5, (at - last_started, at - stopped)
    assert run("retire", "positions", env={"THORCUT_PREFIX": prefix}).exit_code == 3  # still in the last 15 min
    not_complete = run("retire", "global_market", env={"THORCUT_PREFIX": prefix})
    assert not_complete.exit_code == 3
    assert "global_market is off, not complete: clients still poll its REST endpoints" in not_complete.stderr
