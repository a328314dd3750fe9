"""The domain's REST routes under ``/api/``: each feature's endpoints (paths from the feature table), the session,
and the descriptions of the API (OpenAPI) and of the stream (AsyncAPI)."""

from django.urls import URLPattern, path

from thor_trading import views
from thor_trading.features import FEATURES, Endpoint, Feature

#: message type -> the view that serves its endpoint
FEATURE_VIEWS = {
    "account_balance": views.account_balance,
    "positions": views.account_positions,
    "intraday_bar": views.intraday_bar,
    "vwap": views.intraday_vwap,
    "market_status": views.markets_status,
}


def _route(feature: Feature, endpoint: Endpoint) -> URLPattern:
    """``/api/intraday/{key}/bar`` -> ``intraday/<str:symbol>/bar`` (the key named as the feature names it)."""
    route = endpoint.route.removeprefix("/api/").replace("{key}", f"<str:{feature.key}>")
    return path(route, FEATURE_VIEWS[endpoint.type])


urlpatterns = [
    *(_route(feature, endpoint) for feature in FEATURES for endpoint in feature.rest),
    path("session", views.session),
    path("session/login", views.login_view),
    path("session/logout", views.logout_view),
    path("openapi.json", views.openapi_json),
    path("asyncapi.json", views.asyncapi_json),
]
