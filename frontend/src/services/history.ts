/**
 * What the charts draw, accumulated from what the page renders: one-minute candles and the VWAP
 * line per symbol, the equity per account, and the simulated clock. It reads the envelope store,
 * which holds whichever source each feature renders from (REST or WebSocket), so the charts follow
 * the feature's source like the panels do. There is no history endpoint: the charts start empty at
 * login and fill as bars arrive (one per second at the default 60x simulation speed).
 */

import type { EnvelopeType } from "../types";
import type { FeatureStore } from "./feature-store";
import { accumulate, candleOf, vwapPointOf } from "./series";
import type { Candle, LinePoint, Sample } from "./series";
import { SimClockEstimate } from "./sim-clock";
import { Subscribable } from "./subscribable";

/** Candles kept per symbol (8 h of simulated minutes; 8 min of wall clock at 60x). */
export const CANDLES_KEPT = 480;
/** Equity samples kept per account. */
export const EQUITY_KEPT = 600;

const WATCHED: readonly EnvelopeType[] = ["intraday_bar", "vwap", "account_balance", "positions"];

export class MarketHistory {
  private readonly candleLists = new Map<string, readonly Candle[]>();
  private readonly vwapLists = new Map<string, readonly LinePoint[]>();
  private readonly equityLists = new Map<string, readonly Sample[]>();
  private readonly seen = new Map<string, number>();
  private readonly changes = new Subscribable();
  private unsubscribe: (() => void) | null = null;
  private revision = 0;
  readonly clock = new SimClockEstimate();

  constructor(private readonly store: FeatureStore) {}

  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.store.subscribe(() => this.ingest());
    this.ingest();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  candles(symbol: string): readonly Candle[] {
    return this.candleLists.get(symbol) ?? [];
  }

  vwap(symbol: string): readonly LinePoint[] {
    return this.vwapLists.get(symbol) ?? [];
  }

  /** The account's equity per update (wall-clock time of receipt), the newest `EQUITY_KEPT`. */
  equity(account: string): readonly Sample[] {
    return this.equityLists.get(account) ?? [];
  }

  subscribe = (listener: () => void): (() => void) => this.changes.subscribe(listener);

  /** Changes whenever a chart has something new (a `useSyncExternalStore` snapshot). */
  getRevision = (): number => this.revision;

  /** Take every stored state newer than the one last taken for its stream. */
  ingest(): void {
    let changed = false;
    for (const type of WATCHED) {
      for (const entry of this.store.all(type)) {
        const { envelope } = entry;
        const id = `${type}|${envelope.key}`;
        const seen = this.seen.get(id);
        if (seen !== undefined && envelope.seq <= seen) continue;
        this.seen.set(id, envelope.seq);
        const data = (envelope.data ?? {}) as Record<string, unknown>;
        if ("as_of" in data) this.clock.observe(id, envelope.ts, data.as_of);
        changed = this.take(type, envelope.key, data, entry.receivedAt) || changed;
      }
    }
    if (changed) {
      this.revision += 1;
      this.changes.notify();
    }
  }

  private take(type: EnvelopeType, key: string, data: Record<string, unknown>, receivedAt: number): boolean {
    switch (type) {
      case "intraday_bar": {
        const candle = candleOf(data);
        if (!candle) return false;
        const out = accumulate(this.candles(key), candle, CANDLES_KEPT);
        this.candleLists.set(key, out.list);
        return out.what !== "older";
      }
      case "vwap": {
        const point = vwapPointOf(data);
        if (!point) return false;
        const out = accumulate(this.vwap(key), point, CANDLES_KEPT);
        this.vwapLists.set(key, out.list);
        return out.what !== "older";
      }
      case "account_balance": {
        if (typeof data.equity !== "number") return false;
        const list = this.equityLists.get(key) ?? [];
        this.equityLists.set(key, [...list.slice(1 - EQUITY_KEPT), { t: receivedAt, v: data.equity }]);
        return true;
      }
      default:
        return true; // positions: only the clock (as_of) was wanted
    }
  }
}
