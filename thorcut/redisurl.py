"""Redis URLs, plain and through Sentinel, parsed once into a :class:`RedisTarget`.

A plain URL (``redis://``, ``rediss://``, ``unix://``) names one server. A Sentinel URL names the
Sentinels that know which server is the primary of a service now, and the service::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?options]
    rediss+sentinel://...   (TLS to the data nodes and to the Sentinels)

The password (and user) in the URL are the data nodes'; ``sentinel_password`` (and
``sentinel_username``) in the query, the Sentinels' own, when they ask for one; ``sentinel_timeout``
bounds each query to one Sentinel (connecting and asking, default 0.25 s: a Sentinel answers in
well under a millisecond on a healthy network, and a host that died must not cost more than that —
redis-py asks the Sentinels in turn and puts the one that answered first, but only once a discovery
completes, so a discovery cut short by a caller's own timeout would start at the dead one again). The other query
options are those of a plain URL (``socket_timeout``, ``ssl_*``…), for the data nodes. Both kinds
take ``wait_replicas=N`` and ``wait_timeout=SECONDS``: a flag change is reported done only once
``N`` replicas acknowledged it (Redis ``WAIT``), so a failover cannot lose it. A Sentinel URL waits
for one replica unless told otherwise (a Sentinel deployment without a replica has nothing to fail
over to); a plain URL for none.

One target makes every kind of client the project needs: a synchronous one (the CLI, the flag
watcher), an asyncio one (the backend's history and lock), and the ``hosts`` entry of a
channels_redis layer. A Sentinel client asks the Sentinels for the primary on each new connection,
so after a failover it reaches the new primary without a restart.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from thorcut.errors import ConfigError
from thorcut.values import check_redis_url, parse_seconds, redact_url

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: The query options a URL of either kind may add to the plain ones.
_OWN_OPTIONS = frozenset({"wait_replicas", "wait_timeout"})
_SENTINEL_OPTIONS = frozenset({"sentinel_password", "sentinel_username", "sentinel_timeout"})
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: How long a flag change waits for its replicas unless ``wait_timeout`` says otherwise.
WAIT_TIMEOUT = 1.0
#: Seconds one query to one Sentinel may take unless ``sentinel_timeout`` says otherwise.
SENTINEL_TIMEOUT = 0.25


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: one server (``sentinels`` empty), or a service the Sentinels know."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    #: Connection keywords for the data nodes (password, username, ssl…), Sentinel URLs only.
    options: dict[str, Any] = field(default_factory=dict)
    sentinel_options: dict[str, Any] = field(default_factory=dict)
    wait_replicas: int = 0
    wait_timeout: float = WAIT_TIMEOUT

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def shown(self) -> str:
        """The URL with its secrets hidden, for messages and logs."""
        return redact_url(self.url)

    @property
    def plain_url(self) -> str:
        """A plain URL without this module's own options (what redis-py's ``from_url`` takes)."""
        return _without(self.url, _OWN_OPTIONS)

    # -- clients --------------------------------------------------------------------------------

    def client(self, timeout: float, *, decode_responses: bool = True, **kw: Any) -> Any:
        """A synchronous ``redis.Redis`` (through the Sentinels: a client of the current primary)."""
        import redis

        common: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "decode_responses": decode_responses,
        }
        if not self.is_sentinel:
            return redis.Redis.from_url(self.plain_url, retry_on_timeout=False, **common, **kw)
        from redis.sentinel import Sentinel

        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(aio=False))  # type: ignore[no-untyped-call]
        client = sentinel.master_for(self.service, _sync_class(), db=self.db, **{**common, **self.options, **kw})  # type: ignore[no-untyped-call]
        client.sentinel_clients = sentinel.sentinels
        return client

    def async_client(self, timeout: float, *, decode_responses: bool = False, **kw: Any) -> Any:
        """An asyncio ``redis.asyncio.Redis`` for one event loop (through the Sentinels likewise)."""
        import redis.asyncio

        common: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "decode_responses": decode_responses,
        }
        if not self.is_sentinel:
            return redis.asyncio.Redis.from_url(self.plain_url, **common, **kw)
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(aio=True))  # type: ignore[no-untyped-call]
        client = sentinel.master_for(self.service, _async_class(), db=self.db, **{**common, **self.options, **kw})
        client.sentinel_clients = sentinel.sentinels
        return client

    def channel_layer_host(self) -> str | dict[str, Any]:
        """The entry of a channels_redis layer's ``hosts`` (both layers take Sentinel entries)."""
        if not self.is_sentinel:
            return self.plain_url
        return {
            "master_name": self.service,
            "sentinels": [list(s) for s in self.sentinels],
            "sentinel_kwargs": self._sentinel_kwargs(aio=True),
            "db": self.db,
            **self.options,
        }

    def _sentinel_kwargs(self, *, aio: bool) -> dict[str, Any]:
        """The Sentinels' own connection keywords: credentials, TLS, ``sentinel_timeout``, and no
        retries: redis-py retries a refused connection three times with back-off by default (4.5 s
        per dead Sentinel, seen here), and the next Sentinel is the better try."""
        from redis.backoff import NoBackoff

        if aio:
            from redis.asyncio.retry import Retry
        else:
            from redis.retry import Retry  # type: ignore[assignment]
        kw = dict(self.sentinel_options)
        bound = kw.pop("timeout", SENTINEL_TIMEOUT)
        kw.update(socket_connect_timeout=bound, socket_timeout=bound, retry=Retry(NoBackoff(), 0))
        return kw


