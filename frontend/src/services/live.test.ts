import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import {
  BALANCE,
  POSITIONS,
  backendRoutes,
  envelope,
  fakeRuntime,
  flag,
  flagsMessage,
  market,
  resumesSent,
  resyncEnvelope,
} from "../test/fakes";
import type { Feature, FeatureFlag } from "../types";
import { WS_LOG_KEY } from "./log";

const flush = () => vi.advanceTimersByTimeAsync(0);

function setup(extra: Parameters<typeof fakeRuntime>[1] = {}) {
  const seqs = { balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 };
  const { runtime, http, ws } = fakeRuntime(backendRoutes(seqs), extra);
  return { runtime, http, ws, seqs };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("LiveRuntime start", () => {
  it("reads the flags with ?client= and opens the stream for this client and all features", async () => {
    const { runtime, http, ws } = setup();
    runtime.start();
    await flush();
    expect(http.calls[0]?.url).toBe("/api/cutover/flags?client=test-client");
    expect(ws.last().url).toBe(
      "ws://thor.test/ws/stream/?client=test-client&features=account_balance,positions,intraday,global_market",
    );
    runtime.stop();
  });

  it("applies the REST flags, and a later lower version never overrides a pushed higher one", async () => {
    let answer: (value: { body: unknown }) => void = () => {};
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    routes["/api/cutover/flags"] = () => new Promise((resolve) => (answer = resolve));
    const { runtime, ws } = fakeRuntime(routes);
    runtime.start();
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("live", 7) }));
    answer({ body: { client: "test-client", features: { positions: flag("shadow", 6) } } });
    await flush();
    expect(runtime.cutover.get("positions")).toMatchObject({ stage: "live", version: 7, source: "websocket" });
    runtime.stop();
  });
});

describe("LiveRuntime REST polling by source", () => {
  it("polls REST while the feature is on REST, stops when it goes live, resumes on rollback", async () => {
    const { runtime, http, ws } = setup();
    runtime.start();
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    expect(http.count("/api/account/balance")).toBe(1);
    await vi.advanceTimersByTimeAsync(4000);
    expect(http.count("/api/account/balance")).toBe(3);

    ws.last().open();
    ws.last().receive(flagsMessage({ account_balance: flag("live", 2) }));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(http.count("/api/account/balance")).toBe(3);
    expect(runtime.view("account_balance", { account: "DU1234" }).polling).toBe(false);

    ws.last().receive(flagsMessage({ account_balance: flag("shadow", 3) }));
    await flush();
    expect(http.count("/api/account/balance")).toBe(4); // at once, not after an interval
    await vi.advanceTimersByTimeAsync(2000);
    expect(http.count("/api/account/balance")).toBe(5);
    runtime.stop();
  });

  it("renders pushed data only when the feature's source is WebSocket (shadow messages are logged)", async () => {
    const debug = vi.spyOn(console, "debug").mockImplementation(() => {});
    const { runtime, ws } = setup();
    runtime.start();
    runtime.register("positions", { account: "DU1234" });
    await flush();
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("shadow", 1) }));
    ws.last().receive(envelope("positions", "DU1234", 50, POSITIONS));
    let view = runtime.view("positions", { account: "DU1234" });
    expect(view.seq).toBe(1); // still the REST answer
    expect(view.entries[0]?.via).toBe("rest");
    expect(debug).toHaveBeenCalledWith("[WS]", "shadow", "positions", "DU1234", "seq", 50);

    ws.last().receive(flagsMessage({ positions: flag("live", 2) }));
    ws.last().receive(envelope("positions", "DU1234", 51, POSITIONS));
    view = runtime.view("positions", { account: "DU1234" });
    expect(view.seq).toBe(51);
    expect(view.entries[0]?.via).toBe("websocket");
    runtime.stop();
  });

  it("is silent when localStorage thor.wsLog is off", async () => {
    localStorage.setItem(WS_LOG_KEY, "off");
    const debug = vi.spyOn(console, "debug").mockImplementation(() => {});
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const { runtime, ws } = setup();
    runtime.start();
    ws.last().open();
    ws.last().receive(envelope("positions", "DU1234", 50, POSITIONS));
    expect(debug).not.toHaveBeenCalled();
    expect(log).not.toHaveBeenCalled();
    runtime.stop();
  });

  it("never steps back: an older REST answer does not replace newer pushed data", async () => {
    const { runtime, ws, seqs } = setup();
    runtime.start();
    ws.last().open();
    ws.last().receive(flagsMessage({ account_balance: flag("live", 2) }));
    runtime.register("account_balance", { account: "DU1234" });
    ws.last().receive(envelope("account_balance", "DU1234", 40, { ...BALANCE, equity: 2 }));
    seqs.balance = 39; // the initial read answers late, from an older state
    await flush();
    const view = runtime.view("account_balance", { account: "DU1234" });
    expect(view.seq).toBe(40);
    expect((view.entries[0]?.envelope.data as typeof BALANCE).equity).toBe(2);
    runtime.stop();
  });
});

