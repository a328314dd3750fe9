/**
 * The one WebSocket connection of the page: connect, reconnect, routing, and the events the
 * runtime listens to. Retry timing is `backoff.ts`, ping/pong is `liveness.ts`, `seq` and
 * counters are `health.ts`; this file decides when each of them runs.
 *
 * - Authentication is the session cookie the browser sends with the handshake; the server
 *   accepts and then closes with 4401 when it is missing, so the code is readable here. 4401 is
 *   final (no reconnect): the page goes back to its login form.
 * - Every open (the first and each reconnect) sends `{"action": "resume", "since": [...]}` with the
 *   last `seq` the page holds per stream (docs/contracts.md, "Resuming a stream"): the server
 *   replays what was missed or sends the current state marked `resync`, then `resumed`. That is
 *   what lets a feature at `complete` recover from a drop without REST.
 * - A gap and a reconnect are still reported as `refetch`: the runtime decides per feature whether
 *   that means a REST read (features not yet at `complete`) or a `resume` (those at `complete`).
 *
 * Pure TypeScript: no React. The WebSocket class, clock and random source are injectable.
 */

import { FEATURES, isEnvelopeType } from "../../types";
import type { Envelope, Feature } from "../../types";
import { Subscribable } from "../subscribable";
import { Backoff } from "./backoff";
import { StreamHealth } from "./health";
import type { FeatureCounters } from "./health";
import { Liveness } from "./liveness";
import { isFlagsMessage, isResumedMessage, parseFrame, resumeCommand } from "./messages";
import type { FlagsMessage, ResumePoint, ResumedMessage, ServerMessage, ServerMessageType } from "./messages";
import { CLOSE_PONG_TIMEOUT, CLOSE_UNAUTHENTICATED, OPEN, closeQuietly, detach } from "./socket";
import type { CloseEventLike, WebSocketCtor, WebSocketLike } from "./socket";

export type ConnectionState = "connecting" | "connected" | "disconnected";

export type RefetchReason = "gap" | "reconnect";

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
  /**
   * The `since` of each `resume`, given the newest `seq` received over the stream per (type,
   * key). The runtime adds what REST brought into its store; by default the stream's own.
   */
  resumeSince?: (received: ResumePoint[]) => ResumePoint[];
}

/** What the resumes of this page's connections did (for the monitor). */
export interface ResumeCounts {
  /** `resume` commands sent. */
  sent: number;
  /** `resumed` replies to them. */
  answered: number;
  /** Envelopes replayed and streams resynced, as the `resumed` replies (healed ones included) say. */
  replayed: number;
  resynced: number;
  /** `resumed` replies a worker sent unasked after healing its own path to Redis. */
  healed: number;
}

/** The arguments each event of `on(...)` is called with. */
interface Events {
  state: [state: ConnectionState];
  envelope: [envelope: Envelope, info: { gap: boolean; resync: boolean }];
  duplicate: [envelope: Envelope];
  flags: [message: FlagsMessage];
  refetch: [feature: Feature, reason: RefetchReason];
  resumed: [message: ResumedMessage];
  closed: [info: CloseEventLike];
  unauthorized: [];
}

export class WebSocketManager {
  private readonly url: () => string;
  private readonly WS: WebSocketCtor;
  private readonly now: () => number;
  private readonly backoff: Backoff;
  private readonly liveness: Liveness;
  private readonly health: StreamHealth;
  private readonly resumeSince: (received: ResumePoint[]) => ResumePoint[];

  private ws: WebSocketLike | null = null;
  private running = false;
  private state: ConnectionState = "disconnected";
  private opens = 0;
  private readonly resumeCounts: ResumeCounts = { sent: 0, answered: 0, replayed: 0, resynced: 0, healed: 0 };
  /** A `resume` was sent on this connection and its `resumed` has not come back yet. */
  private resuming = false;
  /** Another resume was asked for meanwhile: send it when the one out is answered. */
  private resumeAgain = false;
  private readonly events: { [K in keyof Events]: Subscribable<Events[K]> } = {
    state: new Subscribable(),
    envelope: new Subscribable(),
    duplicate: new Subscribable(),
    flags: new Subscribable(),
    refetch: new Subscribable(),
    resumed: new Subscribable(),
    closed: new Subscribable(),
    unauthorized: new Subscribable(),
  };
  private readonly routes = new Map<string, Subscribable<[message: ServerMessage]>>();

  constructor(options: ManagerOptions) {
    this.url = options.url;
    this.WS = options.WebSocketImpl ?? (globalThis.WebSocket as unknown as WebSocketCtor);
    this.now = options.now ?? Date.now;
    this.backoff = new Backoff({
      baseMs: options.backoffBaseMs,
      capMs: options.backoffCapMs,
      stableMs: options.stableMs,
      random: options.random,
      now: this.now,
    });
    this.liveness = new Liveness({
      intervalMs: options.pingIntervalMs,
      timeoutMs: options.pongTimeoutMs,
      ping: () => this.send({ action: "ping" }),
      dead: () => this.pongTimedOut(),
    });
    this.health = new StreamHealth(this.now, options.rateWindowMs);
    this.resumeSince = options.resumeSince ?? ((received) => received);
  }

  // -- public API ------------------------------------------------------------------------