@functools.cache
def _sync_class() -> type:
    import redis

    class SentinelRedis(redis.Redis):
        """A client of the primary that also closes its connections to the Sentinels."""

        sentinel_clients: Sequence[redis.Redis] = ()  # set on each client made

        def close(self) -> None:
            try:
                super().close()
            finally:
                for sentinel in self.sentinel_clients:
                    sentinel.close()

    return SentinelRedis


@functools.cache
def _async_class() -> type:
    import redis.asyncio

    class SentinelRedis(redis.asyncio.Redis):
        """A client of the primary that also closes its connections to the Sentinels."""

        sentinel_clients: Sequence[redis.asyncio.Redis] = ()  # set on each client made

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            try:
                await super().aclose(close_connection_pool)
            finally:
                for sentinel in self.sentinel_clients:
                    await sentinel.aclose()

    return SentinelRedis


def parse_redis_url(url: str, source: str = "the Redis URL") -> RedisTarget:
    """Return the target of ``url``; raise :class:`ConfigError` (exit 2) naming what to fix."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SENTINEL_SCHEMES:
        check_redis_url(_without(url, _OWN_OPTIONS), source)
        return RedisTarget(url, **_own_options(url, source))
    return _parse_sentinel(url, scheme, source)


def _parse_sentinel(url: str, scheme: str, source: str) -> RedisTarget:
    shown = redact_url(url)
    bad = f"bad Redis Sentinel URL in {source}"
    example = f"{scheme}://host1:26379,host2:26379,host3:26379/service/0"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ConfigError(f"{bad}: it holds a space or a control character ({shown!r}) — write it as {example}")
    rest = url.split("://", 1)[1]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    path = path.partition("#")[0]
    userinfo, _, hosts = netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, sep, port_text = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{bad}: each Sentinel must be host:port, not {item!r} ({shown}) — write it as {example}")
        # Checked like a plain URL's host: the same refusals (256.1.1.1…) and messages.
        check_redis_url(f"redis://{'[' + host + ']' if ':' in host else host}:{port_text}", source)
        sentinels.append((host, int(port_text)))
    segments = path.split("/") if path else []
    if not segments or not _SERVICE.fullmatch(segments[0]):
        raise ConfigError(
            f"{bad}: it must name the service (the master name the Sentinels monitor: letters, digits, . _ -) "
            f"after the Sentinels ({shown}) — write it as {example}"
        )
    if len(segments) > 2 or (len(segments) == 2 and not (segments[1].isascii() and segments[1].isdigit())):
        raise ConfigError(
            f"{bad}: after the service comes only the database index, a whole number from 0 ({shown}) "
            f"— write it as {example}"
        )
    db = int(segments[1]) if len(segments) == 2 else 0
    options: dict[str, Any] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if colon:
            options.update(username=unquote(user) or None, password=unquote(password))
        else:  # a lone userinfo is a password, as in redis:// URLs
            options["password"] = unquote(user)
        options = {k: v for k, v in options.items() if v is not None}
    sentinel_options: dict[str, Any] = {}
    plain = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "db":
            raise ConfigError(f"{bad}: give the database index after the service (/service/0), not db= ({shown})")
        if name == "sentinel_timeout":
            sentinel_options["timeout"] = parse_seconds(value, f"sentinel_timeout in {source}")
        elif name in _SENTINEL_OPTIONS:
            sentinel_options[name.removeprefix("sentinel_")] = value
        elif name not in _OWN_OPTIONS:
            plain.append(f"{name}={value}")
    # The data nodes' options are checked as a plain URL of the same TLS-ness would have them.
    probe = f"{'rediss' if scheme.startswith('rediss') else 'redis'}://{sentinels[0][0]}:1/0"
    check_redis_url(probe + ("?" + "&".join(plain) if plain else ""), source)
    from redis.connection import parse_url

    parsed: dict[str, Any] = parse_url(probe + ("?" + "&".join(plain) if plain else ""))  # type: ignore[no-untyped-call]
    options.update({k: v for k, v in parsed.items() if k not in ("host", "port", "db", "connection_class")})
    if scheme.startswith("rediss"):
        options["ssl"] = True
        sentinel_options["ssl"] = True
        sentinel_options.update({k: v for k, v in options.items() if k.startswith("ssl_")})
    own = _own_options(url, source, default_replicas=1)
    return RedisTarget(url, tuple(sentinels), segments[0], db, options, sentinel_options, **own)


def _own_options(url: str, source: str, *, default_replicas: int = 0) -> dict[str, Any]:
    query = url.partition("?")[2].partition("#")[0]  # by hand: urlsplit raises on "redis://["
    given = dict(parse_qsl(query, keep_blank_values=True))
    out: dict[str, Any] = {"wait_replicas": default_replicas}
    if "wait_replicas" in given:
        text = given["wait_replicas"]
        if not (text.isascii() and text.isdigit()) or int(text) > 100:
            raise ConfigError(
                f"bad Redis URL in {source} ({redact_url(url)}): wait_replicas must be a whole number of replicas "
                f"from 0 to 100, not {text!r}"
            )
        out["wait_replicas"] = int(text)
    if "wait_timeout" in given:
        out["wait_timeout"] = parse_seconds(given["wait_timeout"], f"wait_timeout in {source}")
    return out


def _without(url: str, names: frozenset[str]) -> str:
    if "?" not in url:
        return url
    head, _, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    kept = [p for p in query.split("&") if p.split("=", 1)[0] not in names]
    return head + ("?" + "&".join(kept) if kept else "") + (hash_ + fragment)
