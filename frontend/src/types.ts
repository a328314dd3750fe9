/** The contracts of docs/contracts.md as TypeScript types: features, stages, flags, the envelope, payloads. */

export const FEATURES = ["account_balance", "positions", "intraday", "global_market"] as const;
export type Feature = (typeof FEATURES)[number];

export type Stage = "off" | "shadow" | "live" | "complete";

/** Where a client renders a feature from. */
export type DataSource = "websocket" | "rest";

/** One feature's effective flag for this client (the backend applied the percent bucket). */
export interface FeatureFlag {
  stage: Stage;
  percent: number;
  version: number;
  source: DataSource;
  override: string | null;
}

export type FlagMap = Record<Feature, FeatureFlag>;

export const ENVELOPE_TYPES = ["account_balance", "positions", "intraday_bar", "vwap", "market_status"] as const;
export type EnvelopeType = (typeof ENVELOPE_TYPES)[number];

/** message type -> feature (docs/contracts.md, "The features"). */
export const TYPE_FEATURE: Record<EnvelopeType, Feature> = {
  account_balance: "account_balance",
  positions: "positions",
  intraday_bar: "intraday",
  vwap: "intraday",
  market_status: "global_market",
};

export function isEnvelopeType(value: unknown): value is EnvelopeType {
  return typeof value === "string" && (ENVELOPE_TYPES as readonly string[]).includes(value);
}

export function isFeature(value: unknown): value is Feature {
  return typeof value === "string" && (FEATURES as readonly string[]).includes(value);
}

/** Every WebSocket message and REST response of a feature. `seq` is per (type, key). */
export interface Envelope<T = unknown> {
  type: EnvelopeType;
  feature: Feature;
  key: string;
  seq: number;
  ts: string;
  data: T;
}

export interface Balance {
  account: string;
  currency: string;
  cash: number;
  equity: number;
  unrealized_pnl: number;
  realized_pnl: number;
  margin_used: number;
  buying_power: number;
  as_of: string;
}

export interface Position {
  symbol: string;
  quantity: number;
  avg_price: number;
  last_price: number;
  market_value: number;
  unrealized_pnl: number;
}

export interface Positions {
  account: string;
  positions: Position[];
  as_of: string;
}

export interface Bar {
  symbol: string;
  start: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

export interface Vwap {
  symbol: string;
  vwap: number;
  cum_volume: number;
  as_of: string;
}

export interface MarketStatus {
  market: string;
  name: string;
  timezone: string;
  is_open: boolean;
  session: string;
  next_change: string;
}

/** The simulated contracts (backend/thor_trading/market.py, CONTRACTS; the table with ticks is instruments.ts). */
export { SYMBOLS } from "./instruments";

/** REST polling interval per feature while it renders from REST. */
export const POLL_INTERVAL_MS: Record<Feature, number> = {
  account_balance: 2000,
  positions: 2000,
  intraday: 2000,
  global_market: 5000,
};

/** What a feature's data is fetched for: the account (balance, positions) or the symbol (intraday). */
export interface FeatureParams {
  account?: string | undefined;
  symbol?: string | undefined;
}

/** The store keys a feature's view reads; `null` key = every key of that type. */
export function featureKeys(feature: Feature, params: FeatureParams): Array<[EnvelopeType, string | null]> {
  switch (feature) {
    case "account_balance":
      return [["account_balance", params.account ?? null]];
    case "positions":
      return [["positions", params.account ?? null]];
    case "intraday":
      return [
        ["intraday_bar", params.symbol ?? null],
        ["vwap", params.symbol ?? null],
      ];
    case "global_market":
      return [["market_status", null]];
  }
}

/** A stable string for (feature, params), used to key REST interests and effects. */
export function interestKey(feature: Feature, params: FeatureParams): string {
  switch (feature) {
    case "account_balance":
    case "positions":
      return `${feature}:${params.account ?? ""}`;
    case "intraday":
      return `${feature}:${params.symbol ?? ""}`;
    case "global_market":
      return feature;
  }
}
