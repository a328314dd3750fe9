/**
 * The simulated contracts and their tick sizes: the one TypeScript copy of the backend's table
 * (backend/thor_trading/market.py, `CONTRACTS`). instruments.test.ts reads that Python file and
 * fails when the two disagree, so a contract added or re-ticked there cannot drift here.
 *
 * Ticks are kept as the decimal strings the backend writes (`Decimal("0.25")`): the number of
 * decimals a price is shown with comes from the string, never from float arithmetic.
 */

export interface Instrument {
  symbol: string;
  name: string;
  /** The minimum price move, as a decimal string. */
  tick: string;
}

export const INSTRUMENTS = [
  { symbol: "ES", name: "E-mini S&P 500", tick: "0.25" },
  { symbol: "NQ", name: "E-mini Nasdaq-100", tick: "0.25" },
  { symbol: "YM", name: "E-mini Dow", tick: "1" },
  { symbol: "RTY", name: "E-mini Russell 2000", tick: "0.1" },
  { symbol: "CL", name: "Crude Oil", tick: "0.01" },
  { symbol: "GC", name: "Gold", tick: "0.1" },
] as const satisfies readonly Instrument[];

export type InstrumentSymbol = (typeof INSTRUMENTS)[number]["symbol"];

/** The symbols in the backend's order (the Intraday panel's picker). */
export const SYMBOLS: readonly InstrumentSymbol[] = INSTRUMENTS.map((i) => i.symbol);

const BY_SYMBOL = new Map<string, Instrument>(INSTRUMENTS.map((i) => [i.symbol, i]));

export function instrument(symbol: string): Instrument | undefined {
  return BY_SYMBOL.get(symbol);
}

/** Decimals of a decimal string: `"0.25"` -> 2, `"1"` -> 0, `"0.10"` -> 1 (trailing zeros do not count). */
export function decimalsOf(tick: string): number {
  const fraction = tick.split(".")[1] ?? "";
  return fraction.replace(/0+$/, "").length;
}

/** How many decimals `symbol`'s prices are shown with; null for a symbol the table does not know. */
export function tickDecimals(symbol: string): number | null {
  const known = BY_SYMBOL.get(symbol);
  return known ? decimalsOf(known.tick) : null;
}

/** The tick size as a number (for the chart's `minMove`); null for an unknown symbol. */
export function tickSize(symbol: string): number | null {
  const known = BY_SYMBOL.get(symbol);
  return known ? Number(known.tick) : null;
}
