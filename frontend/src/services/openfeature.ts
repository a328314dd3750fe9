/**
 * The page's OpenFeature provider (`@openfeature/web-sdk`): "which stage is positions at?" and
 * "does this page read positions from WebSocket?" asked the standard way, of an OpenFeature
 * client of the `thor` domain, answered from the flags the page already receives. No request of
 * its own, no I/O per evaluation.
 *
 * How the pieces relate:
 *
 *     GET /api/cutover/flags, `flags` messages ─► CutoverState (websocket-cutover.ts)
 *     CutoverState ─► LiveRuntime (live.ts): REST polling or WebSocket, per feature
 *     CutoverState + the socket's state ─► ThorcutWebProvider ─► OpenFeature client "thor"
 *         ─► OpenFeatureFlags (below) ─► the hooks (src/hooks/) ─► badges, monitor
 *
 * The runtime reads CutoverState directly: it is the provider's feed, and its plans (timers,
 * REST gates) change in the same call as the flag. Once the provider is READY a change reaches
 * OpenFeature's clients synchronously in that call too (the SDK forwards provider events without
 * waiting), so a badge never names one source while the runtime renders from the other. Only
 * the first flags come a microtask later, when the SDK announces READY.
 *
 * Evaluation (the flag key is the feature name):
 * - string: the stage, as value and variant; reason STATIC, or STALE while the flags may be out
 *   of date (below). flagMetadata: `stage`, `version`, `percent`, `source` (where this page
 *   reads the feature: `websocket` or `rest`) and `override` (the backend's env override) when
 *   one is in force.
 * - boolean: whether this page reads the feature from WebSocket. The backend applied the sticky
 *   percent bucket for this page's client id, so nothing is hashed here; a context whose
 *   `targetingKey` names another client is INVALID_CONTEXT. Variant `websocket` or `rest`;
 *   reason SPLIT for a live feature at 0 < percent < 100 (the bucket decided), STATIC otherwise,
 *   STALE as above. Same flagMetadata.
 * - number, object: TYPE_MISMATCH. An unknown key: FLAG_NOT_FOUND. Either way the SDK returns
 *   the caller's default with reason ERROR.
 *
 * Events and status:
 * - READY once the first flags arrived, over REST or WebSocket: `initialize` resolves then (at
 *   once when they already have). Until then the SDK answers every evaluation with the caller's
 *   default (PROVIDER_NOT_READY): the page passes `off` and `false`, so it renders at once, from
 *   REST, exactly as CutoverState's own defaults do; it never waits for the provider.
 * - CONFIGURATION_CHANGED with `flagsChanged` (the features) on every change. A flag of a lower
 *   version than the one held is ignored, as CutoverState ignores it: no event.
 * - STALE when the WebSocket stops being connected after it had been (or right after READY, if
 *   that comes while it is down): pushed changes cannot arrive, the flags may be out of date.
 *   READY again when it reconnects (the server then sends the current flags, and any difference
 *   comes as CONFIGURATION_CHANGED). Before the first connection the flags are as current as the
 *   REST answer: not stale.
 * - ERROR when the REST read of the flags failed before any flags arrived (a server error, a
 *   network failure, a 403): `initialize` rejects with why, and the SDK emits PROVIDER_ERROR.
 *   Evaluations keep answering the caller's default (PROVIDER_NOT_READY, with why), and READY
 *   follows when the WebSocket's `flags` message brings them. A failure after flags arrived
 *   changes nothing (the flags held are kept, as CutoverState keeps them). A 401 is not an ERROR:
 *   the session is gone, the runtime stops and the page returns to its login form, which unbinds
 *   the provider with the dashboard.
 */

import {
  ErrorCode,
  GeneralError,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons,
} from "@openfeature/web-sdk";
import type {
  Client,
  EvaluationContext,
  FlagMetadata,
  JsonValue,
  Provider,
  ResolutionDetails,
} from "@openfeature/web-sdk";

import { FEATURES, isFeature } from "../types";
import type { Feature, FeatureFlag, FlagMap } from "../types";
import type { ConnectionState, WebSocketManager } from "./stream";
import { Subscribable } from "./subscribable";
import { defaultFlag, parseFlag, sameFlag, sourceOf } from "./websocket-cutover";
import type { CutoverState } from "./websocket-cutover";

/** The OpenFeature domain of the page's flags: `OpenFeature.getClient(FLAG_DOMAIN)`. */
export const FLAG_DOMAIN = "thor";

/** What the provider reads: the page's flags and its WebSocket's state (a LiveRuntime is one). */
export interface FlagFeed {
  readonly cutover: CutoverState;
  readonly manager: Pick<WebSocketManager, "getState" | "on" | "connections">;
}

type Phase = "new" | "waiting" | "ready" | "failed" | "closed";

interface Failure {
  errorCode: ErrorCode;
  errorMessage: string;
}

type Found = { flag: FeatureFlag } | { error: Failure };

