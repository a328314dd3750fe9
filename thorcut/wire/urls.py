"""Where the backend is and how to authenticate to it: URLs and headers for tail, diff and check.

The WebSocket URL is ``--url``, else ``THORCUT_WS_URL``/``ws_url``, else the backend URL with
``ws(s)://`` and the reference path ``/ws/stream/``. The token (``THORCUT_TOKEN``) is sent as
``Authorization: Bearer …``; ``--header "Name: value"`` adds or replaces headers. Header values
are never printed: :func:`describe_headers` shows names only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from thorcut.config import Settings
from thorcut.errors import UsageError
from thorcut.values import check_url

WS_PATH = "/ws/stream/"


def ws_url(settings: Settings, override: str | None = None) -> str:
    """Return the WebSocket URL to connect to.

    Raises :class:`~thorcut.errors.ConfigError` (a UsageError, exit 2) for a URL that does not
    parse (``ws://[``), is not ws(s)://, or names no host — whichever setting it came from.
    """
    if override is not None:
        return check_url(override, "--url", ("ws", "wss"), "WebSocket URL")
    settings.require("ws_url")
    if settings.ws_url:
        return check_url(settings.ws_url, "THORCUT_WS_URL / ws_url", ("ws", "wss"), "WebSocket URL")
    settings.require("backend_url")
    parts = urlsplit(check_url(settings.backend_url, "the backend URL", ("http", "https"), "backend URL"))
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, WS_PATH, "", ""))


def with_features(url: str, features: list[str]) -> str:
    """Return ``url`` with ``features=a,b`` added to its query, unless it already names features.

    That is the reference backend's subscription; other backends ignore an unknown parameter.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not features or any(name == "features" for name, _ in query):
        return url
    query.append(("features", ",".join(features)))
    return urlunsplit(parts._replace(query=urlencode(query, safe=",")))


def rest_base(settings: Settings) -> str:
    """Return the backend's REST base URL (no trailing slash); raise ConfigError (exit 2) if it does
    not parse, is not http(s):// or names no host."""
    settings.require("backend_url")
    check_url(settings.backend_url, "the backend URL (--backend-url / THORCUT_BACKEND_URL)", ("http", "https"),
              "backend URL")  # fmt: skip
    return settings.backend_url.rstrip("/")


def parse_headers(raw: list[str] | None) -> dict[str, str]:
    """Return ``{"Name": "value"}`` from ``["Name: value", …]``; raise UsageError for a bad one."""
    out: dict[str, str] = {}
    for item in raw or []:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
            raise UsageError(f"--header must look like 'Name: value', not {item.split(':', 1)[0]!r}…")
        out[name] = value.strip()
    return out


def auth_headers(settings: Settings, extra: list[str] | None = None) -> dict[str, str]:
    """Return the headers for the backend: the bearer token (if any), then ``--header`` values."""
    settings.require("token")
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    given = parse_headers(extra)
    for name in list(headers):
        if any(name.lower() == g.lower() for g in given):
            del headers[name]
    headers.update(given)
    return headers


def describe_headers(headers: dict[str, str]) -> str:
    """Return the header names only (values may hold secrets)."""
    return ", ".join(sorted(headers)) or "none"
