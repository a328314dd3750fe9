/**
 * The page's data runtime: one WebSocket manager, the cutover flags, the envelope store, and the
 * REST side (polling timers, gap/reconnect refetches), wired together.
 *
 * Views register an *interest* (feature + account or symbol). For each interest, by the
 * feature's source for this client:
 *
 * - source `rest` (stages off and shadow, and live outside the percent bucket): REST is polled at
 *   the feature's interval and is what the view shows; WebSocket messages of the feature are
 *   *shadow* traffic: counted by the manager and logged at debug level, not rendered. The newest
 *   per stream is kept, and becomes the view's state when the feature switches to WebSocket.
 * - source `websocket`, stage live (inside the bucket): no REST timer; pushed envelopes are
 *   rendered. REST is read once when the view has nothing yet, and again after a `seq` gap or a
 *   reconnect, so the view is never silently stale.
 * - stage complete: REST is retired for the feature (docs/contracts.md, "Stages"), so the page
 *   never calls it, whatever happens: the stream's `resume` brings what the view lacks (on every
 *   open, after a gap, when the feature reaches complete or a view has nothing yet), and while
 *   the socket is down the view is shown as stale instead of being polled. Until flags arrive
 *   every feature is `off` (the safe default), so the first REST reads happen; once the flags
 *   say complete they stop (`restAllowed`, checked by every REST read).
 *
 * Each `resume` names the last `seq` the page holds per stream, from the stream and from REST
 * alike (`resumeSince`).
 *
 * Staleness (issue 15): a view is stale when what it shows may no longer be current, and says
 * since when. A view rendered from WebSocket is stale while the socket is not connected (since
 * the moment it stopped being connected); a view rendered from REST is stale once a refresh failed
 * (since the first failure), until one succeeds. A 404 ("no data yet") is a current answer, not a
 * failure. A WebSocket drop often means the backend went away, so every REST-polled view is read
 * at once then, and again a second later (a server shutting down still answers on open
 * connections for a moment), rather than at its next poll (up to 5 s later): its staleness shows
 * within about a second.
 *
 * A flag change re-plans every interest of that feature at once (a rollback starts polling on
 * the spot). Overlapping requests for one interest are folded into one.
 */

import { ENVELOPE_TYPES, FEATURES, POLL_INTERVAL_MS, featureKeys, interestKey } from "../types";
import type { DataSource, Envelope, Feature, FeatureFlag, FeatureParams } from "../types";
import type { Api } from "./api";
import { FeatureStore } from "./feature-store";
import type { StoredEnvelope } from "./feature-store";
import { HttpError } from "./http";
import { wsDebug } from "./log";
import { WebSocketManager, streamUrl } from "./stream";
import type { ConnectionState, ManagerOptions, RefetchReason, ResumePoint } from "./stream";
import { Subscribable } from "./subscribable";
import { CutoverState, sourceOf } from "./websocket-cutover";

/** After a WebSocket drop, REST-polled views are read at once and again this much later. */
export const DROP_RECHECK_MS = 1000;

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
  /**
   * What is shown may not be current: rendered from WebSocket while the socket is not connected
   * (nothing reads REST for it meanwhile, and a feature at complete never does; the resume on the
   * next open brings it up to date), or rendered from REST after a failed refresh.
   */
  stale: boolean;
  /** Since when the view is stale (ms since the epoch); null when it is current. */
  staleSince: number | null;
  error: string | null;
}

export class LiveRuntime {
  readonly manager: WebSocketManager;
  readonly cutover: CutoverState;
  readonly store: FeatureStore;
  /** The backend's REST API this runtime reads (the dashboard's other pollers share it). */
  readonly api: Api;
  private readonly onUnauthorized: (() => void) | undefined;
  private readonly interests = new Map<string, Interest>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly errors = new Map<string, string>();
  /** Per interest: when its REST refresh first failed, until one succeeds. */
  private readonly failedSince = new Map<string, number>();
  /** When the socket stopped being connected (or the runtime started without it); null while connected. */
  private disconnectedSince: number | null = null;
  private recheck: ReturnType<typeof setTimeout> | null = null;
  private readonly now: () => number;
  /** The newest envelope per (type, key) of features rendered from REST: shown only once they are not. */
  private readonly shadow = new Map<string, Envelope>();
  private readonly restRequests = {} as Record<Feature, number>;
  private readonly changes = new Subscribable();
  private revision = 0;
  private running = false;
  private unauthorized = false;
  private unwire: Array<() => void> = [];

