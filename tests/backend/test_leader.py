"""The job runner's leader lock and fencing term, with real ``run_jobs`` processes, Redis and database.

Two runners: only one runs the jobs; kill -9 it and the other takes over within the TTL, every
(type, key) seq continuing upwards with no repeat; a runner whose lock is taken from it stops
producing at once; SIGTERM releases the lock so a standby need not wait for the TTL. A leader that
cannot reach Redis runs its jobs on; a runner whose database term has been superseded (someone
took over while it could not see Redis) is fenced at its next job transaction and never writes
after the new leader's first write.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from tests.backend.conftest import BACKEND
from tests.backend.test_heartbeat import flags  # noqa: F401  (fixture)
from thorcut.flags.stages import Stage
from thorcut.manifest import DEFAULT_MANIFEST

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

    def shut_down(self) -> None:
        """SIGTERM (a clean step-down, releasing the lock), then make sure it is gone."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        finally:
            self.stop()


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
    from thor_runner.leader import leader_key

    for feature in DEFAULT_MANIFEST.names:
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
        runner.shut_down()


def test_lock_primitives(thor_env: dict[str, str]) -> None:
    """Acquire is exclusive, renew/release only act with our token, validity ends before the key."""
    from thor_runner.leader import LeaderLock, leader_key, lock_client

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


def test_a_holder_that_cannot_reach_redis_runs_on(thor_env: dict[str, str], tmp_path: Path) -> None:
    """The lock's Redis freezes (SIGSTOP) past the TTL: renewals time out, the jobs run on (the
    database term fences them, not the lease); after SIGCONT the key has expired, so the runner
    steps down and leads again in a new term."""
    from global_markets.services.websocket_broadcast import Broadcaster
    from tests.backend.test_heartbeat import FakeJob
    from tests.conftest import start_redis
    from thor_runner.heartbeat import Heartbeat
    from thor_runner.leader import LeaderLock
    from thor_runner.runner import run_job_runner
    from thor_runner.status import RunnerStatus
    from thor_trading import fence

    ttl, tick = 1.0, 0.02
    server = start_redis(tmp_path)
    assert server.process is not None
    pid = server.process.pid
    runs: list[float] = []
    terms: list[int] = []

    class TimedJob(FakeJob):
        def run(self, tick: int) -> list[dict[str, Any]]:
            runs.append(time.monotonic())
            return super().run(tick)

    def on_lead(lock: LeaderLock, hb: Heartbeat) -> None:
        now = fence.current_term()
        assert now is not None
        assert now[1] == lock.token
        terms.append(now[0])

    stop, status = threading.Event(), RunnerStatus()
    thread = threading.Thread(target=run_job_runner, kwargs={
        "tick": tick, "ttl": ttl, "stop_event": stop, "jobs_factory": lambda: [TimedJob("a")],
        "broadcaster_factory": Broadcaster, "redis_url": server.url, "prefix": "frozenlock", "on_lead": on_lead,
        "status": status,
    }, daemon=True)  # fmt: skip
    frozen = False
    try:
        thread.start()
        wait_for(lambda: len(runs) >= 20, 10, "jobs to run")
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        frozen = True
        time.sleep(ttl + 0.5)  # the key's TTL runs out in Redis meanwhile
        assert status.lead is not None
        renewer = status.lead.renewer.stats()
        during = [t for t in runs if t > frozen_at]
        gaps = [b - a for a, b in itertools.pairwise([frozen_at, *during, time.monotonic()])]
        print(f"frozen {ttl + 0.5:.1f} s (ttl {ttl}): {len(during)} job runs, largest gap {max(gaps) * 1000:.1f} ms, "
              f"renewer {renewer}")  # fmt: skip
        assert len(during) >= (ttl + 0.5) / tick * 0.8
        assert max(gaps) < 0.2
        assert renewer["errors"] >= 2
        assert status.terms == 1
        n = len(runs)
        os.kill(pid, signal.SIGCONT)
        frozen = False
        # The key expired in Redis: the next renewal finds it gone, the runner steps down, takes
        # the lock again and starts the next term in the database.
        wait_for(lambda: len(terms) >= 2 and len(runs) > n + 10, 10, "a second term")
        assert terms[1] == terms[0] + 1
        assert status.step_downs == {"lost the lock": 1}
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        stop.set()
        thread.join(10)
        server.stop()
    assert not thread.is_alive()


