"""The job runner's leader lock, with real ``manage.py run_jobs`` processes, Redis and database.

Two runners: only one runs the jobs; kill -9 it and the other takes over within the TTL, every
(type, key) seq continuing upwards with no repeat; a runner whose lock is taken from it stops
producing at once; SIGTERM releases the lock so a standby need not wait for the TTL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.backend.conftest import BACKEND
from tests.backend.test_heartbeat import flags  # noqa: F401  (fixture)
from thorcut.features import DEFAULT_FEATURES, Stage

TTL = 2.0

pytestmark = pytest.mark.slow


@dataclass
class Runner:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_runner(env: dict[str, str], log: Path, ttl: float = TTL) -> Runner:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_jobs", "--ttl", str(ttl)],
            cwd=BACKEND,
            env={**os.environ, **env, "THOR_TICK": "0.05", "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Runner(proc, log)


class Receiver(threading.Thread):
    """Collects every message of every group (all types, both demo accounts) in arrival order."""

    def __init__(self, accounts: list[str]) -> None:
        super().__init__(daemon=True, name="test-receiver")
        from global_markets import groups

        types = ["intraday_bar", "vwap", "market_status"]
        self.groups = [groups.HEARTBEAT, *map(groups.type_group, types), *map(groups.account_group, accounts)]
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = await layer.new_channel()
        for group in self.groups:
            await layer.group_add(group, channel)
        await asyncio.sleep(0.2)  # subscriptions confirmed long before a runner has started
        self.ready.set()
        task: asyncio.Task[Any] | None = None
        while not self.done.is_set():
            if task is None:
                task = asyncio.ensure_future(layer.receive(channel))
            finished, _ = await asyncio.wait({task}, timeout=0.1)  # never cancel a pub/sub receive
            if finished:
                self.messages.append((time.monotonic(), task.result()["message"]))
                task = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def data(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for at, m in list(self.messages) if at >= since and m["type"] != "heartbeat"]

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_seq_strictly_increasing(messages: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    last: dict[tuple[str, str], int] = {}
    for m in messages:
        k = (m["type"], m["key"])
        assert m["seq"] > last.get(k, 0), f"{k}: seq {m['seq']} after {last.get(k)} (repeat or out of order)"
        last[k] = m["seq"]
    return last


@pytest.fixture
def lock_env(thor_env: dict[str, str], demo_users: Any, flags: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    """Every feature in shadow (so runners broadcast), a receiver, a client for the lock key."""
    from thor_trading.services.stack_start import leader_key

    for feature in DEFAULT_FEATURES:
        flags(feature, Stage.SHADOW)
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    key = leader_key(thor_env["THORCUT_PREFIX"])
    client.delete(key)
    receiver = Receiver(["DU1234", "DU5678"])
    receiver.start()
    assert receiver.ready.wait(10)
    yield {"client": client, "key": key, "receiver": receiver}
    receiver.stop()
    client.delete(key)
    client.close()


def holder_pid(client: redis.Redis, key: str) -> int | None:
    token = client.get(key)
    return int(str(token).split(":")[1]) if token and str(token).count(":") == 2 else None


def test_one_leader_then_takeover_after_kill_9(thor_env: dict[str, str], lock_env: dict[str, Any],
                                               tmp_path: Path) -> None:  # fmt: skip
    from thor_trading.models import SeqCounter

    client, key, receiver = lock_env["client"], lock_env["key"], lock_env["receiver"]
    runners = [start_runner(thor_env, tmp_path / f"runner{i}.log") for i in range(2)]
    try:
        pid = wait_for(lambda: holder_pid(client, key), 30, "a runner to take the lock")
        holder = next(r for r in runners if r.pid == pid)
        standby = next(r for r in runners if r.pid != pid)
        wait_for(lambda: len(receiver.data()) >= 50, 20, "messages from the leader")
        # Both are up (the standby polls the lock) and only one ever led.
        time.sleep(1.0)
        assert holder_pid(client, key) == pid
        assert standby.proc.poll() is None
        assert holder.proc.poll() is None
        assert "is now the leader" in holder.output()
        assert "is now the leader" not in standby.output(), standby.output()
        before = assert_seq_strictly_increasing(receiver.data())
        types = {t for t, _ in before}
        assert types == {"account_balance", "positions", "intraday_bar", "vwap", "market_status"}

        killed_at = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        holder.proc.wait(5)
        wait_for(lambda: holder_pid(client, key) == standby.pid, TTL + 2, "the standby to take the lock")
        took = time.monotonic() - killed_at
        wait_for(lambda: len(receiver.data(since=killed_at)) >= 50, 20, "messages from the new leader")
        first_new = wait_for(lambda: receiver.data(since=killed_at), 1, "new messages")[0]
        print(f"takeover: lock after {took:.2f} s (ttl {TTL}); first new message {first_new['type']}")
        assert took <= TTL + 0.5
        assert "is now the leader" in standby.output()

        # Across the takeover every (type, key) seq went strictly up, with no repeat.
        after = assert_seq_strictly_increasing(receiver.data())
        for k, seq in before.items():
            assert after[k] > seq, k
        # And the database's counters are exactly where the messages got to (or a tick beyond).
        counters = {(c.type, c.key): c.seq for c in SeqCounter.objects.all()}
        for k, seq in after.items():
            assert counters[k] >= seq, k

        # SIGTERM: clean exit, lock released at once (nobody waits for the TTL).
        standby.proc.send_signal(signal.SIGTERM)
        assert standby.proc.wait(15) == 0, standby.output()
        assert client.get(key) is None
        assert "stepped down (stopping)" in standby.output()
    finally:
        for r in runners:
            r.stop()


def test_a_runner_that_loses_the_lock_stops_producing(thor_env: dict[str, str], lock_env: dict[str, Any],
                                                      tmp_path: Path) -> None:  # fmt: skip
    client, key, receiver = lock_env["client"], lock_env["key"], lock_env["receiver"]
    runner = start_runner(thor_env, tmp_path / "runner.log")
    try:
        wait_for(lambda: holder_pid(client, key) == runner.pid, 30, "the runner to take the lock")
        wait_for(lambda: len(receiver.data()) >= 20, 20, "messages")

        # Someone else's token now holds the key: the next renewal (within ttl/3) finds out.
        client.set(key, "intruder:1:x", px=60_000)
        stolen_at = time.monotonic()
        wait_for(lambda: "lost" in runner.output(), TTL, "the runner to notice")
        time.sleep(0.3)  # a tick in flight, then nothing
        quiet_from = time.monotonic()
        time.sleep(1.5)
        late = receiver.data(since=quiet_from)
        assert late == [], f"{len(late)} messages after the lock was lost"
        assert runner.proc.poll() is None  # still alive, waiting for the lock
        assert client.get(key) == "intruder:1:x"  # and it never deleted someone else's lock
        print(f"stopped within {quiet_from - stolen_at:.2f} s of the lock being taken")

        # The key goes away: the runner takes it again and production resumes.
        client.delete(key)
        back = time.monotonic()
        wait_for(lambda: holder_pid(client, key) == runner.pid, 5, "the runner to re-take the lock")
        wait_for(lambda: len(receiver.data(since=back)) >= 10, 10, "messages again")
        assert_seq_strictly_increasing(receiver.data())
    finally:
        runner.proc.send_signal(signal.SIGTERM)
        try:
            runner.proc.wait(15)
        finally:
            runner.stop()


def test_lock_primitives(thor_env: dict[str, str]) -> None:
    """Acquire is exclusive, renew/release only act with our token, validity ends before the key."""
    from thor_trading.services.stack_start import LeaderLock, leader_key, lock_client

    key = leader_key(thor_env["THORCUT_PREFIX"] + "-prim")
    a_client, b_client = (
        lock_client(thor_env["THORCUT_REDIS_URL"], 1.0),
        lock_client(thor_env["THORCUT_REDIS_URL"], 1.0),
    )
    try:
        a, b = LeaderLock(a_client, key, 1.0), LeaderLock(b_client, key, 1.0)
        assert a.acquire()
        assert a.valid()
        assert not b.acquire()
        assert 900 < a_client.pttl(key) <= 1000
        time.sleep(0.3)
        renewed = time.monotonic()
        assert a.renew()
        assert a_client.pttl(key) > 900
        assert not b.release()  # not b's to release
        assert a_client.get(key) == a.token
        time.sleep(0.8)  # validity (ttl - ttl/4 after the renewal) has run out; the key has not
        assert not a.valid()
        pttl = a_client.pttl(key)
        if time.monotonic() - renewed < 0.95:  # (unless this machine overslept)
            assert pttl > 0
        time.sleep(0.3)
        assert b.acquire()  # a's key expired
        assert not a.renew()
        assert a.lost.is_set()
        assert not a.valid()
        assert not a.release()
        assert a_client.get(key) == b.token
        assert b.release()
        assert a_client.get(key) is None
    finally:
        a_client.delete(key)
        a_client.close()
        b_client.close()


def test_a_holder_that_cannot_renew_stops_before_the_ttl(thor_env: dict[str, str], tmp_path: Path) -> None:
    """The lock's Redis freezes (SIGSTOP): renewals time out, and jobs stop before the key can expire."""
    from global_markets.services.heartbeat import Heartbeat
    from global_markets.services.websocket_broadcast import Broadcaster
    from tests.backend.test_heartbeat import FakeJob
    from tests.conftest import start_redis
    from thor_trading.services.stack_start import LeaderLock, run_job_runner

    ttl = 1.0
    server = start_redis(tmp_path)
    assert server.process is not None
    pid = server.process.pid
    runs: list[float] = []
    terms: list[float] = []

    class TimedJob(FakeJob):
        def run(self, tick: int) -> list[dict[str, Any]]:
            runs.append(time.monotonic())
            return super().run(tick)

    renewed: list[float] = []  # local start time of every successful SET/renewal

    def on_lead(lock: LeaderLock, hb: Heartbeat) -> None:
        renewed.append(time.monotonic() - 0.001)  # the acquire just before this call
        terms.append(time.monotonic())
        real = lock.renew

        def renew() -> bool:
            t0 = time.monotonic()
            ok = real()
            if ok:
                renewed.append(t0)
            return ok

        lock.renew = renew  # type: ignore[method-assign]  # observe renewals; Redis stays real

    stop = threading.Event()
    thread = threading.Thread(target=run_job_runner, kwargs={
        "tick": 0.02, "ttl": ttl, "stop_event": stop, "jobs_factory": lambda: [TimedJob("a")],
        "broadcaster_factory": Broadcaster, "redis_url": server.url, "prefix": "frozenlock", "on_lead": on_lead,
    }, daemon=True)  # fmt: skip
    frozen = False
    try:
        thread.start()
        wait_for(lambda: len(runs) >= 20, 10, "jobs to run")
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        frozen = True
        time.sleep(ttl + 0.5)
        last, lease = runs[-1], max(t for t in renewed if t < frozen_at)
        print(f"jobs stopped {last - frozen_at:.3f} s after the freeze, {last - lease:.3f} s into the "
              f"last lease (ttl {ttl})")  # fmt: skip
        # Redis cannot expire the key before lease + ttl (the lease started no later than Redis
        # saw it); the runner stops at lease + ttl - ttl/4, so the last job starts before that.
        assert last < lease + ttl * 0.75 + 0.05  # (+ scheduling slack between the guard and the job)
        assert lease > frozen_at - ttl / 3 - 0.2  # renewals were on schedule until the freeze
        n = len(runs)
        os.kill(pid, signal.SIGCONT)
        frozen = False
        # The key expired in Redis meanwhile: the runner takes it again and the jobs resume.
        wait_for(lambda: len(terms) >= 2 and len(runs) > n + 10, 10, "a second term")
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        stop.set()
        thread.join(10)
        server.stop()
    assert not thread.is_alive()
