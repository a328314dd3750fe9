"""The heartbeat: fixed-rate ticks, jobs on their ``every``, flags gating broadcasts, a frozen Redis."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import start_redis
from thorcut.flags.stages import TRANSITIONS, Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys


@dataclass
class FakeJob:
    """Follows the ``thor_trading.jobs.Job`` protocol; records the ticks it ran on."""

    name: str
    feature: str = "intraday"
    every: int = 1
    fail: bool = False
    slow_on: dict[int, float] = field(default_factory=dict)  # tick -> seconds to sleep
    runs: list[int] = field(default_factory=list)
    seq: int = 0

    def run(self, tick: int) -> list[dict[str, Any]]:
        self.runs.append(tick)
        if tick in self.slow_on:
            time.sleep(self.slow_on[tick])
        if self.fail:
            raise RuntimeError(f"{self.name} broke at tick {tick}")
        self.seq += 1
        return [{"type": "vwap", "feature": self.feature, "key": self.name, "seq": self.seq,
                 "ts": "2026-01-01T00:00:00.000Z", "data": {"tick": tick}}]  # fmt: skip


class Collector:
    """A broadcaster stand-in that keeps what it is handed (Redis is not involved here)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def submit(self, message: dict[str, Any]) -> bool:
        self.messages.append(message)
        return True

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == type_]


def run_until(hb: Any, done: Callable[[], bool], timeout: float = 10.0) -> None:
    hb.start()
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out: {hb.stats()}"
            time.sleep(0.005)
    finally:
        assert hb.stop()


# -- flags ------------------------------------------------------------------------------------


def _path(src: Stage, dst: Stage) -> list[Stage]:
    """Shortest walk through the stage machine from ``src`` to ``dst``."""
    paths = {src: [src]}
    todo = [src]
    while todo:
        s = todo.pop(0)
        for a, b in TRANSITIONS:
            if a == s and b not in paths:
                paths[b] = [*paths[s], b]
                todo.append(b)
    return paths[dst][1:]


