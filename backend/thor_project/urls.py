from django.urls import include, path

from global_markets.metrics import metrics_view

urlpatterns = [
    path("api/", include("thor_trading.urls")),
    path("metrics", metrics_view),
]
