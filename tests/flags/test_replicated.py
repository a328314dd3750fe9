"""Flag changes through Sentinel: reported done only once a replica acknowledged them (Redis WAIT),
so a failover loses none (docs/contracts.md, "Redis URLs"). Real primary, replica and Sentinels."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.sentinel import Deployment, sentinel_deployment
from thorcut.errors import ExitCode, NotReplicated
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys, connect


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of its own, for a test that fails its primary over."""
    with sentinel_deployment(tmp_path) as d:
        yield d


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment for the tests that leave its topology as they found it (a paused replica is
    resumed); each test writes under a prefix of its own. Starting one takes about 5 s."""
    with sentinel_deployment(tmp_path_factory.mktemp("sentinel")) as d:
        yield d


def _store(d: Deployment, prefix: str, **kw: object) -> FlagStore:
    return FlagStore(connect(d.url(), 3.0), Keys(prefix), DEFAULT_MANIFEST.names, operator="tester", **kw)  # type: ignore[arg-type]


def test_a_change_is_on_the_replica_when_it_returns(shared: Deployment, prefix: str) -> None:
    deployment = shared
    store = _store(deployment, prefix, wait_replicas=1, wait_timeout=2.0)
    try:
        replica = next(n for n in deployment.data if n.port != deployment.primary_port())
        with replica.client() as r:
            for stage in (Stage.SHADOW, Stage.LIVE, Stage.SHADOW):
                store.change("positions", stage, reason="replicated", force=True)
                # Read from the replica at once: WAIT returned only after it had the write.
                assert r.hget(Keys(prefix).flag("positions"), "stage") == stage.value
    finally:
        store.client.close()


def test_a_change_no_replica_acknowledges_is_reported_not_replicated(
    shared: Deployment, prefix: str, run: Run, cli_env: dict[str, str]
) -> None:
    deployment = shared
    replica = next(n for n in deployment.data if n.port != deployment.primary_port())
    os.kill(replica.process.pid, signal.SIGSTOP)  # alive, but acknowledges nothing
    try:
        store = _store(deployment, prefix, wait_replicas=1, wait_timeout=0.3)
        try:
            with pytest.raises(NotReplicated, match=r"positions → shadow is written on the Redis primary, but 0 of"):
                store.change("positions", Stage.SHADOW, reason="unacknowledged")
        finally:
            store.client.close()
        # The same through the CLI: exit 4, the change named, nothing hidden.
        url = deployment.url(query="wait_timeout=0.3")
        result = run("shadow", "intraday", "--reason", "x", env={"THORCUT_REDIS_URL": url})
        assert result.exit_code == ExitCode.UNREACHABLE, result.output
        assert "intraday → shadow is written on the Redis primary" in result.stderr
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


def test_wait_replicas_zero_reports_done_without_waiting(shared: Deployment, prefix: str, run: Run,
                                                         cli_env: dict[str, str]) -> None:  # fmt: skip
    deployment = shared
    replica = next(n for n in deployment.data if n.port != deployment.primary_port())
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        result = run("shadow", "positions", env={"THORCUT_REDIS_URL": deployment.url(query="wait_replicas=0")})
        assert result.exit_code == 0, result.output
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_failover_loses_no_change_the_cli_reported_done(deployment: Deployment, prefix: str, run: Run,
                                                          cli_env: dict[str, str]) -> None:  # fmt: skip
    url = deployment.url()
    env = {"THORCUT_REDIS_URL": url}
    done = []
    for feature in ("positions", "intraday", "account_balance", "global_market"):
        result = run("shadow", feature, "--reason", "before the failover", env=env)
        assert result.exit_code == 0, result.output
        done.append(feature)
    old = deployment.kill_primary()  # at once: nothing more to replicate than what WAIT saw
    deployment.wait_failover(old)
    status = run("status", "--json", env=env)
    assert status.exit_code == 0, status.output
    history = run("history", "--verify", env=env)
    assert history.exit_code == 0, history.output
    stages = {f["feature"]: f["stage"] for f in json.loads(status.stdout)["features"]}
    assert all(stages[f] == "shadow" for f in done), stages
    # With its only replica gone, a change is made but reported unacknowledged (exit 4) ...
    alone = run("enable", "positions", "--force", "--reason", "no replica", env=env)
    assert alone.exit_code == ExitCode.UNREACHABLE, alone.output
    assert "positions → live is written on the Redis primary, but 0 of the 1" in alone.stderr
    # ... until the old primary is back, now a replica of the new one: then it is acknowledged.
    deployment.restart(old)
    deployment.wait_replicated(timeout=30)
    again = run("disable", "positions", "--reason", "replica back", env=env)
    assert again.exit_code == 0, again.output
