/** Test doubles: a scriptable WebSocket class, a routed fetch, a seeded random source. No network. */

import { createApi } from "../services/api";
import { Http } from "../services/http";
import type { FetchLike } from "../services/http";
import { LiveRuntime } from "../services/live";
import type { LiveOptions } from "../services/live";
import type { CloseEventLike, MessageEventLike, WebSocketCtor, WebSocketLike } from "../services/stream";
import type { Envelope, EnvelopeType, Feature, FeatureFlag, Stage } from "../types";
import { TYPE_FEATURE } from "../types";

export interface FakeSocket extends WebSocketLike {
  readonly url: string;
  readonly sent: unknown[];
  closedWith: CloseEventLike | null;
  /** The server accepted the handshake. */
  open(): void;
  /** The server sent `message` (JSON-encoded like the real thing). */
  receive(message: unknown): void;
  /** The connection ended (server close, network loss). */
  drop(code?: number, reason?: string): void;
}

/** A fresh fake WebSocket class per test, with the list of sockets it created. */
export function fakeWebSocketClass(): { WebSocketImpl: WebSocketCtor; sockets: FakeSocket[]; last: () => FakeSocket } {
  const sockets: FakeSocket[] = [];
  class FakeWebSocket implements FakeSocket {
    readyState = 0;
    readonly sent: unknown[] = [];
    closedWith: CloseEventLike | null = null;
    onopen: ((ev: unknown) => void) | null = null;
    onclose: ((ev: CloseEventLike) => void) | null = null;
    onmessage: ((ev: MessageEventLike) => void) | null = null;
    onerror: ((ev: unknown) => void) | null = null;

    constructor(readonly url: string) {
      sockets.push(this);
    }

    send(data: string): void {
      if (this.readyState !== 1) throw new Error("send() on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000, reason = ""): void {
      // A real browser reports `close` later, asynchronously; the manager must not rely on it.
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    open(): void {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(message: unknown): void {
      this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
    }

    drop(code = 1006, reason = ""): void {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return {
    WebSocketImpl: FakeWebSocket,
    sockets,
    last: () => {
      const socket = sockets[sockets.length - 1];
      if (!socket) throw new Error("no WebSocket was opened");
      return socket;
    },
  };
}

/** mulberry32: a tiny seeded PRNG in [0, 1), so back-off delays are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FetchCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

export type Route = (call: FetchCall) => { status?: number; body: unknown } | Promise<{ status?: number; body: unknown }>;

/**
 * A fetch that answers from `routes` (keyed by "METHOD /path" without the query, or "/path" for
 * GET) and records every call. An unrouted path answers 404 so a test notices.
 */
export function fakeFetch(routes: Record<string, Route>): { fetch: FetchLike; calls: FetchCall[]; count: (path: string) => number } {
  const calls: FetchCall[] = [];
  const fetch: FetchLike = async (input, init) => {
    const method = (init?.method ?? "GET").toUpperCase();
    const headers = { ...((init?.headers as Record<string, string> | undefined) ?? {}) };
    const body = typeof init?.body === "string" ? JSON.parse(init.body) : null;
    const call: FetchCall = { url: input, method, headers, body };
    calls.push(call);
    const path = input.split("?")[0] ?? input;
    const route = routes[`${method} ${path}`] ?? (method === "GET" ? routes[path] : undefined);
    const answer = route ? await route(call) : { status: 404, body: { error: `no route for ${method} ${path}` } };
    const status = answer.status ?? 200;
    const text = JSON.stringify(answer.body);
    // Only what Http reads; a real Response's body stream would tie the test to Node's timers.
    return { ok: status >= 200 && status < 300, status, text: async () => text } as Response;
  };
  return { fetch, calls, count: (path) => calls.filter((c) => c.url.split("?")[0] === path).length };
}

export function envelope<T>(type: EnvelopeType, key: string, seq: number, data: T): Envelope<T> {
  return { type, feature: TYPE_FEATURE[type], key, seq, ts: "2026-11-24T14:30:00.000Z", data };
}

/** A stream's current state as a resume answers it when it cannot replay: marked `resync`. */
export function resyncEnvelope<T>(
  type: EnvelopeType,
  key: string,
  seq: number,
  data: T,
): Envelope<T> & { resync: true } {
  return { ...envelope(type, key, seq, data), resync: true };
}

/** The frames a socket carried that were `resume` commands, in order. */
export function resumesSent(socket: FakeSocket): unknown[] {
  return socket.sent.filter((command) => (command as { action?: unknown }).action === "resume");
}

export function flag(stage: Stage, version: number, source?: "websocket" | "rest", percent = 100): FeatureFlag {
  return {
    stage,
    percent,
    version,
    source: source ?? (stage === "live" || stage === "complete" ? "websocket" : "rest"),
    override: null,
  };
}

export function flagsMessage(features: Partial<Record<Feature, FeatureFlag>>) {
  return { type: "flags", client: "test-client", features };
}

export const BALANCE = {
  account: "DU1234",
  currency: "USD",
  cash: 1_000_000,
  equity: 1_012_345.678,
  unrealized_pnl: 12_345.67,
  realized_pnl: -250.5,
  margin_used: 45_000,
  buying_power: 955_000,
  as_of: "2026-11-24T14:30:00.000Z",
};

export const POSITIONS = {
  account: "DU1234",
  positions: [
    { symbol: "ES", quantity: 2, avg_price: 5950.25, last_price: 5960.5, market_value: 596_050, unrealized_pnl: 1025 },
  ],
  as_of: "2026-11-24T14:30:00.000Z",
};

export function bar(symbol: string, close = 100) {
  return { symbol, start: "2026-11-24T14:30:00.000Z", open: close, high: close + 1, low: close - 1, close, volume: 10 };
}

export function vwap(symbol: string, value = 100) {
  return { symbol, vwap: value, cum_volume: 1000, as_of: "2026-11-24T14:30:00.000Z" };
}

export function market(code: string, isOpen: boolean) {
  return {
    market: code,
    name: `${code} exchange`,
    timezone: "UTC",
    is_open: isOpen,
    session: isOpen ? "regular" : "closed",
    next_change: "2026-11-24T16:00:00.000Z",
  };
}

/** One feature of `GET /api/ops/monitor` (the shared contract of issue 15), with no verdict, ramp or guard. */
export function opsFeature(feature: Feature, overrides: Record<string, unknown> = {}) {
  return {
    feature,
    stage: "shadow",
    percent: 0,
    version: 3,
    updated_by: "cli:alice",
    updated_at: "2026-11-24T10:00:00Z",
    reason: "start shadowing",
    allowed: ["live", "off"],
    verdict: null,
    ramp: null,
    guard: null,
    rest_reads_per_min: 0,
    rest_readers: [],
    ...overrides,
  };
}

/** A stored verdict as the monitor reports it. */
export function opsVerdict(overrides: Record<string, unknown> = {}) {
  return {
    verdict: "PASS",
    judged_at: "2026-11-24T10:00:00Z",
    age_s: 12,
    valid: true,
    source: "live",
    reasons: [],
    paired: 1204,
    mismatched: 0,
    gaps: 0,
    resyncs: 1,
    duplicates: 0,
    lag_ms: { mean: 12.4, max: 40 },
    last_mismatch_path: null,
    ...overrides,
  };
}

/** The whole monitor answer: every feature in shadow without a verdict unless `features` says otherwise. */
export function opsAnswer(operator = true, features: Partial<Record<Feature, Record<string, unknown>>> = {}) {
  return {
    server_time: new Date().toISOString(),
    operator,
    features: (["account_balance", "positions", "intraday", "global_market"] as const).map((f) =>
      opsFeature(f, features[f] ?? {}),
    ),
  };
}

/** Routes for every feature's REST endpoint, answering with `seq` from `seqs` (mutable by tests). */
export function backendRoutes(seqs: { balance: number; positions: number; bar: number; vwap: number; markets: number }) {
  const routes: Record<string, Route> = {
    "/api/session": () => ({ body: { authenticated: true, username: "alice", accounts: ["DU1234"] } }),
    "/api/cutover/flags": () => ({ body: { client: "test-client", features: {} } }),
    "/api/ops/monitor": () => ({ body: opsAnswer() }),
    "/api/account/balance": () => ({ body: envelope("account_balance", "DU1234", seqs.balance, BALANCE) }),
    "/api/account/positions": () => ({ body: envelope("positions", "DU1234", seqs.positions, POSITIONS) }),
    "/api/markets/status": () => ({
      body: {
        markets: [
          envelope("market_status", "CME", seqs.markets, market("CME", true)),
          envelope("market_status", "LSE", seqs.markets, market("LSE", false)),
        ],
      },
    }),
  };
  for (const symbol of ["ES", "NQ", "YM", "RTY", "CL", "GC"]) {
    routes[`/api/intraday/${symbol}/bar`] = () => ({ body: envelope("intraday_bar", symbol, seqs.bar, bar(symbol)) });
    routes[`/api/intraday/${symbol}/vwap`] = () => ({ body: envelope("vwap", symbol, seqs.vwap, vwap(symbol)) });
  }
  return routes;
}

/** A runtime on a fake WebSocket class and a fake fetch, as the page builds it after login. */
export function fakeRuntime(
  routes: Record<string, Route>,
  options: Partial<LiveOptions> = {},
): { runtime: LiveRuntime; http: ReturnType<typeof fakeFetch>; ws: ReturnType<typeof fakeWebSocketClass> } {
  const http = fakeFetch(routes);
  const ws = fakeWebSocketClass();
  const runtime = new LiveRuntime({
    api: createApi(new Http({ fetch: http.fetch, cookies: () => "csrftoken=tok" })),
    clientId: "test-client",
    location: { protocol: "http:", host: "thor.test" },
    ...options,
    manager: { WebSocketImpl: ws.WebSocketImpl, random: seededRandom(7), ...options.manager },
  });
  return { runtime, http, ws };
}