describe("LiveRuntime refetch", () => {
  async function liveOnPositions() {
    const ctx = setup();
    ctx.runtime.start();
    ctx.ws.last().open();
    ctx.ws.last().receive(flagsMessage({ positions: flag("live", 2), account_balance: flag("live", 2) }));
    ctx.runtime.register("positions", { account: "DU1234" });
    ctx.runtime.register("account_balance", { account: "DU1234" });
    await flush();
    return ctx;
  }

  it("refetches a feature over REST when its seq has a gap", async () => {
    const { runtime, http, ws, seqs } = await liveOnPositions();
    expect(http.count("/api/account/positions")).toBe(1); // the initial read, no timer
    ws.last().receive(envelope("positions", "DU1234", 5, POSITIONS));
    ws.last().receive(envelope("positions", "DU1234", 6, POSITIONS));
    await vi.advanceTimersByTimeAsync(5000);
    expect(http.count("/api/account/positions")).toBe(1);

    seqs.positions = 9;
    ws.last().receive(envelope("positions", "DU1234", 8, POSITIONS)); // 7 was missed
    await flush();
    expect(http.count("/api/account/positions")).toBe(2);
    expect(http.count("/api/account/balance")).toBe(1); // only the feature with the gap
    expect(runtime.view("positions", { account: "DU1234" }).seq).toBe(9);
    runtime.stop();
  });

  it("refetches the features rendered from WebSocket after a reconnect", async () => {
    const { runtime, http, ws } = await liveOnPositions();
    runtime.register("global_market", {}); // on REST: polled anyway, not refetched
    await flush();
    const markets = http.count("/api/markets/status");
    ws.last().drop(1006);
    expect(runtime.manager.getState()).toBe("disconnected");
    await flush();
    // The drop itself reads the REST-polled views (is the backend still there?), not the others.
    expect(http.count("/api/markets/status")).toBe(markets + 1);
    const reconnect = runtime.manager.nextReconnectDelay ?? 0;
    expect(reconnect).toBeLessThan(1000); // before the drop's second read: that one is skipped
    await vi.advanceTimersByTimeAsync(reconnect);
    ws.last().open();
    await vi.advanceTimersByTimeAsync(1000);
    expect(http.count("/api/account/positions")).toBe(2);
    expect(http.count("/api/account/balance")).toBe(2);
    expect(http.count("/api/markets/status")).toBe(markets + 1);
    runtime.stop();
  });

  it("idle() waits for the requests in flight (logout waits before ending the session)", async () => {
    let answer: (value: { body: unknown }) => void = () => {};
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    routes["/api/markets/status"] = () => new Promise((resolve) => (answer = resolve));
    const { runtime } = fakeRuntime(routes);
    runtime.start();
    runtime.register("global_market", {});
    let idle = false;
    void runtime.idle().then(() => (idle = true));
    await flush();
    expect(idle).toBe(false);
    answer({ body: { markets: [] } });
    await flush();
    expect(idle).toBe(true);
    runtime.stop();
  });

  it("folds overlapping requests for one view into one", async () => {
    const { runtime, http } = setup();
    runtime.start();
    void runtime.fetch("intraday", { symbol: "ES" });
    void runtime.fetch("intraday", { symbol: "ES" });
    await flush();
    expect(http.count("/api/intraday/ES/bar")).toBe(1);
    expect(http.count("/api/intraday/ES/vwap")).toBe(1);
    runtime.stop();
  });
});

