"""ASGI entry point: HTTP (Django) and WebSocket at ``/ws/stream/`` (Channels)."""

import asyncio
import inspect
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor_project.settings")

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()  # sets Django up before the consumers import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from global_markets.auth import BrowserOriginValidator, TokenOrSessionAuthMiddleware  # noqa: E402
from global_markets.routing import websocket_urlpatterns  # noqa: E402
from global_markets.services import websocket_features  # noqa: E402
from thor_project import frontend, log_redaction  # noqa: E402
from thor_trading import rest_reads  # noqa: E402

# uvicorn logs request lines with their query strings: redact credentials in every worker,
# however uvicorn was started (issue 10).
log_redaction.install()

# Every worker follows the flags (and registers for `thorcut enable --wait`) from the start,
# not from its first client.
websocket_features.watcher()

# Every worker counts REST reads (off with THOR_REST_COUNTING=0) and publishes which page build it
# serves, from the start: thorcut tells old page builds still polling from the current one.
rest_reads.start(page_build=frontend.build_id)


def on_stop(callback: Callable[[], None]) -> str:
    """Run ``callback`` when this process is stopped, after the server's graceful shutdown.

    uvicorn ends a process stopped by SIGTERM by raising the signal again once it has shut down,
    with the handler there was before it started serving, so ``atexit`` never runs; and it runs
    with ``--lifespan off`` here (Django answers no lifespan events). So:

    - a worker of ``uvicorn --workers N`` imports this module while serving: its ``Server``, found
      through the SIGTERM handler it installed, gets the callback after its ``shutdown``;
    - a single uvicorn process imports it before serving: a SIGTERM handler installed now is the
      one uvicorn raises the signal to at the end; it runs the callback, then the handler before it.

    ``atexit`` covers the other ways a process ends (SIGINT ends uvicorn with a normal exit).
    Returns which way was taken: ``server``, ``signal`` or ``atexit``.
    """
    current = signal.getsignal(signal.SIGTERM)
    server = getattr(current, "__self__", None)
    shutdown = getattr(server, "shutdown", None)
    if server is not None and inspect.iscoroutinefunction(shutdown):

        async def shutdown_then(*args: Any, **kwargs: Any) -> None:
            await shutdown(*args, **kwargs)
            await asyncio.to_thread(callback)

        server.shutdown = shutdown_then
        return "server"
    if threading.current_thread() is not threading.main_thread() or not (
        current is signal.SIG_DFL or callable(current)
    ):
        return "atexit"  # no signal handler from here, or SIGTERM is ignored on purpose

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signum, current)  # a second SIGTERM during the callback ends the process at once
        callback()
        if callable(current):
            current(signum, frame)
        else:
            signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_term)
    return "signal"


# The reads counted since the last flush are written when the worker stops, not lost.
on_stop(rest_reads.close)


application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        # Browsers must come from an allowed host; thorcut and services send no Origin header
        # (Channels' AllowedHostsOriginValidator would refuse those).
        "websocket": BrowserOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
