import { describe, expect, it } from "vitest";

import { TimeWindow, accumulate, candleOf, vwapPointOf } from "./series";
import type { Candle } from "./series";

const bar = (start: string, close: number) => ({
  symbol: "ES",
  start,
  open: 100,
  high: close + 1,
  low: 99,
  close,
  volume: 5,
});

describe("candle accumulation", () => {
  it("appends a new start, updates the same start, ignores an older one", () => {
    let list: readonly Candle[] = [];
    const put = (b: ReturnType<typeof bar>) => {
      const out = accumulate(list, candleOf(b)!, 100);
      list = out.list;
      return out.what;
    };
    expect(put(bar("2026-11-24T14:30:00Z", 101))).toBe("new");
    expect(put(bar("2026-11-24T14:30:00Z", 102))).toBe("update");
    expect(put(bar("2026-11-24T14:31:00Z", 103))).toBe("new");
    expect(put(bar("2026-11-24T14:30:00Z", 90))).toBe("older");
    expect(list.map((c) => [c.time, c.close])).toEqual([
      [Date.parse("2026-11-24T14:30:00Z") / 1000, 102],
      [Date.parse("2026-11-24T14:31:00Z") / 1000, 103],
    ]);
  });

  it("never changes the list it was given, and keeps at most `cap` items", () => {
    const first: readonly Candle[] = [];
    const one = accumulate(first, candleOf(bar("2026-11-24T14:30:00Z", 1))!, 2).list;
    expect(first).toHaveLength(0);
    const two = accumulate(one, candleOf(bar("2026-11-24T14:31:00Z", 2))!, 2).list;
    const three = accumulate(two, candleOf(bar("2026-11-24T14:32:00Z", 3))!, 2).list;
    expect(one).toHaveLength(1);
    expect(three.map((c) => c.close)).toEqual([2, 3]);
  });

  it("refuses bars without numbers or a parseable start", () => {
    expect(candleOf({ start: "nope", open: 1, high: 1, low: 1, close: 1 })).toBeNull();
    expect(candleOf({ start: "2026-11-24T14:30:00Z", open: "1", high: 1, low: 1, close: 1 })).toBeNull();
  });

  it("keys a VWAP by the minute of its as_of", () => {
    expect(vwapPointOf({ vwap: 5950.5, as_of: "2026-11-24T14:30:42.500Z" })).toEqual({
      time: Date.parse("2026-11-24T14:30:00Z") / 1000,
      value: 5950.5,
    });
    expect(vwapPointOf({ vwap: null, as_of: "2026-11-24T14:30:42Z" })).toBeNull();
  });
});

describe("sparkline windowing", () => {
  it("keeps only the last five minutes of samples", () => {
    const w = new TimeWindow();
    w.push(0, 1);
    w.push(60_000, 2);
    w.push(299_000, null);
    expect(w.points(300_000).map((s) => s.v)).toEqual([1, 2, null]);
    w.push(300_001, 4); // the first sample is now older than 5 min
    expect(w.points().map((s) => s.t)).toEqual([60_000, 299_000, 300_001]);
    expect(w.points(600_000)).toEqual([{ t: 300_001, v: 4 }]);
    expect(w.latest()).toBe(4);
  });

  it("ignores a sample older than the newest, and returns the same array until something changes", () => {
    const w = new TimeWindow(1000);
    w.push(500, 1);
    const before = w.points(600);
    w.push(400, 9);
    expect(w.points(600)).toBe(before);
  });
});
