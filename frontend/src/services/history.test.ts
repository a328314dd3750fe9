import { describe, expect, it, vi } from "vitest";

import { BALANCE, bar, envelope, vwap } from "../test/fakes";
import { FeatureStore } from "./feature-store";
import { MarketHistory } from "./history";

const at = (minute: number) => new Date(Date.parse("2026-11-24T14:00:00Z") + minute * 60_000).toISOString();

function barAt(symbol: string, minute: number, close: number) {
  return { ...bar(symbol, close), start: at(minute) };
}

describe("MarketHistory", () => {
  it("accumulates candles per symbol from whichever source fills the store; an older seq is not taken", () => {
    const store = new FeatureStore();
    const history = new MarketHistory(store);
    history.start();
    const listener = vi.fn();
    history.subscribe(listener);
    store.apply(envelope("intraday_bar", "ES", 1, barAt("ES", 0, 100)), "rest");
    store.apply(envelope("intraday_bar", "ES", 2, barAt("ES", 0, 101)), "websocket"); // same minute: update
    store.apply(envelope("intraday_bar", "ES", 3, barAt("ES", 1, 102)), "websocket"); // next minute: new candle
    store.apply(envelope("intraday_bar", "NQ", 1, barAt("NQ", 1, 200)), "websocket");
    store.apply(envelope("intraday_bar", "ES", 3, barAt("ES", 1, 102)), "rest"); // the same seq confirmed
    expect(history.candles("ES").map((c) => c.close)).toEqual([101, 102]);
    expect(history.candles("NQ").map((c) => c.close)).toEqual([200]);
    expect(history.candles("CL")).toEqual([]);
    expect(listener).toHaveBeenCalledTimes(4);
    history.stop();
    store.apply(envelope("intraday_bar", "ES", 4, barAt("ES", 2, 103)), "websocket");
    expect(history.candles("ES")).toHaveLength(2); // stopped: nothing taken
  });

  it("keeps the VWAP line by minute and the equity per account", () => {
    const store = new FeatureStore(() => 5000);
    const history = new MarketHistory(store);
    history.start();
    store.apply(envelope("vwap", "ES", 1, { ...vwap("ES", 100), as_of: at(0) }), "rest");
    store.apply(envelope("vwap", "ES", 2, { ...vwap("ES", 101), as_of: at(0.5) }), "rest");
    store.apply(envelope("vwap", "ES", 3, { ...vwap("ES", 102), as_of: at(1) }), "rest");
    expect(history.vwap("ES").map((p) => p.value)).toEqual([101, 102]);
    store.apply(envelope("account_balance", "DU1234", 1, BALANCE), "websocket");
    store.apply(envelope("account_balance", "DU1234", 2, { ...BALANCE, equity: 1_000_000 }), "websocket");
    expect(history.equity("DU1234")).toEqual([
      { t: 5000, v: BALANCE.equity },
      { t: 5000, v: 1_000_000 },
    ]);
    expect(history.equity("DU9999")).toEqual([]);
  });

  it("measures the simulation speed from the states' ts and as_of", () => {
    const store = new FeatureStore();
    const history = new MarketHistory(store);
    history.start();
    const wall = Date.parse("2026-11-24T09:00:00Z");
    for (let i = 0; i < 3; i += 1) {
      store.apply(
        {
          ...envelope("account_balance", "DU1234", i + 1, { ...BALANCE, as_of: at(i) }),
          ts: new Date(wall + i * 1000).toISOString(),
        },
        "websocket",
      );
    }
    expect(history.clock.speed()).toBe(60);
    expect(history.clock.marketTime).toBe(Date.parse(at(2)));
  });
});
