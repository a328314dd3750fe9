"""Build settings, a Redis client and the flag store from a command's options (one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from thorcut.config import Settings, load_settings
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys, connect
from thorcut.redisurl import parse_redis_url


@dataclass
class Session:
    """What a command needs to talk to the flag store."""

    settings: Settings
    client: redis.Redis
    store: FlagStore

    @property
    def keys(self) -> Keys:
        return self.store.keys


def open_session(redis_url: str | None = None, timeout: float | None = None, config: Path | None = None) -> Session:
    """Resolve settings and connect; raises ConfigError (exit 2) or RedisUnavailable (exit 4)."""
    settings = load_settings({"redis_url": redis_url, "timeout": timeout}, config=config)
    target = parse_redis_url(settings.redis_url)
    # A change's WAIT for its replicas must end before the socket read does.
    wait = target.wait_timeout + 1.0 if target.wait_replicas else 0.0
    client = connect(settings.redis_url, max(settings.timeout, wait))
    store = FlagStore(
        client,
        Keys(settings.prefix),
        settings.features,
        operator=settings.operator,
        validity=settings.verdict_validity,
        wait_replicas=target.wait_replicas,
        wait_timeout=target.wait_timeout,
    )
    return Session(settings, client, store)
