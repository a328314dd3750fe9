"""A feature at ``complete`` in real Chromium: it heals over the WebSocket alone, never over REST.

Every feature is ``complete``. The page is logged in and settled; from then on every request it
makes is recorded. The backend is stopped and started again on the same port (the page
reconnects and resumes by ``seq``), then the channel-layer Redis is frozen (SIGSTOP) while the
jobs go on writing, and thawed: the worker notices that its path through Redis healed and brings
the page back to the current state of every stream itself (docs/contracts.md, "Resuming a
stream"). Through all of it the page makes no REST request for any feature's data, and after the
thaw every panel reaches the ``seq`` the database held at the thaw — the slow market-status
streams included, which would otherwise stay stale until their next change.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend_fixtures import BACKEND, Server, start_server, stop_process
from tests.conftest import start_redis
from tests.e2e.conftest import VIEWPORT, wait_for_data
from tests.e2e.test_frontend import PANELS, Console, panel, seq_of, wait_seq_increases
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore

pytestmark = pytest.mark.slow

#: The feature data the page could read over REST (its flags and session reads are not feature data).
FEATURE_PATHS = re.compile(r"/api/(account|intraday|markets)/")
FREEZE = 3.0
#: After the thaw, every panel holds the database's seq of the thaw within this many seconds.
HEAL_LIMIT = 3.0


def complete_everything(flags: FlagStore) -> None:
    for feature in flags.features:
        for step in (Stage.LIVE, Stage.COMPLETE):
            flags.change(feature, step, force=step is Stage.LIVE, reason="e2e: resume", percent=None)


def current_seqs(server: Server, token: str, symbol: str) -> dict[str, int]:
    """What the database holds now, read over REST by this test (not by the page)."""
    auth = {"Authorization": f"Bearer {token}"}
    seqs = {}
    paths = {"Account balance": "/api/account/balance", "Positions": "/api/account/positions",
             "Intraday": f"/api/intraday/{symbol}/bar", "vwap": f"/api/intraday/{symbol}/vwap"}  # fmt: skip
    with httpx.Client(base_url=server.url, headers=auth, timeout=5) as http:
        for name, path in paths.items():
            seqs[name] = http.get(path).raise_for_status().json()["seq"]
        for market in http.get("/api/markets/status").raise_for_status().json()["markets"]:
            seqs[f"market {market['key']}"] = market["seq"]
    return seqs


def page_seqs(page: Any) -> dict[str, int]:
    seqs = {name: seq_of(page, name) for name in ("Account balance", "Positions", "Intraday")}
    vwap = panel(page, "Intraday").get_by_test_id("vwap-seq").inner_text().strip()
    seqs["vwap"] = int(vwap) if vwap.isdigit() else -1
    for row in panel(page, "Global markets").locator("tr[data-market]").all():
        seqs[f"market {row.get_attribute('data-market')}"] = int(row.get_attribute("data-seq") or -1)
    return seqs


def behind(page: Any, want: dict[str, int]) -> dict[str, tuple[int, int]]:
    have = page_seqs(page)
    return {k: (have.get(k, -1), v) for k, v in want.items() if have.get(k, -1) < v}


@pytest.fixture
def channel_redis(tmp_path: Path) -> Iterator[Any]:
    """The channel layer's own redis-server, so freezing it leaves the flags' Redis alone."""
    server = start_redis(tmp_path / "channel-redis")
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_a_complete_feature_heals_across_a_restart_and_a_freeze_without_rest(
    thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], frontend_dist: Path, flags: FlagStore,
    channel_redis: Any, browser: Any, tmp_path: Path,
) -> None:  # fmt: skip
    from playwright.sync_api import expect

    env = {**thor_env, "THOR_FRONTEND_DIST": str(frontend_dist), "THOR_CHANNEL_REDIS_URL": channel_redis.url}
    token = demo_users["demo"]["token"]
    server = start_server(env, tmp_path / "uvicorn.log")
    with (tmp_path / "jobs.log").open("wb") as out:
        jobs = subprocess.Popen([sys.executable, "manage.py", "run_jobs", "--ttl", "30"], cwd=BACKEND,
                                env={**os.environ, **env, "THOR_TICK": "0.2"}, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    console = Console()
    console.attach(page)
    requests: list[tuple[str, str]] = []  # (phase, url) of the page's feature-data requests
    page.on("request", lambda r: requests.append((console.phase, r.url)) if FEATURE_PATHS.search(r.url) else None)
    connection = page.get_by_test_id("connection-state")
    try:
        wait_for_data(server.url, token, jobs, tmp_path / "jobs.log")
        complete_everything(flags)
        console.phase = "login"
        page.goto(f"{server.url}/")
        form = page.locator('form[aria-label="Log in"]')
        expect(form).to_be_visible(timeout=10_000)
        form.get_by_label("Username").fill("demo")
        form.get_by_label("Password").fill("demo-pass")
        form.get_by_role("button", name="Log in").click()
        expect(connection).to_have_text("connected", timeout=15_000)
        for name in PANELS:
            expect(panel(page, name).get_by_test_id("source-badge")).to_have_text("WebSocket", timeout=10_000)
            expect(panel(page, name)).to_have_attribute("data-stage", "complete")
        for name in ("Account balance", "Positions", "Intraday"):
            wait_seq_increases(page, name, times=2)
        symbol = panel(page, "Intraday").locator("select").input_value() or "ES"

        # From here on the page may not read any feature's data over REST.
        console.phase = "settled"
        page.wait_for_timeout(500)
        settled = len(requests)

        # The backend goes away and comes back on the same port: reconnect, resume.
        console.phase = "outage"
        port = int(server.url.rsplit(":", 1)[1])
        stop_process(server.process)
        expect(connection).to_have_text("disconnected", timeout=15_000)
        page.wait_for_timeout(1500)  # versions go by while the page is away
        server = start_server(env, tmp_path / "uvicorn-restarted.log", port=port)
        expect(connection).to_have_text("connected", timeout=30_000)
        console.phase = "restarted"
        for name in ("Account balance", "Positions", "Intraday"):
            wait_seq_increases(page, name, times=2, timeout=15)

        # The channel-layer Redis freezes while the jobs go on writing the database, then thaws.
        console.phase = "frozen"
        assert channel_redis.process is not None
        os.kill(channel_redis.process.pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE)
        finally:
            os.kill(channel_redis.process.pid, signal.SIGCONT)
        thawed = time.monotonic()
        console.phase = "thawed"
        want = current_seqs(server, token, symbol)
        while (late := behind(page, want)) and time.monotonic() - thawed < HEAL_LIMIT + 5:
            page.wait_for_timeout(50)
        healed_s = time.monotonic() - thawed
        print(f"\nafter a {FREEZE:g} s freeze the page held the database's seq of the thaw in {healed_s:.2f} s "
              f"({len(want)} streams)", file=sys.stderr)  # fmt: skip
        assert not late, f"streams still behind the database's seq at the thaw (page, database): {late}"
        assert healed_s < HEAL_LIMIT, f"the page caught up {healed_s:.2f} s after the thaw"
        expect(connection).to_have_text("connected")
        for name in ("Account balance", "Positions", "Intraday"):
            wait_seq_increases(page, name, times=1, timeout=10)
        page.wait_for_timeout(500)
    finally:
        context.close()
        stop_process(jobs, 15)
        server.stop()

    after = requests[settled:]
    assert after == [], f"the page read feature data over REST at complete: {after[:10]}"
    unexpected = console.unexpected()
    assert not unexpected, "console/page errors:\n" + "\n".join(f"  [{p}] {k}: {t}" for p, k, t in unexpected)
