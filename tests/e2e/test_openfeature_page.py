"""The page's flags through OpenFeature, in real headless Chromium against the real stack.

The page binds its provider (frontend/src/services/openfeature.ts) to the ``thor`` domain of
``@openfeature/web-sdk``, whose API object the SDK itself keeps at
``globalThis[Symbol.for("@openfeature/web-sdk/api")]``: the test asks a client of that domain, as any
script of the page could, and reads the badge the provider drives. ``thorcut enable positions`` (the
real CLI) and ``thorcut disable positions`` move the stage; the client answers the new stage within
seconds, with no reload, and no console error comes meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import VIEWPORT, Stack, log_in
from tests.e2e.test_frontend import Console, panel, thorcut
from thorcut.flags.store import FlagStore

pytestmark = pytest.mark.slow

#: What the page's OpenFeature client of the ``thor`` domain answers for one feature.
ASK = """(feature) => {
  const api = globalThis[Symbol.for("@openfeature/web-sdk/api")];
  if (!api) return null;
  const client = api.getClient("thor");
  const stage = client.getStringDetails(feature, "off");
  const websocket = client.getBooleanDetails(feature, false);
  return {
    provider: client.metadata.providerMetadata.name,
    status: client.providerStatus,
    stage: stage.value,
    reason: stage.reason,
    version: stage.flagMetadata.version ?? null,
    websocket: websocket.value,
    variant: websocket.variant ?? null,
  };
}"""


def ask(page: Any, feature: str, *, stage: str, timeout: float = 5.0) -> dict[str, Any]:
    """Wait until the page's OpenFeature client says ``feature`` is at ``stage``; return its whole answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] | None = page.evaluate(ASK, feature)
        if answer is not None and answer["stage"] == stage:
            return answer
        assert time.monotonic() < deadline, f"OpenFeature still answers {answer} for {feature}, not {stage}"
        page.wait_for_timeout(50)


def test_the_pages_openfeature_client_follows_thorcut_enable_and_disable(
    stack: Stack, flags: FlagStore, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    console = Console()
    console.attach(page)
    badge = panel(page, "Positions").get_by_test_id("source-badge")
    try:
        log_in(page, stack.server.url)

        shadow = ask(page, "positions", stage="shadow")
        version = flags.read("positions").version
        assert shadow == {"provider": "thorcut", "status": "READY", "stage": "shadow", "reason": "STATIC",
                          "version": version, "websocket": False, "variant": "rest"}  # fmt: skip
        expect(badge).to_have_text("REST (shadow)")

        enabled = thorcut(stack, "enable", "positions", "--force", "--reason", "e2e: openfeature", cwd=tmp_path)
        assert enabled.returncode == 0, enabled.stderr
        live = ask(page, "positions", stage="live")
        assert live["websocket"] is True, live
        assert live["variant"] == "websocket", live
        assert live["version"] == flags.read("positions").version > version, live
        assert live["status"] == "READY", live
        expect(badge).to_have_text("WebSocket")
        # The other features did not move.
        assert ask(page, "intraday", stage="shadow")["websocket"] is False

        disabled = thorcut(stack, "disable", "positions", "--reason", "e2e: openfeature", cwd=tmp_path)
        assert disabled.returncode == 0, disabled.stderr
        back = ask(page, "positions", stage="shadow")
        assert back["websocket"] is False, back
        assert back["version"] > live["version"], back
        expect(badge).to_have_text("REST (shadow)")
    finally:
        context.close()
    unexpected = console.unexpected()
    assert not unexpected, "console/page errors:\n" + "\n".join(f"  [{p}] {k}: {t}" for p, k, t in unexpected)
