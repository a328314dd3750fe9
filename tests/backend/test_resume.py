"""Resuming a stream (docs/contracts.md, "Resuming a stream"): real servers, real Redis, real jobs.

Most tests drive the real jobs from this process (``Driver``: the jobs write the session database
and bump its seq counters, then the real broadcaster publishes and keeps the history), so every
``seq`` and every pushed text is known exactly; a uvicorn child process serves real WebSocket
clients. The heal tests run the whole stack instead: ``manage.py run_jobs``, uvicorn, and a private
redis-server for the channel layer that is frozen (SIGSTOP) or restarted under connected clients.

Invariants checked on every stream a client saw (fault injection is off): ``seq`` only goes up,
and a jump is always marked ``"resync": true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.backend.test_heartbeat import _path
from tests.backend.test_hostile_clients import ping_pong
from tests.backend.test_ws_integration import envelope, open_ws, publish_until_seen
from tests.backend.test_ws_integration import run as run_scenario
from tests.backend_fixtures import BACKEND, Server, start_server, stop_process
from tests.conftest import start_redis
from thorcut.compare.health import FRAME_MAX, StreamHealth
from thorcut.dev.stack import EmbeddedRedis, free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys
from thorcut.wire.stream import resume_frame

pytestmark = pytest.mark.usefixtures("demo_users")

Stream = tuple[str, str]
Msg = dict[str, Any]
REPLAY_MAX = 5  # THOR_RESUME_REPLAY_MAX of this module's server
QUEUE = 32  # THOR_WS_QUEUE of this module's server: more than the 21 streams a client may see
ACCOUNT_TYPES = {"account_balance", "positions"}
TYPES = ("account_balance", "positions", "intraday_bar", "vwap", "market_status")


@pytest.fixture(scope="module")
def server(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    extra = {"THOR_RESUME_REPLAY_MAX": str(REPLAY_MAX), "THOR_WS_QUEUE": str(QUEUE), "THOR_LOG_LEVEL": "INFO"}
    srv = start_server(thor_env, tmp_path_factory.mktemp("resume") / "uvicorn.log", extra_env=extra,
                       args=["--ws", "websockets"])  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def roomy_server(
    thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The same server with a send queue that a client starved of CPU cannot overflow: for the tests
    of order, where the driver's burst of pushes races the client's reads in this one process."""
    extra = {"THOR_RESUME_REPLAY_MAX": str(REPLAY_MAX), "THOR_WS_QUEUE": "4096", "THOR_LOG_LEVEL": "INFO"}
    srv = start_server(thor_env, tmp_path_factory.mktemp("resume-roomy") / "uvicorn.log", extra_env=extra,
                       args=["--ws", "websockets"])  # fmt: skip
    yield srv
    srv.stop()


def text(message: Msg) -> str:
    """An envelope's JSON text as the broadcaster pushes it (``groups.event``)."""
    return json.dumps(message, separators=(",", ":"))


_sockets: list[ClientConnection] = []  # every connection a scenario opened: closed when it ends


def run(coro: Awaitable[Any]) -> Any:
    """Run one scenario (``test_ws_integration.run``); whatever it left open is closed, even on a failure."""

    async def scenario() -> Any:
        try:
            return await coro
        finally:
            while _sockets:
                with contextlib.suppress(Exception):
                    await _sockets.pop().close()

    return run_scenario(scenario())


class Driver:
    """The job runner's path, in this process: the real jobs (database, seq counters), then the real
    broadcaster (channel layer and history). ``pushed`` keeps every text it published, per stream."""

    def __init__(self, **broadcaster: Any) -> None:
        from global_markets.services.websocket_broadcast import Broadcaster
        from thor_trading.jobs import build_jobs

        self.jobs = build_jobs(7)
        self.broadcaster = Broadcaster(**broadcaster).start()
        self.tick = 0
        self.pushed: dict[Stream, dict[int, str]] = defaultdict(dict)

    def run(self, ticks: int) -> None:
        """Run ``ticks`` heartbeat ticks of jobs and wait until the broadcaster sent (and kept) them all."""
        from django.db import connections

        try:
            for _ in range(ticks):
                for job in self.jobs:
                    if self.tick % job.every == 0:
                        for message in job.run(self.tick):
                            self.pushed[message["type"], message["key"]][message["seq"]] = text(message)
                            assert self.broadcaster.submit(message)
                self.tick += 1
            assert self.broadcaster.flush(10)
            assert self.broadcaster.stats()["history_failed"] == 0, self.broadcaster.stats()
        finally:
            connections.close_all()  # this runs in a worker thread: leave no connection behind

    def current(self, streams: set[Stream] | None = None) -> dict[Stream, int]:
        """The last seq pushed of each stream (of ``streams``)."""
        return {st: max(seqs) for st, seqs in self.pushed.items() if streams is None or st in streams}

    def stop(self) -> None:
        self.broadcaster.stop()


