import { OpenFeature } from "@openfeature/web-sdk";
import type { Provider } from "@openfeature/web-sdk";
import { act, render, renderHook, screen } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Panel } from "../components/Panel";
import type { LiveRuntime } from "../services/live";
import { FLAG_DOMAIN } from "../services/openfeature";
import { POSITIONS, backendRoutes, envelope, fakeRuntime, flag, flagsMessage, market } from "../test/fakes";
import { FeatureFlagsProvider } from "./useFlags";
import { LiveRuntimeContext, useConnectionState } from "./useWebSocket";
import { badgeText, getDataSource, useFeatureData, useFeatureFlag, useWebSocketEnabled } from "./useWebSocketAware";

function wrapperFor(runtime: LiveRuntime) {
  return ({ children }: { children: ReactNode }) => (
    <LiveRuntimeContext.Provider value={runtime}>
      <FeatureFlagsProvider feed={runtime}>{children}</FeatureFlagsProvider>
    </LiveRuntimeContext.Provider>
  );
}

function setup() {
  const seqs = { balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 };
  const ctx = fakeRuntime(backendRoutes(seqs));
  ctx.runtime.start();
  return { ...ctx, seqs, wrapper: wrapperFor(ctx.runtime) };
}

const advance = (ms: number) =>
  act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("useFeatureData", () => {
  it("polls REST while shadow, stops polling when live, resumes on disable", async () => {
    const { runtime, http, ws, wrapper } = setup();
    const { result } = renderHook(() => useFeatureData("positions", { account: "DU1234" }), { wrapper });
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ positions: flag("shadow", 1) }));
    });
    await advance(0);
    expect(result.current.source).toBe("rest");
    expect(result.current.flag.stage).toBe("shadow");
    expect(result.current.polling).toBe(true);
    const atStart = http.count("/api/account/positions");
    expect(atStart).toBeGreaterThanOrEqual(1);
    await advance(6000);
    expect(http.count("/api/account/positions")).toBe(atStart + 3); // every 2 s

    await act(async () => ws.last().receive(flagsMessage({ positions: flag("live", 2) })));
    expect(result.current.source).toBe("websocket");
    expect(result.current.polling).toBe(false);
    const atLive = http.count("/api/account/positions");
    await advance(10_000);
    expect(http.count("/api/account/positions")).toBe(atLive);
    await act(async () => ws.last().receive(envelope("positions", "DU1234", 77, POSITIONS)));
    expect(result.current.seq).toBe(77);

    // `thorcut disable positions`: back to shadow, REST polling resumes at once.
    await act(async () => ws.last().receive(flagsMessage({ positions: flag("shadow", 3) })));
    await advance(0);
    expect(result.current.source).toBe("rest");
    expect(result.current.polling).toBe(true);
    expect(http.count("/api/account/positions")).toBe(atLive + 1);
    await advance(2000);
    expect(http.count("/api/account/positions")).toBe(atLive + 2);
    runtime.stop();
  });

  it("has no REST timer at complete, and no REST read either: the resume brings the state", async () => {
    const { runtime, http, ws, wrapper } = setup();
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ global_market: flag("complete", 4) }));
    });
    const { result } = renderHook(() => useFeatureData("global_market"), { wrapper });
    await advance(0);
    expect(http.count("/api/markets/status")).toBe(0);
    // The server answers the resume sent on open with the current state of streams not named.
    await act(async () => {
      ws.last().receive({ ...envelope("market_status", "CME", 8, market("CME", true)), resync: true });
      ws.last().receive({ ...envelope("market_status", "LSE", 3, market("LSE", false)), resync: true });
      ws.last().receive({ type: "resumed", replayed: 0, resynced: 2 });
    });
    await advance(20_000);
    expect(http.count("/api/markets/status")).toBe(0);
    expect(result.current.source).toBe("websocket");
    expect(result.current.polling).toBe(false);
    expect(result.current.entries.map((e) => e.envelope.key)).toEqual(["CME", "LSE"]);
    runtime.stop();
  });

  it("polls global_market every 5 s and intraday (bar + vwap) every 2 s", async () => {
    const { runtime, http, wrapper } = setup();
    renderHook(() => [useFeatureData("global_market"), useFeatureData("intraday", { symbol: "GC" })], { wrapper });
    await advance(0);
    await advance(10_000);
    expect(http.count("/api/markets/status")).toBe(3);
    expect(http.count("/api/intraday/GC/bar")).toBe(6);
    expect(http.count("/api/intraday/GC/vwap")).toBe(6);
    runtime.stop();
  });

  it("stops polling when the view unmounts or its symbol changes", async () => {
    const { runtime, http, wrapper } = setup();
    const { rerender, unmount } = renderHook(({ symbol }) => useFeatureData("intraday", { symbol }), {
      wrapper,
      initialProps: { symbol: "ES" },
    });
    await advance(2000);
    rerender({ symbol: "CL" });
    await advance(2000);
    const es = http.count("/api/intraday/ES/bar");
    expect(http.count("/api/intraday/CL/bar")).toBeGreaterThan(0);
    await advance(4000);
    expect(http.count("/api/intraday/ES/bar")).toBe(es);
    unmount();
    const cl = http.count("/api/intraday/CL/bar");
    await advance(10_000);
    expect(http.count("/api/intraday/CL/bar")).toBe(cl);
    runtime.stop();
  });
});