def test_a_runner_whose_term_is_superseded_is_fenced(thor_env: dict[str, str], lock_env: dict[str, Any],
                                                     tmp_path: Path) -> None:  # fmt: skip
    """The test plays a new leader that took the lock while the runner could not see it: it starts
    a term and writes every seq once. The runner (its renewals 10 s apart, so only the fence can
    stop it in time) is fenced by its next job transaction and writes nothing after that."""
    from django.db import transaction

    from thor_trading import fence
    from thor_trading.jobs import bump_many
    from thor_trading.models import SeqCounter

    client, key, receiver = lock_env["client"], lock_env["key"], lock_env["receiver"]
    runner = start_runner(thor_env, tmp_path / "runner.log", ttl=30.0)
    try:
        wait_for(lambda: holder_pid(client, key) == runner.pid, 30, "the runner to take the lock")
        wait_for(lambda: len(receiver.data()) >= 20, 20, "messages")
        old = fence.current_term()
        assert old is not None
        assert old[1] == client.get(key)

        client.set(key, "intruder:1:x", px=60_000)  # the new leader holds the lock from now on
        with transaction.atomic():
            new = fence.start_term("intruder:1:x")
            rows = list(SeqCounter.objects.exclude(type="heartbeat").values_list("type", "key"))
            first_write: dict[tuple[str, str], int] = {}
            with fence.bound(new):
                for type_ in {t for t, _ in rows}:
                    for k, seq in bump_many(type_, [k for t, k in rows if t == type_]).items():
                        first_write[(type_, k)] = seq
        superseded_at = time.monotonic()
        assert new.number == old[0] + 1
        wait_for(lambda: "fenced" in runner.output(), 2, "the runner to be fenced")
        fenced_after = time.monotonic() - superseded_at
        time.sleep(1.5)
        print(f"fenced {fenced_after * 1000:.0f} ms after the new term")
        out = runner.output()
        assert f"stepped down (fenced: term {old[0]} superseded by term {new.number} (intruder:1:x))" in out, out
        # Nothing written after the new leader's first write, nothing sent that is newer than it.
        now = {(c.type, c.key): c.seq for c in SeqCounter.objects.exclude(type="heartbeat")}
        assert now == first_write
        for m in receiver.data():
            assert m["seq"] <= first_write[(m["type"], m["key"])], m
        assert receiver.data(since=superseded_at + fenced_after + 0.2) == []
        assert runner.proc.poll() is None  # alive, waiting for the lock
        assert client.get(key) == "intruder:1:x"  # which it did not delete
        assert fence.current_term() == (new.number, "intruder:1:x")

        # The "new leader" goes away: the runner leads again, in the next term, from where it left.
        client.delete(key)
        wait_for(lambda: holder_pid(client, key) == runner.pid, 5, "the runner to re-take the lock")
        seen = {(m["type"], m["key"]) for m in receiver.data()}

        def caught_up() -> bool:  # every stream seen so far has gone past the "new leader's" write
            last = assert_seq_strictly_increasing(receiver.data())
            return all(last[k] > first_write[k] for k in seen)

        wait_for(caught_up, 10, "messages again, beyond the superseding term's")
        assert f"is now the leader (term {new.number + 1})" in runner.output()
    finally:
        runner.shut_down()


