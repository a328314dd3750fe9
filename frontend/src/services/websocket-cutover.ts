/**
 * The effective cutover stage and data source of each feature, for this client.
 *
 * Flags come from the backend only (never from build-time variables): `GET
 * /api/cutover/flags?client=<id>` at start, then every `flags` message on the WebSocket. The
 * backend has already applied the sticky percent bucket for the client id, so `source` is final.
 * The REST answer and a pushed message can arrive in either order, so per feature the highest
 * `version` wins and a lower one never overrides it. Before any flags arrive every feature is
 * `off` (REST), the safe default (docs/contracts.md, "Environment overrides").
 */

import { FEATURES, isFeature } from "../types";
import type { DataSource, Feature, FeatureFlag, FlagMap, Stage } from "../types";
import { Subscribable } from "./subscribable";

export const CLIENT_ID_KEY = "thor.clientId";

const STAGE_VALUES: readonly string[] = ["off", "shadow", "live", "complete"];

export function defaultFlag(): FeatureFlag {
  return { stage: "off", percent: 0, version: 0, source: "rest", override: null };
}

function defaultFlags(): FlagMap {
  const flags = {} as FlagMap;
  for (const feature of FEATURES) flags[feature] = defaultFlag();
  return flags;
}

/** A flag from the wire, or null when it does not have the documented shape. */
export function parseFlag(value: unknown): FeatureFlag | null {
  if (!value || typeof value !== "object") return null;
  const v = value as Record<string, unknown>;
  if (typeof v.stage !== "string" || !STAGE_VALUES.includes(v.stage)) return null;
  if (typeof v.version !== "number") return null;
  const stage = v.stage as Stage;
  const source: DataSource = v.source === "websocket" ? "websocket" : "rest";
  return {
    stage,
    percent: typeof v.percent === "number" ? v.percent : 0,
    version: v.version,
    source,
    override: typeof v.override === "string" ? v.override : null,
  };
}

/** Where this client renders `flag`'s feature from: `complete` is WebSocket whatever else is said. */
export function sourceOf(flag: FeatureFlag): DataSource {
  return flag.stage === "complete" ? "websocket" : flag.source;
}

function randomId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost); plain http on a LAN
  // address still has getRandomValues.
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function localStorageOrNull(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // storage disabled by the browser's privacy settings
  }
}

/** This browser's client id: generated once and kept in localStorage `thor.clientId`. */
export function getClientId(storage: Storage | null = localStorageOrNull(), generate: () => string = randomId): string {
  const existing = storage?.getItem(CLIENT_ID_KEY);
  // The backend accepts 1-128 of [A-Za-z0-9._:@-]; anything else would silently become user:<pk>.
  if (existing && /^[A-Za-z0-9._:@-]{1,128}$/.test(existing)) return existing;
  const id = generate();
  try {
    storage?.setItem(CLIENT_ID_KEY, id);
  } catch {
    // Full or disabled storage: the id lives for this page only.
  }
  return id;
}

export class CutoverState {
  private flags: FlagMap = defaultFlags();
  private readonly changes = new Subscribable<[changed: Feature[]]>();
  private readonly reads = new Subscribable<[changed: Feature[]]>();
  /** Whether any flags were ever received (REST or WebSocket). */
  loaded = false;
  /** Why reading the flags failed, while none were ever received; null otherwise. */
  readError: string | null = null;

  constructor(readonly clientId: string) {}

  get(feature: Feature): FeatureFlag {
    return this.flags[feature];
  }

  /** The current flags; a new object after every change, the same one otherwise (React snapshots). */
  snapshot(): FlagMap {
    return this.flags;
  }

  source(feature: Feature): DataSource {
    return sourceOf(this.flags[feature]);
  }

  stage(feature: Feature): Stage {
    return this.flags[feature].stage;
  }

  /**
   * Apply a `features` map (REST answer or `flags` message); returns the features that changed.
   * Per feature the higher version wins; an equal version replaces (an env override in the
   * backend changes the stage without a new version), a lower one is ignored.
   */
  apply(features: Record<string, unknown> | null | undefined): Feature[] {
    if (!features || typeof features !== "object") return [];
    const changed: Feature[] = [];
    const next: FlagMap = { ...this.flags };
    for (const [name, raw] of Object.entries(features)) {
      if (!isFeature(name)) continue;
      const flag = parseFlag(raw);
      if (!flag) continue;
      const current = next[name];
      if (flag.version < current.version) continue;
      if (sameFlag(current, flag)) continue;
      next[name] = flag;
      changed.push(name);
    }
    this.loaded = true;
    this.readError = null;
    if (changed.length) {
      this.flags = next;
      this.changes.notify(changed);
    }
    this.reads.notify(changed);
    return changed;
  }

  /** Reading the flags failed (`message` says why); kept only while none were ever received. */
  readFailed(message: string): void {
    if (this.loaded) return;
    this.readError = message;
    this.reads.notify([]);
  }

  /** Called on every flag change, with the features that changed. */
  subscribe(listener: (changed: Feature[]) => void): () => void {
    return this.changes.subscribe(listener);
  }

  /**
   * Called after every read, changed or not (`changed` may be empty: the first answer can equal
   * the defaults), and after a failed read while none succeeded (`loaded` false, `readError`
   * set): how the OpenFeature provider (openfeature.ts) learns that the flags are in.
   */
  subscribeReads(listener: (changed: Feature[]) => void): () => void {
    return this.reads.subscribe(listener);
  }
}

/** Whether two flags say the same in every field. */
export function sameFlag(a: FeatureFlag, b: FeatureFlag): boolean {
  return (
    a.stage === b.stage &&
    a.percent === b.percent &&
    a.version === b.version &&
    a.source === b.source &&
    a.override === b.override
  );
}
