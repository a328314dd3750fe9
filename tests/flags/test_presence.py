"""``{prefix}:guard:<feature>`` (thorcut/flags/presence.py) on a real Redis: what a guard writes,
how long it lasts, and two guards of one feature."""

from __future__ import annotations

import pytest
import redis

from thorcut.dev.stack import EmbeddedRedis
from thorcut.flags.presence import EXPIRE_S, GuardPresence, PresenceWriter
from thorcut.redisconn import Keys


def test_a_held_feature_is_written_with_an_expiry_and_a_released_one_deleted(client: redis.Redis, keys: Keys) -> None:
    writer = PresenceWriter(client, keys, host="h1", pid=11)
    writer.hold("positions")
    assert writer.pending
    assert not client.exists(keys.guard("positions"))  # nothing is written before a flush
    writer.flush()
    assert not writer.pending
    stored = client.hgetall(keys.guard("positions"))
    assert set(stored) == {"host", "pid", "since", "heartbeat"}
    assert 0 < client.pttl(keys.guard("positions")) <= EXPIRE_S * 1000
    presence = GuardPresence.from_hash("positions", stored)  # type: ignore[arg-type]
    assert presence is not None
    assert (presence.host, presence.pid, presence.since) == ("h1", 11, stored["since"])
    writer.release("positions")
    writer.flush()
    assert not client.exists(keys.guard("positions"))


def test_of_two_guards_of_one_feature_the_first_keeps_the_hash_and_each_deletes_only_its_own(
    client: redis.Redis, keys: Keys
) -> None:
    first = PresenceWriter(client, keys, host="h1", pid=11)
    second = PresenceWriter(client, keys, host="h2", pid=22)
    for writer in (first, second):
        writer.hold("positions")
        writer.flush()
    assert client.hget(keys.guard("positions"), "pid") == "11"
    second.release("positions")
    second.flush()
    assert client.hget(keys.guard("positions"), "pid") == "11"  # not the second's to delete
    second.hold("positions")
    first.release("positions")
    first.flush()
    assert not client.exists(keys.guard("positions"))
    second.flush()  # its next heartbeat takes the hash over
    assert client.hget(keys.guard("positions"), "pid") == "22"


def test_a_release_that_could_not_be_written_is_written_at_the_next_flush(
    redis_server: EmbeddedRedis, client: redis.Redis, keys: Keys
) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    impatient = redis.Redis(port=redis_server.port, decode_responses=True, socket_timeout=0.2,
                            retry=Retry(NoBackoff(), 0))  # fmt: skip
    writer = PresenceWriter(impatient, keys, host="h1", pid=11)
    writer.hold("positions")
    writer.flush()
    writer.release("positions")
    client.client_pause(1000, all=False)  # writes wait a second: the flush times out
    with pytest.raises(redis.TimeoutError):
        writer.flush()
    assert writer.pending
    client.client_unpause()
    writer.flush()
    assert not writer.pending
    assert not client.exists(keys.guard("positions"))
    impatient.close()


def test_a_hash_that_is_not_a_guards_reads_as_none() -> None:
    assert GuardPresence.from_hash("positions", {}) is None
    assert GuardPresence.from_hash("positions", {"host": "h", "pid": "x"}) is None
    odd = GuardPresence.from_hash("positions", {"host": "h", "pid": "7", "since": "not a time", "heartbeat": "nan"})
    assert odd is not None
    assert (odd.heartbeat, odd.age(), odd.describe()) == (None, None, "guarded by h:7")
    assert odd.to_dict()["age_s"] is None
