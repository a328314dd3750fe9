"""ASGI entry point: HTTP (Django) and WebSocket at ``/ws/stream/`` (Channels)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor_project.settings")

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()  # sets Django up before the consumers import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from global_markets.auth import BrowserOriginValidator, TokenOrSessionAuthMiddleware  # noqa: E402
from global_markets.routing import websocket_urlpatterns  # noqa: E402
from global_markets.services import websocket_features  # noqa: E402
from thor_project import log_redaction  # noqa: E402

# uvicorn logs request lines with their query strings: redact credentials in every worker,
# however uvicorn was started (issue 10).
log_redaction.install()

# Every worker follows the flags (and registers for `thorcut enable --wait`) from the start,
# not from its first client.
websocket_features.watcher()

application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        # Browsers must come from an allowed host; thorcut and services send no Origin header
        # (Channels' AllowedHostsOriginValidator would refuse those).
        "websocket": BrowserOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
