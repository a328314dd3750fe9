/**
 * Pure building blocks of the charts: accumulating one-minute candles (a new `start` is a new
 * candle, the same `start` updates the last one), a time-keyed line, and a sliding time window of
 * samples for the sparklines. No React, no timers.
 */

/** One candle; `time` is the bar's `start` in UTC seconds (what lightweight-charts plots). */
export interface Candle {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

/** One point of a line keyed by time (UTC seconds). */
export interface LinePoint {
  time: number;
  value: number;
}

export type Accumulated = "new" | "update" | "older";

/**
 * Put `item` into `list` (ascending by `time`, at most `cap` long) and return the new list:
 * a later `time` is appended ("new"), the last `time` replaces the last item ("update"), an
 * earlier one leaves the list as it is ("older": a late REST answer never rewrites history).
 * The list given is never changed, so a view can compare identities.
 */
export function accumulate<T extends { time: number }>(
  list: readonly T[],
  item: T,
  cap: number,
): { list: readonly T[]; what: Accumulated } {
  const last = list[list.length - 1];
  if (last && item.time < last.time) return { list, what: "older" };
  if (last && item.time === last.time) return { list: [...list.slice(0, -1), item], what: "update" };
  const next = [...list, item];
  return { list: next.length > cap ? next.slice(next.length - cap) : next, what: "new" };
}

/** An intraday bar envelope's data as a candle, or null when its fields are not numbers and a time. */
export function candleOf(bar: {
  start?: unknown;
  open?: unknown;
  high?: unknown;
  low?: unknown;
  close?: unknown;
  volume?: unknown;
}): Candle | null {
  const time = typeof bar.start === "string" ? Date.parse(bar.start) : Number.NaN;
  const values = [bar.open, bar.high, bar.low, bar.close];
  if (!Number.isFinite(time) || !values.every((v) => typeof v === "number" && Number.isFinite(v))) return null;
  return {
    time: Math.floor(time / 1000),
    open: bar.open as number,
    high: bar.high as number,
    low: bar.low as number,
    close: bar.close as number,
    volume: typeof bar.volume === "number" ? bar.volume : 0,
  };
}

/** A VWAP as a point of the minute its `as_of` falls in (the candle it belongs to). */
export function vwapPointOf(vwap: { vwap?: unknown; as_of?: unknown }): LinePoint | null {
  const at = typeof vwap.as_of === "string" ? Date.parse(vwap.as_of) : Number.NaN;
  if (!Number.isFinite(at) || typeof vwap.vwap !== "number" || !Number.isFinite(vwap.vwap)) return null;
  return { time: Math.floor(at / 60_000) * 60, value: vwap.vwap };
}

/** One sample of a sparkline: `v` null is a hole (nothing measured then). `t` is ms since the epoch. */
export interface Sample {
  t: number;
  v: number | null;
}

/** The samples of the last `windowMs` (5 minutes by default), oldest first. */
export class TimeWindow {
  private samples: Sample[] = [];

  constructor(readonly windowMs = 5 * 60_000) {}

  /** Add a sample at `t` (not older than the newest) and drop those that left the window. */
  push(t: number, v: number | null): void {
    const last = this.samples[this.samples.length - 1];
    if (last && t < last.t) return;
    this.samples = [...this.samples, { t, v }];
    this.prune(t);
  }

  /** The samples within `windowMs` of `now` (a new array after each change, the same one otherwise). */
  points(now?: number): readonly Sample[] {
    if (now !== undefined) this.prune(now);
    return this.samples;
  }

  /** The newest sample's value, if any. */
  latest(): number | null {
    return this.samples[this.samples.length - 1]?.v ?? null;
  }

  private prune(now: number): void {
    const from = now - this.windowMs;
    let drop = 0;
    while (drop < this.samples.length && (this.samples[drop]?.t ?? Infinity) < from) drop += 1;
    if (drop) this.samples = this.samples.slice(drop);
  }
}