@pytest.fixture
def driver(thor_env: dict[str, str], demo_users: object) -> Iterator[Driver]:
    d = Driver()
    try:
        yield d
    finally:
        d.stop()


def visible(driver: Driver, account: str, types: set[str] | None = None) -> set[Stream]:
    """The streams a client of ``account`` may see (of ``types``): its own account's, every market-wide one."""
    return {st for st in driver.pushed if (st[0] not in ACCOUNT_TYPES or st[1] == account)
            and (types is None or st[0] in types)}  # fmt: skip


class Client:
    """A real WebSocket client that keeps every frame it read: (arrival time, raw text, parsed)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[tuple[float, str, Msg]] = []

    @classmethod
    async def open(cls, server: Server, token: str, query: str = "", *, synced: bool = True) -> Client:
        """Connect; with ``synced``, also wait until its subscriptions are in force (a heartbeat
        published from here reached it: the consumer joins the heartbeat group last)."""
        ws = await open_ws(server, token, query)
        _sockets.append(ws)
        if synced:
            await publish_until_seen(ws, envelope("heartbeat", "thor", uuid.uuid4().hex))
        return cls(ws)

    async def recv(self, timeout: float = 10) -> Msg:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str)
        msg = json.loads(raw)
        self.frames.append((time.monotonic(), raw, msg))
        return msg

    async def until(self, done: Callable[[Msg], bool], timeout: float = 10) -> Msg:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if done(msg):
                    return msg

    async def caught_up(self, want: dict[Stream, int], timeout: float = 10) -> None:
        """Read until every stream of ``want`` arrived at its seq."""
        async with asyncio.timeout(timeout):
            while not all(self.last().get(st, -1) >= seq for st, seq in want.items()):
                await self.recv(timeout)

    def last(self) -> dict[Stream, int]:
        out: dict[Stream, int] = {}
        for _, _, m in self.frames:
            if m.get("feature"):
                out[m["type"], m["key"]] = max(out.get((m["type"], m["key"]), -1), m["seq"])
        return out

    async def resume(self, since: list[Msg] | dict[Stream, int]) -> tuple[list[tuple[str, Msg]], Msg]:
        """Send a resume; return the frames before its ``resumed`` (raw, parsed) and the ``resumed``."""
        if isinstance(since, dict):
            since = [{"type": t, "key": k, "seq": s} for (t, k), s in since.items()]
        await self.ws.send(json.dumps({"action": "resume", "since": since}))
        start = len(self.frames)
        resumed = await self.until(lambda m: m.get("type") == "resumed" and "healed" not in m)
        # A worker may heal itself meanwhile (its answer ends with a `resumed` marked healed): a
        # resume's answer is one block, so it starts after the last such.
        for i in range(len(self.frames) - 2, start - 1, -1):
            if self.frames[i][2].get("type") == "resumed":
                start = i + 1
                break
        return [(raw, m) for _, raw, m in self.frames[start:-1]], resumed

    async def close(self) -> None:
        await self.ws.close()


def check_order(frames: list[tuple[float, str, Msg]]) -> int:
    """Per stream, ``seq`` only goes up and every jump is marked resync; returns how many resyncs came."""
    last: dict[Stream, int] = {}
    resyncs = 0
    for _, _, m in frames:
        if not m.get("feature"):
            continue
        stream, seq = (m["type"], m["key"]), m["seq"]
        resyncs += m.get("resync") is True
        if stream in last:
            assert seq > last[stream], f"{stream}: seq {seq} after {last[stream]} (sent twice or backwards)"
            assert seq == last[stream] + 1 or m.get("resync") is True, f"{stream}: unmarked jump {last[stream]}->{seq}"
        last[stream] = seq
    return resyncs


def rest(server: Server, token: str, stream: Stream) -> Msg:
    type_, key = stream
    path = {"account_balance": "/api/account/balance?account={}", "positions": "/api/account/positions?account={}",
            "intraday_bar": "/api/intraday/{}/bar", "vwap": "/api/intraday/{}/vwap",
            "market_status": "/api/markets/status?market={}"}[type_].format(key)  # fmt: skip
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def history_client(thor_env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"])  # the channel layer's Redis in thor_env


def history_key(thor_env: dict[str, str], stream: Stream) -> str:
    return f"{thor_env['THORCUT_PREFIX']}.thor:history:{stream[0]}:{stream[1]}"


# -- the history --------------------------------------------------------------------------------


def vwap(seq: int, key: str) -> Msg:
    return {"type": "vwap", "feature": "intraday", "key": key, "seq": seq, "ts": "2026-01-01T00:00:00.000Z",
            "data": {"symbol": key, "vwap": 1.5 + seq, "cum_volume": seq}}  # fmt: skip


def test_history_keeps_each_envelope_as_pushed_trimmed_and_expiring(thor_env: dict[str, str]) -> None:
    from global_markets.services.websocket_broadcast import Broadcaster

    key = f"T{uuid.uuid4().hex[:8]}"
    beat = {"type": "heartbeat", "feature": None, "key": "", "seq": 10**9, "ts": "", "data": {"tick": 1}}
    with Broadcaster(history_size=3, history_ttl=60) as b:
        for seq in range(1, 7):
            assert b.submit(vwap(seq, key))
        assert b.submit(beat)
        assert b.flush()
        stats = b.stats()
    assert (stats["sent"], stats["history_written"], stats["history_failed"]) == (7, 6, 0)
    r = history_client(thor_env)
    try:
        kept = r.zrange(history_key(thor_env, ("vwap", key)), 0, -1, withscores=True)
        assert [(m.decode(), int(s)) for m, s in kept] == [(text(vwap(seq, key)), seq) for seq in (4, 5, 6)]
        assert 0 < r.ttl(history_key(thor_env, ("vwap", key))) <= 60
        assert not r.exists(history_key(thor_env, ("heartbeat", "")))  # the heartbeat has no history
    finally:
        r.delete(history_key(thor_env, ("vwap", key)))
        r.close()


def test_a_failing_history_write_is_counted_and_never_holds_a_push_back(thor_env: dict[str, str]) -> None:
    from global_markets.services.websocket_broadcast import Broadcaster

    key = f"T{uuid.uuid4().hex[:8]}"
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with Broadcaster(history_url=dead, send_timeout=0.2) as b:
        t0 = time.monotonic()
        for seq in range(1, 6):
            assert b.submit(vwap(seq, key))
        assert b.flush(5)
        took = time.monotonic() - t0
        stats = b.stats()
    assert (stats["sent"], stats["failed"], stats["history_written"], stats["history_failed"]) == (5, 0, 0, 5)
    assert took < 2.0, took


# -- resume on a server ---------------------------------------------------------------------------


def test_resume_replays_the_missed_envelopes_in_order_exactly_as_pushed(
    server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        intraday = await Client.open(server, token, "?features=intraday")
        rest_of_it = await Client.open(server, token, "?features=account_balance,positions,global_market")
        await asyncio.to_thread(driver.run, 11)  # ticks 0-10: three market_status pushes each
        for client, types in ((intraday, {"intraday_bar", "vwap"}), (rest_of_it, {*ACCOUNT_TYPES, "market_status"})):
            streams = visible(driver, "DU1234", types)
            current = driver.current(streams)
            await client.caught_up(current)
            # Live, every envelope arrived exactly as pushed.
            for _, raw, m in client.frames:
                if m.get("feature"):
                    assert raw == driver.pushed[m["type"], m["key"]][m["seq"]]
            answer, resumed = await client.resume({st: c - 2 for st, c in current.items()})
            assert resumed == {"type": "resumed", "replayed": 2 * len(streams), "resynced": 0}
            expected = [driver.pushed[s][seq] for s in streams for seq in (current[s] - 1, current[s])]
            assert sorted(raw for raw, _ in answer) == sorted(expected)
            for s in streams:  # in order within each stream
                assert [m["seq"] for _, m in answer if (m["type"], m["key"]) == s] == [current[s] - 1, current[s]]
            assert not any(m.get("resync") for _, m in answer)
            check_order(client.frames[-len(answer) - 1 :])
            await ping_pong(client.ws)
            await client.close()

    run(scenario())


def test_resume_without_history_resyncs_from_the_database(
    server: Server, driver: Driver, thor_env: dict[str, str], demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        client = await Client.open(server, token)
        await asyncio.to_thread(driver.run, 6)
        streams = visible(driver, "DU1234")
        current = driver.current(streams)
        await client.caught_up(current)
        gone, too_far = ("vwap", "ES"), ("intraday_bar", "NQ")
        r = history_client(thor_env)
        try:
            assert r.delete(history_key(thor_env, gone)) == 1  # as after a Redis restart or the expiry
        finally:
            r.close()
        since = {st: c - 1 for st, c in current.items()}
        since[too_far] = current[too_far] - REPLAY_MAX - 1  # more missing than a replay may send
        answer, resumed = await client.resume(since)
        assert resumed == {"type": "resumed", "replayed": len(streams) - 2, "resynced": 2}
        replayed = [raw for raw, m in answer if not m.get("resync")]
        resynced = {(m["type"], m["key"]): m for _, m in answer if m.get("resync")}
        assert set(resynced) == {gone, too_far}
        for stream, m in resynced.items():
            assert m.pop("resync") is True
            assert m == await asyncio.to_thread(rest, server, token, stream)  # the state REST serves now
            assert m["seq"] == current[stream]
        assert sorted(replayed) == sorted(driver.pushed[st][current[st]] for st in streams - {gone, too_far})
        await client.close()

    run(scenario())


def test_resume_since_nothing_gives_the_current_state_of_every_visible_stream(
    server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        await asyncio.to_thread(driver.run, 1)
        client = await Client.open(server, token)  # connected after the pushes: it holds nothing
        answer, resumed = await client.resume([])
        streams = visible(driver, "DU1234")
        assert len(streams) == 2 + 2 * 6 + 7  # its account's two, two per symbol, one per market
        assert resumed == {"type": "resumed", "replayed": 0, "resynced": len(streams)}
        assert {(m["type"], m["key"]) for _, m in answer} == streams
        assert all(m["resync"] is True for _, m in answer)
        assert "DU5678" not in "".join(raw for raw, _ in answer)
        for _, m in answer[:3] + answer[-3:]:
            stream = (m["type"], m["key"])
            assert {k: v for k, v in m.items() if k != "resync"} == await asyncio.to_thread(rest, server, token, stream)
        await client.close()

    run(scenario())


def test_resume_sends_nothing_for_a_stream_the_client_already_holds(
    server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        client = await Client.open(server, token)
        await asyncio.to_thread(driver.run, 1)
        current = driver.current(visible(driver, "DU1234"))
        await client.caught_up(current)
        since = dict(current)
        ahead = sorted(current)[:2]
        since[ahead[0]] += 1000
        since[ahead[1]] = 2**63 - 1
        answer, resumed = await client.resume(since)
        assert (answer, resumed) == ([], {"type": "resumed", "replayed": 0, "resynced": 0})
        await client.close()

    run(scenario())


def test_resume_tells_an_account_nothing_about_another(
    server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    """A stream of another account answers exactly like one that does not exist; so does a feature
    the client did not subscribe to."""
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        client = await Client.open(server, token)
        await asyncio.to_thread(driver.run, 1)
        current = driver.current(visible(driver, "DU1234"))
        assert ("positions", "DU5678") in driver.pushed  # the other account's streams exist
        await client.caught_up(current)
        since = [{"type": t, "key": k, "seq": s} for (t, k), s in current.items()]
        answers = []
        for key in ("DU5678", "DU0000", "DU1234\x00", "ZZZ"):
            strangers = [{"type": t, "key": key, "seq": 0} for t in TYPES]
            answer, resumed = await client.resume(since + strangers)
            answers.append((answer, resumed))
        assert all(a == ([], {"type": "resumed", "replayed": 0, "resynced": 0}) for a in answers), answers
        raws = [raw for _, raw, _ in client.frames]
        assert len(set(raws[-4:])) == 1  # byte for byte the same answer
        assert not any("DU5678" in raw for raw in raws)
        # A feature it did not subscribe to is not answered either, not even for its own account.
        intraday = await Client.open(server, token, "?features=intraday")
        answer, resumed = await intraday.resume([{"type": "positions", "key": "DU1234", "seq": 0}])
        assert resumed == {"type": "resumed", "replayed": 0, "resynced": 12}
        assert {m["type"] for _, m in answer} == {"intraday_bar", "vwap"}
        await intraday.close()
        await client.close()

    run(scenario())


def test_pushes_during_a_resume_come_after_it_and_never_twice(
    roomy_server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        await asyncio.to_thread(driver.run, 1)  # every stream has a state, whichever test ran before
        client = await Client.open(roomy_server, token)
        jobs = asyncio.create_task(asyncio.to_thread(driver.run, 40))  # pushes all along
        resumes = 0
        while not jobs.done():
            answer, resumed = await client.resume([])  # the current state of everything, each time
            resumes += 1
            marked = [i for i, (_, m) in enumerate(answer) if m.get("resync")]
            if marked:  # from its first resync to `resumed` nothing else: pushes wait
                assert all(m.get("resync") for _, m in answer[marked[0] :]), answer
            assert resumed["resynced"] == len(marked) == 21
        await jobs
        await client.caught_up(driver.current(visible(driver, "DU1234")))
        # Per stream: after each resync, the pushes go on from the seq it sent, none sent twice.
        after_resync: dict[Stream, int] = {}
        for _, _, m in client.frames:
            if not m.get("feature"):
                continue
            stream = (m["type"], m["key"])
            if m.get("resync"):
                after_resync[stream] = m["seq"]
            elif stream in after_resync:
                assert m["seq"] == after_resync[stream] + 1, (stream, m["seq"], after_resync[stream])
                after_resync[stream] = m["seq"]
        assert resumes >= 2
        await client.close()

    run(scenario())


def test_a_resume_that_would_not_fit_the_send_queue_becomes_resyncs(
    server: Server, driver: Driver, demo_users: dict[str, dict[str, str]]
) -> None:
    token = demo_users["demo"]["token"]

    async def scenario() -> None:
        client = await Client.open(server, token)
        await asyncio.to_thread(driver.run, 11)
        current = driver.current(visible(driver, "DU1234"))
        await client.caught_up(current)
        # 21 streams x 3 missed = 63 replays: more than the 32 places of the queue.
        since = {st: c - (3 if st[0] != "market_status" else 2) for st, c in current.items()}
        answer, resumed = await client.resume(since)
        assert len(answer) + 1 <= QUEUE
        assert resumed["replayed"] > 0, resumed
        assert resumed["resynced"] > 0, resumed
        assert resumed["replayed"] + resumed["resynced"] == len(answer)
        check_order(client.frames[-len(answer) - 1 :])  # within the answer: in order, jumps marked
        await ping_pong(client.ws)  # not dropped as too slow
        await client.close()

    run(scenario())


# -- malformed and hostile `since` -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
good_entries = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES), "key": st.text(min_size=1, max_size=64), "seq": st.integers(0, 2**63 - 1)}
)
bad_types = st.one_of(st.sampled_from(["heartbeat", "", "flags", "Positions", "positions "]),
                      json_values.filter(lambda v: v not in TYPES))  # fmt: skip
bad_keys = st.one_of(st.just(""), st.text(min_size=65, max_size=80), json_values.filter(lambda v: type(v) is not str))
bad_seqs = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.booleans(), st.floats(),
                     st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2))  # fmt: skip


@st.composite
def bad_entry(draw: st.DrawFn) -> Any:
    entry = dict(draw(good_entries))
    which = draw(st.sampled_from(["type", "key", "seq", "missing", "not-object"]))
    if which == "not-object":
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    if which == "missing":
        del entry[draw(st.sampled_from(["type", "key", "seq"]))]
    else:
        entry[which] = draw({"type": bad_types, "key": bad_keys, "seq": bad_seqs}[which])
    return entry


@st.composite
def bad_since(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["not-a-list", "too-long", "one-bad-entry"]))
    if kind == "not-a-list":
        return draw(json_values.filter(lambda v: not isinstance(v, list)))
    if kind == "too-long":
        return [{"type": "vwap", "key": "ES", "seq": 1}] * 1001
    good = draw(st.lists(good_entries, max_size=4))
    return [*good[: len(good) // 2], draw(bad_entry()), *good[len(good) // 2 :]]


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(good_entries, max_size=8))
def test_a_valid_since_reads_as_the_highest_seq_per_stream(since: list[Msg]) -> None:
    from global_markets.protocol import read_since

    want: dict[Stream, int] = {}
    for e in since:
        want[e["type"], e["key"]] = max(want.get((e["type"], e["key"]), -1), e["seq"])
    assert read_since(since) == want


@settings(max_examples=50, deadline=None, database=None)
@given(bad_since())
def test_a_malformed_since_is_refused_whole(since: Any) -> None:
    from global_markets.protocol import BadFrame, read_since

    refused = read_since(since)
    assert isinstance(refused, BadFrame)
    assert refused.reason == "bad_since"


class Loop:
    """One event loop for all examples, so that one connection lives across them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def close(self) -> None:
        from channels.layers import get_channel_layer

        self.loop.run_until_complete(get_channel_layer().flush())
        self.loop.close()


