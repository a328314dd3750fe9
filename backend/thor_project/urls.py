from django.urls import include, path, re_path

from global_markets.metrics import metrics_view
from thor_project import frontend

urlpatterns = [
    path("api/", include("thor_trading.urls")),
    path("api/", include("global_markets.urls")),
    path("metrics", metrics_view),
    # Everything else is the page (its files, or index.html for its routes); /api/…, /ws/… (an
    # HTTP request to the WebSocket path) and /metrics keep their own 404s.
    re_path(r"^(?!api(?:/|$)|ws(?:/|$)|metrics$)(?P<path>.*)$", frontend.page),
]

# JSON errors for the API paths (the page answers its own); thor_trading.openapi describes them.
handler400 = "thor_trading.views.bad_request"
handler404 = "thor_trading.views.not_found"
handler500 = "thor_trading.views.server_error"
