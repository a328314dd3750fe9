"""Counting REST reads: who still reads each feature's REST endpoints (docs/contracts.md, "Retiring REST").

Every request to a feature's REST endpoints (the paths of the feature table; any method, any
status) is counted under a client label:

- the ``X-Thor-Client`` header, when it is 1 to 64 characters of ``A-Za-z0-9._:/@+-`` (the page
  sends ``page/<build>``; a script may name itself). Any other value (too long, control
  characters, non-ASCII, two headers joined by a comma) is ignored, as if absent;
- else, with a bearer token, ``token/<the token's name>`` (other characters replaced by ``_``,
  the label cut to 64);
- else ``anonymous``.

The middleware (first in ``MIDDLEWARE``, so that refusals before a view count too) hands each
read to this process's :class:`~thor_trading.rest_writer.Recorder`, which writes the counts to
Redis from its own thread (``thor_trading.rest_writer``: keys, the cap of 100 labels a minute,
expiry, what happens while Redis is away). ``THOR_REST_COUNTING=0`` takes the middleware out of
the chain: no cost, no keys. The operations monitor reads the counts back with
``thorcut.flags.restreads``, as ``thorcut status`` does.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.utils.decorators import sync_and_async_middleware
from redis.backoff import NoBackoff
from redis.retry import Retry

from thor_trading.auth import api_token, bearer
from thor_trading.features import FEATURES
from thor_trading.rest_writer import TIMEOUT, Recorder
from thorcut.flags import Keys, parse_redis_url

log = logging.getLogger("thor_trading.rest_reads")

#: The request header that names the client (``request.META`` spelling).
HEADER = "HTTP_X_THOR_CLIENT"
#: The longest label.
MAX_LABEL = 64
ANONYMOUS = "anonymous"

_LABEL = re.compile(r"[A-Za-z0-9._:/@+\-]{1,64}")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._:/@+\-]")

# -- labels and paths ------------------------------------------------------------------------------


def well_formed(value: object) -> bool:
    """Whether ``value`` may be a label as it is: 1 to 64 characters of ``A-Za-z0-9._:/@+-``."""
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL and _LABEL.fullmatch(value) is not None


def token_label(name: str) -> str:
    """``token/<name>``: characters a label may not hold replaced by ``_``, cut to 64 characters."""
    return f"token/{_NOT_LABEL.sub('_', name) or '_'}"[:MAX_LABEL]


def client_label(header: str | None, token_name: str | None) -> str:
    """The label of a read: a well-formed ``X-Thor-Client`` value, else the bearer token's name
    (None: no token, or one that is not stored), else ``anonymous``."""
    if header is not None and well_formed(header):
        return header
    if token_name is not None:
        return token_label(token_name)
    return ANONYMOUS


def _routes() -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], str], ...]]:
    exact: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], str]] = []
    for feature in FEATURES:
        for endpoint in feature.rest:
            if endpoint.key_in_path:  # the URL router's `str` converter: anything but a slash
                pattern = "[^/]+".join(re.escape(part) for part in endpoint.route.split("{key}"))
                patterns.append((re.compile(pattern), feature.name))
            else:
                exact[endpoint.route] = feature.name
    return exact, tuple(patterns)


_EXACT, _PATTERNS = _routes()


def feature_of(path: str) -> str | None:
    """The feature whose REST endpoint ``path`` (no query) is, or None."""
    feature = _EXACT.get(path)
    if feature is None and path.startswith("/api/"):
        feature = next((name for pattern, name in _PATTERNS if pattern.fullmatch(path)), None)
    return feature


# -- this process ----------------------------------------------------------------------------------

_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def recorder() -> Recorder | None:
    """This process's recorder, made on first use from the settings; None when counting is off
    (``THOR_REST_COUNTING=0``)."""
    global _recorder
    if not settings.THOR_REST_COUNTING:
        return None
    with _recorder_lock:
        if _recorder is None:
            target = parse_redis_url(settings.THORCUT_REDIS_URL, "THORCUT_REDIS_URL")
            client = target.client(TIMEOUT, retry=Retry(NoBackoff(), 0))
            _recorder = Recorder(client, Keys(settings.THORCUT_PREFIX), interval=settings.THOR_REST_COUNT_FLUSH,
                                 where=f"Redis at {target.shown}")  # fmt: skip
        return _recorder


def start(page_build: Callable[[], str | None]) -> None:
    """Start counting in this process (the ASGI app does at start-up): the flushing thread begins
    by writing ``page:build`` from ``page_build()``. Nothing when counting is off."""
    counter = recorder()
    if counter is not None:
        counter.page_build = page_build
        counter.start()


def close() -> None:
    """Write what this process counted and stop its thread (at server shutdown; at exit too)."""
    if _recorder is not None:
        _recorder.close()


# -- the middleware --------------------------------------------------------------------------------

_UNRESOLVED = object()


def _label(request: Any) -> str | None:
    """The label of ``request``'s read, or None when it is a bearer token's that its view did not
    look up (the request was refused before it: a 405, a CSRF 403)."""
    value = request.META.get(HEADER)
    if well_formed(value):
        return str(value)
    if not bearer(request.META):
        return ANONYMOUS
    name: Any = getattr(request, "thor_token_name", _UNRESOLVED)
    return None if name is _UNRESOLVED else client_label(None, name)


def _token_label(request: Any) -> str:
    try:
        row = api_token(bearer(request.META))
    except Exception:  # the database is away: the request failed already; count it unnamed
        log.debug("looking up a token for a REST read's label failed", exc_info=True)
        row = None
    return client_label(None, row.name if row else None)


def _count(counter: Recorder, feature: str, label: str) -> None:
    try:
        counter.record(feature, label)
    except Exception:  # counting must never fail a request
        log.exception("counting a REST read failed")


@sync_and_async_middleware
def count_rest_reads(get_response: Any) -> Any:
    """Django middleware: count every request to a feature's REST endpoints. First in
    ``MIDDLEWARE``, so that refusals before the view (a CSRF 403, a 405) count too."""
    counter = recorder()
    if counter is None:
        raise MiddlewareNotUsed

    async def count_async(request: Any) -> Any:
        response = await get_response(request)
        feature = feature_of(request.path_info)
        if feature is not None:
            label = _label(request)
            _count(counter, feature, label if label is not None else await sync_to_async(_token_label)(request))
        return response

    def count_sync(request: Any) -> Any:
        response = get_response(request)
        feature = feature_of(request.path_info)
        if feature is not None:
            _count(counter, feature, _label(request) or _token_label(request))
        return response

    return count_async if iscoroutinefunction(get_response) else count_sync