def test_malformed_and_hostile_since_get_an_error_and_the_connection_stays(
    server: Server, demo_users: dict[str, dict[str, str]]
) -> None:
    """Every malformed ``since`` gets one error and nothing else; a valid but hostile one (any key of
    1-64 characters: NUL, lone surrogates, another account's; the largest seq) a plain answer."""
    token = demo_users["demo"]["token"]
    loop = Loop()
    client: Client = loop.run(Client.open(server, token, "?features=", synced=False))  # nothing to resync

    async def exchange(command: Msg | str) -> list[Msg]:
        """Send ``command`` (or a frame's text) then a ping; return what came before the pong."""
        await client.ws.send(command if isinstance(command, str) else json.dumps(command))
        await client.ws.send(json.dumps({"action": "ping"}))
        got = []
        while (msg := await client.recv()).get("type") != "pong":
            got.append(msg)
        return got

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(bad_since())
    def malformed(since: Any) -> None:
        got = loop.run(exchange({"action": "resume", "since": since}))
        assert [m["type"] for m in got] == ["error"], (since, got)
        assert got[0]["error"]

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.lists(good_entries, max_size=6))
    def hostile(since: list[Msg]) -> None:
        got = loop.run(exchange({"action": "resume", "since": since}))
        assert got == [{"type": "resumed", "replayed": 0, "resynced": 0}], (since, got)

    try:
        malformed()
        hostile()
        for frame in ({"action": "resume"}, {"action": "resume", "since": None}):
            assert [m["type"] for m in loop.run(exchange(frame))] == ["error"]
        lone = [
            {"type": "vwap", "key": "\ud800", "seq": 0},
            {"type": "positions", "key": "DU1234\x00", "seq": 2**63 - 1},
        ]
        assert loop.run(exchange({"action": "resume", "since": lone})) == [
            {"type": "resumed", "replayed": 0, "resynced": 0}
        ]
        # The largest resume thorcut sends (1,000 streams of 64-character non-ASCII keys: it names
        # those that fit one frame) is read whole, not closed with 1009.
        health = StreamHealth()
        for i in range(1000):
            health.observe("positions", f"{i:03d}" + "é" * 61, 2**62 + i)
        frame = resume_frame(health.since())
        assert FRAME_MAX - 500 < len(frame) <= FRAME_MAX == django_settings.THOR_WS_MAX_MESSAGE
        assert loop.run(exchange(frame)) == [{"type": "resumed", "replayed": 0, "resynced": 0}]
        loop.run(ping_pong(client.ws))
    finally:
        loop.run(client.close())
        loop.close()


