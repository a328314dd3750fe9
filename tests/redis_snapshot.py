"""Every key under a test's prefix with its type and whole content: compare two snapshots to
prove a refused command wrote nothing (issue 9); and wipe them, as a Redis that lost its data would."""

from __future__ import annotations

from typing import Any

import redis


def snapshot(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Return ``{key: (type, content)}`` for every key of ``{prefix}``."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=f"{{{prefix}}}*", count=1000)):
        kind = client.type(key)
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "stream":
            value = client.xrange(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        else:
            value = client.get(key)
        out[key] = (kind, value)
    return out


def wipe(client: redis.Redis, prefix: str) -> None:
    """What a Redis restart without its data does to this test's store (issue 10). The session's
    server is shared by every test: never FLUSHALL it."""
    names = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
    if names:
        client.delete(*names)
