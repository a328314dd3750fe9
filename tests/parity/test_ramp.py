"""``thorcut ramp`` against the small backend (tests/small_backend.py) and the test's Redis: it walks
every step, rolls back on a fault switched on mid-ramp, holds on PENDING, stops when someone else
changes the feature or aborts it, refuses a second ramp, resumes after SIGKILL, and refuses bad input.

Thresholds are lowered in the test's thorcut.toml (min_paired 5, min_duration 1), so a 1 s hold
passes on a healthy stream (a message every 50 ms).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import set_flag, set_verdict
from tests.runner import Run
from tests.small_backend import Backend, backend_fixture  # noqa: F401 (the fixture)
from thorcut.clock import now_iso
from thorcut.dev.stack import free_port
from thorcut.flags.ramp import LEASE_S, RampStore
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys


@pytest.fixture
def passed(client: redis.Redis, keys: Keys, backend: Backend) -> None:
    """positions in shadow with a fresh PASS: the first step passes the gate."""
    set_verdict(client, keys, "positions", "PASS", now_iso())


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _flag(client: redis.Redis, keys: Keys) -> tuple[str, int]:
    raw = client.hgetall(keys.flag("positions"))
    return raw.get("stage", "off"), int(raw.get("percent", 0))


def _ramp(client: redis.Redis, keys: Keys) -> dict[str, str]:
    return client.hgetall(keys.ramp("positions"))


def _audit(client: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(keys.audit) if fields.get("feature") == "positions"]


def test_a_ramp_walks_every_step_and_audits_each_percent(run: Run, passed: None, client: redis.Redis,
                                                         keys: Keys) -> None:  # fmt: skip
    started = time.monotonic()
    result = run("ramp", "positions", "--steps", "10,50,100", "--hold", "1s", "--json", "--reason", "JIRA-1")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    events = _events(result.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started"
    assert [e["percent"] for e in events if e["event"] == "step"] == [10, 50, 100]
    assert [e["percent"] for e in events if e["event"] == "passed"] == [10, 50, 100]
    assert kinds[-2:] == ["done", "ended"]
    assert events[-1] == {"event": "ended", "feature": "positions", "status": "done", "exit_code": 0}
    assert "holding" not in kinds
    assert elapsed >= 3.0  # each step held its second
    audit = _audit(client, keys)
    assert [(a["to"], a["percent"], a["by"]) for a in audit] == [("live", "10", "ramp"), ("live", "50", "ramp"),
                                                                ("live", "100", "ramp")]  # fmt: skip
    assert audit[1]["reason"] == "ramp step 2/3: 50% (started by tester): JIRA-1"
    assert all(a["forced"] == "0" for a in audit)
    assert _flag(client, keys) == ("live", 100)
    state = _ramp(client, keys)
    assert (state["status"], state["index"], state["percent"]) == ("done", "3", "100")
    parity = client.hgetall(keys.parity("positions"))
    assert (parity["verdict"], parity["source"]) == ("PASS", "ramp")
    assert "step 1/3: positions live at 10 %" in result.stderr
    assert "ramp of positions done: live at 100 %" in result.stderr


def _when(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (a step taken, a process started), or fail the test."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {check}")
        time.sleep(0.02)


def _at_percent(client: redis.Redis, keys: Keys, percent: int) -> Any:
    return lambda: _flag(client, keys) == ("live", percent)


def _in_background(action: Any) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def _spawn(*args: str) -> subprocess.Popen[str]:
    """``python -m thorcut ramp …`` in its own process (the test's environment: Redis, prefix, backend)."""
    return subprocess.Popen([sys.executable, "-m", "thorcut", "ramp", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes


# -- FAIL rolls back ---------------------------------------------------------------------------------


def test_a_fault_switched_on_mid_ramp_rolls_back_to_shadow(run: Run, passed: None, backend: Backend,
                                                           client: redis.Redis, keys: Keys) -> None:  # fmt: skip
    def fault_at_step_two() -> None:
        _when(_at_percent(client, keys, 50))
        backend.fault("mismatch", path="account")

    _in_background(fault_at_step_two)
    result = run("ramp", "positions", "--steps", "10,50,100", "--hold", "3s", "--json")
    assert result.exit_code == 1, result.stderr
    events = _events(result.stdout)
    back = next(e for e in events if e["event"] == "rolled_back")
    assert (back["index"], back["percent"]) == (2, 50)
    assert back["cause"].startswith('mismatch at account: ws "DU1234", rest "DU1234!"')
    assert 0 <= back["latency_ms"] < 1000
    assert events[-1] == {"event": "ended", "feature": "positions", "status": "failed", "exit_code": 1}
    assert "passed" not in [e["event"] for e in events if e.get("index") == 2]
    assert _flag(client, keys) == ("shadow", 0)
    last = _audit(client, keys)[-1]
    assert (last["to"], last["by"]) == ("shadow", "ramp")
    assert last["reason"].startswith("ramp: mismatch at account")
    state = _ramp(client, keys)
    assert (state["status"], state["index"]) == ("failed", "2")
    assert state["why"] == back["cause"]
    parity = client.hgetall(keys.parity("positions"))
    assert (parity["verdict"], parity["source"]) == ("FAIL", "ramp")
    assert "mismatch at account" in parity["reasons"]
    assert "Error: positions rolled back to shadow at step 2/3 (50 %): mismatch at account" in result.stderr
    # the FAIL shuts the gate: a new ramp is refused until parity passes again
    again = run("ramp", "positions", "--steps", "10,50,100", "--hold", "1s")
    assert again.exit_code == 3
    assert "its parity verdict is FAIL, not PASS" in again.stderr


# -- PENDING holds -----------------------------------------------------------------------------------


def test_a_step_without_evidence_holds_says_why_and_ends_within_duration(
    run: Run, passed: None, backend: Backend, client: redis.Redis, keys: Keys
) -> None:
    backend.rest_status = 503  # every REST read fails: no pair, ever
    started = time.monotonic()
    result = run("ramp", "positions", "--steps", "10,50", "--hold", "1s", "--duration", "2.5", "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 5, result.stderr
    assert elapsed < 2.5 + 3  # the duration, the connection and the last REST answers
    events = _events(result.stdout)
    assert [e["percent"] for e in events if e["event"] == "step"] == [10]  # never advanced
    holding = [e for e in events if e["event"] == "holding"]
    assert holding
    assert holding[0]["why"] == "0 paired samples < 5 needed"
    stop = next(e for e in events if e["event"] == "interrupted")
    assert stop["cause"] == "duration"
    assert events[-1]["exit_code"] == 5
    assert "holding at 10 % (step 1)" in result.stderr
    assert "0 paired samples < 5 needed" in result.stderr
    assert "Error: --duration 2.5s ended at step 1/2 (10 %), holding: 0 paired samples < 5 needed" in result.stderr
    assert "thorcut ramp positions --resume" in result.stderr
    assert _flag(client, keys) == ("live", 10)
    state = _ramp(client, keys)
    assert (state["status"], state["index"]) == ("interrupted", "1")
    assert [a["percent"] for a in _audit(client, keys)] == ["10"]


def test_a_holding_step_advances_once_the_evidence_comes(run: Run, passed: None, backend: Backend,
                                                         client: redis.Redis, keys: Keys) -> None:  # fmt: skip
    backend.rest_status = 503

    def heal_once_holding() -> None:
        _when(lambda: _ramp(client, keys).get("status") == "holding")
        backend.rest_status = 200

    _in_background(heal_once_holding)
    result = run("ramp", "positions", "--steps", "10,20", "--hold", "1s", "--json")
    assert result.exit_code == 0, result.stderr
    kinds = [(e["event"], e.get("percent")) for e in _events(result.stdout)]
    assert kinds.index(("holding", 10)) < kinds.index(("passed", 10)) < kinds.index(("step", 20))
    assert _flag(client, keys) == ("live", 20)


def test_a_quiet_backend_ends_within_duration_without_touching_the_feature(
    run: Run, passed: None, client: redis.Redis, keys: Keys, ws_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.wire.ws_server import sender

    quiet = ws_server(sender())  # accepts, then says nothing
    monkeypatch.setenv("THORCUT_WS_URL", quiet.url)
    started = time.monotonic()
    result = run("ramp", "positions", "--steps", "10,50", "--hold", "1s", "--duration", "1.5")
    assert time.monotonic() - started < 1.5 + 2
    assert result.exit_code == 5, result.stderr
    assert "no message came from the stream, positions was not changed" in result.stderr
    assert _flag(client, keys) == ("shadow", 0)
    assert _ramp(client, keys)["status"] == "interrupted"


# -- someone else -----------------------------------------------------------------------------------


def test_someone_disabling_the_feature_mid_ramp_stops_it_untouched(run: Run, passed: None, client: redis.Redis,
                                                                  keys: Keys) -> None:  # fmt: skip
    alice = FlagStore(client, keys, DEFAULT_MANIFEST.names, operator="alice")

    def disable_at_step_one() -> None:
        _when(_at_percent(client, keys, 10))
        alice.change("positions", Stage.SHADOW, rollback=True, reason="incident 7")

    _in_background(disable_at_step_one)
    result = run("ramp", "positions", "--steps", "10,50", "--hold", "5s", "--json")
    assert result.exit_code == 3, result.stderr
    stop = next(e for e in _events(result.stdout) if e["event"] == "interrupted")
    assert stop["cause"] == "changed"
    assert "positions was changed by alice meanwhile: now shadow" in stop["why"]
    assert "(incident 7)" in stop["why"]
    assert "the ramp stopped without touching it" in result.stderr
    assert [a["by"] for a in _audit(client, keys)] == ["ramp", "alice"]  # nothing after alice's change
    assert _flag(client, keys) == ("shadow", 0)
    assert _ramp(client, keys)["status"] == "interrupted"
    # what someone else did is not overridden by a resume either
    resumed = run("ramp", "positions", "--resume")
    assert resumed.exit_code == 3
    assert "positions was changed by alice since its ramp stopped (now shadow" in resumed.stderr
    assert "thorcut ramp positions --abort" in resumed.stderr


@pytest.mark.slow
def test_two_ramps_of_one_feature_are_refused_and_ctrl_c_leaves_it_resumable(
    run: Run, passed: None, client: redis.Redis, keys: Keys, procs: list[subprocess.Popen[str]]
) -> None:
    first = _spawn("positions", "--steps", "10,50", "--hold", "30s")
    procs.append(first)
    _when(_at_percent(client, keys, 10))
    second = run("ramp", "positions", "--steps", "10,50", "--hold", "1s")
    assert second.exit_code == 3
    assert f"a ramp of positions is already running (pid {first.pid} on " in second.stderr
    assert "two ramps of one feature cannot run at once" in second.stderr
    assert run("ramp", "positions", "--resume").exit_code == 3  # nor taken over while it runs
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=10)
    assert first.returncode == 130, stderr
    assert "stopped by Ctrl-C at step 1/2 (10 %) — resume with `thorcut ramp positions --resume`" in stderr
    assert "Traceback" not in stderr
    assert _ramp(client, keys)["status"] == "interrupted"
    assert _flag(client, keys) == ("live", 10)
    fresh = run("ramp", "positions", "--steps", "10,50", "--hold", "1s")
    assert fresh.exit_code == 3
    assert "was interrupted at step 1/2 (10 %)" in fresh.stderr
    assert "resume it with `thorcut ramp positions --resume`, or abandon it with `thorcut ramp positions --abort`" \
        in fresh.stderr  # fmt: skip


@pytest.mark.slow
def test_abort_stops_the_running_ramp_and_leaves_the_feature_where_it_is(
    run: Run, passed: None, client: redis.Redis, keys: Keys, procs: list[subprocess.Popen[str]]
) -> None:
    ramp = _spawn("positions", "--steps", "10,50", "--hold", "30s")
    procs.append(ramp)
    _when(_at_percent(client, keys, 10))
    result = run("ramp", "positions", "--abort")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "aborted the ramp of positions (it was running at step 1/2 (10 %)); positions stays live at 10 % — "
        "`thorcut disable positions` rolls it back."
    )
    assert f"Its process (pid {ramp.pid} on " in result.stdout
    _, stderr = ramp.communicate(timeout=5)  # it notices within its heartbeat
    assert ramp.returncode == 3, stderr
    assert "the ramp was aborted (aborted by tester" in stderr
    assert "positions stays live at 10 %" in stderr
    assert _flag(client, keys) == ("live", 10)
    state = _ramp(client, keys)
    assert state["status"] == "aborted"
    assert [a["percent"] for a in _audit(client, keys)] == ["10"]
    again = run("ramp", "positions", "--abort", "--json")
    assert again.exit_code == 3
    assert "already ended (aborted)" in again.stderr
    # an aborted ramp is replaced by a new one
    assert run("ramp", "positions", "--steps", "50", "--hold", "1s").exit_code == 0
    assert _flag(client, keys) == ("live", 50)


@pytest.mark.slow
def test_a_ramp_killed_with_sigkill_is_resumed(run: Run, passed: None, client: redis.Redis, keys: Keys,
                                               procs: list[subprocess.Popen[str]]) -> None:  # fmt: skip
    killed = _spawn("positions", "--steps", "10,50,100", "--hold", "2s")
    procs.append(killed)
    _when(lambda: _ramp(client, keys).get("step_started", "") != "")
    killed.kill()
    killed.communicate()
    state = RampStore(client, keys).read("positions")
    assert state is not None
    assert state.status == "running"  # as it was left …
    assert state.effective_status(time.time()) == "interrupted"  # … but its process is gone
    result = run("ramp", "positions", "--resume", "--json")
    assert result.exit_code == 0, result.stderr
    events = _events(result.stdout)
    assert events[0]["resumed"] is True
    assert (events[0]["index"], events[0]["percent"]) == (1, 10)
    # step 1 is judged again from a fresh window; the feature was already there: no change for it
    assert [(e["index"], e["percent"]) for e in events if e["event"] == "passed"] == [(1, 10), (2, 50), (3, 100)]
    assert [a["percent"] for a in _audit(client, keys)] == ["10", "50", "100"]
    assert _ramp(client, keys)["status"] == "done"
    assert _ramp(client, keys)["why"].startswith("all 3 steps passed")


def test_resume_after_the_lease_expired_on_another_host(run: Run, passed: None, client: redis.Redis,
                                                         keys: Keys) -> None:  # fmt: skip
    """A ramp whose owner (on another host, so only its heartbeat tells) stopped heartbeating."""
    from thorcut.flags.ramp import Owner, RampState

    store = FlagStore(client, keys, DEFAULT_MANIFEST.names, operator="ramp")
    version = store.change("positions", Stage.LIVE, percent=10, reason="ramp step 1/2: 10% (started by tester)").after
    state = RampState("positions", (10, 50), 1.0, owner=Owner("elsewhere", 1, "x"), flag_version=version.version)
    ramps = RampStore(client, keys)
    ramps.claim("positions", lambda _: state, resume=False)
    client.hset(keys.ramp("positions"), "heartbeat", f"{ramps.now() - LEASE_S - 0.5:.6f}")
    different = run("ramp", "positions", "--resume", "--steps", "10,60")
    assert different.exit_code == 2
    assert "has --steps 10,50; leave --steps out" in different.stderr
    result = run("ramp", "positions", "--resume", "--steps", "10,50")
    assert result.exit_code == 0, result.stderr
    assert _flag(client, keys) == ("live", 50)


# -- where a ramp starts -----------------------------------------------------------------------------


def test_a_live_feature_below_the_first_step_starts_at_the_next_step_above(
    run: Run, passed: None, client: redis.Redis, keys: Keys
) -> None:
    set_flag(client, keys, "positions", "live", 2, percent=20)
    result = run("ramp", "positions", "--steps", "10,25,40", "--hold", "1s", "--json")
    assert result.exit_code == 0, result.stderr
    assert [e["percent"] for e in _events(result.stdout) if e["event"] == "step"] == [25, 40]


def test_force_lets_only_the_first_step_past_the_gate(run: Run, backend: Backend, client: redis.Redis,
                                                      keys: Keys) -> None:  # fmt: skip
    refused = run("ramp", "positions", "--steps", "10,20", "--hold", "1s")
    assert refused.exit_code == 3
    assert "refusing to enable positions: it has no parity verdict yet" in refused.stderr
    assert client.exists(keys.ramp("positions")) == 0  # nothing claimed
    result = run("ramp", "positions", "--steps", "10,20", "--hold", "1s", "--force", "--reason", "no shadow traffic")
    assert result.exit_code == 0, result.stderr
    assert "FORCED past the parity gate" in result.stderr
    assert [a["forced"] for a in _audit(client, keys)] == ["1", "0"]


@pytest.mark.parametrize(
    ("stage", "percent", "message"),
    [("off", 0, "positions is off: nothing is broadcast"), ("complete", 100, "positions is complete"),
     ("live", 50, "positions is already live at 50 %, at or above the last step (50 %)")],
)  # fmt: skip
def test_a_feature_that_cannot_ramp_is_refused(run: Run, backend: Backend, client: redis.Redis, keys: Keys,
                                               stage: str, percent: int, message: str) -> None:  # fmt: skip
    set_flag(client, keys, "positions", stage, 4, percent=percent)
    result = run("ramp", "positions", "--steps", "10,50", "--hold", "1s")
    assert result.exit_code == 3
    assert message in result.stderr
    assert backend.sent == 0 or client.exists(keys.ramp("positions")) == 0


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "--steps", "10"), "unknown feature 'nope'"),
        (("positions", "--steps", "10,5"), "--steps must rise, each percent once, such as --steps 10,25,50,100"),
        (("positions", "--steps", "10,200"), "such as --steps 10,25,50,100; '200' is not one"),
        (("positions", "--steps", "10", "--hold", "5x"), "--hold must be a duration, such as --hold 90, 90s, 5m"),
        (("positions", "--steps", "10", "--hold", "0"), "--hold must be more than 0 and at most 7 days"),
        (("positions", "--steps", "10", "--duration", "nan"), "--duration must be a number of seconds from 0.1"),
        (("positions", "--steps", "10", "--duration", "0"), "e.g. --duration 600"),
        (("positions",), "name the steps of a new ramp, e.g. --steps 10,25,50,100 --hold 5m"),
        (("positions", "--resume", "--abort"), "give --resume or --abort, not both"),
        (("positions", "--abort", "--steps", "10"), "--abort takes no --steps"),
        (("positions", "--steps", "10", "--force"), "--force needs --reason"),
        (("positions", "--steps", "10", "--reason", "\udcff"), "--reason is not valid UTF-8 text"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_an_example(run: Run, args: tuple[str, ...], message: str) -> None:
    result = run("ramp", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr


def test_unreachable_redis_exits_4(run: Run) -> None:
    result = run("ramp", "positions", "--steps", "10", "--redis-url", f"redis://u:pw@127.0.0.1:{free_port()}/0",
                 "--timeout", "0.5")  # fmt: skip
    assert result.exit_code == 4
    assert "Redis at redis://u:***@127.0.0.1" in result.stderr
    assert ":pw@" not in result.stderr


def test_an_unreachable_backend_exits_4_and_changes_nothing(run: Run, passed: None, client: redis.Redis, keys: Keys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("THORCUT_WS_URL", f"ws://127.0.0.1:{free_port()}/")
    result = run("ramp", "positions", "--steps", "10,50", "--hold", "1s", "--json")
    assert result.exit_code == 4, result.stderr
    assert "refused the connection" in result.stderr
    assert _events(result.stdout)[-1] == {"event": "ended", "feature": "positions", "status": None, "exit_code": 4}
    assert _flag(client, keys) == ("shadow", 0)
    assert client.exists(keys.ramp("positions")) == 0  # the claim was given back
    assert _audit(client, keys) == []


def test_resume_or_abort_with_nothing_there_is_refused(run: Run, backend: Backend) -> None:
    resumed = run("ramp", "positions", "--resume")
    assert resumed.exit_code == 3
    assert "there is no interrupted ramp of positions to resume" in resumed.stderr
    aborted = run("ramp", "positions", "--abort")
    assert aborted.exit_code == 3
    assert "there is no ramp of positions to abort" in aborted.stderr


def test_redis_lost_mid_ramp_exits_4_without_hanging(run: Run, backend: Backend, tmp_path: Path) -> None:
    from tests.conftest import start_redis

    private = start_redis(tmp_path / "redis")
    try:
        c = redis.Redis(port=private.port, decode_responses=True)
        lost = Keys("lost")
        set_flag(c, lost, "positions", "shadow", 1)
        set_verdict(c, lost, "positions", "PASS", now_iso())

        def stop_at_step_one() -> None:
            _when(lambda: c.hget(lost.flag("positions"), "percent") == "10")
            private.stop()

        _in_background(stop_at_step_one)
        started = time.monotonic()
        result = run("ramp", "positions", "--steps", "10,50", "--hold", "30s", "--redis-url", private.url,
                     "--timeout", "0.5", env={"THORCUT_PREFIX": "lost"})  # fmt: skip
        assert time.monotonic() - started < 10
    finally:
        private.stop()
    assert result.exit_code == 4, result.stderr
    assert "Redis at" in result.stderr
    assert "Traceback" not in result.stderr


def test_abort_json_of_a_ramp_whose_process_is_gone(run: Run, client: redis.Redis, keys: Keys) -> None:
    from thorcut.flags.ramp import Owner, RampState

    set_flag(client, keys, "positions", "live", 3, percent=25)
    state = RampState("positions", (10, 25, 50), 60.0, index=2, owner=Owner("elsewhere", 9, "x"))
    ramps = RampStore(client, keys)
    ramps.claim("positions", lambda _: state, resume=False)
    client.hset(keys.ramp("positions"), "heartbeat", f"{ramps.now() - LEASE_S - 1:.6f}")
    result = run("ramp", "positions", "--abort", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "event": "aborted", "feature": "positions", "was": "running", "index": 2, "percent": 25,
        "owner": {"host": "elsewhere", "pid": 9}, "owner_running": False, "stage": "live", "stage_percent": 25,
    }  # fmt: skip
    assert _ramp(client, keys)["why"].startswith("aborted by tester (pid ")