# -- a worker restart ---------------------------------------------------------------------------


def test_a_restarted_worker_resumes_a_reconnecting_client_from_history(
    thor_env: dict[str, str], driver: Driver, demo_users: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """The history is in Redis, not in the worker: a new process answers from it."""
    token = demo_users["demo"]["token"]
    port = free_port()
    web = start_server(thor_env, tmp_path / "first.log", port=port)
    try:

        async def before() -> dict[Stream, int]:
            client = await Client.open(web, token)
            await asyncio.to_thread(driver.run, 3)
            current = driver.current(visible(driver, "DU1234"))
            await client.caught_up(current)
            await client.close()
            return client.last()

        held = run(before())
        web.stop()
        run(asyncio.to_thread(driver.run, 3))  # missed while the worker is away
        web = start_server(thor_env, tmp_path / "second.log", port=port)

        async def after() -> None:
            client = await Client.open(web, token)  # reconnects to the same address
            answer, resumed = await client.resume(held)
            streams = visible(driver, "DU1234")
            missed = {st: [seq for seq in driver.pushed[st] if seq > held[st]] for st in streams}
            assert resumed == {"type": "resumed", "replayed": sum(map(len, missed.values())), "resynced": 0}
            assert sorted(raw for raw, _ in answer) == sorted(driver.pushed[st][seq] for st in streams
                                                              for seq in missed[st])  # fmt: skip
            await client.close()

        run(after())
    finally:
        web.stop()


# -- the hub heals -------------------------------------------------------------------------------


class Member:
    """A hub member that logs what reaches it, in order: ("deliver", seq) and ("heal", None)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def deliver(self, event: Msg) -> None:
        self.log.append(("deliver", event["message"]["seq"]))

    def heal(self) -> None:
        self.log.append(("heal", None))

    def heals(self) -> int:
        return sum(1 for kind, _ in self.log if kind == "heal")


class Lossy:
    """The real channel layer, but probes for which ``lose(n)`` says so never leave this process."""

    def __init__(self, layer: Any, lose: Callable[[int], bool]) -> None:
        self.layer, self.lose = layer, lose

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)

    async def send(self, channel: str, message: Msg) -> None:
        from global_markets import groups

        if message.get("type") == groups.PROBE and self.lose(message["n"]):
            return
        await self.layer.send(channel, message)


async def until_true(cond: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def test_the_hub_heals_its_members_on_a_lost_probe_and_on_the_runners_heal_event(thor_env: dict[str, str]) -> None:
    from channels.layers import get_channel_layer
    from django.test import override_settings

    from global_markets import groups
    from global_markets.hub import LoopHub

    async def scenario() -> None:
        layer = get_channel_layer()
        hub = LoopHub(Lossy(layer, lambda n: n == 4))
        a, b = Member(), Member()
        await hub.join(groups.HEARTBEAT, a)
        await hub.join(groups.HEARTBEAT, b)
        await hub.join(groups.type_group("vwap"), a)
        try:
            await until_true(lambda: a.heals() == 1 and b.heals() == 1)  # probe 4 overtaken by 5
            await asyncio.sleep(0.3)
            assert a.heals() == b.heals() == 1  # once
            await layer.group_send(groups.HEARTBEAT, {"type": groups.HEAL})
            await until_true(lambda: a.heals() == 2 and b.heals() == 2)
            assert all(kind == "heal" for kind, _ in a.log + b.log)  # probes and heal events are not pushes
        finally:
            for group, member in ((groups.HEARTBEAT, a), (groups.HEARTBEAT, b), (groups.type_group("vwap"), a)):
                await hub.leave(group, member)

    with override_settings(THOR_LAYER_PROBE=0.05, THOR_LAYER_PROBE_TIMEOUT=0.3):
        run(scenario())


def test_a_broken_path_holds_pushes_until_the_heal(thor_env: dict[str, str]) -> None:
    from channels.layers import get_channel_layer
    from django.test import override_settings

    from global_markets import groups
    from global_markets.hub import LoopHub

    cut = False

    async def scenario() -> None:
        nonlocal cut
        layer = get_channel_layer()
        hub = LoopHub(Lossy(layer, lambda n: cut))
        member = Member()
        group = groups.type_group("vwap")
        await hub.join(group, member)
        try:
            key = f"T{uuid.uuid4().hex[:8]}"
            await layer.group_send(group, groups.event(vwap(1, key)))
            await until_true(lambda: ("deliver", 1) in member.log)
            cut = True  # no probe comes back: after THOR_LAYER_PROBE_TIMEOUT the path is broken
            await until_true(lambda: hub.broken, timeout=3)
            await layer.group_send(group, groups.event(vwap(2, key)))
            await asyncio.sleep(0.2)
            assert member.log == [("deliver", 1)]  # held
            cut = False
            await until_true(lambda: ("deliver", 2) in member.log)
            assert member.log == [("deliver", 1), ("heal", None), ("deliver", 2)]  # healed first, then handed on
            assert not hub.broken
        finally:
            await hub.leave(group, member)

    with override_settings(THOR_LAYER_PROBE=0.05, THOR_LAYER_PROBE_TIMEOUT=0.3):
        run(scenario())


def test_the_broadcaster_sends_a_heal_event_before_anything_after_failed_sends(
    thor_env: dict[str, str], tmp_path: Path
) -> None:
    from global_markets import groups
    from global_markets.services.websocket_broadcast import Broadcaster, layer_from_config

    server = start_redis(tmp_path)
    assert server.process is not None
    pid = server.process.pid
    config = {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
              "CONFIG": {"hosts": [server.url], "prefix": "heal"}}  # fmt: skip
    b = Broadcaster(lambda: layer_from_config(config, socket_timeout=0.3), send_timeout=0.2, history=False)
    key = f"T{uuid.uuid4().hex[:8]}"
    frozen = False

    async def scenario() -> None:
        nonlocal frozen
        layer = layer_from_config(config)
        channel = await layer.new_channel()
        await layer.group_add(groups.type_group("vwap"), channel)
        await layer.group_add(groups.HEARTBEAT, channel)
        got: list[Msg] = []
        receiver = asyncio.create_task(_receive_into(layer, channel, got))
        try:
            seq = 0
            while not got:  # the subscription is in force
                seq += 1
                b.submit(vwap(seq, key))
                await asyncio.sleep(0.05)
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            for _ in range(10):
                seq += 1
                b.submit(vwap(seq, key))
                await asyncio.sleep(0.05)
            await asyncio.to_thread(b.flush, 5)
            assert b.stats()["failed"] > 0
            os.kill(pid, signal.SIGCONT)
            frozen = False
            after = seq + 1
            async with asyncio.timeout(10):
                while not any(m.get("seq", 0) >= after for m in got):
                    seq += 1
                    b.submit(vwap(seq, key))
                    await asyncio.sleep(0.05)
            types = [m["type"] for m in got]
            assert groups.HEAL in types, types  # (one tried while frozen may be delivered at the thaw too)
            first_after = next(i for i, m in enumerate(got) if m.get("seq", 0) >= after)
            assert types.index(groups.HEAL) < first_after
            assert b.stats()["heals"] == 1
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            await layer.flush()

    b.start()
    try:
        asyncio.run(scenario())
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        b.stop(timeout=0.5)
        server.stop()


async def _receive_into(layer: Any, channel: str, into: list[Msg]) -> None:
    while True:
        event = await layer.receive(channel)
        into.append(event.get("message") or event)


# -- the whole stack heals its clients ---------------------------------------------------------------

TICK = 0.1


@dataclass
class Stack:
    redis: EmbeddedRedis
    server: Server
    runner: subprocess.Popen[bytes]
    runner_log: Path


@pytest.fixture(scope="module")
def stack(thor_env: dict[str, str], demo_users: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``run_jobs`` and uvicorn with the channel layer on a private redis-server; flags (every feature
    in shadow, so the jobs broadcast) and the leader lock on the session's Redis, under a fresh prefix."""
    folder = tmp_path_factory.mktemp("stack")
    layer_redis = start_redis(folder / "redis")
    prefix = f"rsm{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names, operator="t")
    for feature in DEFAULT_MANIFEST.names:
        for step in _path(store.read(feature).stage, Stage.SHADOW):
            store.change(feature, step, reason="test", percent=None)
    client.close()
    env = {**thor_env, "THORCUT_PREFIX": prefix, "THOR_CHANNEL_REDIS_URL": layer_redis.url, "THOR_TICK": str(TICK),
           "THOR_LOG_LEVEL": "INFO"}  # fmt: skip
    runner_log = folder / "runner.log"
    with runner_log.open("wb") as out:
        runner = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND, stdout=out,
                                  stderr=subprocess.STDOUT, env={**os.environ, **env})  # fmt: skip
    try:
        server = start_server(env, folder / "uvicorn.log", extra_env=env)
        try:
            yield Stack(layer_redis, server, runner, runner_log)
        finally:
            server.stop()
    finally:
        stop_process(runner)
        layer_redis.stop()


