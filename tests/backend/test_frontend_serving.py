"""The built page at ``/`` (``thor_project.frontend``): index, page routes, assets, no build, API untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.conftest import start_server

INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-4f2a9c1e.js"></script></head></html>\n'
SCRIPT = "console.log('thor');\n"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A build as Vite lays it out: index.html, hashed assets, a file from public/."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-4f2a9c1e.js").write_text(SCRIPT)
    (root / "assets" / "index-77aa01bc.css").write_text("body{margin:0}\n")
    (root / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>\n')
    (root / ".env").write_text("SECRET=1\n")
    return root


@pytest.fixture
def client(thor_env: dict[str, str], dist: Path) -> Iterator[Any]:
    from django.test import Client, override_settings

    with override_settings(THOR_FRONTEND_DIST=str(dist)):
        yield Client()


@pytest.fixture(scope="module", autouse=True)
def _stop_flag_watcher() -> Iterator[None]:
    """/api/health starts this process's flag watcher: stop it afterwards."""
    yield
    from global_markets.services import websocket_features

    websocket_features.stop()


def test_root_serves_index_html_revalidated(client: Any) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/html; charset=utf-8"
    assert resp["Cache-Control"] == "no-cache"
    assert resp.content.decode() == INDEX
    again = client.get("/", HTTP_IF_NONE_MATCH=resp["ETag"])
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("route", ["/positions", "/shadow/monitor/", "/account/DU1234?tab=1"])
def test_page_routes_fall_back_to_index_html(client: Any, route: str) -> None:
    resp = client.get(route)
    assert resp.status_code == 200
    assert resp.content.decode() == INDEX
    assert resp["Cache-Control"] == "no-cache"


def test_hashed_asset_is_served_with_its_type_and_cached_for_good(client: Any) -> None:
    resp = client.get("/assets/index-4f2a9c1e.js")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.content.decode() == SCRIPT
    css = client.get("/assets/index-77aa01bc.css")
    assert css["Content-Type"] == "text/css; charset=utf-8"


def test_other_files_of_the_build_are_served_revalidated(client: Any) -> None:
    resp = client.get("/favicon.svg")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert resp["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/assets/index-00000000.js", "/missing.png", "/.env", "/assets/../../secret.txt"])
def test_missing_hidden_or_outside_files_are_404_not_the_page(client: Any, dist: Path, path: str) -> None:
    (dist.parent / "secret.txt").write_text("outside the build\n")
    resp = client.get(path)
    assert resp.status_code == 404
    assert b"SECRET" not in resp.content
    assert b"outside" not in resp.content


def test_only_get_and_head(client: Any) -> None:
    head = client.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert client.post("/", {}).status_code == 405  # the test client skips the CSRF check


def test_without_a_build_the_page_is_503_saying_how_to_build_it(thor_env: dict[str, str], tmp_path: Path) -> None:
    from django.test import Client, override_settings

    with override_settings(THOR_FRONTEND_DIST=str(tmp_path / "no-dist")):
        for path in ("/", "/positions"):
            resp = Client().get(path)
            assert resp.status_code == 503
            assert resp["Content-Type"] == "text/plain; charset=utf-8"
            assert "npm ci && npm run build" in resp.content.decode()
            assert "thorcut dev up" in resp.content.decode()
        assert Client().get("/api/health").status_code == 200


def test_api_ws_and_metrics_paths_are_untouched(client: Any, demo_users: dict[str, dict[str, str]]) -> None:
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health["Content-Type"] == "application/json"
    assert client.get("/api/account/balance").status_code == 401  # not the page
    for path in ("/api/no-such-endpoint", "/api", "/ws/stream/", "/ws"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert INDEX.encode() not in resp.content
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics["Content-Type"].startswith("text/plain")


@pytest.mark.slow
def test_under_uvicorn_the_page_assets_and_api_share_one_origin(
    thor_env: dict[str, str], demo_users: object, dist: Path, tmp_path: Path
) -> None:
    server = start_server(thor_env, tmp_path / "uvicorn.log", extra_env={"THOR_FRONTEND_DIST": str(dist)})
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            index = http.get("/")
            assert index.status_code == 200
            assert index.text == INDEX
            assert http.get("/intraday").text == INDEX
            asset = http.get("/assets/index-4f2a9c1e.js")
            assert asset.status_code == 200
            assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert http.get("/", headers={"If-None-Match": index.headers["etag"]}).status_code == 304
            assert http.get("/api/health").json()["status"] == "ok"
            assert http.get("/api/account/balance").status_code == 401
    finally:
        server.stop()
    assert "must consume synchronous iterators" not in (tmp_path / "uvicorn.log").read_text()