def set_stage(feature: str, stage: Stage, timeout: float = 5.0) -> None:
    """Move ``feature`` to ``stage`` through thorcut's FlagStore (forcing the parity gate) and wait
    until this process's flag watcher applies it."""
    from global_markets.services import websocket_features

    client = redis.Redis.from_url(os.environ["THORCUT_REDIS_URL"], decode_responses=True)
    try:
        store = FlagStore(client, Keys(os.environ["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="t")
        current = store.read(feature).stage
        if current != stage:
            for step in _path(current, stage):
                store.change(feature, step, force=step is Stage.LIVE, reason="test", percent=None)
    finally:
        client.close()
    watcher = websocket_features.watcher()
    deadline = time.monotonic() + timeout
    while watcher.stage(feature) != stage:
        assert time.monotonic() < deadline, f"watcher never applied {feature}={stage}"
        time.sleep(0.005)


@pytest.fixture
def flags(thor_env: dict[str, str]) -> Iterator[Callable[[str, Stage], None]]:
    """Set stages during a test; every feature goes back to ``off`` afterwards."""
    touched: set[str] = set()

    def setter(feature: str, stage: Stage) -> None:
        touched.add(feature)
        set_stage(feature, stage)

    yield setter
    for feature in touched:
        set_stage(feature, Stage.OFF)


# -- rhythm -----------------------------------------------------------------------------------


def test_keeps_rhythm_at_20ms(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    job = FakeJob("a")
    hb = Heartbeat(0.02, [job], Collector())
    t0 = time.monotonic()
    run_until(hb, lambda: hb.tick >= 50)
    elapsed = time.monotonic() - t0
    stats = hb.stats()
    print(f"50 ticks at 20 ms in {elapsed:.3f} s; lateness {stats['lateness']}; skipped {stats['skipped']}")
    assert 0.95 <= elapsed < 1.6  # tick 50 is due at 1.0 s: no drift, no running ahead
    assert stats["ticks"] + stats["skipped"] == hb.tick + 1  # every tick number run or skipped
    assert stats["skipped"] <= 2
    assert stats["lateness"]["p50"] < 0.005
    assert job.runs == [t for t in range(hb.tick + 1) if t in job.runs]  # in order, no repeats


def test_skips_missed_ticks_instead_of_bursting(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    times: list[float] = []
    job = FakeJob("slow", slow_on={5: 0.07})
    hb = Heartbeat(0.02, [job], Collector(), on_tick=lambda n: times.append(time.monotonic()))
    run_until(hb, lambda: hb.tick >= 15)
    # Tick 5 ends ~70 ms late: ticks 6 and 7 (maybe 8) have passed; they are skipped, not run.
    assert 2 <= hb.skipped <= 3, hb.stats()
    assert 6 not in job.runs
    assert 7 not in job.runs
    assert job.runs[:6] == [0, 1, 2, 3, 4, 5]
    # No burst: after the slow tick, ticks come at most ~one per period.
    after = times[6:]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert min(gaps) > 0.005, gaps


def test_jobs_run_on_their_every(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    jobs = [FakeJob("one", every=1), FakeJob("three", every=3), FakeJob("seven", every=7)]
    hb = Heartbeat(0.01, jobs, Collector())
    run_until(hb, lambda: hb.tick >= 30)
    last = hb.tick
    ran = [t for t in range(last + 1) if t in jobs[0].runs]  # the ticks that were not skipped
    assert len(ran) == hb.ticks
    for job in jobs:
        assert job.runs == [t for t in ran if t % job.every == 0], job.name
    assert hb.job_runs == {"one": len(jobs[0].runs), "three": len(jobs[1].runs), "seven": len(jobs[2].runs)}


def test_a_failing_job_does_not_stop_the_heartbeat(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    bad, good = FakeJob("bad", fail=True, every=2), FakeJob("good")
    hb = Heartbeat(0.01, [bad, good], Collector())
    # Wait for the runs, not for a tick number: on a loaded machine 10 ms ticks get skipped.
    run_until(hb, lambda: len(bad.runs) >= 10 and hb.tick >= 20)
    assert hb.job_errors["bad"] == len(bad.runs) >= 10
    assert hb.job_errors["good"] == 0
    assert hb.job_runs["good"] == len(good.runs) == hb.ticks


def test_heartbeat_message_every_30_ticks_whatever_the_flags(flags: Any) -> None:
    from thor_runner.heartbeat import Heartbeat

    flags("intraday", Stage.OFF)
    out = Collector()
    hb = Heartbeat(0.01, [FakeJob("a")], out)
    run_until(hb, lambda: hb.tick >= 95)
    beats = out.of("heartbeat")
    assert [m["data"]["tick"] % 30 for m in beats] == [0] * len(beats)
    assert [m["seq"] for m in beats] == list(range(1, len(beats) + 1))
    assert len(beats) >= 3
    assert {m["feature"] for m in beats} == {None}
    assert {m["key"] for m in beats} == {""}
    assert beats[0]["ts"].endswith("Z")
    assert out.of("vwap") == []  # intraday is off: the job ran, nothing went out
    assert hb.suppressed == hb.job_runs["a"]


@pytest.mark.parametrize("stage", [Stage.SHADOW, Stage.LIVE, Stage.COMPLETE])
def test_broadcasts_only_when_the_flag_says_so(flags: Any, stage: Stage) -> None:
    from thor_runner.heartbeat import Heartbeat

    job = FakeJob("a")
    out = Collector()
    hb = Heartbeat(0.01, [job], out).start()
    try:
        time.sleep(0.1)
        assert out.of("vwap") == []  # off
        flags("intraday", stage)
        n = len(job.runs)
        deadline = time.monotonic() + 5
        while len(out.of("vwap")) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        flags("intraday", Stage.OFF)
        settled = len(out.of("vwap"))
        time.sleep(0.1)
    finally:
        assert hb.stop()
    sent = out.of("vwap")
    assert len(sent) <= settled + 1  # at most a tick in flight when the flag went off
    assert len(job.runs) > n + 5
    assert [m["seq"] for m in sent] == sorted(m["seq"] for m in sent)


def test_faults_apply_to_the_websocket_side(flags: Any) -> None:
    from django.test import override_settings

    from thor_runner.heartbeat import Heartbeat

    flags("intraday", Stage.SHADOW)
    job, out = FakeJob("a"), Collector()
    with override_settings(THOR_FAULTS="intraday:duplicate"):
        run_until(Heartbeat(0.01, [job], out), lambda: len(job.runs) >= 5)
    seqs = [m["seq"] for m in out.of("vwap")]
    assert seqs[:4] == [seqs[0], seqs[0], seqs[0] + 1, seqs[0] + 1]


def test_bad_fault_spec_fails_at_construction(thor_env: dict[str, str]) -> None:
    from django.test import override_settings

    from thor_runner.faults import FaultSpecError
    from thor_runner.heartbeat import Heartbeat

    with override_settings(THOR_FAULTS="intraday:explode"), pytest.raises(FaultSpecError):
        Heartbeat(0.01, [], Collector())


def test_a_job_with_an_unknown_feature_is_counted_not_fatal(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    odd, good = FakeJob("odd", feature="no_such_feature"), FakeJob("good")
    hb = Heartbeat(0.01, [odd, good], Collector())
    run_until(hb, lambda: len(odd.runs) >= 10)  # the runs, not a tick number (ticks may be skipped)
    assert hb.job_errors["odd"] == len(odd.runs) >= 10
    assert hb.job_runs["good"] == hb.ticks


def test_rejects_a_tick_below_10ms(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    with pytest.raises(ValueError, match="at least"):
        Heartbeat(0.005, [], Collector())
    Heartbeat(0.01, [], Collector())


def test_guard_stops_jobs_at_once(thor_env: dict[str, str]) -> None:
    from thor_runner.heartbeat import Heartbeat

    allowed = threading.Event()
    allowed.set()
    job = FakeJob("a")
    hb = Heartbeat(0.01, [job], Collector(), guard=allowed.is_set).start()
    try:
        deadline = time.monotonic() + 5
        while len(job.runs) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        allowed.clear()
        n = len(job.runs)
        time.sleep(0.1)
        assert len(job.runs) <= n + 1  # the one that passed the guard just before
        assert not hb.running
        assert hb.guard_stopped
    finally:
        hb.stop()


def test_rhythm_holds_while_channel_redis_is_frozen(flags: Any, tmp_path: Path) -> None:
    """Channel layer on a private redis-server that gets SIGSTOPped; flags stay on the session one."""
    from global_markets.services.websocket_broadcast import Broadcaster, layer_from_config
    from thor_runner.heartbeat import Heartbeat

    flags("intraday", Stage.SHADOW)
    server = start_redis(tmp_path)
    assert server.process is not None
    pid = server.process.pid
    config = {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
              "CONFIG": {"hosts": [server.url], "prefix": "frozen"}}  # fmt: skip
    b = Broadcaster(lambda: layer_from_config(config, socket_timeout=0.5), maxsize=200).start()
    jobs = [FakeJob(f"j{i}") for i in range(5)]
    hb = Heartbeat(0.02, jobs, b)
    frozen = False
    # The objects the whole suite left behind make one full garbage collection take tens of ms
    # (4 ticks skipped in one CI run): that is the test process's heap, not the heartbeat's rhythm.
    gc.collect()
    gc.freeze()
    try:
        hb.start()
        time.sleep(0.3)
        assert b.flush()
        sent_before = b.stats()["sent"]
        assert sent_before > 0
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        start_tick = hb.tick
        time.sleep(2.0)
        end_tick = hb.tick
        os.kill(pid, signal.SIGCONT)
        frozen = False
        time.sleep(1.5)  # the breaker re-probes within a second; messages flow again
    finally:
        gc.unfreeze()
        if frozen:
            os.kill(pid, signal.SIGCONT)
        hb.stop()
        b.stop(timeout=0.5)
        server.stop()
    stats, bstats = hb.stats(), b.stats()
    lateness = stats["lateness"]
    print(f"frozen 2 s at 20 ms: ticks {start_tick}->{end_tick}, lateness {lateness}, broadcaster {bstats}")
    assert end_tick - start_tick >= 90  # ~100 ticks in 2 s
    assert stats["skipped"] <= 3
    assert lateness["p99"] < 0.01
    assert stats["job_errors"] == {j.name: 0 for j in jobs}
    assert all(len(j.runs) == stats["ticks"] for j in jobs)
    assert bstats["failed"] + bstats["dropped"] > 0
    assert bstats["sent"] > sent_before  # delivered again after SIGCONT
