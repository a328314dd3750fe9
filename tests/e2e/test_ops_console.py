"""The page as the operations console (issue 15), in real headless Chromium against the real stack.

One stack for the module (uvicorn serving the build, the job runner, the session's Redis) and one
page logged in as the operator ``demo`` at 1280 by 800; the tests run in file order on that page, each
setting up the flags it needs. The job runner drops ``unrealized_pnl`` from the pushed positions
(``THOR_FAULTS``), so the real ``thorcut diff`` judges positions FAIL with a mismatching path while
account_balance passes. What is checked:

- charts render and update (the intraday chart's pixels change between two frames), sparklines draw;
- the Shadow monitor shows the verdicts ``thorcut diff`` stored, with age, reason and the mismatching path;
- the layout fits 1280 by 800 and does not overflow at 420 px; the simulated clock says it is simulated;
- an operator moves a feature from the page (dialog, reason, confirm) and ``thorcut history`` names
  ``web:demo``; a move the gate refuses shows the gate's message in the dialog and writes nothing;
- a viewer gets no controls, and ``POST /api/ops/stage`` with its session and CSRF token is 403;
- every feature panel is marked stale within 2 s of the backend stopping, no badge claims WebSocket
  meanwhile, and the marks clear when it is back;
- axe-core finds no serious or critical violation on the login page or the dashboard;
- no console error or page error, except the browser's own network errors while the server is down.

Screenshots go to ``THORCUT_SCREENSHOTS`` (``docs/img`` for the README; the dashboard's then after a
minute of traffic) or a temp folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.backend_fixtures import BACKEND, start_server, stop_process
from tests.e2e.conftest import Stack, axe_violations, log_in, wait_for_data
from tests.e2e.test_frontend import PANELS, Console, panel, wait_seq_increases
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys

pytestmark = pytest.mark.slow

FEATURES = DEFAULT_MANIFEST.names
#: The feature each panel shows (aria-label → feature).
PANEL_FEATURE = dict(zip(PANELS, ("account_balance", "positions", "intraday", "global_market"), strict=True))
DESK = {"width": 1280, "height": 800}
NARROW = 420
#: The pushed positions lack a field REST has: the diff's FAIL, with a path to show.
FAULTS = "positions:drop_field"
#: Lowered thresholds (as tests/parity/test_live.py), so a 4 s diff gives a verdict by the same rules.
THRESHOLDS = "".join(f"[features.{f}.thresholds]\nmin_paired = 5\nmin_duration = 2\n" for f in FEATURES)
STALE_LIMIT_MS = 2000
#: Seconds the dashboard runs before its screenshot when it is for the README (``THORCUT_SCREENSHOTS``
#: set), so the candles and the 5-minute sparklines show more than their first few points.
WARMUP_S = 60.0 if os.environ.get("THORCUT_SCREENSHOTS") else 0.0
STALE_TEXT = re.compile(r"stale since \d{1,2}:\d{2}:\d{2}")

# Draws: pixels of the element's canvases unlike their first pixel, plus SVG shapes with an extent.
PAINTED = """(el) => {
  let painted = 0;
  for (const c of el.querySelectorAll("canvas")) {
    const ctx = c.width && c.height ? c.getContext("2d") : null;
    if (!ctx) continue;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) painted++;
    }
  }
  for (const s of el.querySelectorAll("svg path, svg polyline, svg line, svg rect, svg circle")) {
    const b = s.getBBox();
    if (b.width > 0 || b.height > 0) painted++;
  }
  return painted;
}"""

# What is cut off: content wider than its box that neither scrolls nor ends in an ellipsis with
# the whole text in its title (visually hidden text, 1 px wide, is meant to be).
CLIPPED = """() => [...document.querySelectorAll("body *")].filter((el) => {
  if (el.clientWidth <= 1 || el.scrollWidth <= el.clientWidth + 1) return false;
  const style = getComputedStyle(el);
  if (["visible", "auto", "scroll"].includes(style.overflowX)) return false;
  return !(style.textOverflow === "ellipsis" && el.title);
}).map((el) => `${el.tagName.toLowerCase()}.${el.className}: ${el.textContent.trim().slice(0, 60)}`)"""

# Logs every change of the panels' (stale, badge) state, stamped with the wall clock.
WATCH_STALE = """(names) => {
  window.__staleLog = [];
  let last = "";
  const record = () => {
    const now = names.map((name) => {
      const section = document.querySelector(`section[aria-label="${name}"]`);
      const badge = section && section.querySelector('[data-testid="source-badge"]');
      const stale = !!section && section.getAttribute("data-stale") === "true";
      return [name, stale, badge ? badge.textContent.trim() : null];
    });
    const key = JSON.stringify(now);
    if (key !== last) {
      last = key;
      window.__staleLog.push({at: Date.now(), panels: now});
    }
  };
  record();
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["data-stale"]});
}"""


@dataclass
class Ops:
    """The module's stack, its flag store, and a folder holding the lowered thresholds for the CLI."""

    stack: Stack
    store: FlagStore
    cwd: Path
    token: str


