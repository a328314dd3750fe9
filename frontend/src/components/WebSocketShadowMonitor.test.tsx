import { act, render, screen, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { LiveRuntimeContext } from "../hooks/useWebSocket";
import { BALANCE, backendRoutes, envelope, fakeRuntime, flag, flagsMessage, resyncEnvelope } from "../test/fakes";
import { AccountBalancePanel } from "./AccountBalancePanel";
import { WebSocketShadowMonitor } from "./WebSocketShadowMonitor";

function setup() {
  const made = fakeRuntime(backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 }));
  made.runtime.start();
  render(
    <LiveRuntimeContext.Provider value={made.runtime}>
      <AccountBalancePanel account="DU1234" />
      <WebSocketShadowMonitor />
    </LiveRuntimeContext.Provider>,
  );
  return made;
}

const cell = (feature: string, col: string) =>
  document.querySelector(`tr[data-feature="${feature}"] [data-col="${col}"]`)?.textContent;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("WebSocketShadowMonitor", () => {
  it("shows resyncs beside gaps per feature, and what the connection's resumes did", async () => {
    const { runtime, ws } = setup();
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
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000); // the monitor re-reads its counters every second
    });
    expect(cell("intraday", "gaps")).toBe("1");
    expect(cell("intraday", "resyncs")).toBe("1");
    expect(cell("positions", "gaps")).toBe("0");
    expect(cell("positions", "resyncs")).toBe("0");
    expect(screen.getByTestId("monitor-resumes-sent").textContent).toBe("1");
    expect(screen.getByTestId("monitor-resumes-answered").textContent).toBe("1");
    expect(screen.getByTestId("monitor-replayed").textContent).toBe("2");
    expect(screen.getByTestId("monitor-resynced").textContent).toBe("4");
    expect(screen.getByTestId("monitor-healed").textContent).toBe("1");
    runtime.stop();
  });
});

describe("Panel at complete", () => {
  it("shows WebSocket data as stale while the socket is down, and not once it is back", async () => {
    const { runtime, ws, http } = setup();
    const panel = screen.getByRole("region", { name: "Account balance" });
    act(() => {
      ws.last().open();
      ws.last().receive(flagsMessage({ account_balance: flag("complete", 4) }));
      ws.last().receive(resyncEnvelope("account_balance", "DU1234", 30, BALANCE));
    });
    expect(within(panel).getByTestId("seq").textContent).toBe("30");
    expect(panel.getAttribute("data-stale")).toBeNull();
    act(() => ws.last().drop(1006));
    expect(panel.getAttribute("data-stale")).toBe("true");
    expect(within(panel).getByTestId("stale").textContent).toBe("stale: not connected");
    const reads = http.count("/api/account/balance");
    await act(async () => {
      await vi.advanceTimersByTimeAsync(30_000);
    });
    expect(http.count("/api/account/balance")).toBe(reads);
    act(() => ws.last().open());
    expect(panel.getAttribute("data-stale")).toBeNull();
    expect(within(panel).queryByTestId("stale")).toBeNull();
    runtime.stop();
  });
});
