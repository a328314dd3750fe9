/**
 * The one WebSocket connection of the page: connect, reconnect, liveness, routing, `seq` tracking.
 *
 * - Authentication is the session cookie the browser sends with the handshake; the server
 *   accepts and then closes with 4401 when it is missing, so the code is readable here. 4401 is
 *   final (no reconnect): the page goes back to its login form.
 * - Reconnect: "full jitter" exponential back-off, `random() * min(cap, base * 2^attempt)`
 *   (AWS Architecture Blog, "Exponential Backoff And Jitter"), so a backend restart is not met
 *   by every client at the same instant. The attempt count resets once a connection has stayed
 *   up for `stableMs`, not merely opened: a server that accepts and drops at once still backs off.
 * - Liveness: browsers cannot see protocol pings, so every `pingIntervalMs` the client sends
 *   `{"action": "ping"}`; no `pong` within `pongTimeoutMs` means the connection is dead (a
 *   half-open TCP connection never fires `close` in time), so it is dropped and reopened.
 * - `seq` is tracked per (type, key): a jump of more than one is a gap (counted, the message is
 *   still delivered as the newest state, and the feature is refetched over REST); a `seq` seen
 *   before (or older) is a duplicate (counted, not delivered). After a reconnect every feature is
 *   refetched and the baselines restart, since the new connection begins wherever the server is.
 *
 * Pure TypeScript: no React. The WebSocket class, clock and random source are injectable.
 */

import { FEATURES, TYPE_FEATURE, isEnvelopeType, isFeature } from "../types";
import type { Envelope, EnvelopeType, Feature } from "../types";

export type ConnectionState = "connecting" | "connected" | "disconnected";

export interface CloseEventLike {
  code: number;
  reason: string;
}

export interface MessageEventLike {
  data: unknown;
}

/** The part of the browser WebSocket the manager uses (tests inject a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: CloseEventLike) => void) | null;
  onmessage: ((ev: MessageEventLike) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketCtor = new (url: string) => WebSocketLike;

/** Close codes (backend/global_markets/consumers.py). */
export const CLOSE_UNAUTHENTICATED = 4401;
/** Our own code when we drop a connection that stopped answering pings. */
export const CLOSE_PONG_TIMEOUT = 4000;
const CONNECTING = 0;
const OPEN = 1;

export type ServerMessageType = EnvelopeType | "flags" | "subscribed" | "heartbeat" | "pong" | "error";

export interface ServerMessage {
  type: string;
  [field: string]: unknown;
}

export interface FlagsMessage extends ServerMessage {
  type: "flags";
  client?: string;
  features: Record<string, unknown>;
}

export type RefetchReason = "gap" | "reconnect";

export interface FeatureCounters {
  /** Envelopes received (duplicates included). */
  messages: number;
  /** Envelopes per second over the last `rateWindowMs`. */
  rate: number;
  gaps: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
}

export interface ManagerOptions {
  /** The URL to open, asked again at each (re)connect. */
  url: () => string;
  WebSocketImpl?: WebSocketCtor;
  /** A number in [0, 1): seed it in tests. */
  random?: () => number;
  now?: () => number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** How long a connection must stay up before the back-off starts from the beginning again. */
  stableMs?: number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  rateWindowMs?: number;
}