@dataclass
class Desk:
    """The operator's logged-in page."""

    page: Any
    console: Console


def reset_flags(store: FlagStore, to: Stage) -> None:
    """Every feature to ``to`` (shadow or off) by allowed moves, its verdicts and mismatches gone."""
    for feature in store.features:
        while (stage := store.read(feature).stage) is not to:
            step = Stage.SHADOW if stage in (Stage.LIVE, Stage.COMPLETE) or to is Stage.SHADOW else Stage.OFF
            store.change(feature, step, reason="e2e: ops console")
        store.client.delete(store.keys.parity(feature), store.keys.mismatches(feature))


@pytest.fixture(scope="module")
def ops(
    thor_env: dict[str, str], desk_users: dict[str, dict[str, str]], frontend_dist: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ops]:  # fmt: skip
    folder = tmp_path_factory.mktemp("ops")
    (folder / "thorcut.toml").write_text(THRESHOLDS)
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), FEATURES, operator="e2e")
    reset_flags(store, Stage.SHADOW)
    env = {**thor_env, "THOR_FRONTEND_DIST": str(frontend_dist)}
    server = start_server(env, folder / "uvicorn.log")
    with (folder / "jobs.log").open("wb") as out:
        jobs = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND,
                                env={**os.environ, **env, "THOR_TICK": "0.2", "THOR_FAULTS": FAULTS},
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    stack = Stack(server, jobs, env, folder)
    token = desk_users["demo"]["token"]
    try:
        wait_for_data(server.url, token, jobs, folder / "jobs.log")
        yield Ops(stack, store, folder, token)
    finally:
        stop_process(jobs, 15)
        stack.server.stop()
        reset_flags(store, Stage.OFF)  # the shared prefix as other tests expect it
        client.close()


