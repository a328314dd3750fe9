"""WebSocket routes: one stream endpoint, ``/ws/stream/``, served by :class:`StreamConsumer`."""

from django.urls import path

from global_markets.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/stream/", StreamConsumer.as_asgi()),
]
