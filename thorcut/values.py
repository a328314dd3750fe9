"""Values that settings, options and the manifest hold, checked: seconds, durations and URLs.

One check per kind of value, shared by every place that takes one (a flag, a ``THORCUT_*``
variable, the settings file, the manifest), so that each gives the same clear error; and the
redaction of secrets in URLs, used wherever a URL is printed or logged.
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, urlsplit

from thorcut.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

#: The longest wait, timeout or duration thorcut accepts: a year. Beyond it the OS timers that
#: sockets, threads and asyncio use overflow (``--timeout 1e309`` used to end in a traceback).
MAX_SECONDS = 365 * 86400.0


def parse_seconds(value: object, name: str, *, minimum: float = 0.0, allow_minimum: bool = False) -> float:
    """Return ``value`` as a finite number of seconds in ``(minimum, MAX_SECONDS]``.

    ``allow_minimum`` makes the range ``[minimum, MAX_SECONDS]`` (``--wait 0``). Raises
    :class:`ConfigError` (exit 2) for text that is not a number, NaN, infinities and values out of
    range, naming ``name`` (the option or variable) and the accepted range. This is the one
    check behind every seconds option (``--timeout``, ``--wait``, ``--duration``:
    :class:`thorcut.cli.options.Seconds`) and every duration setting (:func:`parse_duration`).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number of seconds, such as 2 or 0.5, not {value!r}") from None
    low = f"from {minimum:g}" if allow_minimum else f"more than {minimum:g}"
    span = f"{low} to {MAX_SECONDS:.0f} (365 days)"
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be a finite number of seconds, {span}, not {value}")
    if seconds < minimum or (seconds == minimum and not allow_minimum) or seconds > MAX_SECONDS:
        raise ConfigError(f"{name} must be a number of seconds {span}, not {value}")
    return seconds


def parse_duration(value: object, name: str) -> float:
    """Return seconds from a number or a string like ``"24h"``/``"500ms"``; raise ConfigError.

    The result is finite, positive and at most :data:`MAX_SECONDS` (TOML's ``inf``/``nan`` and
    ``1e309`` are refused, not turned into a timer that overflows later).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(f"{name} must be a duration such as 2, 2s, 500ms or 24h, not {value!r}")
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{name} must be positive, not {value!r}")
    return parse_seconds(seconds, name)


def redact_url(url: str) -> str:
    """Return ``url`` with any password (and token-like query values) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "ws://[": still show it, with anything before an "@" and secrets hidden
        hidden = re.sub(r"(?<=://)[^/?#]*@", "***@", url)
        return re.sub(r"(?i)((?:password|token|secret|key)=)[^&#]*", r"\1***", hidden)
    if not parts.netloc and "@" in parts.path:  # no "//": "user:pass@host" parses as scheme "user"
        return redact_url("//***@" + url.rsplit("@", 1)[1])  # the query may hold secrets too
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
        # A lone userinfo with no colon is a password in redis:// URLs ("redis://secret@host").
        netloc = (f"{user}:***@{host}" if user else f":***@{host}") if ":" in userinfo else f"***@{host}"
    query = re.sub(r"(?i)((?:password|token|secret|key)=)[^&]*", r"\1***", parts.query)
    # Built by hand: urlunsplit would turn unix:///path into unix:/path.
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def check_url(url: str, source: str, schemes: tuple[str, ...], what: str = "URL") -> str:
    """Return ``url`` if it parses, has one of ``schemes`` and names a host; raise ConfigError.

    ``source`` names where the URL came from (``--url``, ``THORCUT_WS_URL``…) and ``what`` what
    it is for ("Redis URL"), so the message says what to fix. The URL in the message is redacted.
    """
    shown = redact_url(url)
    wanted = " or ".join(f"{s}://" for s in schemes)
    example = f"{schemes[0]}://host:port"
    bad = f"bad {what} in {source}"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ConfigError(f"{bad}: it holds a space or a control character ({shown!r}) — write it as {example}")
    if "://" not in url:
        raise ConfigError(f"{bad}: it has no scheme ({shown}) — write it as {example}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise ConfigError(f"{bad}: {exc} ({shown}) — write it as {example}") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{bad}: it must start with {wanted}, not {parts.scheme or '(none)'}:// ({shown})")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{bad}: it names no socket path ({shown}) — write it as unix:///path/to/redis.sock")
    elif not parts.hostname:
        raise ConfigError(f"{bad}: it names no host ({shown}) — write it as {example}")
    elif re.fullmatch(r"[0-9.]+", parts.hostname):  # urlsplit takes 256.1.1.1; every client then refuses it
        import ipaddress

        try:
            ipaddress.IPv4Address(parts.hostname)
        except ValueError:
            raise ConfigError(f"{bad}: {parts.hostname} is not an IPv4 address ({shown})") from None
    return url


def check_redis_url(url: str, source: str) -> str:
    """Return ``url`` if it is a usable Redis URL; raise :class:`ConfigError` (exit 2) if not.

    Checked here, before anything connects: the scheme (redis, rediss, unix), a host (or a
    socket path), the port, and the database index, which must be a non-negative integer
    (redis-py silently reads ``/abc`` as db 0). Whether the server *has* that database is the
    server's to say: :func:`thorcut.redisconn.translated` turns its answer into exit 2.
    """
    check_url(url, source, ("redis", "rediss", "unix"), "Redis URL")
    parts = urlsplit(url)
    db_texts = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "db"]
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        db_texts.append(parts.path[1:])
    for text in db_texts:
        if not text.isascii() or not text.isdigit():
            raise ConfigError(
                f"bad Redis URL in {source}: the database index must be a whole number from 0 (the default), "
                f"not {text!r} ({redact_url(url)}) — e.g. {parts.scheme}://host:6379/0"
            )
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        _check_redis_option(name, value, parts.scheme, f"bad Redis URL in {source} ({redact_url(url)})")
    return url


#: URL query options redis-py takes on any connection, and those only a TLS (rediss://) one takes
_REDIS_OPTIONS = frozenset({
    "db", "socket_timeout", "socket_connect_timeout", "socket_read_size", "socket_keepalive", "retry_on_timeout",
    "max_connections", "health_check_interval", "timeout", "protocol", "client_name", "legacy_responses",
})  # fmt: skip
_CERT_REQS = ("none", "optional", "required")
_REDIS_TIME_OPTIONS = frozenset({"socket_timeout", "socket_connect_timeout", "timeout", "health_check_interval"})


def _check_redis_option(name: str, value: str, scheme: str, bad: str) -> None:
    """Refuse a query option redis-py would choke on later (a TypeError, or ``nan`` reaching a socket)."""
    if name.startswith("ssl_"):
        if scheme != "rediss":
            raise ConfigError(f"{bad}: {name} is a TLS option; use rediss:// for TLS, or drop it")
        if name == "ssl_cert_reqs" and value not in _CERT_REQS:  # redis-py raises only on the first command
            raise ConfigError(f"{bad}: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, not {value!r}")
        return
    if name not in _REDIS_OPTIONS:
        known = ", ".join(sorted(_REDIS_OPTIONS))
        raise ConfigError(f"{bad}: unknown option {name!r} (Redis URLs take {known}, and ssl_* with rediss://)")
    if name in _REDIS_TIME_OPTIONS:
        try:
            parse_seconds(value, name, allow_minimum=name == "health_check_interval")
        except ConfigError as exc:
            raise ConfigError(f"{bad}: {exc}") from None
