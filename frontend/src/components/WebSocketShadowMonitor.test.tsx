import { act, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { DeskContext } from "../hooks/useDesk";
import { FeatureFlagsProvider } from "../hooks/useFlags";
import { LiveRuntimeContext } from "../hooks/useWebSocket";
import { Desk } from "../services/desk";
import {
  BALANCE,
  backendRoutes,
  envelope,
  fakeRuntime,
  flag,
  flagsMessage,
  opsAnswer,
  opsVerdict,
  resyncEnvelope,
} from "../test/fakes";
import type { Route } from "../test/fakes";
import { AccountBalancePanel } from "./AccountBalancePanel";
import { WebSocketShadowMonitor } from "./WebSocketShadowMonitor";

function setup(edit: (routes: Record<string, Route>) => void = () => {}) {
  const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
  edit(routes);
  const made = fakeRuntime(routes);
  const desk = new Desk(made.runtime);
  made.runtime.start();
  desk.start();
  render(
    <LiveRuntimeContext.Provider value={made.runtime}>
      <FeatureFlagsProvider feed={made.runtime}>
        <DeskContext.Provider value={desk}>
          <div className="app">
            <AccountBalancePanel account="DU1234" />
            <WebSocketShadowMonitor />
          </div>
        </DeskContext.Provider>
      </FeatureFlagsProvider>
    </LiveRuntimeContext.Provider>,
  );
  const stop = () => {
    desk.stop();
    made.runtime.stop();
  };
  return { ...made, desk, routes, stop };
}

const flush = () => act(async () => void (await vi.advanceTimersByTimeAsync(0)));
const tick = (ms: number) => act(async () => void (await vi.advanceTimersByTimeAsync(ms)));

const cell = (feature: string, col: string) =>
  document.querySelector(`tr[data-feature="${feature}"] [data-col="${col}"]`)?.textContent;
const row = (feature: string) => screen.getByTestId(`monitor-${feature}`);
const inRow = (feature: string, id: string) => within(row(feature)).getByTestId(id).textContent;
/** The value of the metric termed `term` in `feature`'s row. */
const metric = (feature: string, term: string) =>
  [...row(feature).querySelectorAll("dt")].find((dt) => dt.textContent === term)?.nextElementSibling?.textContent;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("WebSocketShadowMonitor stream table", () => {
  it("shows resyncs beside gaps per feature, and what the connection's resumes did", async () => {
    const { ws, stop } = setup();
    const monitor = screen.getByRole("region", { name: "Shadow monitor" });
    const headers = within(monitor)
      .getAllByRole("columnheader")
      .map((th) => th.textContent);
    expect(headers.slice(headers.indexOf("Gaps"), headers.indexOf("Gaps") + 2)).toEqual(["Gaps", "Resyncs"]);
    act(() => {
      ws.last().open();
      ws.last().receive(envelope("vwap", "ES", 1, {}));
      ws.last().receive(envelope("vwap", "ES", 3, {})); // gap
      ws.last().receive(resyncEnvelope("vwap", "ES", 9, {})); // resync
      ws.last().receive(resyncEnvelope("positions", "DU1234", 4, {})); // first of its stream: neither
      ws.last().receive({ type: "resumed", replayed: 2, resynced: 1 });
      ws.last().receive({ type: "resumed", replayed: 0, resynced: 3, healed: true });
    });
    await tick(1000); // the monitor re-reads its counters every second
    expect(cell("intraday", "gaps")).toBe("1");
    expect(cell("intraday", "resyncs")).toBe("1");
    expect(cell("positions", "gaps")).toBe("0");
    expect(cell("positions", "resyncs")).toBe("0");
    expect(screen.getByTestId("monitor-resumes-sent").textContent).toBe("1");
    expect(screen.getByTestId("monitor-resumes-answered").textContent).toBe("1");
    expect(screen.getByTestId("monitor-replayed").textContent).toBe("2");
    expect(screen.getByTestId("monitor-resynced").textContent).toBe("4");
    expect(screen.getByTestId("monitor-healed").textContent).toBe("1");
    stop();
  });
});

describe("WebSocketShadowMonitor parity at a glance", () => {
  it("shows each verdict state with its age, reason, counts, lag, last mismatch, ramp and guard", async () => {
    const { stop } = setup((routes) => {
      routes["/api/ops/monitor"] = () => ({
        body: opsAnswer(false, {
          account_balance: {
            stage: "live",
            percent: 25,
            allowed: ["live", "complete", "shadow"],
            verdict: opsVerdict(),
          },
          positions: {
            verdict: opsVerdict({
              verdict: "FAIL",
              valid: false,
              age_s: 95,
              reasons: ["3 mismatched pairs", "lag over 500 ms"],
              mismatched: 3,
              last_mismatch_path: "$.positions[0].quantity",
              lag_ms: { mean: 650, max: 1400 },
            }),
            ramp: {
              status: "ramping",
              text: "ramping 25 % → 50 % in 3m 10s",
              percent: 25,
              next_percent: 50,
              due_in_s: 190,
              steps: [25, 50, 100],
              index: 0,
              why: null,
            },
          },
          intraday: {
            verdict: opsVerdict({ verdict: "PENDING", valid: false, reasons: ["not enough pairs yet"], age_s: 1 }),
            guard: { host: "ops-1", pid: 4242, since: "2026-11-24T10:00:05Z", age_s: 30 },
          },
        }),
      });
    });
    await flush();
    expect(inRow("account_balance", "verdict")).toBe("PASS");
    expect(inRow("account_balance", "verdict-age")).toBe("12 s ago");
    expect(inRow("account_balance", "verdict-reason")).toBe("every pair matched");
    expect(metric("account_balance", "Paired")).toBe("1,204");
    expect(metric("account_balance", "Mismatched")).toBe("0");
    expect(metric("account_balance", "Gaps")).toBe("0");
    expect(metric("account_balance", "Resyncs")).toBe("1");
    expect(metric("account_balance", "Lag")).toBe("12 ms / 40 ms");
    expect(row("account_balance").textContent).toContain("live 25%");
    expect(row("account_balance").textContent).toContain("opens gate");

    expect(inRow("positions", "verdict")).toBe("FAIL");
    expect(inRow("positions", "verdict-age")).toBe("1m 35s ago");
    expect(inRow("positions", "verdict-reason")).toBe("3 mismatched pairs; lag over 500 ms");
    expect(inRow("positions", "last-mismatch")).toBe("$.positions[0].quantity");
    expect(inRow("positions", "ramp")).toBe("ramping 25 % → 50 % in 3m 10s");
    expect(row("positions").textContent).toContain("gate closed");
    expect(metric("positions", "Lag")).toBe("650 ms / 1.4 s");
    expect(metric("positions", "Mismatched")).toBe("3");

    expect(inRow("intraday", "verdict")).toBe("PENDING");
    expect(inRow("intraday", "guard")).toBe("guarded by ops-1:4242 since 10:00:05 UTC");

    expect(inRow("global_market", "verdict")).toBe("no verdict");
    expect(inRow("global_market", "verdict-age")).toBe("—");
    expect(inRow("global_market", "last-mismatch")).toBe("—");
    expect(inRow("global_market", "ramp")).toBe("—");
    expect(inRow("global_market", "guard")).toBe("—");

    // Between polls the age moves on with the clock (the next poll says 12 s again).
    await tick(1000);
    expect(inRow("account_balance", "verdict-age")).toBe("13 s ago");
    stop();
  });

  it("shows each feature's REST reads per minute, with who read them in the title", async () => {
    const readers = [
      { label: "page/0ld0ld0ld0ld", count: 41, last_seen: "2026-11-24T10:00:00.000Z" },
      { label: "token/nightly", count: 9, last_seen: "2026-11-24T09:59:00.000Z" },
    ];
    const { stop } = setup((routes) => {
      routes["/api/ops/monitor"] = () => ({
        body: opsAnswer(false, {
          positions: { rest_reads_per_min: 10, rest_readers: readers },
          intraday: { rest_reads_per_min: 0.2, rest_readers: readers.slice(1) },
          global_market: { rest_reads_per_min: null, rest_readers: null },
        }),
      });
    });
    await flush();
    expect(metric("positions", "REST reads/min")).toBe("10.0");
    const cell = within(row("positions")).getByTestId("rest-reads");
    expect(cell.title).toBe("REST reads, last 5 min — page/0ld0ld0ld0ld: 41 · token/nightly: 9");
    expect(inRow("intraday", "rest-reads")).toBe("0.2");
    expect(inRow("account_balance", "rest-reads")).toBe("0.0");
    expect(within(row("account_balance")).getByTestId("rest-reads").title).toBe("no REST reads in the last 5 minutes");
    expect(inRow("global_market", "rest-reads")).toBe("—"); // a backend that does not count them
    stop();
  });

  it("draws the rate and lag sparklines per feature from what the page receives", async () => {
    const { ws, stop } = setup();
    act(() => ws.last().open());
    for (let seq = 1; seq <= 3; seq += 1) {
      act(() =>
        ws.last().receive({ ...envelope("positions", "DU1234", seq, {}), ts: new Date(Date.now() - 25).toISOString() }),
      );
      await tick(1000);
    }
    const rate = screen.getByTestId("spark-positions-rate");
    const lag = screen.getByTestId("spark-positions-lag");
    expect(Number(rate.getAttribute("data-points"))).toBeGreaterThanOrEqual(3);
    expect(rate.getAttribute("aria-label")).toMatch(
      /positions WebSocket messages per second, last 5 minutes: latest 0\.3/,
    );
    expect(lag.getAttribute("aria-label")).toMatch(/positions freshness lag .*: latest \d+ ms/);
    for (const feature of ["account_balance", "intraday", "global_market"]) {
      expect(screen.getByTestId(`spark-${feature}-rate`)).toBeTruthy();
      expect(screen.getByTestId(`spark-${feature}-lag`)).toBeTruthy();
    }
    stop();
  });

  it("reads the monitor again at once when a flag changes, not only every 2 s", async () => {
    const { ws, http, stop } = setup();
    act(() => ws.last().open());
    await flush();
    const polls = http.count("/api/ops/monitor");
    act(() => ws.last().receive(flagsMessage({ positions: flag("live", 9) })));
    await flush();
    expect(http.count("/api/ops/monitor")).toBe(polls + 1);
    stop();
  });

  it("marks itself stale when the monitor cannot be read, and clears when it can again", async () => {
    let down = false;
    const { ws, stop } = setup((routes) => {
      const answer = routes["/api/ops/monitor"]!;
      routes["/api/ops/monitor"] = (call) =>
        down ? { status: 503, body: { error: "Redis is unreachable" } } : answer(call);
    });
    act(() => ws.last().open()); // a closed socket would make the monitor stale too
    await flush();
    const monitor = screen.getByRole("region", { name: "Shadow monitor" });
    expect(monitor.getAttribute("data-stale")).toBeNull();
    down = true;
    await tick(2000);
    expect(monitor.getAttribute("data-stale")).toBe("true");
    expect(within(monitor).getByTestId("stale").textContent).toMatch(/^stale since \d\d:\d\d:\d\d$/);
    expect(screen.getByTestId("ops-status").textContent).toContain("Redis is unreachable");
    down = false;
    await tick(2000);
    expect(monitor.getAttribute("data-stale")).toBeNull();
    stop();
  });
});

describe("stage controls", () => {
  function operatorSetup(stageAnswer: Route) {
    const made = setup((routes) => {
      routes["/api/ops/monitor"] = () => ({
        body: opsAnswer(true, {
          account_balance: { stage: "live", percent: 100, allowed: ["live", "complete", "shadow"] },
        }),
      });
      routes["POST /api/ops/stage"] = stageAnswer;
    });
    return made;
  }

  it("shows viewers no controls", async () => {
    const { stop } = setup((routes) => {
      routes["/api/ops/monitor"] = () => ({ body: opsAnswer(false) });
    });
    await flush();
    expect(screen.getByTestId("monitor-positions")).toBeTruthy();
    expect(document.querySelector('[data-testid^="stage-"]')).toBeNull();
    expect(screen.getByTestId("ops-status").textContent).toContain("read-only");
    stop();
  });

  it("gives operators one button per allowed move, named for the move", async () => {
    const { stop } = operatorSetup(() => ({ body: {} }));
    await flush();
    expect(
      within(row("positions"))
        .getAllByRole("button")
        .map((b) => b.getAttribute("data-testid")),
    ).toEqual(["stage-positions-live", "stage-positions-off"]);
    expect(screen.getByRole("button", { name: "Move positions to live" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "roll back account_balance to shadow" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Change the live percent of account_balance" })).toBeTruthy();
    expect(screen.getByTestId("stage-account_balance-complete")).toBeTruthy();
    stop();
  });

  it("opens a labelled modal dialog with focus in the reason; Escape cancels and focus returns", async () => {
    const { stop, http } = operatorSetup(() => ({ body: {} }));
    await flush();
    const button = screen.getByTestId("stage-positions-live");
    button.focus();
    fireEvent.click(button);
    const dialog = screen.getByRole("dialog", { name: "Enable (shadow → live)" });
    expect(dialog.getAttribute("aria-modal")).toBe("true");
    const reason = within(dialog).getByLabelText("Reason");
    expect(reason.tagName).toBe("TEXTAREA");
    expect(document.activeElement).toBe(reason);
    expect(within(dialog).getByLabelText("Force past the parity gate").getAttribute("type")).toBe("checkbox");
    expect(within(dialog).getByRole("button", { name: "Confirm" })).toBeTruthy();
    expect(document.querySelector(".app")?.hasAttribute("inert")).toBe(true);

    // Tab from the last control wraps to the first, Shift+Tab from the first to the last.
    const confirm = within(dialog).getByRole("button", { name: "Confirm" });
    confirm.focus();
    fireEvent.keyDown(confirm, { key: "Tab" });
    expect(document.activeElement).toBe(reason);
    fireEvent.keyDown(reason, { key: "Tab", shiftKey: true });
    expect(document.activeElement).toBe(confirm);

    fireEvent.keyDown(dialog, { key: "Escape" });
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement).toBe(button);
    expect(document.querySelector(".app")?.hasAttribute("inert")).toBe(false);
    expect(http.calls.filter((c) => c.method === "POST")).toHaveLength(0);
    stop();
  });

  it("asks for the force checkbox only for moves to live", async () => {
    const { stop } = operatorSetup(() => ({ body: {} }));
    await flush();
    fireEvent.click(screen.getByTestId("stage-positions-off"));
    const dialog = screen.getByRole("dialog", { name: "Turn off (shadow → off)" });
    expect(within(dialog).queryByLabelText("Force past the parity gate")).toBeNull();
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    stop();
  });

  it("requires a reason before posting anything", async () => {
    const { stop, http } = operatorSetup(() => ({ body: {} }));
    await flush();
    fireEvent.click(screen.getByTestId("stage-positions-live"));
    const dialog = screen.getByRole("dialog");
    fireEvent.change(within(dialog).getByLabelText("Reason"), { target: { value: "   " } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Confirm" }));
    await flush();
    expect(within(dialog).getByRole("alert").textContent).toContain("Give a reason");
    expect(http.calls.filter((c) => c.method === "POST")).toHaveLength(0);
    stop();
  });

  it("shows the server's refusal in the dialog and keeps it open", async () => {
    const gate = "positions has no valid PASS verdict (none stored); run `thorcut diff`, or --force with --reason";
    const { stop } = operatorSetup(() => ({ status: 409, body: { error: gate } }));
    await flush();
    fireEvent.click(screen.getByTestId("stage-positions-live"));
    const dialog = screen.getByRole("dialog");
    fireEvent.change(within(dialog).getByLabelText("Reason"), { target: { value: "parity looks fine" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Confirm" }));
    await flush();
    expect(within(dialog).getByRole("alert").textContent).toBe(gate);
    expect(screen.getByRole("dialog")).toBe(dialog);
    const confirm = within(dialog).getByRole("button", { name: "Confirm" });
    expect(confirm.getAttribute("aria-disabled")).toBe("false");
    // Escape still cancels wherever focus went (keys are heard on the document).
    (document.activeElement as HTMLElement | null)?.blur();
    fireEvent.keyDown(document.body, { key: "Escape" });
    expect(screen.queryByRole("dialog")).toBeNull();
    stop();
  });

  it("posts the move with the CSRF header, closes, and reads the monitor again at once", async () => {
    const { stop, http } = operatorSetup(() => ({
      body: {
        change: {
          feature: "positions",
          from: "shadow",
          to: "live",
          percent: 10,
          version: 4,
          changed: true,
          forced: true,
          dry_run: false,
          audit_id: "1-0",
        },
      },
    }));
    await flush();
    fireEvent.click(screen.getByTestId("stage-positions-live"));
    const dialog = screen.getByRole("dialog");
    fireEvent.change(within(dialog).getByLabelText("Reason"), { target: { value: "  canary  " } });
    fireEvent.change(within(dialog).getByLabelText("Percent of clients"), { target: { value: "10" } });
    fireEvent.click(within(dialog).getByLabelText("Force past the parity gate"));
    const polls = http.count("/api/ops/monitor");
    fireEvent.click(within(dialog).getByRole("button", { name: "Confirm" }));
    await flush();
    const post = http.calls.find((c) => c.method === "POST" && c.url === "/api/ops/stage");
    expect(post?.headers["X-CSRFToken"]).toBe("tok");
    expect(post?.body).toEqual({ feature: "positions", to: "live", percent: 10, reason: "canary", force: true });
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(http.count("/api/ops/monitor")).toBe(polls + 1); // not 2 s later
    stop();
  });

  it("sends no force and no percent for a rollback", async () => {
    const { stop, http } = operatorSetup(() => ({ body: { change: {} } }));
    await flush();
    fireEvent.click(screen.getByTestId("stage-account_balance-shadow"));
    const dialog = screen.getByRole("dialog", { name: "Roll back (live → shadow)" });
    fireEvent.change(within(dialog).getByLabelText("Reason"), { target: { value: "mismatches" } });
    fireEvent.click(within(dialog).getByRole("button", { name: "Confirm" }));
    await flush();
    const post = http.calls.find((c) => c.method === "POST" && c.url === "/api/ops/stage");
    expect(post?.body).toEqual({
      feature: "account_balance",
      to: "shadow",
      percent: null,
      reason: "mismatches",
      force: false,
    });
    stop();
  });
});

describe("Panel staleness", () => {
  it("at complete: WebSocket data is stale since the drop while the socket is down, never polled, and not once back", async () => {
    const { ws, http, stop } = setup();
    const panel = screen.getByRole("region", { name: "Account balance" });
    // async: the first flags reach the badge when OpenFeature says READY, a microtask later.
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ account_balance: flag("complete", 4) }));
      ws.last().receive(resyncEnvelope("account_balance", "DU1234", 30, BALANCE));
    });
    expect(within(panel).getByTestId("seq").textContent).toBe("30");
    expect(panel.getAttribute("data-stale")).toBeNull();
    expect(within(panel).getByTestId("source-badge").textContent).toBe("WebSocket");
    act(() => ws.last().drop(1006));
    expect(panel.getAttribute("data-stale")).toBe("true");
    expect(within(panel).getByTestId("stale").textContent).toMatch(/^stale since \d\d:\d\d:\d\d$/);
    // The badge never claims a stream the page is not receiving.
    expect(within(panel).getByTestId("source-badge").textContent).toBe("Disconnected");
    const reads = http.count("/api/account/balance");
    await tick(30_000);
    expect(http.count("/api/account/balance")).toBe(reads);
    act(() => ws.last().open());
    expect(panel.getAttribute("data-stale")).toBeNull();
    expect(within(panel).queryByTestId("stale")).toBeNull();
    expect(within(panel).getByTestId("source-badge").textContent).toBe("WebSocket");
    stop();
  });

  it("on REST: stale since the first failed refresh, cleared by the next good one", async () => {
    let down = false;
    const { stop } = setup((routes) => {
      const answer = routes["/api/account/balance"]!;
      routes["/api/account/balance"] = (call) =>
        down ? { status: 502, body: { error: "bad gateway" } } : answer(call);
    });
    await flush();
    const panel = screen.getByRole("region", { name: "Account balance" });
    expect(within(panel).getByTestId("equity").textContent).toBe("1,012,345.68");
    down = true;
    await tick(2000);
    expect(panel.getAttribute("data-stale")).toBe("true");
    expect(within(panel).getByTestId("stale").getAttribute("title")).toContain("bad gateway");
    expect(within(panel).getByTestId("source-badge").textContent).toBe("REST");
    expect(within(panel).getByTestId("equity").textContent).toBe("1,012,345.68"); // still shown, dimmed
    down = false;
    await tick(2000);
    expect(panel.getAttribute("data-stale")).toBeNull();
    stop();
  });
});
