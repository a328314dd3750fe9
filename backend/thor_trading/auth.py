"""Who is asking: a session cookie (browser) or ``Authorization: Bearer <token>`` (thorcut, services)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser

from thor_trading.models import ApiToken


def api_token(token: str) -> ApiToken | None:
    """Return the stored token ``token`` is (with its user), or None."""
    if not token:
        return None
    row: ApiToken | None = ApiToken.objects.select_related("user").filter(digest=ApiToken.hash(token)).first()
    return row


def user_for_token(token: str) -> Any:
    """Return the user owning ``token``, or None."""
    row = api_token(token)
    return row.user if row and row.user.is_active else None


def bearer(headers: dict[str, str] | Any) -> str:
    """Return the bearer token from an ``Authorization`` header value mapping, or ''."""
    value = headers.get("authorization", "") or headers.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def request_user(request: Any) -> Any:
    """Return the authenticated user of a Django request, or None.

    A bearer token's name is left on the request as ``thor_token_name`` (None for a token that
    is not stored): the label its REST reads are counted under (``thor_trading.rest_reads``).
    """
    token = bearer(request.META)
    if token:
        row = api_token(token)
        request.thor_token_name = row.name if row else None
        return row.user if row and row.user.is_active else None
    user = getattr(request, "user", AnonymousUser())
    return user if user.is_authenticated else None
