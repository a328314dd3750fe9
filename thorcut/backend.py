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

WS_PATH = "/ws/stream/"


def ws_url(settings: Settings, override: str | None = None) -> str:
    """Return the WebSocket URL to connect to; raise :class:`UsageError` for a non-ws(s) URL."""
    url = override or settings.ws_url
    if not url:
        parts = urlsplit(settings.backend_url)
        if parts.scheme not in ("http", "https"):
            raise UsageError(f"backend URL must start with http:// or https://, not {parts.scheme or '(none)'}://")
        url = urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, WS_PATH, "", ""))
    scheme = urlsplit(url).scheme
    if scheme not in ("ws", "wss"):
        raise UsageError(f"WebSocket URL must start with ws:// or wss://, not {scheme or '(none)'}://")
    return url


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
    """Return the backend's REST base URL (no trailing slash); raise UsageError if not http(s)."""
    parts = urlsplit(settings.backend_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"backend URL must be http(s)://host[:port], not {settings.backend_url!r}")
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
