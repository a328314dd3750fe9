from django.urls import path

from global_markets import ops, views

urlpatterns = [
    path("cutover/flags", views.cutover_flags),
    path("health", views.health),
    path("ops/monitor", ops.monitor),
    path("ops/stage", ops.change_stage),
]
