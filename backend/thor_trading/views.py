"""REST endpoints: every feature's envelope (same builders as the WebSocket), flags, health, login."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from global_markets.services import websocket_features
from thor_trading import messages
from thor_trading.auth import request_user
from thor_trading.models import Account, MarketSession

View = Callable[..., HttpResponse]


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def authenticated(view: View) -> View:
    """Reject anonymous requests with 401 (JSON, never a login redirect)."""

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request_user(request)
        if user is None:
            return _error(401, "authentication required: session cookie or Authorization: Bearer <token>")
        request.thor_user = user  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


def _account(request: HttpRequest) -> Account | JsonResponse:
    """The account named by ``?account=`` (default: the user's first) if the user owns it."""
    user = request.thor_user  # type: ignore[attr-defined]
    code = request.GET.get("account")
    accounts = Account.objects.filter(owner=user).order_by("code")
    account = accounts.filter(code=code).first() if code else accounts.first()
    if account is None:
        # Same answer for "not yours" and "does not exist": no account enumeration.
        return _error(404, f"no account {code!r} for this user" if code else "this user has no account")
    return account


def _envelope(build: Callable[[], dict[str, Any]]) -> JsonResponse:
    try:
        return JsonResponse(build())
    except ObjectDoesNotExist:
        return _error(404, "no data yet: the jobs have not produced this state")


def _account_envelope(request: HttpRequest, build: Callable[[Account], dict[str, Any]]) -> HttpResponse:
    account = _account(request)
    if isinstance(account, JsonResponse):
        return account
    return _envelope(lambda: build(account))


@require_GET
@authenticated
def account_balance(request: HttpRequest) -> HttpResponse:
    return _account_envelope(request, messages.balance_message)


@require_GET
@authenticated
def account_positions(request: HttpRequest) -> HttpResponse:
    return _account_envelope(request, messages.positions_message)


@require_GET
@authenticated
def intraday_bar(request: HttpRequest, symbol: str) -> HttpResponse:
    return _envelope(lambda: messages.bar_message(symbol.upper()))


@require_GET
@authenticated
def intraday_vwap(request: HttpRequest, symbol: str) -> HttpResponse:
    return _envelope(lambda: messages.vwap_message(symbol.upper()))


@require_GET
@authenticated
def markets_status(request: HttpRequest) -> HttpResponse:
    market = request.GET.get("market")
    if market:
        return _envelope(lambda: messages.market_status_message(market.upper()))
    markets = [
        messages.market_status_message(m)
        for m in MarketSession.objects.order_by("market").values_list("market", flat=True)
    ]
    return JsonResponse({"markets": markets})


@require_GET
@authenticated
def cutover_flags(request: HttpRequest) -> HttpResponse:
    """The effective stage of each feature for this client (``?client=`` id, else the session)."""
    client = request.GET.get("client") or f"user:{request.thor_user.pk}"  # type: ignore[attr-defined]
    return JsonResponse({"client": client, "features": websocket_features.flags_for_client(client)})


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    w = websocket_features.watcher()
    db_ok = True
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception:  # health reports, it does not raise
        db_ok = False
    body = {"status": "ok" if db_ok else "degraded", "database": db_ok, "flags_connected": w.connected,
            "flags_synced": w.synced}  # fmt: skip
    return JsonResponse(body, status=200 if db_ok else 503)


@ensure_csrf_cookie
@require_GET
def session(request: HttpRequest) -> HttpResponse:
    """Who is logged in (and set the CSRF cookie for the login form)."""
    user = request_user(request)
    if user is None:
        return JsonResponse({"authenticated": False})
    codes = list(Account.objects.filter(owner=user).order_by("code").values_list("code", flat=True))
    return JsonResponse({"authenticated": True, "username": user.get_username(), "accounts": codes})


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, 'send JSON: {"username": …, "password": …}')
    user = authenticate(request, username=body.get("username", ""), password=body.get("password", ""))
    if user is None:
        return _error(401, "wrong username or password")
    login(request, user)
    return JsonResponse({"authenticated": True, "username": user.get_username()})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"authenticated": False})