/** The full-jitter delay before reconnect number `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

interface Listeners {
  state: (state: ConnectionState) => void;
  envelope: (envelope: Envelope, info: { gap: boolean }) => void;
  duplicate: (envelope: Envelope) => void;
  flags: (message: FlagsMessage) => void;
  refetch: (feature: Feature, reason: RefetchReason) => void;
  closed: (info: CloseEventLike) => void;
  unauthorized: () => void;
}

interface Tally {
  messages: number;
  gaps: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
  times: number[];
}

function newTally(): Tally {
  return { messages: 0, gaps: 0, duplicates: 0, lastSeq: null, lastMessageAt: null, times: [] };
}

export class WebSocketManager {
  private readonly url: () => string;
  private readonly WS: WebSocketCtor;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly stableMs: number;
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  private readonly rateWindowMs: number;

  private ws: WebSocketLike | null = null;
  private running = false;
  private state: ConnectionState = "disconnected";
  private attempt = 0;
  private openedAt: number | null = null;
  private opens = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly lastSeq = new Map<string, number>();
  private readonly tallies = new Map<Feature, Tally>();
  private readonly listeners: { [K in keyof Listeners]: Set<Listeners[K]> } = {
    state: new Set(),
    envelope: new Set(),
    duplicate: new Set(),
    flags: new Set(),
    refetch: new Set(),
    closed: new Set(),
    unauthorized: new Set(),
  };
  private readonly routes = new Map<string, Set<(message: ServerMessage) => void>>();

  /** The delay of the reconnect now scheduled, if any (for the monitor and tests). */
  nextReconnectDelay: number | null = null;
  /** Connections dropped because no pong came back. */
  pongTimeouts = 0;
  /** Frames that were not a JSON object with a `type`. */
  badFrames = 0;

  constructor(options: ManagerOptions) {
    this.url = options.url;
    this.WS = options.WebSocketImpl ?? (globalThis.WebSocket as unknown as WebSocketCtor);
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.baseMs = options.backoffBaseMs ?? 500;
    this.capMs = options.backoffCapMs ?? 30_000;
    this.stableMs = options.stableMs ?? 10_000;
    this.pingIntervalMs = options.pingIntervalMs ?? 15_000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 10_000;
    this.rateWindowMs = options.rateWindowMs ?? 10_000;
    for (const feature of FEATURES) this.tallies.set(feature, newTally());
  }

  // -- public API ------------------------------------------------------------------------

  /** Open the connection (idempotent; a stopped manager can start again). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this.open();
  }

  /** Close for good (logout, unmount): no reconnect until `start()` again. */
  stop(): void {
    this.running = false;
    this.clearReconnect();
    this.stopPing();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      closeQuietly(ws, 1000, "client stop");
    }
    this.setState("disconnected");
  }

  getState(): ConnectionState {
    return this.state;
  }

  /** How many times a connection opened (the first open included). */
  get connections(): number {
    return this.opens;
  }

  /** Send a JSON command if the connection is open; returns whether it went out. */
  send(command: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(command));
    return true;
  }

  on<K extends keyof Listeners>(event: K, listener: Listeners[K]): () => void {
    const set = this.listeners[event] as Set<Listeners[K]>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Route server messages of one `type` (envelopes only once they pass the duplicate check). */
  onMessage(type: ServerMessageType | string, handler: (message: ServerMessage) => void): () => void {
    let set = this.routes.get(type);
    if (!set) {
      set = new Set();
      this.routes.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Per-feature counters as of now (rates are computed at the call). */
  counters(): Record<Feature, FeatureCounters> {
    const now = this.now();
    const out = {} as Record<Feature, FeatureCounters>;
    for (const feature of FEATURES) {
      const t = this.tallies.get(feature) ?? newTally();
      prune(t.times, now - this.rateWindowMs);
      out[feature] = {
        messages: t.messages,
        rate: t.times.length / (this.rateWindowMs / 1000),
        gaps: t.gaps,
        duplicates: t.duplicates,
        lastSeq: t.lastSeq,
        lastMessageAt: t.lastMessageAt,
      };
    }
    return out;
  }

  // -- connection ------------------------------------------------------------------------

  private open(): void {
    this.clearReconnect();
    this.setState("connecting");
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.url());
    } catch {
      // A malformed URL throws synchronously; treat it like a failed connection.
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.opens += 1;
      this.openedAt = this.now();
      this.setState("connected");
      this.startPing();
      if (this.opens > 1) {
        // Whatever happened while we were away is not on this stream: read it over REST.
        this.lastSeq.clear();
        for (const feature of FEATURES) this.emit("refetch", feature, "reconnect");
      }
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.handle(ev.data);
    };
    ws.onerror = () => {
      // The browser fires `close` right after; nothing to do here (and nothing to log: a
      // disconnect is an expected situation).
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.dropped({ code: ev.code, reason: ev.reason });
    };
  }

  private dropped(info: CloseEventLike): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) detach(ws);
    this.stopPing();
    if (this.openedAt !== null && this.now() - this.openedAt >= this.stableMs) this.attempt = 0;
    this.openedAt = null;
    this.setState("disconnected");
    this.emit("closed", info);
    if (info.code === CLOSE_UNAUTHENTICATED) {
      this.running = false;
      this.emit("unauthorized");
      return;
    }
    if (this.running) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (!this.running) return;
    this.setState("disconnected");
    const delay = backoffDelay(this.attempt, this.baseMs, this.capMs, this.random);
    this.attempt += 1;
    this.nextReconnectDelay = delay;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.nextReconnectDelay = null;
      if (this.running) this.open();
    }, delay);
  }

  private clearReconnect(): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.nextReconnectDelay = null;
  }

  private startPing(): void {
    this.stopPing();
    this.pingTimer = setInterval(() => this.ping(), this.pingIntervalMs);
  }

  private stopPing(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    if (this.pongTimer !== null) clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
  }

  private ping(): void {
    if (this.pongTimer !== null) return; // still waiting for the last one
    if (!this.send({ action: "ping" })) return;
    this.pongTimer = setTimeout(() => {
      this.pongTimer = null;
      this.pongTimeouts += 1;
      // A dead TCP connection may take minutes to report `close`: give up on it now.
      const ws = this.ws;
      if (ws) {
        this.dropped({ code: CLOSE_PONG_TIMEOUT, reason: "no pong" });
        ws.close(CLOSE_PONG_TIMEOUT, "no pong");
      }
    }, this.pongTimeoutMs);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }

  // -- messages --------------------------------------------------------------------------

  private handle(raw: unknown): void {
    let message: unknown;
    try {
      message = typeof raw === "string" ? JSON.parse(raw) : null;
    } catch {
      message = null;
    }
    if (!message || typeof message !== "object" || typeof (message as ServerMessage).type !== "string") {
      this.badFrames += 1;
      return;
    }
    const msg = message as ServerMessage;
    if (msg.type === "pong" && this.pongTimer !== null) {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
    if (isEnvelopeType(msg.type)) {
      if (!this.track(msg)) return;
    } else if (msg.type === "flags" && msg.features && typeof msg.features === "object") {
      this.emit("flags", msg as FlagsMessage);
    }
    for (const handler of this.routes.get(msg.type) ?? []) handler(msg);
  }

  /** Count an envelope; returns false for a duplicate (or malformed) one, which is not delivered. */
  private track(msg: ServerMessage): boolean {
    const type = msg.type as EnvelopeType;
    const feature: Feature = isFeature(msg.feature) ? msg.feature : TYPE_FEATURE[type];
    const { seq, key } = msg;
    if (typeof seq !== "number" || typeof key !== "string") {
      this.badFrames += 1;
      return false;
    }
    const envelope = msg as unknown as Envelope;
    const tally = this.tallies.get(feature) ?? newTally();
    const now = this.now();
    tally.messages += 1;
    tally.lastMessageAt = now;
    tally.times.push(now);
    prune(tally.times, now - this.rateWindowMs);

    const id = `${type}|${key}`;
    const last = this.lastSeq.get(id);
    if (last !== undefined && seq <= last) {
      tally.duplicates += 1;
      this.emit("duplicate", envelope);
      return false;
    }
    const gap = last !== undefined && seq > last + 1;
    this.lastSeq.set(id, seq);
    tally.lastSeq = seq;
    if (gap) tally.gaps += 1;
    this.emit("envelope", envelope, { gap });
    if (gap) this.emit("refetch", feature, "gap");
    return true;
  }

  private emit<K extends keyof Listeners>(event: K, ...args: Parameters<Listeners[K]>): void {
    for (const listener of [...this.listeners[event]]) {
      (listener as (...a: Parameters<Listeners[K]>) => void)(...args);
    }
  }
}

/**
 * Close `ws`; one still connecting is closed as soon as it opens, because closing it mid-handshake
 * makes the browser log "WebSocket is closed before the connection is established" (React's
 * development double mount, a fast logout).
 */
function closeQuietly(ws: WebSocketLike, code: number, reason: string): void {
  if (ws.readyState === CONNECTING) {
    ws.onopen = () => ws.close(code, reason);
    return;
  }
  ws.close(code, reason);
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onclose = null;
  ws.onmessage = null;
  ws.onerror = null;
}

/** Drop timestamps older than `since` from the front of an ascending list. */
function prune(times: number[], since: number): void {
  let drop = 0;
  while (drop < times.length && (times[drop] ?? Infinity) <= since) drop += 1;
  if (drop) times.splice(0, drop);
}

/** `ws(s)://<host>/ws/stream/?client=…&features=…` for the page's own origin. */
export function streamUrl(
  location: { protocol: string; host: string },
  clientId: string,
  features: readonly Feature[] = FEATURES,
): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // The feature list is sent with literal commas, as the brief's URL shows (Django splits on ",").
  return `${scheme}//${location.host}/ws/stream/?client=${encodeURIComponent(clientId)}&features=${features.join(",")}`;
}
