"""Who is on a WebSocket: ``Authorization: Bearer <token>`` (thorcut, services) or the session cookie.

Browsers cannot put an ``Authorization`` header on a WebSocket handshake, so a bearer token is
always a non-browser client and takes precedence: a valid token sets ``scope["user"]`` to its
owner, an invalid or unknown one to ``AnonymousUser`` (never a silent fall back to a cookie that
may belong to someone else). Without a bearer token, Channels' ``AuthMiddlewareStack`` resolves
the Django session cookie as usual. Tokens are never logged, not even in part.

:func:`BrowserOriginValidator` is the origin check the ASGI app should use: Channels'
``AllowedHostsOriginValidator`` rejects handshakes *without* an ``Origin`` header, which is every
non-browser client (the ``websockets`` library sends none unless asked, nor does thorcut), and
matched a bare host name on any port (issue 10: any page on ``localhost`` could connect).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from thor_trading.auth import bearer, user_for_token

log = logging.getLogger("global_markets.auth")

Scope = dict[str, Any]


def scope_headers(scope: Scope) -> dict[str, str]:
    """The handshake headers as ``{lower-case name: value}`` (latin-1, as ASGI sends bytes)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


@database_sync_to_async
def _token_user(token: str) -> Any:
    return user_for_token(token)


class TokenOrSessionAuthMiddleware:
    """ASGI middleware: bearer token first, else the session cookie (``AuthMiddlewareStack``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        token = bearer(scope_headers(scope)) if scope.get("type") == "websocket" else ""
        if not token:
            return await self.session_stack(scope, receive, send)
        user = await _token_user(token)
        if user is None:
            # Say which client failed, never with what: the token stays out of every log line.
            log.info("websocket bearer token rejected (client %s)", scope.get("client"))
            user = AnonymousUser()
        return await self.inner(dict(scope, user=user), receive, send)


async def refuse_handshake(scope: Scope, receive: Any, send: Any) -> None:
    """ASGI app that refuses a WebSocket handshake (the client sees HTTP 403).

    Plain ASGI, not a consumer: it needs no channel layer, so it answers even while Redis is away.
    """
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def origin_triple(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin such as ``http://localhost:5173`` (default ports filled
    in); None for anything that is not an http(s) origin."""
    try:
        parsed = urlsplit(origin.strip().lower())
        port = parsed.port
    except ValueError:
        return None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    return parsed.scheme, parsed.hostname, port or (443 if parsed.scheme == "https" else 80)


def _own_origin(scope: Scope, headers: dict[str, str]) -> tuple[str, str, int] | None:
    """The origin this handshake was addressed to (its ``Host``, when that host is allowed)."""
    host = headers.get("host", "")
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    own = origin_triple(f"{scheme}://{host}") if host else None
    if own is None or not validate_host(own[1], settings.ALLOWED_HOSTS):
        return None
    return own


class OriginCheck:
    """ASGI middleware: let a handshake through when it has no ``Origin`` (not a browser), or when
    its ``Origin`` matches — scheme, host and port — the server's own origin or one of
    ``THOR_ALLOWED_ORIGINS``; refuse it (HTTP 403) otherwise."""

    def __init__(self, application: Any, allowed_origins: list[str]) -> None:
        self.application = application
        self.allowed = {t for t in map(origin_triple, allowed_origins) if t is not None}

    def allows(self, scope: Scope) -> bool:
        headers = scope_headers(scope)
        if "origin" not in headers:
            return True
        origin = origin_triple(headers["origin"])
        return origin is not None and (origin in self.allowed or origin == _own_origin(scope, headers))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not self.allows(scope):
            log.info("websocket handshake from a foreign origin refused (client %s)", scope.get("client"))
            return await refuse_handshake(scope, receive, send)
        return await self.application(scope, receive, send)


def BrowserOriginValidator(application: Any) -> Any:
    """Reject browser handshakes from an origin that is neither the server's own nor allowed;
    allow ones with no Origin.

    Browsers always send ``Origin`` on a WebSocket handshake, and cross-site WebSocket hijacking
    needs a browser (it rides on the ambient session cookie). A client without ``Origin`` is not a
    browser: it could send any Origin it liked, so refusing it protects nothing and only locks out
    thorcut and services. They still have to authenticate like everybody else. The allowed
    origins are ``settings.THOR_ALLOWED_ORIGINS`` (exact ``scheme://host:port``), plus the
    origin the handshake was sent to (its ``Host`` header, whose host must be in ``ALLOWED_HOSTS``).
    """
    return OriginCheck(application, settings.THOR_ALLOWED_ORIGINS)


__all__ = [
    "BrowserOriginValidator",
    "OriginCheck",
    "TokenOrSessionAuthMiddleware",
    "origin_triple",
    "refuse_handshake",
    "scope_headers",
]