describe("LiveRuntime session", () => {
  it("ends the session on a REST 401 and closes the stream", async () => {
    const onUnauthorized = vi.fn();
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    routes["/api/account/balance"] = () => ({ status: 401, body: { error: "authentication required" } });
    const { runtime, ws } = fakeRuntime(routes, { onUnauthorized });
    runtime.start();
    ws.last().open();
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    expect(ws.last().closedWith?.code).toBe(1000);
  });

  it("ends the session when the stream closes with 4401", () => {
    const onUnauthorized = vi.fn();
    const { runtime, ws } = setup({ onUnauthorized });
    runtime.start();
    ws.last().open();
    ws.last().drop(4401, "authentication required");
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it("shows a missing state (404) as 'No data yet' instead of failing", async () => {
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    routes["/api/account/balance"] = () => ({ status: 404, body: { error: "no data yet" } });
    const { runtime } = fakeRuntime(routes);
    runtime.start();
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    expect(runtime.view("account_balance", { account: "DU1234" }).error).toBe("No data yet");
    runtime.stop();
  });
});

describe("LiveRuntime resume", () => {
  it("sends resume on open and on reconnect, built from REST answers in the store and from the stream", async () => {
    const { runtime, ws, seqs } = setup();
    seqs.balance = 3;
    seqs.markets = 5;
    runtime.start();
    runtime.register("account_balance", { account: "DU1234" });
    runtime.register("global_market", {});
    await flush(); // flags not known yet: off, so REST is read
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([
      {
        action: "resume",
        since: [
          { type: "account_balance", key: "DU1234", seq: 3 },
          { type: "market_status", key: "CME", seq: 5 },
          { type: "market_status", key: "LSE", seq: 5 },
        ],
      },
    ]);
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0 });
    ws.last().receive(flagsMessage({ positions: flag("live", 2) }));
    ws.last().receive(envelope("account_balance", "DU1234", 7, BALANCE)); // shadow traffic, newer than REST
    ws.last().receive(envelope("positions", "DU1234", 9, POSITIONS)); // rendered
    ws.last().receive(envelope("market_status", "CME", 4, market("CME", true))); // older than REST
    ws.last().drop(1006);
    await vi.advanceTimersByTimeAsync(runtime.manager.nextReconnectDelay ?? 0);
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([
      {
        action: "resume",
        since: [
          { type: "account_balance", key: "DU1234", seq: 7 },
          { type: "market_status", key: "CME", seq: 5 },
          { type: "market_status", key: "LSE", seq: 5 },
          { type: "positions", key: "DU1234", seq: 9 },
        ],
      },
    ]);
    runtime.stop();
  });

  it("applies a resync as the new state, counts it apart from gaps and reads no REST for it", async () => {
    const { runtime, http, ws } = setup();
    runtime.start();
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("live", 2) }));
    runtime.register("positions", { account: "DU1234" });
    await flush();
    expect(http.count("/api/account/positions")).toBe(1); // live: the one read of an empty view
    ws.last().receive(envelope("positions", "DU1234", 5, POSITIONS));
    ws.last().receive(resyncEnvelope("positions", "DU1234", 9, { ...POSITIONS, positions: [] }));
    await flush();
    const view = runtime.view("positions", { account: "DU1234" });
    expect(view.seq).toBe(9);
    expect(view.entries[0]?.envelope.data).toMatchObject({ positions: [] });
    expect(runtime.manager.counters().positions).toMatchObject({ gaps: 0, resyncs: 1 });
    expect(http.count("/api/account/positions")).toBe(1);
    runtime.stop();
  });

  it("renders the newest shadow push once the feature is on WebSocket: since never runs ahead of it", async () => {
    const { runtime, ws, seqs } = setup();
    seqs.positions = 4;
    runtime.start();
    runtime.register("positions", { account: "DU1234" });
    await flush();
    ws.last().open();
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0 });
    ws.last().receive(flagsMessage({ positions: flag("live", 1, "rest", 10) })); // live, outside the bucket
    ws.last().receive(envelope("positions", "DU1234", 9, POSITIONS));
    expect(runtime.view("positions", { account: "DU1234" }).seq).toBe(4);
    ws.last().receive(flagsMessage({ positions: flag("complete", 2) }));
    expect(runtime.view("positions", { account: "DU1234" })).toMatchObject({ seq: 9, source: "websocket" });
    expect(resumesSent(ws.last()).at(-1)).toEqual({
      action: "resume",
      since: [{ type: "positions", key: "DU1234", seq: 9 }],
    });
    runtime.stop();
  });
});

