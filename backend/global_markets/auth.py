"""Who is on a WebSocket: ``Authorization: Bearer <token>`` (thorcut, services) or the session cookie.

Browsers cannot put an ``Authorization`` header on a WebSocket handshake, so a bearer token is
always a non-browser client and takes precedence: a valid token sets ``scope["user"]`` to its
owner, an invalid or unknown one to ``AnonymousUser`` (never a silent fall back to a cookie that
may belong to someone else). Without a bearer token, Channels' ``AuthMiddlewareStack`` resolves
the Django session cookie as usual. Tokens are never logged, not even in part.

:func:`BrowserOriginValidator` is the origin check the ASGI app should use: Channels'
``AllowedHostsOriginValidator`` rejects handshakes *without* an ``Origin`` header, which is every
non-browser client (the ``websockets`` library sends none unless asked, nor does thorcut).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

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


class _NoOriginOrAllowed(OriginValidator):
    """Channels' origin validator, except that a handshake without ``Origin`` is let through."""

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def BrowserOriginValidator(application: Any) -> Any:
    """Reject browser handshakes from an origin outside ``ALLOWED_HOSTS``; allow ones with no Origin.

    Browsers always send ``Origin`` on a WebSocket handshake, and cross-site WebSocket hijacking
    needs a browser (it rides on the ambient session cookie). A client without ``Origin`` is not a
    browser: it could send any Origin it liked, so refusing it protects nothing and only locks out
    thorcut and services. They still have to authenticate like everybody else.
    """
    return _NoOriginOrAllowed(application, settings.ALLOWED_HOSTS)


__all__ = ["BrowserOriginValidator", "TokenOrSessionAuthMiddleware", "scope_headers"]
