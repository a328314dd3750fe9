import { describe, expect, it } from "vitest";

import { formatAge, formatMoney, formatPrice } from "./format";

describe("format", () => {
  it("formats money with grouping and two decimals", () => {
    expect(formatMoney(1012345.678)).toBe("1,012,345.68");
    expect(formatMoney(-250.5)).toBe("-250.50");
    expect(formatMoney(undefined)).toBe("—");
  });

  it("formats prices with the decimals they need, at least two", () => {
    expect(formatPrice(68.5)).toBe("68.50");
    expect(formatPrice(5950.25)).toBe("5,950.25");
    expect(formatPrice(1.2345)).toBe("1.2345");
  });

  it("formats an age in seconds, then minutes", () => {
    expect(formatAge(1000, 1400)).toBe("0.4 s ago");
    expect(formatAge(0, 59_900)).toBe("59.9 s ago");
    expect(formatAge(0, 180_000)).toBe("3 min ago");
    expect(formatAge(2000, 1000)).toBe("0.0 s ago");
  });
});
