"""The page in real headless Chromium against the real stack: log in, watch the cutover happen live.

One flow, as an operator would see it: every panel on REST while its feature is in shadow;
`thorcut enable account_balance` (the real CLI, in its own process) flips that panel to WebSocket
within a second, without a reload, and it keeps updating; `thorcut disable` flips it back; the
backend goes away and comes back on the same port and the page recovers by itself. No console
error or page error at any point, except the browser's own network errors while the server is down.

Timing is taken in the page: a MutationObserver stamps each badge change with ``Date.now()``,
which shares the wall clock with this process, so the switch time is "badge changed" minus "CLI
returned", not the polling interval of an assertion helper.

Selectors are only the page's DOM contract: the form and sections by their labels, the rest by
``data-testid``. Screenshots go to ``THORCUT_SCREENSHOTS`` (``docs/img`` for the README) or a temp folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.backend_fixtures import stop_process
from tests.e2e.conftest import VIEWPORT, Stack
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore

pytestmark = pytest.mark.slow

PANELS = ("Account balance", "Positions", "Intraday", "Global markets")
FEATURE_ROWS = ("account_balance", "positions", "intraday", "global_market")
SWITCH_LIMIT_MS = 1000
#: The browser's own lines for requests that found no server: allowed only while it is down.
NETWORK_ERROR = re.compile(r"Failed to load resource|WebSocket connection to .* failed|ERR_CONNECTION_REFUSED")

# Records every source-badge text change per panel, stamped with the wall clock.
WATCH_BADGES = """(names) => {
  window.__badgeChanges = [];
  const last = {};
  const record = () => {
    for (const name of names) {
      const badge = document.querySelector(`section[aria-label="${name}"] [data-testid="source-badge"]`);
      const text = badge ? badge.textContent.trim() : null;
      if (last[name] !== text) {
        last[name] = text;
        window.__badgeChanges.push({name, text, at: Date.now()});
      }
    }
  };
  record();
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@dataclass
class Console:
    """Console errors and page errors, each tagged with the phase of the flow it came in."""

    phase: str = "start"
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (phase, kind, text)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.entries.append((self.phase, "pageerror", str(exc))))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.entries.append((self.phase, "console", f"{msg.text} (at {msg.location.get('url', '?')})"))

    def unexpected(self) -> list[tuple[str, str, str]]:
        return [e for e in self.entries if not (e[0] == "outage" and e[1] == "console" and NETWORK_ERROR.search(e[2]))]


