"""Eight processes racing on one feature never lose an update or reorder versions."""

from __future__ import annotations

import multiprocessing

import pytest
import redis

from tests.conftest import set_flag
from thorcut.dev.stack import EmbeddedRedis
from thorcut.errors import StaleVersion
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

PROCESSES = 8
CHANGES_EACH = 50


def _writer(port: int, prefix: str, name: str, changes: int) -> int:
    """Make ``changes`` percent changes using the expect-version retry loop; return retries."""
    client = redis.Redis(port=port, decode_responses=True)
    store = FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names, operator=name)
    done = retries = 0
    while done < changes:
        version = store.read("positions").version
        try:
            store.change(
                "positions",
                Stage.LIVE,
                percent=version % 100 + 1,  # differs from the percent the previous version set
                force=True,
                reason=f"{name}#{done}",
                expect_version=version,
            )
            done += 1
        except StaleVersion:
            retries += 1
    return retries


@pytest.mark.slow
def test_eight_processes_fifty_changes_each_lose_nothing(
    redis_server: EmbeddedRedis, client: redis.Redis, keys: Keys, prefix: str, store: FlagStore
) -> None:
    set_flag(client, keys, "positions", "live", 0, 100)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        jobs = [pool.apply_async(_writer, (redis_server.port, prefix, f"p{i}", CHANGES_EACH)) for i in range(PROCESSES)]
        retries = [j.get(timeout=120) for j in jobs]
    entries = list(store.iter_audit())
    assert len(entries) == PROCESSES * CHANGES_EACH
    assert [e.version for e in entries] == list(range(1, PROCESSES * CHANGES_EACH + 1))
    assert store.read("positions").version == PROCESSES * CHANGES_EACH
    per_writer: dict[str, list[int]] = {}
    for e in entries:
        per_writer.setdefault(e.fields["by"], []).append(int(e.fields["reason"].split("#")[1]))
    assert all(seq == list(range(CHANGES_EACH)) for seq in per_writer.values())
    assert len(per_writer) == PROCESSES
    assert sum(retries) > 0  # the writers really did race
    assert store.verify().ok
    # Altering one stored entry breaks verification at exactly that entry.
    target = entries[123]
    client.delete(keys.audit)
    for e in entries:
        fields = dict(e.fields, percent="99") if e.id == target.id else e.fields
        client.xadd(keys.audit, fields, id=e.id)
    report = store.verify()
    assert report.broken_id == target.id