export class ThorcutWebProvider implements Provider {
  readonly metadata = { name: "thorcut" } as const;
  readonly runsOn = "client" as const;
  readonly events = new OpenFeatureEventEmitter();
  private readonly cutover: CutoverState;
  private readonly manager: FlagFeed["manager"];
  private phase: Phase = "new";
  private settle: { resolve: () => void; reject: (error: Error) => void } | null = null;
  /** STALE was emitted and READY has not followed yet. */
  private staleReported = false;
  private unwire: Array<() => void> = [];

  constructor(feed: FlagFeed) {
    this.cutover = feed.cutover;
    this.manager = feed.manager;
  }

  /** Resolves when the first flags arrived (at once if they have); rejects if reading them failed first. */
  initialize(): Promise<void> {
    if (this.phase !== "new" && this.phase !== "closed") return Promise.resolve();
    this.staleReported = false;
    this.unwire = [
      this.cutover.subscribeReads((changed) => this.read(changed)),
      this.manager.on("state", (state) => this.connection(state)),
    ];
    if (this.cutover.loaded) {
      this.phase = "ready";
      this.staleAfterReady();
      return Promise.resolve();
    }
    if (this.cutover.readError !== null) {
      this.phase = "failed";
      return Promise.reject(new GeneralError(this.failureMessage()));
    }
    this.phase = "waiting";
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }

  /**
   * Stop following the feed (a later `initialize` follows it again). An `initialize` still
   * waiting stays pending: settling it now would make the SDK announce READY or ERROR to the
   * clients of whichever provider replaced this one.
   */
  onClose(): Promise<void> {
    for (const off of this.unwire) off();
    this.unwire = [];
    this.phase = "closed";
    this.settle = null;
    return Promise.resolve();
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): ResolutionDetails<string> {
    const found = this.lookup(flagKey, context);
    if ("error" in found) return { value: defaultValue, ...found.error };
    const { flag } = found;
    return {
      value: flag.stage,
      variant: flag.stage,
      reason: this.isStale() ? StandardResolutionReasons.STALE : StandardResolutionReasons.STATIC,
      flagMetadata: metadataOf(flag),
    };
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): ResolutionDetails<boolean> {
    const found = this.lookup(flagKey, context);
    if ("error" in found) return { value: defaultValue, ...found.error };
    const { flag } = found;
    const source = sourceOf(flag);
    const split = flag.stage === "live" && flag.percent > 0 && flag.percent < 100;
    return {
      value: source === "websocket",
      variant: source,
      reason: this.isStale()
        ? StandardResolutionReasons.STALE
        : split
          ? StandardResolutionReasons.SPLIT
          : StandardResolutionReasons.STATIC,
      flagMetadata: metadataOf(flag),
    };
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): ResolutionDetails<number> {
    return { value: defaultValue, ...this.mismatch(flagKey, "a number", context) };
  }

  resolveObjectEvaluation<T extends JsonValue>(
    flagKey: string,
    defaultValue: T,
    context: EvaluationContext,
  ): ResolutionDetails<T> {
    return { value: defaultValue, ...this.mismatch(flagKey, "an object", context) };
  }

  // -- internals -------------------------------------------------------------------------

  /** The flags may be out of date: the socket that pushes changes was connected and is not now. */
  private isStale(): boolean {
    return this.manager.connections > 0 && this.manager.getState() !== "connected";
  }

  private lookup(flagKey: string, context: EvaluationContext): Found {
    if (!isFeature(flagKey)) {
      return {
        error: {
          errorCode: ErrorCode.FLAG_NOT_FOUND,
          errorMessage: `no feature "${flagKey}": the flags are ${FEATURES.join(", ")}`,
        },
      };
    }
    const key = context.targetingKey;
    if (key !== undefined && key !== this.cutover.clientId) {
      return {
        error: {
          errorCode: ErrorCode.INVALID_CONTEXT,
          errorMessage:
            `this page's flags are for client "${this.cutover.clientId}", not "${key}": ` +
            "the backend applies the percent bucket per client; leave targetingKey unset",
        },
      };
    }
    if (!this.cutover.loaded) {
      return { error: { errorCode: ErrorCode.PROVIDER_NOT_READY, errorMessage: this.failureMessage() } };
    }
    return { flag: this.cutover.get(flagKey) };
  }

  private mismatch(flagKey: string, asked: string, context: EvaluationContext): Failure {
    const found = this.lookup(flagKey, context);
    if ("error" in found && found.error.errorCode === ErrorCode.FLAG_NOT_FOUND) return found.error;
    return {
      errorCode: ErrorCode.TYPE_MISMATCH,
      errorMessage:
        `"${flagKey}" is a string flag (its stage) or a boolean one (whether this page reads it ` +
        `from WebSocket), not ${asked}`,
    };
  }

  private failureMessage(): string {
    return this.cutover.readError === null
      ? "no flags received yet"
      : `the flags could not be read: ${this.cutover.readError}; every feature is at its default until the WebSocket brings them`;
  }