describe("LiveRuntime at complete", () => {
  function completeFlags(features: Partial<Record<Feature, FeatureFlag>>) {
    const seqs = { balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 };
    const routes = backendRoutes(seqs);
    routes["/api/cutover/flags"] = () => ({ body: { client: "test-client", features } });
    return { ...fakeRuntime(routes), seqs };
  }

  const restCalls = (http: ReturnType<typeof fakeRuntime>["http"]) =>
    http.calls.filter((c) => !c.url.startsWith("/api/cutover/flags")).map((c) => c.url);

  it("never calls REST: at start, on a gap, with the socket down, on reconnect, after a backend restart", async () => {
    const { runtime, http, ws } = completeFlags({ account_balance: flag("complete", 5) });
    runtime.start();
    await flush(); // the flags answer: complete
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    const view = () => runtime.view("account_balance", { account: "DU1234" });
    expect(view()).toMatchObject({ polling: false, entries: [], stale: true });

    // First open: the page holds nothing, so every stream comes as its current state.
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([{ action: "resume", since: [] }]);
    ws.last().receive(resyncEnvelope("account_balance", "DU1234", 20, BALANCE));
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 1 });
    expect(view()).toMatchObject({ seq: 20, stale: false });

    // A gap: a resume naming the stream at what just arrived, not a REST read.
    ws.last().receive(envelope("account_balance", "DU1234", 21, BALANCE));
    ws.last().receive(envelope("account_balance", "DU1234", 24, BALANCE));
    await flush();
    expect(runtime.manager.counters().account_balance.gaps).toBe(1);
    expect(resumesSent(ws.last()).at(-1)).toEqual({
      action: "resume",
      since: [{ type: "account_balance", key: "DU1234", seq: 24 }],
    });
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0 });

    // The socket is down for a minute (the reconnect never gets through): stale, not polled.
    ws.last().drop(1006);
    expect(view().stale).toBe(true);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runtime.manager.getState()).toBe("connecting");
    expect(view()).toMatchObject({ seq: 24, stale: true, polling: false });

    // It reconnects: resume from 24, the missed envelope is replayed.
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([
      { action: "resume", since: [{ type: "account_balance", key: "DU1234", seq: 24 }] },
    ]);
    ws.last().receive(envelope("account_balance", "DU1234", 25, BALANCE));
    ws.last().receive({ type: "resumed", replayed: 1, resynced: 0 });
    expect(view()).toMatchObject({ seq: 25, stale: false });

    // The backend restarts (its history is gone): the current state comes marked resync.
    ws.last().drop(1012);
    await vi.advanceTimersByTimeAsync(runtime.manager.nextReconnectDelay ?? 0);
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([
      { action: "resume", since: [{ type: "account_balance", key: "DU1234", seq: 25 }] },
    ]);
    ws.last().receive(resyncEnvelope("account_balance", "DU1234", 40, BALANCE));
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 1 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(view().seq).toBe(40);
    expect(runtime.manager.counters().account_balance).toMatchObject({ gaps: 1, resyncs: 1 });

    expect(restCalls(http)).toEqual([]);
    expect(runtime.restRequestCounts().account_balance).toBe(0);
    runtime.stop();
  });

  it("reads REST while the flags are unknown (off), and never again once they say complete", async () => {
    const { runtime, http, ws } = setup();
    runtime.start();
    runtime.register("positions", { account: "DU1234" });
    await flush();
    await vi.advanceTimersByTimeAsync(2000);
    expect(http.count("/api/account/positions")).toBe(2); // the safe default polls
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("complete", 3) }));
    await vi.advanceTimersByTimeAsync(20_000);
    // A gap, and a reconnect.
    ws.last().receive(envelope("positions", "DU1234", 5, POSITIONS));
    ws.last().receive(envelope("positions", "DU1234", 8, POSITIONS));
    ws.last().drop(1006);
    await vi.advanceTimersByTimeAsync(runtime.manager.nextReconnectDelay ?? 0);
    ws.last().open();
    await vi.advanceTimersByTimeAsync(20_000);
    await runtime.fetch("positions", { account: "DU1234" }); // even asked directly
    expect(http.count("/api/account/positions")).toBe(2);
    expect(runtime.view("positions", { account: "DU1234" })).toMatchObject({ polling: false, seq: 8 });
    runtime.stop();
  });

  it("keeps REST for shadow and live (polling; a read on gap and reconnect) while resuming them too", async () => {
    const { runtime, http, ws } = setup();
    runtime.start();
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("shadow", 1), account_balance: flag("live", 2) }));
    runtime.register("positions", { account: "DU1234" });
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    expect(http.count("/api/account/positions")).toBe(1);
    expect(http.count("/api/account/balance")).toBe(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(http.count("/api/account/positions")).toBe(2); // shadow polls
    expect(http.count("/api/account/balance")).toBe(1); // live does not

    ws.last().receive(envelope("account_balance", "DU1234", 5, BALANCE));
    ws.last().receive(envelope("account_balance", "DU1234", 7, BALANCE)); // a gap: REST, as before
    await flush();
    expect(http.count("/api/account/balance")).toBe(2);

    ws.last().drop(1006);
    const delay = runtime.manager.nextReconnectDelay ?? 0;
    await vi.advanceTimersByTimeAsync(delay);
    ws.last().open();
    await flush();
    expect(http.count("/api/account/balance")).toBe(3); // the reconnect: REST, as before
    expect(resumesSent(ws.last())).toEqual([
      {
        action: "resume",
        since: [
          { type: "account_balance", key: "DU1234", seq: 7 },
          { type: "positions", key: "DU1234", seq: 1 },
        ],
      },
    ]);
    await vi.advanceTimersByTimeAsync(2000);
    expect(http.count("/api/account/positions")).toBeGreaterThan(2); // still polling
    runtime.stop();
  });
});

