"""End-to-end fixtures: the built page, Debian's Chromium driven by Playwright, the whole Thor stack.

Nothing here skips. A missing browser, npm, or Playwright fails with the command that fixes it,
because a suite that silently drops its browser tests reports green for a page nobody loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.backend_fixtures import BACKEND, Server, start_server, stop_process
from thorcut.dev.frontend import ensure_built, frontend_dir
from thorcut.errors import ThorcutError
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

#: What the machine notes ask of a root, offline Chromium: no GPU, no QUIC, no calls home.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 900}


def chromium_executable() -> str:
    """``THORCUT_CHROMIUM``, else ``chromium`` on PATH, else Debian's path; fail if it is not there."""
    path = os.environ.get("THORCUT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"no Chromium at {path}: the end-to-end tests need a real browser. Install Debian's "
            "(apt-get install chromium; `.ci/run` does) or point THORCUT_CHROMIUM at one.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def frontend_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``frontend/dist``, built first if it is missing or older than its sources (as `dev up` does)."""
    folder = frontend_dir()
    if not (folder / "package.json").is_file():
        pytest.fail(f"no page to test: {folder / 'package.json'} is missing", pytrace=False)
    log = tmp_path_factory.mktemp("frontend") / "build.log"
    try:
        ensure_built(folder, log, note=lambda line: print(line, file=sys.stderr))
    except ThorcutError as exc:  # npm missing (with how to install it) or a failed build (with its log)
        pytest.fail(f"cannot build the page for the end-to-end tests: {exc}", pytrace=False)
    return folder / "dist"


@pytest.fixture(scope="module")
def browser(demo_users: object) -> Iterator[Any]:
    """Headless Chromium (the system's: Playwright downloads no browser of its own here).

    Module-scoped, and after the Django fixtures: while Playwright's sync API is open it keeps an
    asyncio loop running in this thread, and Django's sync code (the ORM, ``async_to_sync``)
    refuses to run under a running loop. Tests collected after this module must not see it.
    """
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail("the end-to-end tests need Playwright: pip install -e '.[dev]'", pytrace=False)
    executable = chromium_executable()
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.fail(f"Chromium at {executable} did not start ({exc}); apt-get install chromium", pytrace=False)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save screenshots: ``THORCUT_SCREENSHOTS`` (e.g. ``docs/img``), else a temp folder."""
    chosen = os.environ.get("THORCUT_SCREENSHOTS")
    folder = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def flags(thor_env: dict[str, str]) -> Iterator[FlagStore]:
    """The flag store of the servers' prefix, every feature in shadow; all back to off afterwards."""
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="e2e")
    for feature in DEFAULT_MANIFEST.names:  # off → shadow, or the rollback from live / complete
        if store.read(feature).stage is not Stage.SHADOW:
            store.change(feature, Stage.SHADOW, reason="e2e")
    yield store
    for feature in DEFAULT_MANIFEST.names:  # the shared prefix as other tests expect it: all off
        while (stage := store.read(feature).stage) is not Stage.OFF:
            store.change(feature, Stage.SHADOW if stage in (Stage.LIVE, Stage.COMPLETE) else Stage.OFF, reason="e2e")
    client.close()


@dataclass
class Stack:
    """The backend serving the page, and its job runner."""

    server: Server
    jobs: subprocess.Popen[bytes]
    env: dict[str, str]
    logs: Path

    def restart_server(self, log_name: str) -> Server:
        """Start a new server on the port of the stopped one."""
        port = int(self.server.url.rsplit(":", 1)[1])
        self.server = start_server(self.env, self.logs / log_name, port=port)
        return self.server


#: What the page reads for the demo account; on a fresh database each is 404 until the first tick.
DATA_PATHS = ("/api/account/balance", "/api/account/positions", "/api/intraday/ES/bar", "/api/intraday/ES/vwap",
              "/api/markets/status?market=CME")  # fmt: skip


def wait_for_data(url: str, token: str, jobs: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Wait until the job runner has written every state the page reads.

    Otherwise a page that loads first gets "no data yet" 404s, which Chromium logs as console errors.
    """
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    missing = list(DATA_PATHS)
    while missing:
        if jobs.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the job runner produced no data for {missing}:\n{log.read_text(errors='replace')[-2000:]}")
        missing = [p for p in missing if httpx.get(url + p, headers=headers, timeout=2).status_code != 200]
        time.sleep(0.1)


@pytest.fixture
def stack(
    thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], frontend_dist: Path, flags: FlagStore,
    tmp_path: Path,
) -> Iterator[Stack]:  # fmt: skip
    env = {**thor_env, "THOR_FRONTEND_DIST": str(frontend_dist)}
    server = start_server(env, tmp_path / "uvicorn.log")
    with (tmp_path / "jobs.log").open("wb") as out:
        jobs = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND,
                                env={**os.environ, **env, "THOR_TICK": "0.2"}, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    stack = Stack(server, jobs, env, tmp_path)
    try:
        wait_for_data(server.url, demo_users["demo"]["token"], jobs, tmp_path / "jobs.log")
    except BaseException:
        stop_process(jobs, 15)
        server.stop()
        raise
    yield stack
    stop_process(jobs, 15)
    stack.server.stop()


@pytest.fixture(scope="session", autouse=True)
def desk_users(demo_users: dict[str, dict[str, str]]) -> Iterator[dict[str, dict[str, str]]]:
    """``demo`` as an operator (as ``dev up`` makes it; put back as it was afterwards) and the
    ``viewer`` (DU9012), logged in like ``demo`` but not an operator.

    For every end-to-end test, so the page (and its screenshots) shows ``demo`` as the README does.
    Session-scoped, so it runs before a module's ``browser`` opens Playwright's loop (see there).
    """
    from django.contrib.auth import get_user_model

    from thor_trading.users import OPERATE, ensure_user

    was = get_user_model().objects.get(username="demo").has_perm(OPERATE)
    ensure_user("demo", "demo-pass", "DU1234", operator=True)
    viewer = ensure_user("viewer", "viewer-pass", "DU9012", token_name="tests", operator=False)
    yield {"demo": demo_users["demo"], "viewer": viewer}
    ensure_user("demo", "demo-pass", "DU1234", operator=was)


#: axe-core's browser build, a devDependency of the page (frontend/package.json).
AXE_SCRIPT = frontend_dir() / "node_modules" / "axe-core" / "axe.min.js"
#: The impacts that fail a test (axe's scale: minor, moderate, serious, critical).
AXE_FAILING = ("serious", "critical")

_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def log_in(page: Any, url: str, username: str = "demo", password: str = "demo-pass") -> None:
    """Log in through the page's form and wait until its WebSocket is connected."""
    from playwright.sync_api import expect

    page.goto(f"{url}/")
    form = page.locator('form[aria-label="Log in"]')
    expect(form).to_be_visible(timeout=10_000)
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("connection-state")).to_have_text("connected", timeout=15_000)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; return its serious and critical violations.

    The script is injected from ``frontend/node_modules`` (no network); a missing one fails, naming the fix.
    """
    if not AXE_SCRIPT.is_file():
        pytest.fail(f"no {AXE_SCRIPT}: run `npm ci` in frontend/ (axe-core is a devDependency)", pytrace=False)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    found: list[dict[str, Any]] = page.evaluate(_AXE_RUN)
    return [v for v in found if v["impact"] in AXE_FAILING]
