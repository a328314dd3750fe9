"""Redis URLs, plain and through Sentinel (thorcut/redisurl.py), against a real Sentinel deployment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests.sentinel import Deployment, sentinel_deployment
from thorcut.errors import ConfigError, RedisUnavailable
from thorcut.redisconn import connect
from thorcut.redisurl import RedisTarget
from thorcut.redisurl import parse_redis_url as parse
from thorcut.values import redact_url


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with sentinel_deployment(tmp_path_factory.mktemp("sentinel")) as d:
        yield d


# -- parsing ------------------------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_service_database_and_secrets() -> None:
    t = parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380,[::1]:26381/thor/3"
              "?sentinel_password=spw&socket_timeout=2&wait_replicas=2&wait_timeout=0.5")  # fmt: skip
    assert t.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert (t.service, t.db, t.wait_replicas, t.wait_timeout) == ("thor", 3, 2, 0.5)
    assert t.options["password"] == "s3cret"
    assert t.options["socket_timeout"] == 2.0
    assert t.sentinel_options == {"password": "spw"}
    kw = t.channel_layer_host()["sentinel_kwargs"]  # type: ignore[index]
    assert {k: v for k, v in kw.items() if k != "retry"} == {
        "password": "spw",
        "socket_connect_timeout": 0.25,
        "socket_timeout": 0.25,
    }
    assert kw["retry"].get_retries() == 0  # a dead Sentinel is not tried again: the next one is
    quick = parse("redis+sentinel://h:1/thor?sentinel_timeout=0.1").channel_layer_host()
    assert quick["sentinel_kwargs"]["socket_timeout"] == 0.1  # type: ignore[index]
    assert "s3cret" not in t.shown
    assert "spw" not in t.shown
    host = t.channel_layer_host()
    assert isinstance(host, dict)
    assert host["master_name"] == "thor"
    assert host["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26380], ["::1", 26381]]
    assert host["password"] == "s3cret"
    assert host["db"] == 3


def test_defaults_a_sentinel_url_waits_for_one_replica_a_plain_one_for_none() -> None:
    s = parse("redis+sentinel://h:26379/thor")
    assert (s.db, s.wait_replicas, s.wait_timeout, s.is_sentinel) == (0, 1, 1.0, True)
    p = parse("redis://h:6379/0?wait_replicas=1")
    assert (p.wait_replicas, p.is_sentinel, p.plain_url) == (1, False, "redis://h:6379/0")
    assert parse("redis://h:6379/0").channel_layer_host() == "redis://h:6379/0"
    tls = parse("rediss+sentinel://h:26379/thor?ssl_cert_reqs=none")
    assert tls.options["ssl"] is True
    assert tls.sentinel_options["ssl"] is True


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:26379", "must name the service"),
        ("redis+sentinel://h:26379/", "must name the service"),
        ("redis+sentinel://h:26379/th or", "space"),
        ("redis+sentinel://h/thor", "host:port"),
        ("redis+sentinel://h:0/thor", "host:port"),
        ("redis+sentinel://h:99999/thor", "host:port"),
        ("redis+sentinel://h:26379,/thor", "host:port"),
        ("redis+sentinel://256.1.1.1:26379/thor", "not an IPv4 address"),
        ("redis+sentinel://h:26379/thor/x", "database index"),
        ("redis+sentinel://h:26379/thor/0/1", "database index"),
        ("redis+sentinel://h:26379/thor?db=2", "after the service"),
        ("redis+sentinel://h:26379/thor?bogus=1", "unknown option"),
        ("redis+sentinel://h:26379/thor?socket_timeout=nan", "finite"),
        ("redis+sentinel://h:26379/thor?wait_replicas=-1", "wait_replicas"),
        ("redis+sentinel://h:26379/thor?wait_timeout=inf", "wait_timeout"),
        ("redis://h:6379/0?wait_replicas=x", "wait_replicas"),
        ("redis://h:6379/0?wait_timeout=0", "wait_timeout"),
        ("redis+sentinel://h:26379/thor?sentinel_timeout=nan", "sentinel_timeout"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_fix(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse(url)


@given(st.text(max_size=80))
def test_any_text_after_the_scheme_parses_or_is_a_config_error(tail: str) -> None:
    for scheme in ("redis+sentinel://", "redis://"):
        try:
            target = parse(scheme + ":pw@" + tail)
        except ConfigError as exc:
            message = str(exc)
        else:
            assert isinstance(target, RedisTarget)
            message = target.shown
        assert ":pw@" not in message


def test_secrets_never_show() -> None:
    url = "redis+sentinel://user:hunter2@h1:1,h2:2/thor/0?sentinel_password=topsecret"
    shown = redact_url(url)
    assert "hunter2" not in shown
    assert "topsecret" not in shown
    with pytest.raises(ConfigError) as info:
        parse(url.replace("/thor/0", "/thor/zero"))
    assert "hunter2" not in str(info.value)
    assert "topsecret" not in str(info.value)


# -- against real Sentinels -----------------------------------------------------------------------


def test_connect_reaches_the_primary_through_the_sentinels(deployment: Deployment) -> None:
    client = connect(deployment.url(), 2.0)
    try:
        client.set("k-connect", "v")
        port = deployment.primary_port()
        with deployment.node(port).client() as direct:
            assert direct.get("k-connect") == "v"
    finally:
        client.close()


def test_an_unknown_service_is_reported_unreachable_naming_it(deployment: Deployment) -> None:
    with pytest.raises(RedisUnavailable, match="nosuch"):
        connect(deployment.url("nosuch"), 1.0)


def test_no_sentinel_answering_is_reported_unreachable() -> None:
    with pytest.raises(RedisUnavailable, match="unreachable"):
        connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/thor/0", 0.5)


def test_async_client_and_channel_layer_host_reach_the_primary(deployment: Deployment) -> None:
    target = parse(deployment.url())

    async def main() -> bytes | None:
        client = target.async_client(2.0)
        try:
            await client.set("k-async", "w")
            got: bytes | None = await client.get("k-async")
            return got
        finally:
            await client.aclose()

    assert asyncio.run(main()) == b"w"

    from channels_redis.pubsub import RedisPubSubChannelLayer

    async def layer_roundtrip() -> dict[str, object]:
        layer = RedisPubSubChannelLayer(hosts=[target.channel_layer_host()], prefix="t-url")
        try:
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "x.y", "n": 1})
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            pool = layer._get_layer()._shards[0]._redis.connection_pool
            await layer.flush()
            # channels_redis 4.3 closes the primary's connections but not the Sentinels' ones.
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()

    assert asyncio.run(layer_roundtrip())["n"] == 1


@pytest.mark.slow
def test_a_client_follows_the_primary_through_a_failover(tmp_path: Path) -> None:
    with sentinel_deployment(tmp_path) as d:
        client = connect(d.url(), 1.0)
        try:
            client.set("k-fail", "before")
            assert client.wait(1, 2000) == 1  # on the replica too
            old = d.kill_primary()
            new = d.wait_failover(old)
            assert new != old
            deadline = time.monotonic() + 10
            while True:  # the same client object, no restart: a new connection asks the Sentinels
                try:
                    assert client.get("k-fail") == "before"
                    client.set("k-fail", "after")
                    break
                except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with d.node(new).client() as direct:
                assert direct.get("k-fail") == "after"
        finally:
            client.close()