describe("LiveRuntime staleness", () => {
  it("marks a REST view stale from its first failed refresh until one succeeds; a 404 is not stale", async () => {
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    const healthy = routes["/api/account/balance"];
    let answer: "ok" | "down" | "missing" = "ok";
    routes["/api/account/balance"] = (call) =>
      answer === "down"
        ? { status: 502, body: { error: "bad gateway" } }
        : answer === "missing"
          ? { status: 404, body: { error: "no data yet" } }
          : healthy!(call);
    const { runtime } = fakeRuntime(routes);
    const view = () => runtime.view("account_balance", { account: "DU1234" });
    runtime.start();
    runtime.register("account_balance", { account: "DU1234" });
    await flush();
    expect(view()).toMatchObject({ seq: 1, stale: false, staleSince: null });

    answer = "down";
    await vi.advanceTimersByTimeAsync(2000);
    const since = Date.now();
    expect(view()).toMatchObject({ seq: 1, stale: true, staleSince: since, error: "REST request failed: bad gateway" });
    await vi.advanceTimersByTimeAsync(2000); // a second failure: still stale since the first
    expect(view()).toMatchObject({ stale: true, staleSince: since });

    answer = "ok";
    await vi.advanceTimersByTimeAsync(2000);
    expect(view()).toMatchObject({ stale: false, staleSince: null, error: null });

    answer = "missing";
    await vi.advanceTimersByTimeAsync(2000);
    expect(view()).toMatchObject({ stale: false, error: "No data yet" });
    runtime.stop();
  });

  it("reads REST-polled views at once and a second later when the socket drops, so a gone backend shows", async () => {
    const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
    const { runtime, http, ws } = fakeRuntime(routes);
    runtime.start();
    runtime.register("global_market", {}); // polled every 5 s
    ws.last().open();
    await flush();
    const reads = http.count("/api/markets/status");
    for (const path of Object.keys(routes)) routes[path] = () => ({ status: 503, body: { error: "gone" } });
    await vi.advanceTimersByTimeAsync(1000);
    ws.last().drop(1006);
    await flush();
    expect(http.count("/api/markets/status")).toBe(reads + 1); // not 4 s later at the next poll
    expect(runtime.view("global_market", {})).toMatchObject({ stale: true, staleSince: Date.now() });
    await vi.advanceTimersByTimeAsync(1000); // a server shutting down may have answered the first
    expect(http.count("/api/markets/status")).toBe(reads + 2);
    runtime.stop();
  });

  it("marks a WebSocket view stale since the drop, through reconnect attempts, until connected again", async () => {
    const { runtime, ws } = setup();
    runtime.start();
    runtime.register("positions", { account: "DU1234" });
    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("live", 2) }));
    ws.last().receive(envelope("positions", "DU1234", 5, POSITIONS));
    await flush();
    const view = () => runtime.view("positions", { account: "DU1234" });
    expect(view()).toMatchObject({ source: "websocket", stale: false, staleSince: null });

    await vi.advanceTimersByTimeAsync(3000);
    ws.last().drop(1006);
    const dropped = Date.now();
    expect(view()).toMatchObject({ stale: true, staleSince: dropped });
    await vi.advanceTimersByTimeAsync(runtime.manager.nextReconnectDelay ?? 0);
    expect(runtime.manager.getState()).toBe("connecting");
    expect(view().staleSince).toBe(dropped);
    ws.last().open();
    expect(view()).toMatchObject({ stale: false, staleSince: null });
    runtime.stop();
  });
});
