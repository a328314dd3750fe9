/**
 * The monitor's sparklines, computed in the page from what it receives over the WebSocket: per
 * feature, messages per second and freshness lag, sampled every second over the last 5 minutes.
 * The rate is the stream's own (messages over its last 10 s, `health.ts`), so the line shows the
 * traffic rather than which second a once-a-second message happened to fall in.
 *
 * Freshness lag is how old a state is when it reaches the page: receipt time minus the
 * envelope's `ts` (when the backend wrote it), on the server's clock (the monitor's
 * `server_time` gives the offset between the two clocks). Each second's sample is the largest
 * lag of the messages that came in it; a second without messages is a hole, not a zero. Shadow
 * traffic counts: the monitor is about the stream, whatever the panels render.
 */

import { FEATURES } from "../types";
import type { Feature } from "../types";
import type { WebSocketManager } from "./stream";
import { Subscribable } from "./subscribable";
import { TimeWindow } from "./series";
import type { Sample } from "./series";

export const SAMPLE_MS = 1000;
export const WINDOW_MS = 5 * 60_000;

export interface TelemetryOptions {
  now?: () => number;
  /** The server's clock minus this browser's, in ms (0 when unknown). */
  clockOffsetMs?: () => number;
  sampleMs?: number;
  windowMs?: number;
}

type ManagerLike = Pick<WebSocketManager, "counters" | "on">;

export class StreamTelemetry {
  private readonly now: () => number;
  private readonly offset: () => number;
  private readonly sampleMs: number;
  private readonly rates = new Map<Feature, TimeWindow>();
  private readonly lags = new Map<Feature, TimeWindow>();
  /** The largest lag (ms) of each feature's messages since the last sample. */
  private readonly pending = new Map<Feature, number>();
  private readonly changes = new Subscribable();
  private timer: ReturnType<typeof setInterval> | null = null;
  private off: (() => void) | null = null;
  private revision = 0;

  constructor(
    private readonly manager: ManagerLike,
    options: TelemetryOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.offset = options.clockOffsetMs ?? (() => 0);
    this.sampleMs = options.sampleMs ?? SAMPLE_MS;
    const windowMs = options.windowMs ?? WINDOW_MS;
    for (const feature of FEATURES) {
      this.rates.set(feature, new TimeWindow(windowMs));
      this.lags.set(feature, new TimeWindow(windowMs));
    }
  }

  start(): void {
    if (this.timer !== null) return;
    this.off = this.manager.on("envelope", (envelope) => {
      const written = Date.parse(envelope.ts);
      if (!Number.isFinite(written)) return;
      const lag = Math.max(0, this.now() + this.offset() - written);
      this.pending.set(envelope.feature, Math.max(lag, this.pending.get(envelope.feature) ?? 0));
    });
    this.timer = setInterval(() => this.sample(), this.sampleMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.off?.();
    this.off = null;
  }

  /** Messages per second of `feature`, one sample a second, the last 5 minutes. */
  rate(feature: Feature): readonly Sample[] {
    return this.rates.get(feature)?.points() ?? [];
  }

  /** Freshness lag (ms) of `feature`'s messages, one sample a second (holes without messages). */
  lag(feature: Feature): readonly Sample[] {
    return this.lags.get(feature)?.points() ?? [];
  }

  subscribe = (listener: () => void): (() => void) => this.changes.subscribe(listener);

  getRevision = (): number => this.revision;

  /** Take one sample of every feature now (the timer calls it every second). */
  sample(): void {
    const now = this.now();
    const counters = this.manager.counters();
    for (const feature of FEATURES) {
      this.rates.get(feature)?.push(now, counters[feature].rate);
      this.lags.get(feature)?.push(now, this.pending.get(feature) ?? null);
    }
    this.pending.clear();
    this.revision += 1;
    this.changes.notify();
  }
}
