"""WebSocket routes: one stream endpoint, ``/ws/stream/``, served by :class:`StreamConsumer`.

Any other path is refused at the handshake (HTTP 403). Channels' ``URLRouter`` raises
``ValueError`` for a path it does not know, which uvicorn logged as "Exception in ASGI
application" with a traceback: one per request, for anybody to trigger (issue 10).
"""

import logging
from typing import Any

from django.urls import path, re_path

from global_markets.auth import refuse_handshake
from global_markets.consumers import StreamConsumer

log = logging.getLogger("global_markets.routing")


async def unknown_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse a handshake to a path with no consumer; one INFO line, the query string left out."""
    log.info("websocket to unknown path %r refused (client %s)", scope.get("path", "")[:200], scope.get("client"))
    await refuse_handshake(scope, receive, send)


websocket_urlpatterns = [
    path("ws/stream/", StreamConsumer.as_asgi()),
    re_path(r"", unknown_path),
]
