/**
 * The operations side of the page: `GET /api/ops/monitor` (each feature's stage, stored parity
 * verdict, ramp and guard; and whether this user may change stages) polled every 2 s, and `POST
 * /api/ops/stage` (a stage change through thorcut's flag store, operators only). With each
 * feature come its REST reads per minute over the last 5 minutes and who read (the backend's
 * counts in Redis, as `thorcut status` and `thorcut retire` read them). The shapes are
 * the shared contract of issue 15; the parsers accept what the contract says and drop the rest,
 * so a backend a version ahead or behind degrades to "—" instead of breaking the page.
 */

import type { Feature, Stage } from "../types";
import { isFeature } from "../types";
import type { Api } from "./api";
import { HttpError } from "./http";
import { Subscribable } from "./subscribable";

export const OPS_POLL_MS = 2000;

export type VerdictName = "PASS" | "FAIL" | "PENDING";

export interface OpsVerdict {
  verdict: VerdictName;
  judged_at: string | null;
  age_s: number | null;
  /** Whether it opens the enable gate now. */
  valid: boolean;
  source: string | null;
  reasons: string[];
  paired: number | null;
  mismatched: number | null;
  gaps: number | null;
  resyncs: number | null;
  duplicates: number | null;
  lag_ms: { mean: number | null; max: number | null };
  last_mismatch_path: string | null;
}

export interface OpsRamp {
  status: string | null;
  /** The status line, e.g. "ramping 25 % → 50 % in 3m 10s". */
  text: string | null;
  percent: number | null;
  next_percent: number | null;
  due_in_s: number | null;
  steps: number[];
  index: number | null;
  why: string | null;
}

export interface OpsGuard {
  host: string;
  pid: number | null;
  since: string | null;
  age_s: number | null;
}

/** One client that read a feature's REST endpoints in the last 5 minutes. */
export interface OpsRestReader {
  /** `page/<build>`, another `X-Thor-Client` value, `token/<name>`, `anonymous` or `other`. */
  label: string;
  count: number;
  /** Its latest read (ISO); to the minute where the backend kept no exact time. */
  last_seen: string | null;
}

export interface OpsFeature {
  feature: Feature;
  stage: Stage;
  percent: number;
  version: number;
  updated_by: string | null;
  updated_at: string | null;
  reason: string | null;
  /** The stages the stage machine allows from here (`live` from live is a percent change). */
  allowed: Stage[];
  verdict: OpsVerdict | null;
  ramp: OpsRamp | null;
  guard: OpsGuard | null;
  /** REST reads per minute, last 5 minutes; null when the backend does not report them. */
  rest_reads_per_min: number | null;
  /** Who read them, biggest first. */
  rest_readers: OpsRestReader[];
}

export interface OpsMonitorAnswer {
  server_time: string | null;
  /** Whether this user may change stages. */
  operator: boolean;
  features: OpsFeature[];
  /** The simulation's speed (`THOR_SIM_SPEED`), when the backend reports it. */
  sim_speed: number | null;
}

export interface StageRequest {
  feature: Feature;
  to: Stage;
  percent: number | null;
  reason: string;
  force: boolean;
}

/** `{"change": Outcome.to_dict()}` of thorcut's flag store. */
export interface StageChangeAnswer {
  change: {
    feature: string;
    from: Stage;
    to: Stage;
    percent: number;
    version: number;
    changed: boolean;
    forced: boolean;
    audit_id: string | null;
  };
}

const STAGES: readonly string[] = ["off", "shadow", "live", "complete"];
const VERDICTS: readonly string[] = ["PASS", "FAIL", "PENDING"];

const isStage = (v: unknown): v is Stage => typeof v === "string" && STAGES.includes(v);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const obj = (v: unknown): Record<string, unknown> | null =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;

function parseVerdict(raw: unknown): OpsVerdict | null {
  const v = obj(raw);
  if (!v || typeof v.verdict !== "string" || !VERDICTS.includes(v.verdict)) return null;
  const lag = obj(v.lag_ms);
  return {
    verdict: v.verdict as VerdictName,
    judged_at: str(v.judged_at),
    age_s: num(v.age_s),
    valid: v.valid === true,
    source: str(v.source),
    reasons: Array.isArray(v.reasons) ? v.reasons.filter((r): r is string => typeof r === "string") : [],
    paired: num(v.paired),
    mismatched: num(v.mismatched),
    gaps: num(v.gaps),
    resyncs: num(v.resyncs),
    duplicates: num(v.duplicates),
    lag_ms: { mean: num(lag?.mean), max: num(lag?.max) },
    last_mismatch_path: str(v.last_mismatch_path),
  };
}

function parseRamp(raw: unknown): OpsRamp | null {
  const r = obj(raw);
  if (!r) return null;
  return {
    status: str(r.status),
    text: str(r.text),
    percent: num(r.percent),
    next_percent: num(r.next_percent),
    due_in_s: num(r.due_in_s),
    steps: Array.isArray(r.steps) ? r.steps.filter((s): s is number => typeof s === "number") : [],
    index: num(r.index),
    why: str(r.why),
  };
}

function parseGuard(raw: unknown): OpsGuard | null {
  const g = obj(raw);
  if (!g || typeof g.host !== "string") return null;
  return { host: g.host, pid: num(g.pid), since: str(g.since), age_s: num(g.age_s) };
}

