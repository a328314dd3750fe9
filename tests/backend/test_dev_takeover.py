"""`thorcut dev up`'s standby job runner: kill -9 the leader and the standby takes over, every
(type, key) seq going on strictly upwards with no repeat (issue 10). Not timed: the takeover is
awaited for at most three lock TTLs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.backend.test_heartbeat import flags  # noqa: F401  (fixture)
from tests.backend.test_leader import assert_seq_strictly_increasing, holder_pid, lock_env, wait_for  # noqa: F401
from thorcut.dev.backend import LOCK_TTL, leader_key
from thorcut.dev.stack import free_port

pytestmark = pytest.mark.slow


def test_dev_stack_lock_key_and_ttl_are_the_job_runners(thor_env: dict[str, str]) -> None:
    from thor_runner import leader

    assert leader_key("some-prefix") == leader.leader_key("some-prefix")
    assert LOCK_TTL == leader.DEFAULT_TTL


def test_dev_up_standby_takes_over_when_the_leader_is_killed(thor_env: dict[str, str], lock_env: dict[str, Any],  # noqa: F811
                                                             run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    # (lock_env before run: the flags are set and watched under the session's prefix before
    # cli_env swaps THORCUT_PREFIX for a fresh one.)
    client, key, receiver = lock_env["client"], lock_env["key"], lock_env["receiver"]
    state = tmp_path / "stack"
    # The stack shares the session's Redis and prefix with the receiver; its database is its own.
    env = {"THORCUT_REDIS_URL": thor_env["THORCUT_REDIS_URL"], "THORCUT_PREFIX": thor_env["THORCUT_PREFIX"],
           "DATABASE_URL": ""}  # fmt: skip
    up = run("dev", "up", "--state-dir", str(state), "--port", str(free_port()), "--no-frontend", "--tick", "0.05",
             "--json", env=env)  # fmt: skip
    assert up.exit_code == 0, up.stderr
    try:
        backend = json.loads(up.stdout)["backend"]
        runners = [p["pid"] for p in backend["processes"] if p["role"] == "jobs"]
        assert len(runners) == 2
        leader = backend["leader"]
        assert leader in runners
        standby = next(pid for pid in runners if pid != leader)
        wait_for(lambda: len(receiver.data()) >= 50, 30, "messages from the leader")
        assert holder_pid(client, key) == leader
        before = assert_seq_strictly_increasing(receiver.data())

        os.kill(leader, signal.SIGKILL)
        wait_for(lambda: holder_pid(client, key) == standby, 3 * LOCK_TTL, "the standby to take the lock")
        took_at = receiver.messages[-1][0] if receiver.messages else 0.0
        wait_for(lambda: len(receiver.data(since=took_at)) >= 50, 30, "messages from the new leader")

        # Across the takeover every (type, key) seq went strictly up: none repeated, none went back.
        messages = receiver.data()
        after = assert_seq_strictly_increasing(messages)
        for k, seq in before.items():
            assert after[k] > seq, k
        seen = [(m["type"], m["key"], m["seq"]) for m in messages]
        assert len(seen) == len(set(seen))
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0, down.stderr