  /** The feed read flags (or failed to, while it has none). */
  private read(changed: Feature[]): void {
    const loaded = this.cutover.loaded;
    switch (this.phase) {
      case "waiting": {
        const settle = this.settle;
        this.settle = null;
        if (loaded) {
          this.phase = "ready";
          settle?.resolve();
          this.staleAfterReady();
        } else {
          this.phase = "failed";
          settle?.reject(new GeneralError(this.failureMessage()));
        }
        return;
      }
      case "failed":
        if (loaded) {
          this.phase = "ready";
          this.events.emit(ProviderEvents.Ready, { message: "the flags arrived" });
          this.connection(this.manager.getState());
        }
        return;
      case "ready":
        if (changed.length) this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: [...changed] });
        return;
      case "new":
      case "closed":
        return;
    }
  }

  /**
   * Ready while the socket is down (bound again after a drop): the SDK announces READY when
   * `initialize` settles, a microtask from now; STALE must come after it, so a task later.
   */
  private staleAfterReady(): void {
    if (!this.isStale()) return;
    setTimeout(() => this.connection(this.manager.getState()), 0);
  }

  private connection(state: ConnectionState): void {
    if (this.phase !== "ready") return;
    if (state === "connected") {
      if (!this.staleReported) return;
      this.staleReported = false;
      this.events.emit(ProviderEvents.Ready, { message: "the WebSocket reconnected" });
    } else if (!this.staleReported && this.isStale()) {
      this.staleReported = true;
      this.events.emit(ProviderEvents.Stale, {
        message: "the WebSocket is not connected: flag changes cannot arrive, the flags may be out of date",
      });
    }
  }
}

function metadataOf(flag: FeatureFlag): FlagMetadata {
  const metadata: FlagMetadata = {
    stage: flag.stage,
    version: flag.version,
    percent: flag.percent,
    source: sourceOf(flag),
  };
  if (flag.override !== null) metadata.override = flag.override;
  return metadata;
}

/** Every event after which an evaluation may answer differently. */
const EVENTS = [ProviderEvents.Ready, ProviderEvents.ConfigurationChanged, ProviderEvents.Stale, ProviderEvents.Error];

/**
 * Every feature's flag as an OpenFeature client evaluates it, for React's
 * `useSyncExternalStore`: `snapshot()` is a new FlagMap after a provider event that changed an
 * answer, the same object otherwise. What the client cannot answer (no provider yet, not ready,
 * an error) is the feature's default: `off`, read from REST.
 */
export class OpenFeatureFlags {
  private readonly listeners = new Subscribable();
  private listening = 0;
  private revision = 0;
  private computed = -1;
  private flags: FlagMap = evaluate(null);

  constructor(readonly client: Client) {}

  /** Bound, for `useSyncExternalStore`. Follows the client's events while anyone listens. */
  readonly subscribe = (listener: () => void): (() => void) => {
    const off = this.listeners.subscribe(listener);
    this.listening += 1;
    if (this.listening === 1) {
      // Events missed while nobody listened may have changed the answers.
      this.revision += 1;
      for (const event of EVENTS) this.client.addHandler(event, this.bump);
    }
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      off();
      this.listening -= 1;
      if (this.listening === 0) for (const event of EVENTS) this.client.removeHandler(event, this.bump);
    };
  };

  /** Bound, for `useSyncExternalStore`. */
  readonly snapshot = (): FlagMap => {
    if (this.computed !== this.revision) {
      this.computed = this.revision;
      const next = evaluate(this.client);
      if (FEATURES.some((feature) => !sameFlag(next[feature], this.flags[feature]))) this.flags = next;
    }
    return this.flags;
  };

  private rechecking = false;

  private readonly bump = (): void => {
    this.revision += 1;
    this.listeners.notify();
    // The SDK announces a provider bound without `initialize` (READY) before the domain uses it:
    // ask again once it does. An unchanged answer keeps the snapshot, so nothing re-renders.
    if (this.rechecking) return;
    this.rechecking = true;
    queueMicrotask(() => {
      this.rechecking = false;
      this.revision += 1;
      this.listeners.notify();
    });
  };
}

function evaluate(client: Client | null): FlagMap {
  const flags = {} as FlagMap;
  for (const feature of FEATURES) {
    if (!client) {
      flags[feature] = defaultFlag();
      continue;
    }
    const stage = client.getStringDetails(feature, "off");
    const websocket = client.getBooleanValue(feature, false);
    const meta = stage.flagMetadata;
    // Any provider bound to the domain may answer: only a known stage is taken, the rest defaults.
    const flag = parseFlag({
      ...meta,
      stage: stage.value,
      version: typeof meta.version === "number" ? meta.version : 0,
      source: websocket ? "websocket" : "rest",
    });
    flags[feature] = flag ?? defaultFlag();
  }
  return flags;
}