def thorcut(stack: Stack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the stack's Redis and prefix, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THORCUT_", "WS_FEATURE_"))}
    env |= {"THORCUT_REDIS_URL": stack.env["THORCUT_REDIS_URL"], "THORCUT_PREFIX": stack.env["THORCUT_PREFIX"],
            "THORCUT_OPERATOR": "e2e", "NO_COLOR": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "thorcut", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip


def panel(page: Any, name: str) -> Any:
    return page.locator(f'section[aria-label="{name}"]')


def seq_of(page: Any, name: str) -> int:
    text = panel(page, name).get_by_test_id("seq").inner_text().strip()
    assert re.fullmatch(r"\d+", text), f"{name}: seq {text!r} is not digits"
    return int(text)


def wait_seq_increases(page: Any, name: str, times: int = 2, timeout: float = 10.0) -> list[int]:
    """Wait until the panel's seq has gone up ``times`` times; return the values seen."""
    seen = [seq_of(page, name)]
    deadline = time.monotonic() + timeout
    while len(seen) <= times:
        assert time.monotonic() < deadline, f"{name}: seq moved only {seen} in {timeout:.0f} s"
        page.wait_for_timeout(50)
        now = seq_of(page, name)
        assert now >= seen[-1], f"{name}: seq went back from {seen[-1]} to {now}"
        if now > seen[-1]:
            seen.append(now)
    return seen


def switch_ms(page: Any, name: str, text: str, started_ms: float, returned_ms: float) -> float:
    """Milliseconds from the CLI's return to the first change of ``name``'s badge to ``text``."""
    from playwright.sync_api import expect

    expect(panel(page, name).get_by_test_id("source-badge")).to_have_text(text, timeout=5000)
    changes = page.evaluate("window.__badgeChanges")
    at = next(c["at"] for c in changes if c["name"] == name and c["text"] == text and c["at"] >= started_ms)
    return float(at - returned_ms)


def report(switch: str, command: str, after_return_ms: float, cli_ms: float) -> None:
    """Print a measured switch time (pytest -s shows it); negative: the page switched before the CLI exited."""
    since_start = after_return_ms + cli_ms
    print(f"\nswitch {switch}: {after_return_ms:+.0f} ms after `thorcut {command}` returned "
          f"({since_start:.0f} ms after it started; the CLI took {cli_ms:.0f} ms)", file=sys.stderr)  # fmt: skip


def shot(page: Any, folder: Path, name: str, focus: Any) -> Path:
    """A viewport screenshot with ``focus`` scrolled into view."""
    focus.scroll_into_view_if_needed()
    path = folder / name
    page.screenshot(path=str(path))
    return path


def test_page_follows_the_flags_live_and_recovers_from_a_backend_restart(
    stack: Stack, flags: FlagStore, browser: Any, screenshots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    console = Console()
    console.attach(page)
    connection = page.get_by_test_id("connection-state")
    try:
        # Log in through the form.
        console.phase = "login"
        page.goto(f"{stack.server.url}/")
        form = page.locator('form[aria-label="Log in"]')
        expect(form).to_be_visible(timeout=10_000)
        form.get_by_label("Username").fill("demo")
        form.get_by_label("Password").fill("demo-pass")
        form.get_by_role("button", name="Log in").click()
        expect(connection).to_have_text("connected", timeout=15_000)

        # Shadow: every panel reads REST, shows a seq, and keeps polling.
        console.phase = "shadow"
        for name in PANELS:
            expect(panel(page, name).get_by_test_id("source-badge")).to_have_text("REST (shadow)", timeout=10_000)
            expect(panel(page, name).get_by_test_id("seq")).to_have_text(re.compile(r"^\d+$"), timeout=10_000)
            expect(panel(page, name).get_by_test_id("updated")).not_to_be_empty()
        expect(panel(page, "Account balance").get_by_test_id("equity")).not_to_be_empty()
        wait_seq_increases(page, "Account balance", times=1)
        monitor = page.locator('section[aria-label="Shadow monitor"]')
        for feature in FEATURE_ROWS:
            expect(monitor.locator(f'tr[data-feature="{feature}"]')).to_be_visible()
        shot(page, screenshots, "panel-rest-shadow.png", panel(page, "Account balance"))

        page.evaluate(WATCH_BADGES, list(PANELS))

        # enable → WebSocket within a second of the CLI's return, no reload; still updating.
        console.phase = "live"
        started = time.time() * 1000
        enabled = thorcut(stack, "enable", "account_balance", "--force", "--reason", "e2e", cwd=tmp_path)
        returned = time.time() * 1000
        assert enabled.returncode == 0, enabled.stderr
        assert flags.read("account_balance").stage is Stage.LIVE
        to_ws = switch_ms(page, "Account balance", "WebSocket", started, returned)
        report("REST → WebSocket", "enable", to_ws, returned - started)
        assert to_ws <= SWITCH_LIMIT_MS, f"the badge switched {to_ws:.0f} ms after the CLI returned"
        wait_seq_increases(page, "Account balance", times=2)
        for name in PANELS[1:]:  # the other features stay on REST
            expect(panel(page, name).get_by_test_id("source-badge")).to_have_text("REST (shadow)")
        shot(page, screenshots, "panel-websocket.png", panel(page, "Account balance"))
        shot(page, screenshots, "shadow-monitor.png", monitor)

        # disable (the rollback) → REST (shadow) within a second.
        console.phase = "rollback"
        started = time.time() * 1000
        disabled = thorcut(stack, "disable", "account_balance", "--reason", "e2e", cwd=tmp_path)
        returned = time.time() * 1000
        assert disabled.returncode == 0, disabled.stderr
        to_rest = switch_ms(page, "Account balance", "REST (shadow)", started, returned)
        report("WebSocket → REST", "disable", to_rest, returned - started)
        assert to_rest <= SWITCH_LIMIT_MS, f"the badge switched back {to_rest:.0f} ms after the CLI returned"
        wait_seq_increases(page, "Account balance", times=1)

        # The backend goes away: the page says so, then recovers on its own when it is back.
        console.phase = "outage"
        stop_process(stack.server.process)
        expect(connection).to_have_text("disconnected", timeout=15_000)
        shot(page, screenshots, "panel-disconnected.png", panel(page, "Account balance"))
        stack.restart_server("uvicorn-restarted.log")
        expect(connection).to_have_text("connected", timeout=30_000)
        for name in PANELS:
            wait_seq_increases(page, name, times=1, timeout=15)
        console.phase = "recovered"
        expect(panel(page, "Account balance").get_by_test_id("source-badge")).to_have_text("REST (shadow)")
        page.wait_for_timeout(1000)  # anything the recovery logs comes in now, outside the outage window
    finally:
        context.close()

    allowed = len(console.entries) - len(console.unexpected())
    print(f"console: {allowed} network error line(s) while the server was down (allowed)", file=sys.stderr)
    unexpected = console.unexpected()
    assert not unexpected, "console/page errors:\n" + "\n".join(f"  [{p}] {k}: {t}" for p, k, t in unexpected)
