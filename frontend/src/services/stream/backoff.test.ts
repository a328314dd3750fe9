import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Backoff, backoffDelay } from "./backoff";

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("backoffDelay", () => {
  it("is uniform below min(cap, base * 2^attempt) (full jitter)", () => {
    expect(backoffDelay(0, 500, 30_000, () => 0)).toBe(0);
    expect(backoffDelay(0, 500, 30_000, () => 0.5)).toBe(250);
    expect(backoffDelay(3, 500, 30_000, () => 0.5)).toBe(2000);
    expect(backoffDelay(3, 500, 30_000, () => 0.999999)).toBe(3999);
  });

  it("never exceeds the cap however many attempts failed", () => {
    expect(backoffDelay(10, 500, 30_000, () => 0.999999)).toBe(29_999);
    expect(backoffDelay(1000, 500, 30_000, () => 0.999999)).toBe(29_999);
  });
});

describe("Backoff", () => {
  function setup(options: { stableMs?: number } = {}) {
    let now = 0;
    const backoff = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5, now: () => now, ...options });
    return { backoff, advanceClock: (ms: number) => (now += ms) };
  }

  it("doubles the ceiling with each scheduled retry, up to the cap", () => {
    const { backoff } = setup();
    const delays: number[] = [];
    for (let i = 0; i < 6; i += 1) delays.push(backoff.schedule(() => {}));
    // Half of 100, 200, 400, 800, then the 1000 cap.
    expect(delays).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it("runs the retry once, after exactly the delay, and clears pendingDelay then", () => {
    const { backoff } = setup();
    const retry = vi.fn();
    expect(backoff.pendingDelay).toBeNull();
    const delay = backoff.schedule(retry);
    expect(backoff.pendingDelay).toBe(delay);
    vi.advanceTimersByTime(delay - 1);
    expect(retry).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(retry).toHaveBeenCalledTimes(1);
    expect(backoff.pendingDelay).toBeNull();
    vi.advanceTimersByTime(10_000);
    expect(retry).toHaveBeenCalledTimes(1);
  });

  it("cancel() drops the scheduled retry", () => {
    const { backoff } = setup();
    const retry = vi.fn();
    backoff.schedule(retry);
    backoff.cancel();
    expect(backoff.pendingDelay).toBeNull();
    vi.advanceTimersByTime(10_000);
    expect(retry).not.toHaveBeenCalled();
  });

  it("a second schedule() replaces the first: one retry, not two", () => {
    const { backoff } = setup();
    const first = vi.fn();
    const second = vi.fn();
    backoff.schedule(first);
    backoff.schedule(second);
    vi.advanceTimersByTime(10_000);
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
  });

  it("starts over only after a connection stayed up for stableMs", () => {
    const { backoff, advanceClock } = setup({ stableMs: 5000 });
    backoff.schedule(() => {});
    backoff.schedule(() => {});
    backoff.schedule(() => {}); // attempts 0, 1, 2 used
    backoff.connected();
    advanceClock(4999);
    backoff.disconnected();
    expect(backoff.schedule(() => {})).toBe(400); // attempt 3: a short-lived connection does not count
    backoff.connected();
    advanceClock(5000);
    backoff.disconnected();
    expect(backoff.schedule(() => {})).toBe(50); // attempt 0 again
  });

  it("disconnected() without connected() keeps backing off", () => {
    const { backoff, advanceClock } = setup({ stableMs: 5000 });
    backoff.schedule(() => {});
    advanceClock(60_000);
    backoff.disconnected(); // a handshake that never opened
    expect(backoff.schedule(() => {})).toBe(100);
  });

  it("a stable connection starts the count over once, not at every later failed handshake", () => {
    const { backoff, advanceClock } = setup({ stableMs: 5000 });
    backoff.connected();
    advanceClock(60_000);
    backoff.disconnected();
    expect(backoff.schedule(() => {})).toBe(50);
    backoff.disconnected(); // the reconnect's handshake failed
    expect(backoff.schedule(() => {})).toBe(100);
    backoff.disconnected();
    expect(backoff.schedule(() => {})).toBe(200);
  });

  it("reset() starts from the base again", () => {
    const { backoff } = setup();
    for (let i = 0; i < 4; i += 1) backoff.schedule(() => {});
    backoff.reset();
    expect(backoff.schedule(() => {})).toBe(50);
  });
});
