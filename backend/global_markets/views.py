"""REST endpoints of the push side: each feature's effective flag for one client, and health.

Both read this process's flag watcher (``services/websocket_features.py``); the domain's REST
helpers (JSON errors, authentication) come from ``thor_trading.views``.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from global_markets.services import websocket_features
from thor_trading.views import authenticated, require_GET


@require_GET
@authenticated
def cutover_flags(request: HttpRequest) -> HttpResponse:
    """The effective stage of each feature for this client (``?client=`` id, else the session)."""
    client = request.GET.get("client") or f"user:{request.thor_user.pk}"
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
