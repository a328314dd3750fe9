import { describe, expect, it } from "vitest";

import { backendRoutes, envelope, fakeRuntime } from "../test/fakes";
import { StreamTelemetry } from "./telemetry";

function setup(offset = 0) {
  let now = Date.parse("2026-11-24T10:00:00Z");
  const made = fakeRuntime(backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 }), {
    now: () => now,
  });
  const telemetry = new StreamTelemetry(made.runtime.manager, { now: () => now, clockOffsetMs: () => offset });
  made.runtime.start();
  made.ws.last().open();
  telemetry.start();
  const advance = (ms: number) => (now += ms);
  const send = (seq: number, writtenMsAgo: number) =>
    made.ws
      .last()
      .receive({ ...envelope("vwap", "ES", seq, {}), ts: new Date(now + offset - writtenMsAgo).toISOString() }); // on the server's clock
  return { ...made, telemetry, advance, send };
}

describe("StreamTelemetry", () => {
  it("samples messages per second and the largest freshness lag of each second; a quiet second is a hole", () => {
    const { telemetry, advance, send, runtime } = setup();
    send(1, 30);
    send(2, 80);
    advance(1000);
    telemetry.sample();
    advance(1000);
    telemetry.sample(); // nothing came
    send(3, 10);
    advance(2000);
    telemetry.sample();
    // The stream's rate over its last 10 s: 2 messages, then 3.
    expect(telemetry.rate("intraday").map((s) => s.v)).toEqual([0.2, 0.2, 0.3]);
    expect(telemetry.lag("intraday").map((s) => s.v)).toEqual([80, null, 10]);
    expect(telemetry.rate("positions").map((s) => s.v)).toEqual([0, 0, 0]);
    telemetry.stop();
    runtime.stop();
  });

  it("measures lag on the server's clock and keeps 5 minutes", () => {
    const { telemetry, advance, send, runtime } = setup(-3000); // this browser is 3 s ahead
    send(1, 40);
    advance(1000);
    telemetry.sample();
    expect(telemetry.lag("intraday").at(-1)?.v).toBe(40);
    for (let i = 0; i < 400; i += 1) {
      advance(1000);
      telemetry.sample();
    }
    const rate = telemetry.rate("intraday");
    expect(rate.length).toBeLessThanOrEqual(301);
    expect((rate.at(-1)?.t ?? 0) - (rate[0]?.t ?? 0)).toBeLessThanOrEqual(5 * 60_000);
    telemetry.stop();
    runtime.stop();
  });
});
