import { describe, expect, it } from "vitest";

import { envelope } from "../test/fakes";
import { FeatureStore } from "./feature-store";

describe("FeatureStore", () => {
  it("keeps the newest seq per (type, key) and refuses older ones", () => {
    let now = 0;
    const store = new FeatureStore(() => now);
    expect(store.apply(envelope("vwap", "ES", 5, { v: 5 }), "websocket")).toBe(true);
    now = 10;
    expect(store.apply(envelope("vwap", "ES", 4, { v: 4 }), "rest")).toBe(false);
    expect(store.get("vwap", "ES")).toMatchObject({ envelope: { seq: 5, data: { v: 5 } }, via: "websocket", receivedAt: 0 });
    expect(store.apply(envelope("vwap", "NQ", 1, {}), "rest")).toBe(true);
    expect(store.all("vwap").map((e) => e.envelope.key)).toEqual(["ES", "NQ"]);
  });

  it("an equal seq confirms the state (fresh time) without replacing the data", () => {
    let now = 0;
    const store = new FeatureStore(() => now);
    const first = envelope("positions", "DU1", 9, { n: 1 });
    store.apply(first, "websocket");
    now = 500;
    store.apply(envelope("positions", "DU1", 9, { n: 1 }), "rest");
    const entry = store.get("positions", "DU1");
    expect(entry?.envelope).toBe(first);
    expect(entry?.via).toBe("websocket");
    expect(entry?.receivedAt).toBe(500);
  });

  it("notifies subscribers and bumps its revision", () => {
    const store = new FeatureStore();
    let calls = 0;
    const off = store.subscribe(() => (calls += 1));
    const before = store.getRevision();
    store.apply(envelope("market_status", "CME", 1, {}), "rest");
    expect(calls).toBe(1);
    expect(store.getRevision()).toBeGreaterThan(before);
    off();
    store.apply(envelope("market_status", "CME", 2, {}), "rest");
    expect(calls).toBe(1);
  });
});