  /** Open the connection (idempotent; a stopped manager can start again). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.backoff.reset();
    this.open();
  }

  /** Close for good (logout, unmount): no reconnect until `start()` again. */
  stop(): void {
    this.running = false;
    this.backoff.cancel();
    this.liveness.stop();
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

  /** The delay of the reconnect now scheduled, if any (for the monitor and tests). */
  get nextReconnectDelay(): number | null {
    return this.backoff.pendingDelay;
  }

  /** Connections dropped because no pong came back. */
  get pongTimeouts(): number {
    return this.liveness.timeouts;
  }

  /** Frames that were not a JSON object with a `type`. */
  get badFrames(): number {
    return this.health.badFrames;
  }

  /** What the resumes did so far, over every connection (a copy). */
  get resumes(): ResumeCounts {
    return { ...this.resumeCounts };
  }

  /**
   * Ask the server to bring every stream up to date: a `resume` naming the last `seq` held per
   * stream. It always names every stream held, because one left out is answered with its current
   * state; a stream that is current costs nothing. While one resume is unanswered, further asks
   * are folded into one sent after its `resumed` (a burst of gaps is one resume, not dozens).
   * Returns false when the connection is not open: the next open resumes anyway.
   */
  resume(): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    if (this.resuming) {
      this.resumeAgain = true;
      return true;
    }
    return this.sendResume();
  }

  /** The newest `seq` received over the stream per (type, key), over every connection. */
  received(): ResumePoint[] {
    return this.health.received();
  }

  /** Send a JSON command if the connection is open; returns whether it went out. */
  send(command: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(command));
    return true;
  }

  on<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): () => void {
    return this.events[event].subscribe(listener);
  }

  /** Route server messages of one `type` (envelopes only once they pass the duplicate check). */
  onMessage(type: ServerMessageType | string, handler: (message: ServerMessage) => void): () => void {
    let route = this.routes.get(type);
    if (!route) {
      route = new Subscribable();
      this.routes.set(type, route);
    }
    return route.subscribe(handler);
  }

  /** Per-feature counters as of now (rates are computed at the call). */
  counters(): Record<Feature, FeatureCounters> {
    return this.health.counters();
  }

  // -- connection ------------------------------------------------------------------------

  private open(): void {
    this.backoff.cancel();
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
      this.backoff.connected();
      // Resume before anyone hears of the connection, so the resume is the first thing it carries.
      this.health.restart();
      this.resuming = false;
      this.resumeAgain = false;
      this.sendResume();
      this.setState("connected");
      this.liveness.start();
      if (this.opens > 1) {
        // Whatever happened while we were away is not on this stream: the resume brings it for
        // every feature, and the runtime may read REST for those not yet at `complete`.
        for (const feature of FEATURES) this.events.refetch.notify(feature, "reconnect");
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
    this.resuming = false;
    this.resumeAgain = false;
    if (ws) detach(ws);
    this.liveness.stop();
    this.backoff.disconnected();
    this.setState("disconnected");
    this.events.closed.notify(info);
    if (info.code === CLOSE_UNAUTHENTICATED) {
      this.running = false;
      this.events.unauthorized.notify();
      return;
    }
    if (this.running) this.scheduleReconnect();
  }

  private pongTimedOut(): void {
    // A dead TCP connection may take minutes to report `close`: give up on it now.
    const ws = this.ws;
    if (ws) {
      this.dropped({ code: CLOSE_PONG_TIMEOUT, reason: "no pong" });
      ws.close(CLOSE_PONG_TIMEOUT, "no pong");
    }
  }

  private scheduleReconnect(): void {
    if (!this.running) return;
    this.setState("disconnected");
    this.backoff.schedule(() => {
      if (this.running) this.open();
    });
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.events.state.notify(state);
  }

  // -- messages --------------------------------------------------------------------------

  private handle(raw: unknown): void {
    const msg = parseFrame(raw);
    if (!msg) {
      this.health.badFrame();
      return;
    }
    if (msg.type === "pong") this.liveness.pong();
    if (isEnvelopeType(msg.type)) {
      if (!this.deliver(msg)) return;
    } else if (isFlagsMessage(msg)) {
      this.events.flags.notify(msg);
    } else if (isResumedMessage(msg)) {
      this.resumed(msg);
    } else if (msg.type === "error" && this.resuming) {
      // The server refused the resume (or a backend that does not know the command): asking
      // again would be refused again, so the stream just goes on from here.
      this.resuming = false;
      this.resumeAgain = false;
    }
    this.routes.get(msg.type)?.notify(msg);
  }

  private sendResume(): boolean {
    const command = resumeCommand(this.resumeSince(this.health.received()));
    if (!this.send(command)) return false;
    this.resumeCounts.sent += 1;
    this.resuming = true;
    return true;
  }

  /** The end of a resume's answer: not an envelope, only counted (and the next resume, if one waits). */
  private resumed(msg: ResumedMessage): void {
    this.resumeCounts.replayed += msg.replayed;
    this.resumeCounts.resynced += msg.resynced;
    if (msg.healed === true) {
      // Sent unasked: it does not answer the resume that may be out.
      this.resumeCounts.healed += 1;
    } else {
      this.resumeCounts.answered += 1;
      this.resuming = false;
      if (this.resumeAgain) {
        this.resumeAgain = false;
        this.sendResume();
      }
    }
    this.events.resumed.notify(msg);
  }

  /** Count an envelope; returns false for a duplicate (or malformed) one, which is not delivered. */
  private deliver(msg: ServerMessage): boolean {
    const tracked = this.health.track(msg);
    switch (tracked.kind) {
      case "bad":
        return false;
      case "duplicate":
        this.events.duplicate.notify(tracked.envelope);
        return false;
      case "new":
        this.events.envelope.notify(tracked.envelope, { gap: tracked.gap, resync: tracked.resync });
        if (tracked.gap) this.events.refetch.notify(tracked.feature, "gap");
        return true;
    }
  }
}