def db_seqs() -> dict[Stream, int]:
    from django.db import connections

    from thor_trading.models import SeqCounter

    try:
        return {(c.type, c.key): c.seq for c in SeqCounter.objects.exclude(type="heartbeat")}
    finally:
        connections.close_all()


async def collect(ws: ClientConnection, into: list[tuple[float, str, Msg]]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            assert isinstance(raw, str)
            into.append((time.monotonic(), raw, json.loads(raw)))
    into.append((time.monotonic(), "", {"type": "closed"}))


async def healed(stack: Stack, tokens: list[str], break_and_mend: Callable[[], Awaitable[None]]) -> list[float]:
    """Clients of ``tokens`` follow every stream; ``break_and_mend()`` breaks the layer and mends it.
    Returns, per client, how long after the mend it had the current seq (as of the mend) of every
    stream it had followed before, and checks that nothing jumped unmarked and nobody reconnected."""
    sockets = [await open_ws(stack.server, token) for token in tokens]
    _sockets.extend(sockets)
    frames: list[list[tuple[float, str, Msg]]] = [[] for _ in sockets]
    readers = [asyncio.create_task(collect(ws, f)) for ws, f in zip(sockets, frames, strict=True)]
    try:
        followed: list[set[Stream]] = []
        for f in frames:  # every stream of the client has flowed (market status: every 5 ticks)
            await until_true(lambda f=f: len({(m["type"], m["key"]) for _, _, m in f if m.get("feature")}) >= 21, 15)
            followed.append({(m["type"], m["key"]) for _, _, m in f if m.get("feature")})
        await break_and_mend()
        mended = time.monotonic()
        target = await asyncio.to_thread(db_seqs)
        delays = []
        for f, streams in zip(frames, followed, strict=True):

            def reached(f: list[tuple[float, str, Msg]] = f, streams: set[Stream] = streams) -> bool:
                last: dict[Stream, int] = {}
                for _, _, m in f:
                    if m.get("feature"):
                        last[m["type"], m["key"]] = m["seq"]
                return all(last.get(st, -1) >= target[st] for st in streams)

            await until_true(reached, 10)
            at = {}
            for t, _, m in f:
                if m.get("feature") and (m["type"], m["key"]) in streams and m["seq"] >= target[m["type"], m["key"]]:
                    at.setdefault((m["type"], m["key"]), t)
            delays.append(max(at.values()) - mended)
        await asyncio.sleep(0.5)
        for f in frames:
            assert not any(m.get("type") == "closed" for _, _, m in f)  # never reconnected
            heals = [m for t, _, m in f if m.get("type") == "resumed" and t >= mended - 3]
            assert heals, "no heal"
            assert all(m["healed"] is True for m in heals), heals
            assert sum(m["resynced"] for m in heals) > 0  # versions were skipped: marked, not gaps
            check_order(f)
        return delays
    finally:
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()


def test_every_client_is_healed_within_a_second_of_a_redis_thaw(
    stack: Stack, demo_users: dict[str, dict[str, str]]
) -> None:
    assert stack.redis.process is not None
    pid = stack.redis.process.pid

    async def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(2.0)
        finally:
            os.kill(pid, signal.SIGCONT)

    delays = run(healed(stack, [demo_users["demo"]["token"], demo_users["other"]["token"]], freeze))
    print(f"\ncurrent again {', '.join(f'{d * 1000:.0f} ms' for d in delays)} after SIGCONT")
    assert max(delays) < 1.0, delays
    assert stack.runner.poll() is None


def test_every_client_is_healed_after_a_redis_restart(stack: Stack, demo_users: dict[str, dict[str, str]]) -> None:
    async def restart() -> None:
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.redis.start)

    delays = run(healed(stack, [demo_users["demo"]["token"], demo_users["other"]["token"]], restart))
    print(f"\ncurrent again {', '.join(f'{d * 1000:.0f} ms' for d in delays)} after the restart")
    assert max(delays) < 3.0, delays
    assert stack.runner.poll() is None
