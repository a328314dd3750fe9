"""The page names its build on every REST call, in real headless Chromium against the real stack.

The build writes its id to ``dist/build.json``; the backend serving that build publishes it as
``{prefix}:page:build``; every request the page makes to ``/api/`` carries
``X-Thor-Client: page/<that id>`` (seen by Playwright as it leaves the browser); the backend counts
the page's REST reads under that label in Redis, and the Shadow monitor shows them back.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import VIEWPORT, Stack, log_in
from tests.e2e.test_frontend import Console
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

pytestmark = pytest.mark.slow

FEATURES = DEFAULT_MANIFEST.names
#: The REST endpoints of the features, as the page calls them.
FEATURE_PATH = re.compile(r"/api/(account/balance|account/positions|intraday/[^/]+/(bar|vwap)|markets/status)$")


def page_reads(client: redis.Redis, keys: Keys, label: str) -> int:
    """Reads counted under ``label`` in every minute hash of every feature."""
    total = 0
    for feature in FEATURES:
        for key in client.scan_iter(match=keys.rest(feature, 0)[:-1] + "*"):
            if not key.endswith(":last"):
                total += int(client.hget(key, label) or 0)
    return total


def wait_for(what: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {message}")
        time.sleep(0.1)
    return value


def test_every_rest_call_of_the_page_names_its_build_and_is_counted_under_it(
    stack: Stack, flags: FlagStore, browser: Any, frontend_dist: Path
) -> None:
    from playwright.sync_api import expect

    build = json.loads((frontend_dist / "build.json").read_text())["build"]
    label = f"page/{build}"
    assert re.fullmatch(r"[A-Za-z0-9._:/@+-]{1,64}", label), label
    keys = Keys(stack.env["THORCUT_PREFIX"])
    client = redis.Redis.from_url(stack.env["THORCUT_REDIS_URL"], decode_responses=True)
    try:
        # The backend publishes the build it serves, from the same build.json.
        wait_for(lambda: client.get(keys.page_build) == build, 10, f"{keys.page_build} == {build}")
        before = page_reads(client, keys, label)

        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        page = context.new_page()
        console = Console()
        console.attach(page)
        sent: list[tuple[str, str | None]] = []
        page.on("request", lambda r: sent.append((r.url, r.headers.get("x-thor-client"))) if "/api/" in r.url else None)
        try:
            log_in(page, stack.server.url)

            # Every feature is in shadow (the `flags` fixture): the page polls each one's REST endpoints.
            def polled() -> list[str]:
                return [m.group(1) for url, _ in sent if (m := FEATURE_PATH.search(url.split("?")[0]))]

            endpoints = {"account/balance", "account/positions", "markets/status"}
            wait_for(lambda: endpoints <= set(polled()) and any(p.startswith("intraday/") for p in polled()), 15,
                     f"the page polls every feature's REST endpoints (sent {sorted(set(polled()))})")  # fmt: skip
            seen = len(polled())

            def counted() -> int:
                return page_reads(client, keys, label) - before

            wait_for(lambda: counted() >= seen, 10, f"{seen} reads counted under {label} (have {counted()})")
            wrong = [(url, header) for url, header in sent if header != label]
            assert not wrong, f"requests without X-Thor-Client: {label}: {wrong[:5]}"

            # The Shadow monitor shows the reads per minute, and names the page's build among the readers.
            reads = page.get_by_test_id("monitor-account_balance").get_by_test_id("rest-reads")
            expect(reads).to_have_attribute("title", re.compile(re.escape(label)), timeout=10_000)
            expect(reads).to_have_text(re.compile(r"^\d+\.\d$"))
            assert float(reads.inner_text()) > 0
            assert not console.unexpected(), console.unexpected()
        finally:
            context.close()
    finally:
        client.close()