function parseReaders(raw: unknown): OpsRestReader[] {
  if (!Array.isArray(raw)) return [];
  const readers: OpsRestReader[] = [];
  for (const item of raw) {
    const r = obj(item);
    const count = num(r?.count);
    if (!r || typeof r.label !== "string" || count === null) continue;
    readers.push({ label: r.label, count, last_seen: str(r.last_seen) });
  }
  return readers;
}

function parseFeature(raw: unknown): OpsFeature | null {
  const f = obj(raw);
  if (!f || !isFeature(f.feature) || !isStage(f.stage)) return null;
  return {
    feature: f.feature,
    stage: f.stage,
    percent: num(f.percent) ?? 0,
    version: num(f.version) ?? 0,
    updated_by: str(f.updated_by),
    updated_at: str(f.updated_at),
    reason: str(f.reason),
    allowed: Array.isArray(f.allowed) ? f.allowed.filter(isStage) : [],
    verdict: parseVerdict(f.verdict),
    ramp: parseRamp(f.ramp),
    guard: parseGuard(f.guard),
    rest_reads_per_min: num(f.rest_reads_per_min),
    rest_readers: parseReaders(f.rest_readers),
  };
}

/** The monitor answer, or an Error when it is not the contract's shape (no `features` list). */
export function parseMonitor(raw: unknown): OpsMonitorAnswer {
  const m = obj(raw);
  if (!m || !Array.isArray(m.features)) throw new Error("the monitor answer has no features list");
  return {
    server_time: str(m.server_time),
    operator: m.operator === true,
    features: m.features.map(parseFeature).filter((f): f is OpsFeature => f !== null),
    sim_speed: num(m.sim_speed) !== null && (m.sim_speed as number) > 0 ? (m.sim_speed as number) : null,
  };
}

/** What the page knows of the monitor right now (a new object after every change). */
export interface OpsSnapshot {
  data: OpsMonitorAnswer | null;
  /** When `data` was received (ms since the epoch, this browser's clock). */
  receivedAt: number | null;
  /** Why the last refresh failed; null after a success. */
  error: string | null;
  /** Since when refreshes fail (the first failure), until one succeeds. */
  failedSince: number | null;
  /** The server's clock minus this browser's (ms), from `server_time`; 0 until known. */
  clockOffsetMs: number;
}

export interface OpsMonitorOptions {
  intervalMs?: number;
  now?: () => number;
  /** The backend said 401: the session is gone. */
  onUnauthorized?: () => void;
}

/** Polls the monitor while started; `changeStage` posts a change and refreshes at once. */
export class OpsMonitor {
  private readonly api: Pick<Api, "opsMonitor" | "changeStage">;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly onUnauthorized: (() => void) | undefined;
  private readonly changes = new Subscribable();
  private state: OpsSnapshot = { data: null, receivedAt: null, error: null, failedSince: null, clockOffsetMs: 0 };
  private timer: ReturnType<typeof setInterval> | null = null;
  private inFlight: Promise<void> | null = null;
  /** Another read was asked for while one was out with an older question: send it after. */
  private again = false;
  private running = false;

  constructor(api: Pick<Api, "opsMonitor" | "changeStage">, options: OpsMonitorOptions = {}) {
    this.api = api;
    this.intervalMs = options.intervalMs ?? OPS_POLL_MS;
    this.now = options.now ?? Date.now;
    this.onUnauthorized = options.onUnauthorized;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves once no request is in flight (logout waits: a poll answered after it would be a 401). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => {});
  }

  snapshot = (): OpsSnapshot => this.state;

  subscribe = (listener: () => void): (() => void) => this.changes.subscribe(listener);

  /**
   * Read the monitor now, one request at a time. A call while one is out joins it, unless
   * `fresh`: then one more is read after it (the one out was asked before what just changed).
   */
  refresh(fresh = false): Promise<void> {
    if (!this.running) return Promise.resolve();
    if (this.inFlight) {
      if (fresh) this.again = true;
      return this.inFlight;
    }
    const sent = this.now();
    const request = this.api
      .opsMonitor()
      .then((raw) => {
        if (!this.running) return;
        const data = parseMonitor(raw);
        const received = this.now();
        const server = data.server_time ? Date.parse(data.server_time) : Number.NaN;
        const clockOffsetMs = Number.isFinite(server) ? server - (sent + received) / 2 : this.state.clockOffsetMs;
        this.set({ data, receivedAt: received, error: null, failedSince: null, clockOffsetMs });
      })
      .catch((error: unknown) => {
        if (!this.running) return;
        if (error instanceof HttpError && error.status === 401) {
          this.stop();
          this.onUnauthorized?.();
          return;
        }
        const message = error instanceof Error ? error.message : String(error);
        this.set({ ...this.state, error: message, failedSince: this.state.failedSince ?? this.now() });
      })
      .finally(() => {
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          void this.refresh();
        }
      });
    this.inFlight = request;
    return request;
  }

  /**
   * Ask the backend to move a feature; resolves with its answer and refreshes the monitor at
   * once. Raises HttpError with the server's message on a refusal (403, 409, 400, 503).
   */
  async changeStage(request: StageRequest): Promise<StageChangeAnswer> {
    const answer = await this.api.changeStage(request);
    void this.refresh(true);
    return answer;
  }

  private set(next: OpsSnapshot): void {
    this.state = next;
    this.changes.notify();
  }
}