  constructor(options: LiveOptions) {
    this.api = options.api;
    this.now = options.now ?? Date.now;
    this.onUnauthorized = options.onUnauthorized;
    this.cutover = new CutoverState(options.clientId);
    this.store = new FeatureStore(options.now);
    const location = options.location ?? globalThis.location;
    this.manager = new WebSocketManager({
      url: () => streamUrl(location, options.clientId),
      ...(options.now ? { now: options.now } : {}),
      resumeSince: (received) => this.resumeSince(received),
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
    this.disconnectedSince = this.manager.getState() === "connected" ? null : this.now();
    const m = this.manager;
    this.unwire = [
      m.on("flags", (message) => this.cutover.apply(message.features)),
      m.on("envelope", (envelope, info) => {
        // A resync is the stream's current state: it becomes the view's state like any push.
        if (info.resync) wsDebug("resync", envelope.type, envelope.key, "seq", envelope.seq);
        if (this.cutover.source(envelope.feature) === "websocket") {
          this.store.apply(envelope, "websocket");
        } else {
          this.shadow.set(`${envelope.type}|${envelope.key}`, envelope);
          wsDebug("shadow", envelope.type, envelope.key, "seq", envelope.seq);
        }
      }),
      m.on("resumed", (message) => {
        const healed = message.healed === true ? ["healed"] : [];
        wsDebug("resumed", "replayed", message.replayed, "resynced", message.resynced, ...healed);
        this.changed(); // the monitor shows the counts
      }),
      m.on("duplicate", (envelope) => wsDebug("duplicate", envelope.type, envelope.key, "seq", envelope.seq)),
      m.on("refetch", (feature, reason) => this.refetch(feature, reason)),
      m.on("state", (state) => {
        wsDebug("connection", state);
        this.connectionChanged(state);
        this.changed();
      }),
      m.on("unauthorized", () => this.lostSession()),
      this.cutover.subscribe((features) => {
        for (const feature of features) {
          const flag = this.cutover.get(feature);
          wsDebug("flags", feature, flag.stage, flag.source, "v" + flag.version);
        }
        this.promoteShadow(features);
        for (const interest of this.interests.values()) {
          if (features.includes(interest.feature)) this.plan(interest);
        }
        // A feature that reached complete reads no REST from now on: make sure the stream has
        // brought it up to date (a stream that is current costs nothing).
        if (features.some((feature) => this.cutover.stage(feature) === "complete")) this.manager.resume();
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
    if (this.recheck !== null) clearTimeout(this.recheck);
    this.recheck = null;
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

  /**
   * Whether `feature` may be read over REST: not once its flag says complete, whose REST timer
   * is retired for good (docs/contracts.md, "Stages"). Until flags arrive it is `off`: allowed.
   */
  restAllowed(feature: Feature): boolean {
    return this.cutover.stage(feature) !== "complete";
  }

  /**
   * Read (feature, params) over REST now and store the result; one request at a time per
   * interest. A feature at complete is never read: the one gate every REST read goes through.
   */
  fetch(feature: Feature, params: FeatureParams): Promise<void> {
    if (!this.restAllowed(feature)) return Promise.resolve();
    const id = interestKey(feature, params);
    const pending = this.inFlight.get(id);
    if (pending) return pending;
    this.restRequests[feature] += 1;
    const request = this.api
      .fetchFeature(feature, params)
      .then((envelopes) => {
        if (!this.running) return;
        for (const envelope of envelopes) this.store.apply(envelope, "rest");
        const recovered = this.failedSince.delete(id);
        if (this.errors.delete(id) || recovered) this.changed();
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
        // "No data yet" is the backend's current answer; anything else leaves what is shown behind.
        if (error instanceof HttpError && error.status === 404) this.failedSince.delete(id);
        else if (!this.failedSince.has(id)) this.failedSince.set(id, this.now());
        this.changed();
      })
      .finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, request);
    return request;
  }

  /**
   * Refetch every shown view of `feature` that renders from WebSocket. Views on REST are polled
   * anyway, and refetching them on every shadow gap would only add load when it hurts most. A
   * feature at complete resumes instead: after a gap the stream is asked again (the gapped
   * stream is named at the `seq` just received, so the server sends whatever is newer); after a
   * reconnect the resume sent on open already did.
   */
  refetch(feature: Feature, reason: RefetchReason): void {
    if (!this.restAllowed(feature)) {
      if (reason === "gap") {
        wsDebug("resume", feature, reason);
        this.manager.resume();
      }
      return;
    }
    if (this.cutover.source(feature) !== "websocket") return;
    for (const interest of this.interests.values()) {
      if (interest.feature === feature) {
        wsDebug("refetch", feature, reason);
        void this.fetch(interest.feature, interest.params);
      }
    }
  }

  /** Since when the socket is not connected (ms since the epoch); null while it is. */
  disconnectedAt(): number | null {
    return this.manager.getState() === "connected" ? null : (this.disconnectedSince ?? this.now());
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
    const id = interestKey(feature, params);
    const interest = this.interests.get(id);
    const source = sourceOf(flag);
    const staleSince = source === "websocket" ? this.disconnectedAt() : (this.failedSince.get(id) ?? null);
    return {
      feature,
      flag,
      source,
      polling: interest?.timer != null,
      entries,
      seq,
      updatedAt,
      stale: staleSince !== null,
      staleSince,
      error: this.errors.get(id) ?? null,
    };
  }

  /** Bound: `useSyncExternalStore` takes it detached from the runtime. */
  subscribe = (listener: () => void): (() => void) => this.changes.subscribe(listener);

  /** Changes on any store, flag, connection or error change (a `useSyncExternalStore` snapshot). */
  getRevision = (): number => this.revision;

  // -- internals -------------------------------------------------------------------------

  /**
   * The `since` of a resume: per stream, the newer of what REST brought into the store and what
   * the stream delivered (shadow traffic included). Naming a shadow `seq` the view does not show
   * is safe because that envelope is kept (`shadow`) and becomes the view's state the moment the
   * feature renders from WebSocket.
   */
  private resumeSince(received: ResumePoint[]): ResumePoint[] {
    const since: ResumePoint[] = [...received];
    for (const type of ENVELOPE_TYPES) {
      for (const entry of this.store.all(type)) {
        since.push({ type, key: entry.envelope.key, seq: entry.envelope.seq });
      }
    }
    return since; // resumeCommand keeps the higher seq of a stream named twice
  }

  /**
   * A feature now rendered from WebSocket starts from the newest envelope the stream brought
   * while it was shadowed (the store keeps the newer of that and REST). Without this its view
   * would stay behind the `seq` the page resumes from, and the server, told the page holds it,
   * would never send it again.
   */
  private promoteShadow(features: readonly Feature[]): void {
    for (const [id, envelope] of this.shadow) {
      if (features.includes(envelope.feature) && this.cutover.source(envelope.feature) === "websocket") {
        this.shadow.delete(id);
        this.store.apply(envelope, "websocket");
      }
    }
  }

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
      const message = error instanceof Error ? error.message : String(error);
      wsDebug("flags request failed:", message);
      this.cutover.readFailed(
        error instanceof HttpError
          ? `GET /api/cutover/flags answered ${error.status} (${message})`
          : `GET /api/cutover/flags failed (${message})`,
      );
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
      // Nothing to show until the next push (a quiet market may be minutes away): read it once,
      // over REST while that is allowed, else by a resume (streams the page does not hold are
      // answered with their current state). A closed socket resumes when it opens.
      if (this.restAllowed(interest.feature)) void this.fetch(interest.feature, interest.params);
      else this.manager.resume();
    }
  }

  /**
   * Note when the socket stopped being connected. On a drop, read every REST-polled view at once
   * and again `DROP_RECHECK_MS` later: the backend may be gone, and its views should say so now.
   */
  private connectionChanged(state: ConnectionState): void {
    if (state === "connected") {
      this.disconnectedSince = null;
      return;
    }
    if (this.disconnectedSince !== null) return;
    this.disconnectedSince = this.now();
    const readPolled = () => {
      for (const interest of this.interests.values()) {
        if (interest.timer !== null) void this.fetch(interest.feature, interest.params);
      }
    };
    readPolled();
    if (this.recheck !== null) clearTimeout(this.recheck);
    this.recheck = setTimeout(() => {
      this.recheck = null;
      if (this.running && this.manager.getState() !== "connected") readPolled();
    }, DROP_RECHECK_MS);
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
