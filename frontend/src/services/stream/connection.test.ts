import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { envelope, fakeWebSocketClass, resumesSent, resyncEnvelope, seededRandom } from "../../test/fakes";
import { WebSocketManager } from "./connection";
import type { ManagerOptions } from "./connection";
import { CLOSE_PONG_TIMEOUT } from "./socket";

function setup(options: Partial<ManagerOptions> = {}) {
  const ws = fakeWebSocketClass();
  let now = 1_000_000;
  const manager = new WebSocketManager({
    url: () => "ws://thor.test/ws/stream/?client=c1&features=account_balance,positions,intraday,global_market",
    WebSocketImpl: ws.WebSocketImpl,
    random: seededRandom(42),
    now: () => now,
    ...options,
  });
  const refetches: Array<[string, string]> = [];
  manager.on("refetch", (feature, reason) => refetches.push([feature, reason]));
  return { manager, ws, refetches, advanceClock: (ms: number) => (now += ms) };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("WebSocketManager connection", () => {
  it("goes connecting -> connected -> disconnected and reports each state", () => {
    const { manager, ws } = setup();
    const states: string[] = [];
    manager.on("state", (s) => states.push(s));
    manager.start();
    expect(manager.getState()).toBe("connecting");
    ws.last().open();
    expect(manager.getState()).toBe("connected");
    ws.last().drop(1006);
    expect(manager.getState()).toBe("disconnected");
    expect(states).toEqual(["connecting", "connected", "disconnected"]);
  });

  it("reconnects with jittered exponential back-off, capped, from a seeded random", () => {
    const { manager, ws } = setup({ backoffBaseMs: 100, backoffCapMs: 1000 });
    const expectedRandom = seededRandom(42);
    manager.start();
    const delays: number[] = [];
    for (let attempt = 0; attempt < 8; attempt += 1) {
      const sockets = ws.sockets.length;
      ws.last().drop(1006); // the handshake failed: never opened
      const delay = manager.nextReconnectDelay;
      expect(delay).not.toBeNull();
      delays.push(delay as number);
      const ceiling = Math.min(1000, 100 * 2 ** attempt);
      expect(delay).toBe(Math.floor(expectedRandom() * ceiling));
      expect(delay).toBeLessThan(ceiling);
      // No new socket before the delay has passed, one right after.
      if ((delay as number) > 0) {
        vi.advanceTimersByTime((delay as number) - 1);
        expect(ws.sockets.length).toBe(sockets);
      }
      vi.advanceTimersByTime(1);
      expect(ws.sockets.length).toBe(sockets + 1);
    }
    expect(Math.max(...delays)).toBeLessThan(1000);
    // The delays are not a fixed schedule: jitter spreads clients apart.
    expect(new Set(delays).size).toBeGreaterThan(4);
  });

  it("starts the back-off over only after a connection stayed up long enough", () => {
    const { manager, ws, advanceClock } = setup({ backoffBaseMs: 100, backoffCapMs: 100_000, random: () => 0.999, stableMs: 5000 });
    manager.start();
    for (let i = 0; i < 5; i += 1) {
      ws.last().drop();
      vi.advanceTimersByTime(manager.nextReconnectDelay ?? 0);
    }
    // Opened and dropped at once: still backing off (attempt 5 -> ceiling 3200).
    ws.last().open();
    ws.last().drop();
    expect(manager.nextReconnectDelay).toBe(Math.floor(0.999 * 3200));
    vi.advanceTimersByTime(manager.nextReconnectDelay ?? 0);
    // Stayed up for 5 s: the next failure starts from the base again.
    ws.last().open();
    advanceClock(5000);
    ws.last().drop();
    expect(manager.nextReconnectDelay).toBe(Math.floor(0.999 * 100));
  });

  it("refetches every feature after a reconnect, not after the first connect", () => {
    const { manager, ws, refetches } = setup();
    manager.start();
    ws.last().open();
    expect(refetches).toEqual([]);
    ws.last().drop(1006);
    vi.advanceTimersByTime(30_000);
    ws.last().open();
    expect(refetches).toEqual([
      ["account_balance", "reconnect"],
      ["positions", "reconnect"],
      ["intraday", "reconnect"],
      ["global_market", "reconnect"],
    ]);
  });

  it("stops for good on 4401 (not authenticated) and says so", () => {
    const { manager, ws } = setup();
    const unauthorized = vi.fn();
    manager.on("unauthorized", unauthorized);
    manager.start();
    ws.last().open();
    ws.last().drop(4401, "authentication required");
    expect(unauthorized).toHaveBeenCalledTimes(1);
    expect(manager.nextReconnectDelay).toBeNull();
    vi.advanceTimersByTime(120_000);
    expect(ws.sockets).toHaveLength(1);
    expect(manager.getState()).toBe("disconnected");
  });

  it("closes a socket stopped mid-handshake only once it opens (no browser warning)", () => {
    const { manager, ws } = setup();
    manager.start();
    manager.stop();
    const socket = ws.last();
    expect(socket.closedWith).toBeNull();
    socket.open();
    expect(socket.closedWith?.code).toBe(1000);
    expect(manager.getState()).toBe("disconnected");
  });

  it("does not reconnect after stop()", () => {
    const { manager, ws } = setup();
    manager.start();
    ws.last().open();
    manager.stop();
    expect(ws.last().closedWith?.code).toBe(1000);
    vi.advanceTimersByTime(120_000);
    expect(ws.sockets).toHaveLength(1);
  });
});

describe("WebSocketManager liveness", () => {
  it("pings periodically and stays up while pongs come back", () => {
    const { manager, ws } = setup({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
    manager.start();
    const socket = ws.last();
    socket.open();
    for (let i = 0; i < 3; i += 1) {
      vi.advanceTimersByTime(1000);
      expect(socket.sent.at(-1)).toEqual({ action: "ping" });
      socket.receive({ type: "pong" });
    }
    vi.advanceTimersByTime(400);
    expect(socket.sent).toHaveLength(4); // the resume sent on open, then three pings
    expect(manager.getState()).toBe("connected");
    expect(manager.pongTimeouts).toBe(0);
  });

  it("treats a missing pong as a dead connection: closes it and reconnects", () => {
    const { manager, ws } = setup({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
    manager.start();
    const socket = ws.last();
    socket.open();
    vi.advanceTimersByTime(1000);
    expect(socket.sent).toEqual([{ action: "resume", since: [] }, { action: "ping" }]);
    vi.advanceTimersByTime(499);
    expect(manager.getState()).toBe("connected");
    vi.advanceTimersByTime(1);
    expect(manager.getState()).toBe("disconnected");
    expect(socket.closedWith?.code).toBe(CLOSE_PONG_TIMEOUT);
    expect(manager.pongTimeouts).toBe(1);
    vi.advanceTimersByTime(manager.nextReconnectDelay ?? 0);
    expect(ws.sockets).toHaveLength(2);
  });
});

describe("WebSocketManager seq tracking", () => {
  it("counts a gap, still delivers the message, and asks for a REST refetch of that feature", () => {
    const { manager, ws, refetches } = setup();
    const delivered: number[] = [];
    manager.on("envelope", (e) => delivered.push(e.seq));
    manager.start();
    ws.last().open();
    ws.last().receive(envelope("vwap", "ES", 10, {}));
    ws.last().receive(envelope("vwap", "ES", 11, {}));
    expect(refetches).toEqual([]);
    ws.last().receive(envelope("vwap", "ES", 14, {}));
    expect(delivered).toEqual([10, 11, 14]);
    expect(manager.counters().intraday.gaps).toBe(1);
    expect(refetches).toEqual([["intraday", "gap"]]);
  });

  it("tracks seq per (type, key): other keys and types are independent", () => {
    const { manager, ws, refetches } = setup();
    manager.start();
    ws.last().open();
    ws.last().receive(envelope("intraday_bar", "ES", 100, {}));
    ws.last().receive(envelope("vwap", "ES", 3, {}));
    ws.last().receive(envelope("intraday_bar", "NQ", 7, {}));
    ws.last().receive(envelope("intraday_bar", "ES", 101, {}));
    ws.last().receive(envelope("intraday_bar", "NQ", 8, {}));
    expect(manager.counters().intraday).toMatchObject({ messages: 5, gaps: 0, duplicates: 0 });
    expect(refetches).toEqual([]);
  });

  it("counts a duplicate and does not deliver it twice", () => {
    const { manager, ws } = setup();
    const delivered = vi.fn();
    const routed = vi.fn();
    manager.on("envelope", delivered);
    manager.onMessage("account_balance", routed);
    manager.start();
    ws.last().open();
    ws.last().receive(envelope("account_balance", "DU1234", 5, { equity: 1 }));
    ws.last().receive(envelope("account_balance", "DU1234", 5, { equity: 1 }));
    ws.last().receive(envelope("account_balance", "DU1234", 4, { equity: 0 })); // older: also not applied
    expect(delivered).toHaveBeenCalledTimes(1);
    expect(routed).toHaveBeenCalledTimes(1);
    expect(manager.counters().account_balance).toMatchObject({ messages: 3, duplicates: 2, gaps: 0, lastSeq: 5 });
  });

  it("routes messages by type and emits flags", () => {
    const { manager, ws } = setup();
    const heartbeat = vi.fn();
    const flags = vi.fn();
    manager.onMessage("heartbeat", heartbeat);
    manager.on("flags", flags);
    manager.start();
    ws.last().open();
    ws.last().receive({ type: "flags", client: "c1", features: {} });
    ws.last().receive({ type: "heartbeat", feature: null, key: "", seq: 1 });
    ws.last().receive("not json");
    expect(flags).toHaveBeenCalledTimes(1);
    expect(heartbeat).toHaveBeenCalledTimes(1);
    expect(manager.badFrames).toBe(1);
    // A heartbeat is not a feature message.
    expect(Object.values(manager.counters()).every((c) => c.messages === 0)).toBe(true);
  });

  it("reports messages per second over the rate window", () => {
    const { manager, ws, advanceClock } = setup({ rateWindowMs: 10_000 });
    manager.start();
    ws.last().open();
    for (let seq = 1; seq <= 20; seq += 1) ws.last().receive(envelope("positions", "DU1234", seq, {}));
    expect(manager.counters().positions.rate).toBe(2);
    advanceClock(10_001);
    expect(manager.counters().positions.rate).toBe(0);
    expect(manager.counters().positions.messages).toBe(20);
  });
});

describe("WebSocketManager resume", () => {
  it("sends resume on the first open and on every reconnect, with the newest seq held per stream", () => {
    // What the runtime adds from REST: a balance the stream has not sent yet, an older vwap.
    const fromRest = [
      { type: "account_balance" as const, key: "DU1234", seq: 3 },
      { type: "vwap" as const, key: "ES", seq: 2 },
    ];
    const { manager, ws } = setup({ resumeSince: (received) => [...fromRest, ...received] });
    manager.start();
    ws.last().open();
    expect(ws.last().sent).toEqual([
      {
        action: "resume",
        since: [
          { type: "account_balance", key: "DU1234", seq: 3 },
          { type: "vwap", key: "ES", seq: 2 },
        ],
      },
    ]);
    ws.last().receive(envelope("vwap", "ES", 10, {}));
    ws.last().receive(envelope("positions", "DU1234", 41, {}));
    ws.last().drop(1006);
    vi.advanceTimersByTime(30_000);
    ws.last().open();
    expect(resumesSent(ws.last())).toEqual([
      {
        action: "resume",
        since: [
          { type: "account_balance", key: "DU1234", seq: 3 },
          { type: "positions", key: "DU1234", seq: 41 },
          { type: "vwap", key: "ES", seq: 10 }, // the stream's 10 beats REST's 2
        ],
      },
    ]);
    expect(ws.last().sent[0]).toMatchObject({ action: "resume" }); // before anything else
    expect(manager.resumes.sent).toBe(2);
  });

  it("sends since: [] when the page holds nothing", () => {
    const { manager, ws } = setup();
    manager.start();
    ws.last().open();
    expect(ws.last().sent).toEqual([{ action: "resume", since: [] }]);
  });

  it("counts a seq jump marked resync as a resync, not a gap, and asks for no refetch", () => {
    const { manager, ws, refetches } = setup();
    const delivered: Array<[number, boolean, boolean]> = [];
    manager.on("envelope", (e, info) => delivered.push([e.seq, info.gap, info.resync]));
    manager.start();
    ws.last().open();
    ws.last().receive(resyncEnvelope("positions", "DU1234", 10, {})); // a stream's first: neither
    ws.last().receive(resyncEnvelope("positions", "DU1234", 14, {})); // jumped, marked: resync
    ws.last().receive(resyncEnvelope("positions", "DU1234", 15, {})); // marked, nothing skipped
    ws.last().receive(envelope("positions", "DU1234", 18, {})); // jumped, unmarked: gap
    ws.last().receive(resyncEnvelope("positions", "DU1234", 18, {})); // seen: still a duplicate
    expect(delivered).toEqual([
      [10, false, false],
      [14, false, true],
      [15, false, false],
      [18, true, false],
    ]);
    expect(manager.counters().positions).toMatchObject({
      messages: 5,
      gaps: 1,
      resyncs: 1,
      duplicates: 1,
      lastSeq: 18,
    });
    expect(refetches).toEqual([["positions", "gap"]]);
  });

  it("counts a resync answering the resume after a reconnect against the seq held before the drop", () => {
    const { manager, ws, refetches } = setup();
    manager.start();
    ws.last().open();
    ws.last().receive(envelope("intraday_bar", "ES", 5, {}));
    ws.last().receive(envelope("vwap", "ES", 5, {}));
    ws.last().drop(1012); // the backend restarted
    vi.advanceTimersByTime(30_000);
    ws.last().open();
    ws.last().receive(resyncEnvelope("intraday_bar", "ES", 9, {})); // history lost: current state
    ws.last().receive(envelope("vwap", "ES", 6, {})); // replayed from 6
    ws.last().receive(envelope("vwap", "ES", 7, {}));
    ws.last().receive({ type: "resumed", replayed: 2, resynced: 1 });
    expect(manager.counters().intraday).toMatchObject({ messages: 5, gaps: 0, resyncs: 1, duplicates: 0 });
    expect(refetches.filter(([, reason]) => reason === "gap")).toEqual([]);
  });

  it("does not take resumed for an envelope: counts its replayed, resynced and healed", () => {
    const { manager, ws } = setup();
    const envelopes = vi.fn();
    const resumed = vi.fn();
    const routed = vi.fn();
    manager.on("envelope", envelopes);
    manager.on("resumed", resumed);
    manager.onMessage("resumed", routed);
    manager.start();
    ws.last().open();
    ws.last().receive({ type: "resumed", replayed: 3, resynced: 2 });
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 1, healed: true }); // unasked
    expect(envelopes).not.toHaveBeenCalled();
    expect(resumed).toHaveBeenCalledTimes(2);
    expect(routed).toHaveBeenCalledTimes(2);
    expect(manager.badFrames).toBe(0);
    expect(Object.values(manager.counters()).every((c) => c.messages === 0 && c.lastSeq === null)).toBe(true);
    expect(manager.resumes).toEqual({ sent: 1, answered: 1, replayed: 3, resynced: 3, healed: 1 });
  });

  it("folds resumes asked while one is unanswered into one sent after its answer", () => {
    const { manager, ws } = setup();
    manager.start();
    ws.last().open(); // the resume on open is out
    ws.last().receive(envelope("positions", "DU1234", 7, {}));
    expect(manager.resume()).toBe(true);
    expect(manager.resume()).toBe(true);
    expect(resumesSent(ws.last())).toHaveLength(1);
    // A healed `resumed` does not answer ours.
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0, healed: true });
    expect(resumesSent(ws.last())).toHaveLength(1);
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0 });
    expect(resumesSent(ws.last())).toEqual([
      { action: "resume", since: [] },
      { action: "resume", since: [{ type: "positions", key: "DU1234", seq: 7 }] },
    ]);
    ws.last().receive({ type: "resumed", replayed: 0, resynced: 0 });
    expect(resumesSent(ws.last())).toHaveLength(2); // nothing left waiting
  });

  it("stops waiting for an answer the server refused, and does not resume while down", () => {
    const { manager, ws } = setup();
    manager.start();
    ws.last().open();
    ws.last().receive({ type: "error", error: "unknown action 'resume'" });
    expect(manager.resume()).toBe(true);
    expect(resumesSent(ws.last())).toHaveLength(2);
    ws.last().drop(1006);
    expect(manager.resume()).toBe(false);
  });
});
