import { act, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { DeskContext } from "../hooks/useDesk";
import { FeatureFlagsProvider } from "../hooks/useFlags";
import { LiveRuntimeContext } from "../hooks/useWebSocket";
import { Desk } from "../services/desk";
import { backendRoutes, bar, envelope, fakeRuntime, flag, flagsMessage, vwap } from "../test/fakes";
// Vitest resolves this to the recording stand-in (vite.config.ts `test.alias`).
import { charts, resetCharts } from "../test/lightweight-charts-fake";
import type { FakeSeries } from "../test/lightweight-charts-fake";
import { IntradayPanel } from "./IntradayPanel";

const minute = (m: number) => new Date(Date.parse("2026-11-24T14:30:00Z") + m * 60_000).toISOString();
const barAt = (symbol: string, m: number, close: number) => ({ ...bar(symbol, close), start: minute(m) });

function setup() {
  resetCharts();
  const seqs = { balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 };
  const made = fakeRuntime(backendRoutes(seqs));
  const desk = new Desk(made.runtime);
  made.runtime.start();
  desk.start();
  const { unmount } = render(
    <LiveRuntimeContext.Provider value={made.runtime}>
      <FeatureFlagsProvider feed={made.runtime}>
        <DeskContext.Provider value={desk}>
          <IntradayPanel />
        </DeskContext.Provider>
      </FeatureFlagsProvider>
    </LiveRuntimeContext.Provider>,
  );
  const chart = () => {
    const live = charts.filter((c) => !c.removed);
    expect(live).toHaveLength(1);
    return live[0]!;
  };
  const series = (type: string): FakeSeries => chart().series.find((s) => s.type === type)!;
  return {
    ...made,
    unmount,
    chart,
    candles: () => series("Candlestick"),
    line: () => series("Line"),
    stop: () => {
      desk.stop();
      made.runtime.stop();
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("IntradayPanel chart", () => {
  it("draws one-minute candles and the VWAP line from pushed bars: a new start appends, the same start updates", async () => {
    const { ws, candles, line, stop } = setup();
    const panel = screen.getByRole("region", { name: "Intraday" });
    act(() => {
      ws.last().open();
      ws.last().receive(flagsMessage({ intraday: flag("live", 2) }));
    });
    await act(async () => void (await vi.advanceTimersByTimeAsync(0))); // the one REST read of an empty view
    act(() => {
      ws.last().receive(envelope("intraday_bar", "ES", 2, barAt("ES", 1, 5950.25)));
      ws.last().receive(envelope("vwap", "ES", 2, { ...vwap("ES", 5949.1234), as_of: minute(1) }));
    });
    act(() => ws.last().receive(envelope("intraday_bar", "ES", 3, barAt("ES", 1, 5951.5))));
    act(() => ws.last().receive(envelope("intraday_bar", "ES", 4, barAt("ES", 2, 5952))));
    const times = candles().data.map((p) => p.time);
    const t1 = Date.parse(minute(1)) / 1000;
    expect(times.slice(-2)).toEqual([t1, t1 + 60]);
    expect(candles().data.at(-2)).toMatchObject({ close: 5951.5 });
    expect(candles().data.at(-1)).toMatchObject({ close: 5952 });
    expect(line().data.at(-1)).toEqual({ time: t1, value: 5949.1234 });
    // The usual tick is an update, not a redraw of everything.
    expect(candles().updateCalls).toBeGreaterThanOrEqual(2);
    expect(within(panel).getByTestId("vwap").textContent).toBe("5,949.12");
    expect(within(panel).getByTestId("bar-close").textContent).toBe("5,952.00");
    expect(within(panel).getByTestId("intraday-chart").getAttribute("data-candles")).toBe(String(times.length));
    stop();
  });

  it("shows another symbol's own candles, priced to its tick size, and removes the chart on unmount", async () => {
    const { ws, chart, candles, stop, unmount } = setup();
    act(() => {
      ws.last().open();
      ws.last().receive(flagsMessage({ intraday: flag("live", 2) }));
    });
    await act(async () => void (await vi.advanceTimersByTimeAsync(0)));
    act(() => {
      ws.last().receive(envelope("intraday_bar", "YM", 7, barAt("YM", 3, 43931)));
      ws.last().receive(envelope("intraday_bar", "ES", 7, barAt("ES", 3, 5950)));
    });
    expect(candles().options.priceFormat).toMatchObject({ precision: 2, minMove: 0.25 });
    fireEvent.change(screen.getByLabelText("Symbol"), { target: { value: "YM" } });
    await act(async () => void (await vi.advanceTimersByTimeAsync(0)));
    expect(candles().options.priceFormat).toMatchObject({ precision: 0, minMove: 1 });
    expect(candles().data.map((p) => p.close)).toContain(43931);
    expect(candles().data.map((p) => p.close)).not.toContain(5950);
    const drawn = chart();
    unmount();
    expect(drawn.removed).toBe(true);
    stop();
  });
});