def thorcut(ops: Ops, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI against the stack (Redis, prefix, backend, the demo's token), lowered thresholds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THORCUT_", "WS_FEATURE_"))}
    env |= {"THORCUT_REDIS_URL": ops.stack.env["THORCUT_REDIS_URL"], "THORCUT_PREFIX": ops.stack.env["THORCUT_PREFIX"],
            "THORCUT_BACKEND_URL": ops.stack.server.url, "THORCUT_TOKEN": ops.token, "THORCUT_OPERATOR": "e2e",
            "NO_COLOR": "1", "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "thorcut", *args], cwd=ops.cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def verdicts(ops: Ops) -> dict[str, Any]:
    """``thorcut diff --all`` over 4 s of the stack's traffic, its verdicts stored in Redis as always."""
    result = thorcut(ops, "diff", "--all", "--duration", "4", "--json")
    assert result.returncode in (0, 1, 5), result.stdout + result.stderr
    features: dict[str, Any] = json.loads(result.stdout)["features"]
    assert features["account_balance"]["verdict"] == "PASS", features["account_balance"]
    assert features["positions"]["verdict"] == "FAIL", features["positions"]
    return features


def open_page(browser: Any, viewport: dict[str, int] = DESK) -> tuple[Any, Console]:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    console = Console()
    console.attach(page)
    return page, console


@pytest.fixture(scope="module")
def desk(ops: Ops, browser: Any) -> Iterator[Desk]:
    page, console = open_page(browser)
    console.phase = "login"
    log_in(page, ops.stack.server.url, "demo", "demo-pass")
    console.phase = "desk"
    yield Desk(page, console)
    page.context.close()


def assert_quiet(console: Console) -> None:
    """No console or page error so far (but the browser's network errors in an outage); then start afresh."""
    unexpected = console.unexpected()
    console.entries.clear()
    assert not unexpected, "console/page errors:\n" + "\n".join(f"  [{p}] {k}: {t}" for p, k, t in unexpected)


def shot(page: Any, folder: Path, name: str, *, full_page: bool = False) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def monitor_row(page: Any, feature: str) -> Any:
    return page.get_by_test_id(f"monitor-{feature}")


def wait_painted(locator: Any, what: str, timeout: float = 10.0) -> int:
    """Wait until ``locator`` has drawn something (canvas pixels or SVG shapes); return how much."""
    deadline = time.monotonic() + timeout
    while (painted := int(locator.evaluate(PAINTED))) == 0:
        assert time.monotonic() < deadline, f"{what} drew nothing in {timeout:.0f} s"
        time.sleep(0.25)
    return painted


def edges(locator: Any, what: str) -> tuple[float, float, float, float]:
    """The element's left, top, right and bottom in the viewport."""
    box = locator.bounding_box()
    assert box is not None, f"{what} is not rendered"
    return box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]


def set_stage(store: FlagStore, feature: str, to: Stage) -> None:
    if store.read(feature).stage is not to:
        store.change(feature, to, force=to is Stage.LIVE, reason="e2e: ops console set-up")


def test_login_page_has_no_serious_accessibility_violation(ops: Ops, browser: Any) -> None:
    from playwright.sync_api import expect

    page, console = open_page(browser)
    try:
        page.goto(f"{ops.stack.server.url}/")
        expect(page.locator('form[aria-label="Log in"]')).to_be_visible(timeout=10_000)
        violations = axe_violations(page)
        assert not violations, json.dumps(violations, indent=1)
    finally:
        page.context.close()
    assert_quiet(console)


def test_charts_render_and_update(desk: Desk) -> None:
    from playwright.sync_api import expect

    page = desk.page
    chart = page.get_by_test_id("intraday-chart")
    expect(chart).to_be_visible(timeout=10_000)
    expect(chart.locator("canvas").first).to_be_attached()
    wait_painted(chart, "the intraday chart")
    # The simulated clock runs 60 times fast: a new one-minute candle about every second of wall time.
    first = chart.screenshot()
    deadline = time.monotonic() + 8
    while chart.screenshot() == first:
        assert time.monotonic() < deadline, "the intraday chart did not change in 8 s"
        page.wait_for_timeout(500)
    wait_painted(page.get_by_test_id("equity-spark"), "the equity sparkline")
    for feature in FEATURES:
        for kind in ("rate", "lag"):
            spark = page.get_by_test_id(f"spark-{feature}-{kind}")
            expect(spark).to_be_visible()
            wait_painted(spark, f"the {kind} sparkline of {feature}")
    assert_quiet(desk.console)


def test_monitor_shows_the_verdicts_thorcut_diff_stored(desk: Desk, verdicts: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    passed, failed = monitor_row(desk.page, "account_balance"), monitor_row(desk.page, "positions")
    expect(passed.get_by_test_id("verdict")).to_have_text("PASS", timeout=10_000)
    expect(passed.get_by_test_id("verdict-age")).to_have_text(re.compile(r"\d"))
    assert str(verdicts["account_balance"]["counts"]["paired"]) in passed.inner_text()
    expect(failed.get_by_test_id("verdict")).to_have_text("FAIL", timeout=10_000)
    expect(failed.get_by_test_id("verdict-reason")).not_to_be_empty()
    expect(failed.get_by_test_id("last-mismatch")).to_contain_text("unrealized_pnl")
    for feature in FEATURES:
        row = monitor_row(desk.page, feature)
        expect(row.get_by_test_id("ramp")).to_be_attached()
        expect(row.get_by_test_id("guard")).to_be_attached()
    assert_quiet(desk.console)


def test_dashboard_fits_is_labelled_and_has_no_serious_accessibility_violation(
    desk: Desk, verdicts: dict[str, Any], screenshots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = desk.page
    expect(page.get_by_test_id("sim-clock")).to_contain_text(re.compile("simulated", re.IGNORECASE))
    page.evaluate("() => window.scrollTo(0, 0)")
    for name in PANELS:  # the four panels, whole, without scrolling
        left, top, right, bottom = edges(panel(page, name), name)
        assert 0 <= left <= right <= DESK["width"], (name, left, right)
        assert 0 <= top <= bottom <= DESK["height"], (name, top, bottom)
    for feature in FEATURES:  # and the monitor's summary: each feature's verdict
        left, top, right, bottom = edges(monitor_row(page, feature).get_by_test_id("verdict"), feature)
        assert 0 <= top <= bottom <= DESK["height"], (feature, top, bottom)
    page.wait_for_timeout(WARMUP_S * 1000)
    shot(page, screenshots, "ops-dashboard.png")
    assert not page.evaluate(CLIPPED), page.evaluate(CLIPPED)
    violations = axe_violations(page)
    assert not violations, json.dumps(violations, indent=1)

    page.set_viewport_size({"width": NARROW, "height": DESK["height"]})
    try:
        page.wait_for_timeout(300)
        overflow = page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= NARROW, f"the page is {overflow} px wide at {NARROW} px"
        assert not page.evaluate(CLIPPED), page.evaluate(CLIPPED)
        for name in (*PANELS, "Shadow monitor"):
            left, _, right, _ = edges(page.locator(f'section[aria-label="{name}"]'), name)
            assert 0 <= left <= right <= NARROW, (name, left, right)
        print(f"\nnarrow page: {shot(page, tmp_path, 'ops-narrow.png', full_page=True)}", file=sys.stderr)
    finally:
        page.set_viewport_size(DESK)
    assert_quiet(desk.console)


def test_a_refused_move_shows_the_gates_message_in_the_dialog_and_writes_nothing(
    desk: Desk, ops: Ops, verdicts: dict[str, Any], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    set_stage(ops.store, "positions", Stage.SHADOW)
    before = len(ops.store.history("positions"))
    cli = thorcut(ops, "enable", "positions", "--reason", "e2e: the CLI's refusal")
    assert cli.returncode != 0
    gate = re.search(r"refusing to enable positions: [^.]+", cli.stderr)
    assert gate, cli.stderr

    page = desk.page
    button = page.get_by_test_id("stage-positions-live")
    button.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Force past the parity gate")).not_to_be_checked()
    dialog.get_by_label("Reason").fill("e2e: try without a PASS")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.get_by_role("alert")).to_contain_text(gate.group(0), timeout=5000)
    expect(dialog).to_be_visible()  # the operator reads the refusal where they asked
    shot(page, screenshots, "ops-stage-refused.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(button).to_be_focused()  # focus goes back where it came from

    button.click()  # Escape cancels too
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    assert ops.store.read("positions").stage is Stage.SHADOW
    assert len(ops.store.history("positions")) == before
    # The browser logs the 409 response as a failed resource load; it is the refusal this test asked for.
    desk.console.entries[:] = [e for e in desk.console.entries if "status of 409" not in e[2]]
    assert_quiet(desk.console)


def test_an_operator_moves_a_feature_from_the_page_and_history_names_the_web_user(
    desk: Desk, ops: Ops, verdicts: dict[str, Any], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    set_stage(ops.store, "account_balance", Stage.SHADOW)
    page = desk.page
    page.get_by_test_id("stage-account_balance-live").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    force = dialog.get_by_label("Force past the parity gate")
    expect(force).not_to_be_checked()  # the PASS opens the gate: no force needed
    reason = "e2e: account_balance passed parity, promote from the console"
    dialog.get_by_label("Reason").fill(reason)
    shot(page, screenshots, "ops-stage-dialog.png")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden(timeout=5000)

    expect(panel(page, "Account balance").get_by_test_id("source-badge")).to_have_text("WebSocket", timeout=5000)
    assert ops.store.read("account_balance").stage is Stage.LIVE
    # The monitor now offers what the stage machine allows from live: the rollback to shadow.
    expect(page.get_by_test_id("stage-account_balance-shadow")).to_be_visible(timeout=5000)
    expect(page.get_by_test_id("stage-account_balance-live")).to_have_count(0)

    table = thorcut(ops, "history", "account_balance", "--limit", "1")
    assert table.returncode == 0, table.stderr
    assert "web:demo" in table.stdout, table.stdout
    entry = json.loads(thorcut(ops, "history", "account_balance", "--limit", "1", "--json").stdout)["entries"][0]
    assert (entry["to"], entry["by"], entry["reason"], entry["forced"]) == ("live", "web:demo", reason, False)
    assert_quiet(desk.console)


def test_a_viewer_gets_no_controls_and_the_endpoint_refuses_it(desk: Desk, ops: Ops, browser: Any) -> None:
    from playwright.sync_api import expect

    set_stage(ops.store, "global_market", Stage.SHADOW)
    url = ops.stack.server.url
    page, console = open_page(browser)
    try:
        log_in(page, url, "viewer", "viewer-pass")
        for feature in FEATURES:
            expect(monitor_row(page, feature).get_by_test_id("verdict")).to_be_visible(timeout=10_000)
        page.wait_for_timeout(2500)  # a monitor refresh later, still nothing to press
        expect(page.locator('[data-testid^="stage-"]')).to_have_count(0)
        expect(page.get_by_role("dialog")).to_have_count(0)
        monitor = page.request.get(f"{url}/api/ops/monitor")
        assert monitor.status == 200, monitor.text()
        assert monitor.json()["operator"] is False

        before = len(ops.store.history())
        move = {"feature": "global_market", "to": "off", "percent": None, "reason": "viewer tries", "force": False}
        refused = page.request.post(f"{url}/api/ops/stage", data=move, headers=csrf(page))
        assert refused.status == 403, refused.text()
        assert "error" in refused.json()
        assert ops.store.read("global_market").stage is Stage.SHADOW
        assert len(ops.store.history()) == before
    finally:
        page.context.close()
    assert_quiet(console)

    # The same request from the operator's session passes the CSRF and role checks (and meets the gate).
    gated = {"feature": "positions", "to": "live", "percent": None, "reason": "operator tries", "force": False}
    answer = desk.page.request.post(f"{url}/api/ops/stage", data=gated, headers=csrf(desk.page))
    assert answer.status == 409, answer.text()
    assert "refusing to enable positions" in answer.json()["error"]
    assert_quiet(desk.console)


def csrf(page: Any) -> dict[str, str]:
    """The page's own CSRF header: ``X-CSRFToken`` from its ``csrftoken`` cookie."""
    token = next((c["value"] for c in page.context.cookies() if c["name"] == "csrftoken"), None)
    assert token, "the page holds no csrftoken cookie"
    return {"X-CSRFToken": token, "Content-Type": "application/json"}


def test_panels_are_marked_stale_within_2_s_of_the_backend_stopping_and_clear_after(
    desk: Desk, ops: Ops, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    set_stage(ops.store, "account_balance", Stage.LIVE)
    page, console = desk.page, desk.console
    expect(panel(page, "Account balance").get_by_test_id("source-badge")).to_have_text("WebSocket", timeout=5000)
    for name in PANELS:
        expect(panel(page, name)).not_to_have_attribute("data-stale", "true", timeout=10_000)
    page.evaluate(WATCH_STALE, list(PANELS))

    console.phase = "outage"
    started = time.time() * 1000
    stop_process(ops.stack.server.process)
    stopped = time.time() * 1000
    for name in PANELS:
        expect(panel(page, name)).to_have_attribute("data-stale", "true", timeout=5000)
        expect(panel(page, name).get_by_test_id("stale")).to_have_text(STALE_TEXT)
        expect(panel(page, name).get_by_test_id("source-badge")).not_to_contain_text("WebSocket")
    log = page.evaluate("window.__staleLog")
    marked = {name: next(e["at"] for e in log if e["at"] >= started and dict((n, s) for n, s, _ in e["panels"])[name])
              for name in PANELS}  # fmt: skip
    late = {name: at - stopped for name, at in marked.items()}
    print(f"\nstale after the stop: {', '.join(f'{n} {ms:+.0f} ms' for n, ms in late.items())}", file=sys.stderr)
    assert max(late.values()) <= STALE_LIMIT_MS, late
    claims = [(e["at"] - stopped, n, b) for e in log for n, s, b in e["panels"] if s and b and "WebSocket" in b]
    assert not claims, f"a stale panel's badge said WebSocket: {claims}"
    shot(page, screenshots, "ops-stale.png")

    ops.stack.restart_server("uvicorn-restarted.log")
    for name in PANELS:
        expect(panel(page, name)).not_to_have_attribute("data-stale", "true", timeout=30_000)
        expect(panel(page, name).get_by_test_id("stale")).to_be_hidden()
    expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    console.phase = "recovered"
    expect(panel(page, "Account balance").get_by_test_id("source-badge")).to_have_text("WebSocket", timeout=5000)
    for name in PANELS:
        wait_seq_increases(page, name, times=1, timeout=15)
    page.wait_for_timeout(500)  # what the recovery logs comes in now, outside the outage window
    assert_quiet(console)
