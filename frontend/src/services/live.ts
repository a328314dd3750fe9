/**
 * The page's data runtime: one WebSocket manager, the cutover flags, the envelope store, and the
 * REST side (polling timers, gap/reconnect refetches), wired together.
 *
 * Views register an *interest* (feature + account or symbol). For each interest, by the
 * feature's source for this client:
 *
 * - source `rest` (stages off and shadow, and live outside the percent bucket): REST is polled at
 *   the feature's interval and is what the view shows; WebSocket messages of the feature are
 *   *shadow* traffic: counted by the manager and logged at debug level, never rendered.
 * - source `websocket` (live inside the bucket, and complete): no REST timer; pushed envelopes
 *   are rendered. REST is read once when the view has nothing yet, and again after a `seq` gap or
 *   a reconnect, so the view is never silently stale.
 *
 * A flag change re-plans every interest of that feature at once (a rollback starts polling on
 * the spot). Overlapping requests for one interest are folded into one.
 */

import { FEATURES, POLL_INTERVAL_MS, featureKeys, interestKey } from "../types";
import type { DataSource, Feature, FeatureFlag, FeatureParams } from "../types";
import type { Api } from "./api";
import { FeatureStore } from "./feature-store";
import type { StoredEnvelope } from "./feature-store";
import { HttpError } from "./http";
import { wsDebug } from "./log";
import { WebSocketManager, streamUrl } from "./stream";
import type { ManagerOptions, RefetchReason } from "./stream";
import { Subscribable } from "./subscribable";
import { CutoverState, sourceOf } from "./websocket-cutover";

export interface LiveOptions {
  api: Api;
  clientId: string;
  /** Manager settings (WebSocket class, random, timings); `url` defaults to this page's origin. */
  manager?: Partial<ManagerOptions>;
  location?: { protocol: string; host: string };
  now?: () => number;
  /** The backend said 401 (REST) or 4401 (WebSocket): the session is gone. */
  onUnauthorized?: () => void;
}

interface Interest {
  feature: Feature;
  params: FeatureParams;
  refs: number;
  timer: ReturnType<typeof setInterval> | null;
}

/** What a view of one feature shows, as of the runtime's current revision. */
export interface FeatureView {
  feature: Feature;
  flag: FeatureFlag;
  source: DataSource;
  /** Whether a REST timer runs for this view. */
  polling: boolean;
  entries: StoredEnvelope[];
  /** The newest `seq` among the entries (null before any data). */
  seq: number | null;
  /** When the newest entry was received or confirmed. */
  updatedAt: number | null;
  error: string | null;
}

export class LiveRuntime {
  readonly manager: WebSocketManager;
  readonly cutover: CutoverState;
  readonly store: FeatureStore;
  private readonly api: Api;
  private readonly onUnauthorized: (() => void) | undefined;
  private readonly interests = new Map<string, Interest>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly errors = new Map<string, string>();
  private readonly restRequests = {} as Record<Feature, number>;
  private readonly changes = new Subscribable();
  private revision = 0;
  private running = false;
  private unauthorized = false;
  private unwire: Array<() => void> = [];

  constructor(options: LiveOptions) {
    this.api = options.api;
    this.onUnauthorized = options.onUnauthorized;
    this.cutover = new CutoverState(options.clientId);
    this.store = new FeatureStore(options.now);
    const location = options.location ?? globalThis.location;
    this.manager = new WebSocketManager({
      url: () => streamUrl(location, options.clientId),
      ...(options.now ? { now: options.now } : {}),
      ...options.manager,
    });
    for (const feature of FEATURES) this.restRequests[feature] = 0;
  }

  get clientId(): string {
    return this.cutover.clientId;
  }

