from django.urls import path

from thor_trading import views

urlpatterns = [
    path("account/balance", views.account_balance),
    path("account/positions", views.account_positions),
    path("intraday/<str:symbol>/bar", views.intraday_bar),
    path("intraday/<str:symbol>/vwap", views.intraday_vwap),
    path("markets/status", views.markets_status),
    path("cutover/flags", views.cutover_flags),
    path("health", views.health),
    path("session", views.session),
    path("session/login", views.login_view),
    path("session/logout", views.logout_view),
    path("openapi.json", views.openapi_json),
]