class Partition:
    """A TCP proxy in front of Redis that can cut the link (both directions go silent) and heal it."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.cut = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="test-partition").start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
                up = socket.create_connection(self.target, timeout=2)
            except OSError:
                if self.listener.fileno() == -1:
                    return
                continue
            up.settimeout(None)
            self._socks += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.cut.is_set():  # cut: the bytes vanish, as on a partitioned network
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


@dataclass
class Run:
    started: float
    ended: float
    messages: list[dict[str, Any]] | None
    error: type[BaseException] | None


class RecordingJob:
    """A real job that records every run: when, the envelopes it returned, or what it raised."""

    def __init__(self, job: Any, record: list[Run]) -> None:
        self.job, self.record = job, record
        self.name, self.feature, self.every = job.name, job.feature, job.every

    def run(self, tick: int) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        try:
            out: list[dict[str, Any]] = self.job.run(tick)
        except Exception as exc:
            self.record.append(Run(t0, time.monotonic(), None, type(exc)))
            raise
        self.record.append(Run(t0, time.monotonic(), out, None))
        return out


class NullBroadcaster:
    def start(self) -> NullBroadcaster:
        return self

    def stop(self, timeout: float = 0) -> None:
        pass

    def submit(self, message: dict[str, Any]) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}


def test_a_partitioned_leader_runs_on_until_the_new_term_fences_it(thor_env: dict[str, str], demo_users: Any,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """Two runners (threads of this process, real jobs, real database): A reaches Redis through a
    proxy that is then cut. A's renewals time out and its jobs run on; its key expires; B takes the
    lock and starts a term; A's next job transaction is fenced. No write of A after B's term began,
    and every seq went strictly up across both."""
    from django.conf import settings

    from thor_runner.leader import LeaderLock, leader_key
    from thor_runner.runner import run_job_runner
    from thor_runner.status import RunnerStatus
    from thor_trading import fence
    from thor_trading.jobs import build_jobs

    ttl, tick = 1.0, 0.05
    prefix = thor_env["THORCUT_PREFIX"] + "-part"
    direct = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    direct.delete(leader_key(prefix))
    proxy = Partition(thor_env["THORCUT_REDIS_URL"])
    runs: dict[str, list[Run]] = {"a": [], "b": []}
    led: dict[str, list[float]] = {"a": [], "b": []}
    stops = {name: threading.Event() for name in runs}
    statuses = {name: RunnerStatus() for name in runs}

    def runner(name: str, url: str) -> threading.Thread:
        def on_lead(lock: LeaderLock, hb: Any) -> None:
            led[name].append(time.monotonic())  # after the term's transaction committed

        return threading.Thread(target=run_job_runner, name=f"test-runner-{name}", daemon=True, kwargs={
            "tick": tick, "ttl": ttl, "stop_event": stops[name], "redis_url": url, "prefix": prefix,
            "jobs_factory": lambda: [RecordingJob(j, runs[name]) for j in build_jobs(settings.THOR_SEED)],
            "broadcaster_factory": NullBroadcaster, "on_lead": on_lead, "status": statuses[name],
        })  # fmt: skip

    threads = {"a": runner("a", proxy.url), "b": runner("b", thor_env["THORCUT_REDIS_URL"])}
    try:
        threads["a"].start()
        wait_for(lambda: len([r for r in runs["a"] if r.error is None]) >= 20, 15, "A to run jobs")
        threads["b"].start()
        time.sleep(0.5)
        assert led["b"] == []  # A holds the lock

        proxy.cut.set()
        cut_at = time.monotonic()
        wait_for(lambda: led["b"], ttl + 3, "B to take over")
        b_term_at = led["b"][0]
        wait_for(lambda: statuses["a"].step_downs, 5, "A to step down")
        wait_for(lambda: len([r for r in runs["b"] if r.error is None]) >= 20, 10, "B to run jobs")
        time.sleep(0.5)
        a, b = runs["a"], runs["b"]
        ran_on = [r for r in a if r.started > cut_at and r.error is None]
        failures = [r for r in a if r.error is not None]
        print(f"B led {b_term_at - cut_at:.2f} s after the cut (ttl {ttl}); A ran {len(ran_on)} jobs cut off, "
              f"then {[f.error.__name__ for f in failures if f.error]} "
              f"{(failures[0].started - b_term_at) * 1000 if failures else 0:.0f} ms into B's term")  # fmt: skip
        assert statuses["a"].step_downs == {"fenced": 1}
        assert statuses["a"].terms == 1
        assert len(ran_on) >= (b_term_at - cut_at) / tick * 4 * 0.5  # four jobs a tick, jobs ran on
        assert [f.error for f in failures] == [fence.Fenced]  # the first job after B's term, then none
        assert failures[0].started > cut_at
        assert a[-1] is failures[0]
        assert all(r.started < b_term_at for r in a if r.error is None)  # all committed before B's term
        now = fence.current_term()
        assert now is not None
        assert now[1] == statuses["b"].token
        # Every (type, key) seq strictly up over A's runs then B's, and B's all above A's.
        messages = [m for r in sorted(a + b, key=lambda r: r.ended) for m in r.messages or []]
        assert_seq_strictly_increasing(messages)
        last_a = assert_seq_strictly_increasing([m for r in a for m in r.messages or []])
        first_b = {(m["type"], m["key"]): m["seq"] for r in reversed(b) for m in r.messages or []}
        for k, seq in last_a.items():
            assert first_b[k] > seq, k

        proxy.cut.clear()  # healed: A sees B's token on the key and stays a standby
        time.sleep(1.0)
        assert direct.get(leader_key(prefix)) == statuses["b"].token
        assert statuses["a"].terms == 1
        assert a[-1] is failures[0]
    finally:
        for name in stops:
            stops[name].set()
        for t in threads.values():
            t.join(15)
        proxy.close()
        direct.delete(leader_key(prefix))
        direct.close()
    assert not any(t.is_alive() for t in threads.values())
