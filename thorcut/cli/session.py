"""Build settings, a Redis client and the flag store from a command's options (one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from thorcut.config import Settings, load_settings
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys, connect


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
    client = connect(settings.redis_url, settings.timeout)
    store = FlagStore(
        client,
        Keys(settings.prefix),
        settings.features,
        operator=settings.operator,
        validity=settings.verdict_validity,
    )
    return Session(settings, client, store)
