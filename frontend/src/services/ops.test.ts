import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { fakeFetch, opsAnswer, opsVerdict } from "../test/fakes";
import type { Route } from "../test/fakes";
import { createApi } from "./api";
import { Http } from "./http";
import { OpsMonitor, parseMonitor } from "./ops";

const flush = () => vi.advanceTimersByTimeAsync(0);

function setup(route: Route, onUnauthorized = vi.fn()) {
  const http = fakeFetch({ "/api/ops/monitor": route });
  const api = createApi(new Http({ fetch: http.fetch, cookies: () => "csrftoken=tok" }));
  const ops = new OpsMonitor(api, { onUnauthorized });
  return { http, ops, onUnauthorized };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("parseMonitor", () => {
  it("keeps the contract's fields and drops features or verdicts of another shape", () => {
    const raw = opsAnswer(true, { positions: { verdict: opsVerdict({ reasons: ["a", 3] }) } });
    raw.features.push({ feature: "nope", stage: "live" } as never);
    const parsed = parseMonitor({ ...raw, sim_speed: 60 });
    expect(parsed.operator).toBe(true);
    expect(parsed.sim_speed).toBe(60);
    expect(parsed.features.map((f) => f.feature)).toEqual([
      "account_balance",
      "positions",
      "intraday",
      "global_market",
    ]);
    expect(parsed.features[1]?.verdict).toMatchObject({
      verdict: "PASS",
      valid: true,
      reasons: ["a"],
      lag_ms: { mean: 12.4, max: 40 },
    });
    expect(parsed.features[0]?.verdict).toBeNull();
    expect(parsed.features[0]?.allowed).toEqual(["live", "off"]);
    expect(
      parseMonitor({ features: [{ feature: "positions", stage: "shadow", verdict: { verdict: "MAYBE" } }] }).features[0]
        ?.verdict,
    ).toBeNull();
    expect(() => parseMonitor({ error: "x" })).toThrow(/no features/);
  });

  it("keeps each feature's REST reads per minute and its readers, dropping readers of another shape", () => {
    const readers = [
      { label: "page/0123456789ab", count: 40, last_seen: "2026-11-24T10:00:00.000Z" },
      { label: "token/ci", count: 12, last_seen: null },
      { label: 7, count: 1, last_seen: null },
      { label: "anonymous", count: "3", last_seen: null },
      "other",
    ];
    const parsed = parseMonitor(opsAnswer(false, { intraday: { rest_reads_per_min: 10.4, rest_readers: readers } }));
    const intraday = parsed.features.find((f) => f.feature === "intraday");
    expect(intraday?.rest_reads_per_min).toBe(10.4);
    expect(intraday?.rest_readers).toEqual([
      { label: "page/0123456789ab", count: 40, last_seen: "2026-11-24T10:00:00.000Z" },
      { label: "token/ci", count: 12, last_seen: null },
    ]);
    // A backend that does not count REST reads: no figure, no readers (the page shows "—").
    const older = parseMonitor({ features: [{ feature: "positions", stage: "shadow" }] }).features[0];
    expect(older?.rest_reads_per_min).toBeNull();
    expect(older?.rest_readers).toEqual([]);
  });
});

describe("OpsMonitor", () => {
  it("polls every 2 s, notes failures since the first, and recovers", async () => {
    let down = false;
    const { ops, http } = setup(() =>
      down ? { status: 503, body: { error: "Redis is unreachable" } } : { body: opsAnswer() },
    );
    ops.start();
    await flush();
    expect(http.count("/api/ops/monitor")).toBe(1);
    expect(ops.snapshot()).toMatchObject({ error: null, failedSince: null });
    expect(ops.snapshot().data?.features).toHaveLength(4);
    down = true;
    await vi.advanceTimersByTimeAsync(2000);
    const since = Date.now();
    await vi.advanceTimersByTimeAsync(2000);
    expect(http.count("/api/ops/monitor")).toBe(3);
    expect(ops.snapshot()).toMatchObject({ error: "Redis is unreachable", failedSince: since });
    expect(ops.snapshot().data).not.toBeNull(); // the last answer stays, marked stale by the monitor
    down = false;
    await vi.advanceTimersByTimeAsync(2000);
    expect(ops.snapshot()).toMatchObject({ error: null, failedSince: null });
    ops.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(http.count("/api/ops/monitor")).toBe(4);
  });

  it("reads once more after the request out when asked for a fresh read, and folds plain ones", async () => {
    let answer: (value: { body: unknown }) => void = () => {};
    const { ops, http } = setup(() => new Promise((resolve) => (answer = resolve)));
    ops.start();
    void ops.refresh(); // joins the one out
    expect(http.count("/api/ops/monitor")).toBe(1);
    void ops.refresh(true); // asked after a change: the answer out may predate it
    answer({ body: opsAnswer() });
    await flush();
    expect(http.count("/api/ops/monitor")).toBe(2);
    answer({ body: opsAnswer() });
    await flush();
    expect(http.count("/api/ops/monitor")).toBe(2);
    ops.stop();
  });

  it("estimates the server's clock offset from server_time", async () => {
    const { ops } = setup(() => ({ body: { ...opsAnswer(), server_time: new Date(Date.now() + 5000).toISOString() } }));
    ops.start();
    await flush();
    expect(ops.snapshot().clockOffsetMs).toBe(5000);
    ops.stop();
  });

  it("ends the session on 401 and stops polling", async () => {
    const { ops, http, onUnauthorized } = setup(() => ({ status: 401, body: { error: "authentication required" } }));
    ops.start();
    await flush();
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(http.count("/api/ops/monitor")).toBe(1);
  });
});
