"""REST endpoints: every feature's envelope (same builders as the WebSocket), login, the descriptions
of the API (OpenAPI) and of the stream (AsyncAPI).

Every answer is JSON, errors included (``{"error": …}``): a method a path does not take (405), an
unknown ``/api/`` path (404), a failed CSRF check (403). ``thor_trading.openapi`` describes them all, and
the flags and health endpoints of ``global_markets.views`` too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import ensure_csrf_cookie

from thor_trading import messages, openapi
from thor_trading.auth import request_user
from thor_trading.models import Account, MarketSession

View = Callable[..., HttpResponse]


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def require(method: str) -> Callable[[View], View]:
    """Answer any other method with a JSON 405 and ``Allow`` (Django's ``require_GET`` answers an empty body)."""

    def decorator(view: View) -> View:
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method:
                response = _error(405, f"{request.method} is not allowed here: use {method}")
                response["Allow"] = method
                return response
            return view(request, *args, **kwargs)

        wrapper.__name__ = view.__name__
        return wrapper

    return decorator


require_GET = require("GET")
require_POST = require("POST")


def _storable(value: str) -> bool:
    """Whether ``value`` can be looked up at all: PostgreSQL refuses NUL in text (a 500 otherwise)."""
    return "\x00" not in value


def authenticated(view: View) -> View:
    """Reject anonymous requests with 401 (JSON, never a login redirect)."""

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request_user(request)
        if user is None:
            return _error(401, "authentication required: session cookie or Authorization: Bearer <token>")
        request.thor_user = user
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


def _account(request: HttpRequest) -> Account | JsonResponse:
    """The account named by ``?account=`` (default: the user's first) if the user owns it."""
    user = request.thor_user
    code = request.GET.get("account")
    accounts = Account.objects.filter(owner=user).order_by("code")
    if code and not _storable(code):
        accounts = accounts.none()
    account = accounts.filter(code=code).first() if code else accounts.first()
    if account is None:
        # Same answer for "not yours" and "does not exist": no account enumeration.
        return _error(404, f"no account {code!r} for this user" if code else "this user has no account")
    return account


def _envelope(build: Callable[[], dict[str, Any]], key: str = "") -> JsonResponse:
    """The envelope ``build`` returns, or 404 when its state (of ``key``, if one is named) does not exist."""
    if not _storable(key):
        return _error(404, "no such key")
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
    return _envelope(lambda: messages.bar_message(symbol.upper()), symbol)


@require_GET
@authenticated
def intraday_vwap(request: HttpRequest, symbol: str) -> HttpResponse:
    return _envelope(lambda: messages.vwap_message(symbol.upper()), symbol)


@require_GET
@authenticated
def markets_status(request: HttpRequest) -> HttpResponse:
    market = request.GET.get("market")
    if market:
        return _envelope(lambda: messages.market_status_message(market.upper()), market)
    markets = [
        messages.market_status_message(m)
        for m in MarketSession.objects.order_by("market").values_list("market", flat=True)
    ]
    return JsonResponse({"markets": markets})


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
    usage = 'send a JSON object of two strings: {"username": …, "password": …}'
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, usage)
    # Schemathesis found two 500s here (issue 10): a JSON body that is not an object (no .get), and
    # a password that is not a string (Django's make_password raises TypeError).
    if not isinstance(body, dict):
        return _error(400, usage)
    username, password = body.get("username", ""), body.get("password", "")
    if not (isinstance(username, str) and isinstance(password, str)):
        return _error(400, usage)
    if not _storable(username):
        return _error(401, "wrong username or password")
    user = authenticate(request, username=username, password=password)
    if user is None:
        return _error(401, "wrong username or password")
    login(request, user)
    return JsonResponse({"authenticated": True, "username": user.get_username()})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"authenticated": False})


@require_GET
def openapi_json(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 description of this API (no auth)."""
    return JsonResponse(openapi.description())


@require_GET
def asyncapi_json(request: HttpRequest) -> HttpResponse:
    """The AsyncAPI 3.0 description of the WebSocket stream, its data schemas this API's (no auth)."""
    return JsonResponse(_asyncapi())


@functools.cache
def _asyncapi() -> dict[str, Any]:
    return openapi.asyncapi()  # the same for every request: built once, never changed after


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: JSON instead of Django's HTML page."""
    return _error(403, f"CSRF check failed ({reason}): send the csrftoken cookie's value in X-CSRFToken")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404`` (``/api/…``, ``/ws/…``; the page answers every other path itself)."""
    return _error(404, f"no such endpoint: {request.path} (see /api/openapi.json)")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400`` (e.g. a disallowed Host, too many fields)."""
    return _error(400, "bad request")


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: JSON, and no details (they are in the log)."""
    return _error(500, "internal error: see the backend's log")
