from django.urls import path

from global_markets import views

urlpatterns = [
    path("cutover/flags", views.cutover_flags),
    path("health", views.health),
]