describe("useWebSocketEnabled / useConnectionState", () => {
  it("follows the flags and the connection", async () => {
    const { runtime, ws, wrapper } = setup();
    const { result } = renderHook(() => [useWebSocketEnabled("intraday"), useConnectionState()] as const, {
      wrapper,
    });
    expect(result.current).toEqual([false, "connecting"]);
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ intraday: flag("live", 1) }));
    });
    expect(result.current).toEqual([true, "connected"]);
    await act(async () => ws.last().drop(1006));
    expect(result.current).toEqual([true, "disconnected"]);
    runtime.stop();
  });
});

describe("badgeText / getDataSource", () => {
  it("says WebSocket, REST (shadow) or REST by source and stage", () => {
    expect(badgeText("websocket", "live")).toBe("WebSocket");
    expect(badgeText("websocket", "complete")).toBe("WebSocket");
    expect(badgeText("rest", "shadow")).toBe("REST (shadow)");
    expect(badgeText("rest", "live")).toBe("REST"); // live, but outside this client's bucket
    expect(badgeText("rest", "off")).toBe("REST");
    expect(badgeText("websocket", "live", false)).toBe("Disconnected");
    expect(badgeText("rest", "live", false)).toBe("REST");
  });

  it("reads complete as WebSocket", () => {
    const flags = {
      account_balance: flag("complete", 1, "rest"),
      positions: flag("live", 1, "rest"),
      intraday: flag("live", 1, "websocket"),
      global_market: flag("off", 1),
    };
    expect(getDataSource("account_balance", flags)).toBe("websocket");
    expect(getDataSource("positions", flags)).toBe("rest");
    expect(getDataSource("intraday", flags)).toBe("websocket");
    expect(getDataSource("global_market", flags)).toBe("rest");
  });
});

describe("the flag hooks ask OpenFeature", () => {
  function Badge() {
    return <Panel title="Account balance" view={useFeatureData("account_balance", { account: "DU1234" })} ready={false}>
      {null}
    </Panel>;
  }

  it("answer what the page's OpenFeature client answers, and its hooks see each evaluation", async () => {
    const { runtime, ws, wrapper } = setup();
    const seen: string[] = [];
    OpenFeature.addHooks({
      after: (context, details) => void seen.push(`${context.flagKey} ${context.flagValueType} ${String(details.value)}`),
    });
    const { result } = renderHook(() => [useFeatureFlag("intraday"), useWebSocketEnabled("intraday")] as const, {
      wrapper,
    });
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ intraday: { ...flag("live", 6, "websocket", 40), override: "true" } }));
    });
    expect(result.current).toEqual([
      { stage: "live", percent: 40, version: 6, source: "websocket", override: "true" },
      true,
    ]);
    expect(seen).toContain("intraday string live");
    expect(seen).toContain("intraday boolean true");
    OpenFeature.clearHooks();
    runtime.stop();
  });

  it("a panel's badge follows a change that arrives through OpenFeature", async () => {
    const { runtime, ws, wrapper } = setup();
    render(<Badge />, { wrapper });
    const badge = () => screen.getByTestId("source-badge").textContent;
    expect(badge()).toBe("REST"); // before any flags: off, on REST, rendered at once
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ account_balance: flag("shadow", 1) }));
    });
    expect(badge()).toBe("REST (shadow)");
    await act(async () => ws.last().receive(flagsMessage({ account_balance: flag("live", 2) })));
    expect(badge()).toBe("WebSocket");

    // The badge is OpenFeature's answer, not the runtime's: bind another provider to the domain.
    const other: Provider = {
      metadata: { name: "other" },
      runsOn: "client",
      resolveStringEvaluation: (key, value) => ({ value: key === "account_balance" ? "shadow" : value }),
      resolveBooleanEvaluation: () => ({ value: false }),
      resolveNumberEvaluation: (_key, value) => ({ value }),
      resolveObjectEvaluation: (_key, value) => ({ value }),
    };
    await act(async () => OpenFeature.setProviderAndWait(FLAG_DOMAIN, other));
    expect(runtime.cutover.stage("account_balance")).toBe("live");
    expect(badge()).toBe("REST (shadow)");
    runtime.stop();
  });

  it("unbind the page's provider when unmounted: the domain answers the callers' defaults", async () => {
    const { runtime, ws, wrapper } = setup();
    const { unmount } = renderHook(() => useWebSocketEnabled("positions"), { wrapper });
    await act(async () => {
      ws.last().open();
      ws.last().receive(flagsMessage({ positions: flag("live", 2) }));
    });
    const client = OpenFeature.getClient(FLAG_DOMAIN);
    expect(client.metadata.providerMetadata.name).toBe("thorcut");
    expect(client.getBooleanValue("positions", false)).toBe(true);
    unmount();
    expect(client.getBooleanValue("positions", false)).toBe(false);
    runtime.stop();
  });
});
