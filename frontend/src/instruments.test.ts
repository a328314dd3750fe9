import { describe, expect, it } from "vitest";

// The backend's contract table itself, as text: the single source these values mirror.
import marketPy from "../../backend/thor_trading/market.py?raw";
import { INSTRUMENTS, SYMBOLS, decimalsOf, tickDecimals, tickSize } from "./instruments";

/** `Contract("ES", "E-mini S&P 500", Decimal("0.25"), …)` rows of market.py's CONTRACTS, in order. */
function pythonContracts(source: string): Array<{ symbol: string; name: string; tick: string }> {
  const table = source.slice(
    source.indexOf("CONTRACTS: dict[str, Contract]"),
    source.indexOf("SYMBOLS = tuple(CONTRACTS)"),
  );
  const rows: Array<{ symbol: string; name: string; tick: string }> = [];
  const row = /Contract\("([A-Z]+)",\s*"([^"]+)",\s*Decimal\(("?)([0-9.]+)\3\)/g;
  for (const m of table.matchAll(row)) rows.push({ symbol: m[1] ?? "", name: m[2] ?? "", tick: m[4] ?? "" });
  return rows;
}

describe("instruments (contract with backend/thor_trading/market.py)", () => {
  it("has the backend's contracts, in its order, with the same names and tick sizes", () => {
    const python = pythonContracts(marketPy);
    expect(python.length).toBeGreaterThanOrEqual(6); // the parser found the table
    expect(INSTRUMENTS.map((i) => ({ ...i }))).toEqual(python);
    expect([...SYMBOLS]).toEqual(python.map((c) => c.symbol));
  });

  it("derives display decimals from the tick string", () => {
    expect(decimalsOf("0.25")).toBe(2);
    expect(decimalsOf("1")).toBe(0);
    expect(decimalsOf("0.10")).toBe(1);
    expect(tickDecimals("ES")).toBe(2);
    expect(tickDecimals("YM")).toBe(0);
    expect(tickDecimals("GC")).toBe(1);
    expect(tickDecimals("CL")).toBe(2);
    expect(tickDecimals("ZZ")).toBeNull();
    expect(tickSize("NQ")).toBe(0.25);
    expect(tickSize("ZZ")).toBeNull();
  });
});
