"""The built React page (``frontend/dist``) at ``/``, so one origin serves page, REST and WebSocket.

``/`` and any path that is not a file (the page's own routes) get ``index.html``; files of the
build get their bytes. Vite names what it puts under ``assets/`` by content hash, so those are
cached for a year; everything else (``index.html`` above all, which names the current hashes) is
``no-cache``: the browser revalidates it with ``ETag``/``Last-Modified`` and gets a 304. Without a
build, every page path answers 503 saying how to make one. ``/api/``, ``/ws/`` and ``/metrics``
never reach this view (``urls.py``).

The build also writes ``build.json``, ``{"build": "<id>"}``: the id the page sends with every REST
call (``X-Thor-Client: page/<id>``). :func:`build_id` reads it, for ``{prefix}:page:build``
(``thor_trading.rest_reads``), so that thorcut tells the page served now from older ones still open.

A small async view rather than WhiteNoise: WhiteNoise is WSGI-only (evansd/whitenoise#179), its
middleware is sync-only, so under uvicorn it would make Django run the whole middleware chain of
every REST request through a thread hop, and its file responses are sync iterators that Django's
ASGI handler buffers with a warning (evansd/whitenoise#531). It also has no SPA fallback and no
"not built" answer, which we need anyway. The build is a few small files read from the page cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.utils.cache import get_conditional_response
from django.utils.http import http_date, quote_etag

from thor_trading.rest_reads import well_formed

log = logging.getLogger("thor_project.frontend")

NOT_BUILT = (
    "The Thor page is not built: run `npm ci && npm run build` in frontend/ (or `thorcut dev up`, which builds it).\n"
)
#: Hashed file names (Vite's ``build.assetsDir``): safe to cache for good.
HASHED_DIR = "assets"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# The platform's MIME table varies (and may lack these); a wrong type for a module script is fatal.
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
}
TEXT = ("text/", "application/json", "application/manifest+json", "image/svg+xml")


def dist_dir() -> Path:
    """The build folder: setting ``THOR_FRONTEND_DIST`` (env), default ``<repo>/frontend/dist``."""
    return Path(settings.THOR_FRONTEND_DIST)


def build_id() -> str | None:
    """The build id in the build's ``build.json``, or None (no build, or one without an id).

    A file that is there but does not hold a usable id (``page/<id>`` must be a label: 1 to 64
    characters of ``A-Za-z0-9._:/@+-``) is read as no id, and logged (once per process and problem).
    """
    path = dist_dir() / "build.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _warn_once(f"cannot read the page's build id from {path} ({exc}): no page build is published")
        return None
    build = data.get("build") if isinstance(data, dict) else None
    if not (isinstance(build, str) and well_formed(f"page/{build}")):
        _warn_once(f'{path} does not hold {{"build": "<id>"}} with an id of 1 to 59 characters of '
                   "A-Za-z0-9._:/@+-: no page build is published")  # fmt: skip
        return None
    return build


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _file_in(root: Path, url_path: str) -> Path | None:
    """The file ``url_path`` names inside ``root``, or None (missing, a folder, hidden, or outside)."""
    if not url_path or any(part.startswith(".") for part in url_path.split("/")):
        return None
    try:
        candidate = (root / url_path).resolve()
    except (OSError, ValueError):  # e.g. a NUL byte in the path
        return None
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _looks_like_a_file(url_path: str) -> bool:
    """A missing ``/assets/…`` or ``/x.js`` is a 404, not the page: HTML as a script fails obscurely."""
    last = url_path.rsplit("/", 1)[-1]
    return url_path.startswith(f"{HASHED_DIR}/") or "." in last


def _read(path: Path) -> tuple[bytes, float]:
    return path.read_bytes(), path.stat().st_mtime


async def page(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Serve a file of the build, ``index.html`` for page routes, 404 for missing files, 503 without a build."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    root = dist_dir()
    index = root / "index.html"
    if not index.is_file():
        return HttpResponse(NOT_BUILT, status=503, content_type="text/plain; charset=utf-8",
                            headers={"Cache-Control": "no-store", "Retry-After": "10"})  # fmt: skip
    file = _file_in(root, path)
    if file is None:
        if _looks_like_a_file(path):
            return HttpResponse(f"Not found: /{path}\n", status=404, content_type="text/plain; charset=utf-8")
        file = index
    body, mtime = await asyncio.to_thread(_read, file)
    etag = quote_etag(f"{int(mtime * 1000):x}-{len(body):x}")
    last_modified = int(mtime)
    immutable = file != index and file.is_relative_to(root.resolve() / HASHED_DIR)
    headers = {
        "Cache-Control": IMMUTABLE if immutable else REVALIDATE,
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
    }
    not_modified = get_conditional_response(request, etag=etag, last_modified=last_modified)
    if not_modified is not None:
        for name, value in headers.items():
            not_modified[name] = value
        return not_modified
    content_type = TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type.startswith(TEXT) and "charset" not in content_type:
        content_type += "; charset=utf-8"
    return HttpResponse(body, content_type=content_type, headers=headers)
