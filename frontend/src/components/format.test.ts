import { describe, expect, it } from "vitest";

import { formatAge, formatClock, formatDuration, formatMoney, formatMs, formatPrice } from "./format";

describe("format", () => {
  it("formats money with grouping and two decimals", () => {
    expect(formatMoney(1012345.678)).toBe("1,012,345.68");
    expect(formatMoney(-250.5)).toBe("-250.50");
    expect(formatMoney(undefined)).toBe("—");
  });

  it("formats prices with the decimals they need, at least two, when no symbol is given", () => {
    expect(formatPrice(68.5)).toBe("68.50");
    expect(formatPrice(5950.25)).toBe("5,950.25");
    expect(formatPrice(1.2345)).toBe("1.2345");
  });

  it("formats a symbol's prices to its tick size's decimals", () => {
    expect(formatPrice(5950.25, "ES")).toBe("5,950.25");
    expect(formatPrice(20850, "NQ")).toBe("20,850.00");
    expect(formatPrice(43930.6666, "YM")).toBe("43,931"); // the example: a VWAP, 1-point tick
    expect(formatPrice(2380.1, "RTY")).toBe("2,380.1");
    expect(formatPrice(68.5, "CL")).toBe("68.50");
    expect(formatPrice(2650.35, "GC")).toBe("2,650.4"); // an average, rounded to the tick's decimals
    expect(formatPrice(12.3456, "ZZ")).toBe("12.3456"); // unknown symbol: as before
    expect(formatPrice(null, "ES")).toBe("—");
  });

  it("formats an age in seconds, then minutes", () => {
    expect(formatAge(1000, 1400)).toBe("0.4 s ago");
    expect(formatAge(0, 59_900)).toBe("59.9 s ago");
    expect(formatAge(0, 180_000)).toBe("3 min ago");
    expect(formatAge(2000, 1000)).toBe("0.0 s ago");
  });

  it("formats a wall-clock instant as local HH:MM:SS", () => {
    const at = new Date(2026, 10, 24, 9, 5, 7).getTime(); // local time
    expect(formatClock(at)).toBe("09:05:07");
  });

  it("formats durations and milliseconds short", () => {
    expect(formatDuration(4.4)).toBe("4 s");
    expect(formatDuration(190)).toBe("3m 10s");
    expect(formatDuration(7500)).toBe("2h 05m");
    expect(formatMs(12.4)).toBe("12 ms");
    expect(formatMs(1440)).toBe("1.4 s");
    expect(formatMs(null)).toBe("—");
  });
});
