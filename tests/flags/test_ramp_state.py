"""The ramp's state in Redis (thorcut/flags/ramp.py): one owner at a time, a lease that expires, only
the owner's token writes progress, an abort the owner sees, and the values people give."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import redis

from tests.conftest import set_flag
from thorcut.errors import RampRunning, Refused, UsageError
from thorcut.flags.ramp import (
    ABORTED,
    DONE,
    HOLDING,
    INTERRUPTED,
    LEASE_S,
    RUNNING,
    Owner,
    RampState,
    RampStore,
    format_span,
    parse_hold,
    parse_steps,
)
from thorcut.redisconn import Keys


@pytest.fixture
def ramps(client: redis.Redis, keys: Keys) -> RampStore:
    return RampStore(client, keys)


def _new(owner: Owner, **kw: object) -> RampState:
    return RampState("positions", (10, 50, 100), 60.0, owner=owner, started_by="alice", **kw)  # type: ignore[arg-type]


def _claim(ramps: RampStore, owner: Owner, *, resume: bool = False) -> RampState:
    state, _ = ramps.claim("positions", lambda cur: replace(cur, owner=owner) if cur else _new(owner), resume=resume)
    return state


def _foreign() -> Owner:
    """An owner on another host: only its heartbeat says whether it runs."""
    return Owner("elsewhere.example", 4242, "t0ken")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- claiming -------------------------------------------------------------------------------------


def test_a_claim_stores_the_ramp_with_its_owner_and_a_heartbeat(ramps: RampStore, client: redis.Redis,
                                                                keys: Keys) -> None:  # fmt: skip
    owner = Owner.here()
    state = _claim(ramps, owner)
    raw = client.hgetall(keys.ramp("positions"))
    assert raw["steps"] == "10,50,100"
    assert raw["index"] == "1"
    assert raw["percent"] == "10"
    assert raw["status"] == RUNNING
    assert raw["started_by"] == "alice"
    assert Owner.from_text(raw["owner"]) == owner
    assert state.heartbeat == pytest.approx(ramps.now(), abs=1.0)
    assert ramps.read("positions") == replace(state, heartbeat=float(raw["heartbeat"]))


def test_a_second_claim_is_refused_while_the_owners_heartbeat_is_fresh(ramps: RampStore) -> None:
    _claim(ramps, _foreign())
    for resume in (False, True):
        with pytest.raises(RampRunning) as refused:
            _claim(ramps, Owner.here(), resume=resume)
        message = str(refused.value)
        assert "a ramp of positions is already running (pid 4242 on elsewhere.example, last seen" in message
        assert "step 1/3 at 10 %" in message
        assert refused.value.exit_code == 3


def test_an_expired_lease_makes_the_ramp_interrupted_and_resumable(ramps: RampStore, client: redis.Redis,
                                                                   keys: Keys) -> None:  # fmt: skip
    _claim(ramps, _foreign())
    client.hset(keys.ramp("positions"), "heartbeat", f"{ramps.now() - LEASE_S - 1:.6f}")
    stale = ramps.read("positions")
    assert stale is not None
    assert stale.status == RUNNING
    assert stale.effective_status(ramps.now()) == INTERRUPTED
    with pytest.raises(RampRunning, match=r"interrupted at step 1/3 \(10 %\) \(its process is gone\).*--resume"):
        _claim(ramps, Owner.here())
    mine = Owner.here()
    taken = _claim(ramps, mine, resume=True)
    assert taken.owner == mine
    assert ramps.write("positions", mine.token).ok


def test_an_owner_on_this_host_whose_pid_is_gone_counts_as_expired(ramps: RampStore) -> None:
    gone = Owner(socket.gethostname(), _dead_pid(), "old")
    assert gone.gone()
    _claim(ramps, gone)  # its heartbeat is fresh
    state = ramps.read("positions")
    assert state is not None
    assert state.effective_status(ramps.now()) == INTERRUPTED
    mine = Owner.here()
    assert _claim(ramps, mine, resume=True).owner == mine


def test_a_live_process_of_this_host_is_not_gone() -> None:
    assert not Owner(socket.gethostname(), os.getppid(), "x").gone()
    assert not Owner(socket.gethostname(), os.getpid(), "x").gone()
    assert not Owner("elsewhere.example", 1, "x").gone()  # another host's: only the lease can tell


def test_an_ended_ramp_is_replaced_but_not_resumed(ramps: RampStore, client: redis.Redis, keys: Keys) -> None:
    first = Owner.here()
    _claim(ramps, first)
    assert ramps.write("positions", first.token, {"status": DONE}).ok
    with pytest.raises(Refused, match=r"no interrupted ramp of positions to resume .*its last ramp is done"):
        _claim(ramps, Owner.here(), resume=True)
    second = Owner.here()
    assert _claim(ramps, second).owner == second


def test_nothing_to_resume(ramps: RampStore) -> None:
    with pytest.raises(Refused, match=r"no interrupted ramp of positions to resume; start one with `thorcut ramp"):
        _claim(ramps, Owner.here(), resume=True)


def test_a_claim_judged_on_a_state_that_changed_is_judged_again(ramps: RampStore) -> None:
    """The claim is a compare-and-set: the owner heartbeating between the read and the write makes
    the claim read again, and then the fresh heartbeat refuses it."""
    owner = _foreign()
    _claim(ramps, owner)
    ramps.client.hset(ramps.keys.ramp("positions"), "heartbeat", f"{ramps.now() - LEASE_S - 1:.6f}")
    calls = []

    def build(current: RampState | None) -> RampState:
        calls.append(current)
        if len(calls) == 1:
            assert ramps.write("positions", owner.token).ok  # the owner comes back
        assert current is not None
        return replace(current, owner=Owner.here())

    with pytest.raises(RampRunning, match="already running"):
        ramps.claim("positions", build, resume=True)
    assert len(calls) == 1


# -- the owner's writes ---------------------------------------------------------------------------


def test_only_the_owners_token_writes(ramps: RampStore, client: redis.Redis, keys: Keys) -> None:
    owner = Owner.here()
    _claim(ramps, owner)
    before = client.hgetall(keys.ramp("positions"))
    beat = ramps.write("positions", "not-the-token", {"index": "3", "status": DONE})
    assert beat.kind == "lost"
    assert beat.holder == owner
    assert client.hgetall(keys.ramp("positions")) == before


def test_the_owners_write_heartbeats_and_reads_the_flag(ramps: RampStore, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "live", 7, percent=10)
    owner = Owner.here()
    _claim(ramps, owner)
    beat = ramps.write("positions", owner.token, {"status": HOLDING, "why": "3 paired samples < 5 needed"})
    assert beat.ok
    assert beat.flag is not None
    assert (beat.flag.stage.value, beat.flag.percent, beat.flag.version) == ("live", 10, 7)
    assert client.hget(keys.ramp("positions"), "why") == "3 paired samples < 5 needed"
    assert float(client.hget(keys.ramp("positions"), "heartbeat")) == beat.heartbeat


def test_an_abort_is_seen_by_the_owner_at_its_next_write(ramps: RampStore, client: redis.Redis, keys: Keys) -> None:
    owner = Owner.here()
    _claim(ramps, owner)
    assert ramps.abort("positions", "aborted by bob") == RUNNING
    beat = ramps.write("positions", owner.token, {"index": "2"})
    assert (beat.kind, beat.status, beat.why) == ("ended", ABORTED, "aborted by bob")
    assert client.hget(keys.ramp("positions"), "index") == "1"  # nothing written after the abort
    with pytest.raises(Refused, match="already ended \\(aborted\\)"):
        ramps.abort("positions", "again")
    with pytest.raises(Refused, match="no ramp of intraday to abort"):
        ramps.abort("intraday", "none")


def test_a_release_puts_back_the_hash_the_claim_replaced(ramps: RampStore, client: redis.Redis, keys: Keys) -> None:
    first = Owner.here()
    _claim(ramps, first)
    ramps.write("positions", first.token, {"status": DONE, "why": "all passed"})
    before = client.hgetall(keys.ramp("positions"))
    second = Owner.here()
    _, previous = ramps.claim("positions", lambda _: _new(second), resume=False)
    assert previous == before
    assert not ramps.release("positions", "someone-else", previous)
    assert ramps.release("positions", second.token, previous)
    assert client.hgetall(keys.ramp("positions")) == before
    third = Owner.here()
    _, previous = ramps.claim("intraday", lambda _: replace(_new(third), feature="intraday"), resume=False)
    assert previous == {}
    assert ramps.release("intraday", third.token, previous)
    assert client.exists(keys.ramp("intraday")) == 0


# -- what status shows ------------------------------------------------------------------------------


def test_describe_each_status() -> None:
    now = 1_000_000.0
    owner = _foreign()
    base = RampState("positions", (10, 25, 50, 100), 300.0, index=2, owner=owner, heartbeat=now - 0.5)
    running = replace(base, step_started=now - 110, next_due=now + 190)
    assert running.describe(now) == "ramping 25 % → 50 % in 3m 10s"
    assert replace(running, index=4).describe(now) == "ramping at 100 %, done in 3m 10s"
    assert replace(base, why="waiting for the stream's first message").describe(now) == (
        "ramp starting at 25 %: waiting for the stream's first message"
    )
    holding = replace(base, status=HOLDING, why="12 paired samples < 50 needed")
    assert holding.describe(now) == "holding at 25 %: 12 paired samples < 50 needed"
    interrupted = "ramp interrupted at 25 % (thorcut ramp positions --resume)"
    assert replace(base, status=INTERRUPTED).describe(now) == interrupted
    assert replace(running, heartbeat=now - 10).describe(now) == interrupted
    assert replace(base, index=3, status="failed", why="mismatch at data.x").describe(now) == (
        "ramp failed at 50 %: mismatch at data.x"
    )
    assert replace(base, index=4, status=DONE).describe(now) == "ramp done (100 %)"
    assert replace(base, status=ABORTED, why="aborted by bob").describe(now) == "ramp aborted at 25 %: aborted by bob"
    doc = running.to_dict(now)
    assert doc["status"] == RUNNING
    assert doc["due_in_s"] == 190
    assert doc["next_percent"] == 50
    assert doc["owner"] == {"host": "elsewhere.example", "pid": 4242}  # never the token
    assert "t0ken" not in str(doc)


def test_a_hash_that_is_not_a_ramps_reads_as_none() -> None:
    assert RampState.from_hash("positions", {}) is None
    assert RampState.from_hash("positions", {"steps": "ten"}) is None
    odd = RampState.from_hash("positions", {"steps": "10,20", "index": "9", "status": "weird", "hold_s": "5"})
    assert odd is not None
    assert (odd.index, odd.status, odd.owner) == (2, INTERRUPTED, None)


# -- the values people give ------------------------------------------------------------------------


def test_steps() -> None:
    assert parse_steps("10,25,50,100") == (10, 25, 50, 100)
    assert parse_steps(" 5 , 100 ") == (5, 100)
    assert parse_steps("100") == (100,)


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "an empty step"), ("10,,50", "an empty step"), ("0,50", "'0'"), ("10,101", "'101'"), ("ten", "'ten'"),
     ("12.5", "'12.5'"), ("-5", "'-5'"), ("٣", "'٣'")],
)  # fmt: skip
def test_bad_steps_are_named_with_an_example(text: str, why: str) -> None:
    with pytest.raises(UsageError) as bad:
        parse_steps(text)
    assert why in str(bad.value)
    assert "such as --steps 10,25,50,100" in str(bad.value)


@pytest.mark.parametrize("text", ["50,25", "10,10,50"])
def test_steps_must_rise(text: str) -> None:
    with pytest.raises(UsageError, match="--steps must rise, each percent once, such as --steps 10,25,50,100"):
        parse_steps(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("1h30m", 5400), ("1.5s", 1.5),
     ("0.5", 0.5), ("7d", 7 * 86400), ("2H", 7200)],
)  # fmt: skip
def test_hold(text: str, seconds: float) -> None:
    assert parse_hold(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0s", "abc", "5 m", "30s1m", "1m1m", "8d", "nan", "inf", "1e3", "-5", "5x", "١٢", "٣m"]
)
def test_bad_hold_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(UsageError, match="such as --hold 90, 90s, 5m, 1h or 1m30s"):
        parse_hold(text)


def test_format_span() -> None:
    assert [format_span(s) for s in (0, 0.5, 1, 45, 60, 190, 3600, 3900, 90000, 9.96)] == [
        "0s", "0.5s", "1s", "45s", "1m", "3m 10s", "1h", "1h 5m", "1d 1h", "10s"]  # fmt: skip
