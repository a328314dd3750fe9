import { describe, expect, it } from "vitest";

import { SimClockEstimate, roundSpeed, simClockLabel } from "./sim-clock";

const iso = (ms: number) => new Date(ms).toISOString();

describe("SimClockEstimate", () => {
  it("measures the speed from ts (wall clock) and as_of (simulated) of successive states", () => {
    const clock = new SimClockEstimate();
    const wall0 = Date.parse("2026-11-24T10:00:00Z");
    const sim0 = Date.parse("2026-11-24T14:30:00Z");
    expect(clock.speed()).toBeNull();
    for (let i = 0; i < 5; i += 1) {
      const jitter = i % 2 ? 7 : -5; // the writer's ms jitter
      clock.observe("account_balance|DU1234", iso(wall0 + i * 1000 + jitter), iso(sim0 + i * 60_000));
    }
    expect(clock.speed()).toBe(60);
    expect(clock.marketTime).toBe(sim0 + 4 * 60_000);
  });

  it("keeps streams apart and ignores steps too short to measure or not moving forward", () => {
    const clock = new SimClockEstimate();
    clock.observe("a", iso(0), iso(0));
    clock.observe("b", iso(100_000), iso(500_000)); // another stream: no pair yet
    expect(clock.speed()).toBeNull();
    clock.observe("a", iso(50), iso(3000)); // 50 ms of wall clock: too coarse
    clock.observe("a", iso(2050), iso(3000)); // simulated time did not move
    expect(clock.speed()).toBeNull();
    clock.observe("b", iso(102_000), iso(502_000)); // real time
    expect(clock.speed()).toBe(1);
  });

  it("rounds near-whole speeds and labels the clock as simulated", () => {
    expect(roundSpeed(59.2)).toBe(59);
    expect(roundSpeed(2.5)).toBe(2.5);
    expect(simClockLabel(60)).toBe("simulated market time (60× speed)");
    expect(simClockLabel(null)).toContain("simulated");
  });
});