  /** Read the flags over REST and open the WebSocket (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.unauthorized = false;
    const m = this.manager;
    this.unwire = [
      m.on("flags", (message) => this.cutover.apply(message.features)),
      m.on("envelope", (envelope) => {
        if (this.cutover.source(envelope.feature) === "websocket") {
          this.store.apply(envelope, "websocket");
        } else {
          wsDebug("shadow", envelope.type, envelope.key, "seq", envelope.seq);
        }
      }),
      m.on("duplicate", (envelope) => wsDebug("duplicate", envelope.type, envelope.key, "seq", envelope.seq)),
      m.on("refetch", (feature, reason) => this.refetch(feature, reason)),
      m.on("state", (state) => {
        wsDebug("connection", state);
        this.changed();
      }),
      m.on("unauthorized", () => this.lostSession()),
      this.cutover.subscribe((features) => {
        for (const feature of features) {
          const flag = this.cutover.get(feature);
          wsDebug("flags", feature, flag.stage, flag.source, "v" + flag.version);
        }
        for (const interest of this.interests.values()) {
          if (features.includes(interest.feature)) this.plan(interest);
        }
        this.changed();
      }),
      this.store.subscribe(() => this.changed()),
    ];
    void this.loadFlags();
    m.start();
    for (const interest of this.interests.values()) this.plan(interest);
  }

  /**
   * Resolves once no REST request is in flight. Logout waits for it: a poll answered after the
   * session is gone would be a 401, which the browser logs as a console error.
   */
  async idle(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight.values()]);
  }

  /** Close the WebSocket and stop every timer (logout, unmount). Interests are kept for a restart. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    for (const off of this.unwire) off();
    this.unwire = [];
    this.manager.stop();
    for (const interest of this.interests.values()) stopTimer(interest);
  }

  /** Show (feature, params) somewhere: starts REST polling or WebSocket rendering. Returns the undo. */
  register(feature: Feature, params: FeatureParams): () => void {
    const id = interestKey(feature, params);
    let interest = this.interests.get(id);
    if (!interest) {
      interest = { feature, params: { ...params }, refs: 0, timer: null };
      this.interests.set(id, interest);
    }
    interest.refs += 1;
    if (this.running) this.plan(interest);
    const held = interest;
    return () => {
      held.refs -= 1;
      if (held.refs <= 0) {
        stopTimer(held);
        this.interests.delete(id);
      }
    };
  }

  /** Read (feature, params) over REST now and store the result; one request at a time per interest. */
  fetch(feature: Feature, params: FeatureParams): Promise<void> {
    const id = interestKey(feature, params);
    const pending = this.inFlight.get(id);
    if (pending) return pending;
    this.restRequests[feature] += 1;
    const request = this.api
      .fetchFeature(feature, params)
      .then((envelopes) => {
        if (!this.running) return;
        for (const envelope of envelopes) this.store.apply(envelope, "rest");
        if (this.errors.delete(id)) this.changed();
      })
      .catch((error: unknown) => {
        if (!this.running) return;
        if (error instanceof HttpError && error.status === 401) {
          this.lostSession();
          return;
        }
        const message =
          error instanceof HttpError && error.status === 404
            ? "No data yet"
            : `REST request failed: ${error instanceof Error ? error.message : String(error)}`;
        wsDebug("rest", feature, message);
        this.errors.set(id, message);
        this.changed();
      })
      .finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, request);
    return request;
  }

  /**
   * Refetch every shown view of `feature` that renders from WebSocket. Views on REST are polled
   * anyway, and refetching them on every shadow gap would only add load when it hurts most.
   */
  refetch(feature: Feature, reason: RefetchReason): void {
    if (this.cutover.source(feature) !== "websocket") return;
    for (const interest of this.interests.values()) {
      if (interest.feature === feature) {
        wsDebug("refetch", feature, reason);
        void this.fetch(interest.feature, interest.params);
      }
    }
  }

  /** REST requests made per feature since the page loaded (for the shadow monitor). */
  restRequestCounts(): Record<Feature, number> {
    return { ...this.restRequests };
  }

  view(feature: Feature, params: FeatureParams): FeatureView {
    const flag = this.cutover.get(feature);
    const entries: StoredEnvelope[] = [];
    for (const [type, key] of featureKeys(feature, params)) {
      if (key === null) {
        entries.push(...this.store.all(type));
      } else {
        const entry = this.store.get(type, key);
        if (entry) entries.push(entry);
      }
    }
    let seq: number | null = null;
    let updatedAt: number | null = null;
    for (const entry of entries) {
      seq = seq === null ? entry.envelope.seq : Math.max(seq, entry.envelope.seq);
      updatedAt = updatedAt === null ? entry.receivedAt : Math.max(updatedAt, entry.receivedAt);
    }
    const interest = this.interests.get(interestKey(feature, params));
    return {
      feature,
      flag,
      source: sourceOf(flag),
      polling: interest?.timer != null,
      entries,
      seq,
      updatedAt,
      error: this.errors.get(interestKey(feature, params)) ?? null,
    };
  }

  /** Bound: `useSyncExternalStore` takes it detached from the runtime. */
  subscribe = (listener: () => void): (() => void) => this.changes.subscribe(listener);

  /** Changes on any store, flag, connection or error change (a `useSyncExternalStore` snapshot). */
  getRevision = (): number => this.revision;

  // -- internals -------------------------------------------------------------------------

  private async loadFlags(): Promise<void> {
    try {
      const answer = await this.api.flags(this.clientId);
      if (this.running) this.cutover.apply(answer.features as Record<string, unknown>);
    } catch (error) {
      if (!this.running) return;
      if (error instanceof HttpError && error.status === 401) {
        this.lostSession();
        return;
      }
      // The `flags` message on connect carries the same answer; until then every feature is off.
      wsDebug("flags request failed:", error instanceof Error ? error.message : String(error));
    }
  }

  /** Start or stop the REST timer of `interest` for its feature's current source. */
  private plan(interest: Interest): void {
    if (!this.running) return;
    const source = this.cutover.source(interest.feature);
    if (source === "rest") {
      if (interest.timer === null) {
        void this.fetch(interest.feature, interest.params);
        interest.timer = setInterval(
          () => void this.fetch(interest.feature, interest.params),
          POLL_INTERVAL_MS[interest.feature],
        );
        this.changed();
      }
      return;
    }
    if (interest.timer !== null) {
      stopTimer(interest);
      this.changed();
    }
    if (this.view(interest.feature, interest.params).entries.length === 0) {
      // Nothing to show until the next push (a quiet market may be minutes away): read it once.
      void this.fetch(interest.feature, interest.params);
    }
  }

  private lostSession(): void {
    if (this.unauthorized) return;
    this.unauthorized = true;
    this.stop();
    this.onUnauthorized?.();
  }

  private changed(): void {
    this.revision += 1;
    this.changes.notify();
  }
}

function stopTimer(interest: Interest): void {
  if (interest.timer !== null) clearInterval(interest.timer);
  interest.timer = null;
}
