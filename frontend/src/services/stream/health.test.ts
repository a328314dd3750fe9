import { describe, expect, it } from "vitest";

import { envelope } from "../../test/fakes";
import { StreamHealth } from "./health";
import type { ServerMessage } from "./messages";

const msg = (type: Parameters<typeof envelope>[0], key: string, seq: number) =>
  envelope(type, key, seq, {}) as unknown as ServerMessage;

describe("StreamHealth", () => {
  it("tells new, gap and duplicate envelopes apart and counts them per feature", () => {
    const health = new StreamHealth(() => 0);
    expect(health.track(msg("vwap", "ES", 10))).toMatchObject({ kind: "new", feature: "intraday", gap: false });
    expect(health.track(msg("vwap", "ES", 13))).toMatchObject({ kind: "new", gap: true });
    expect(health.track(msg("vwap", "ES", 13))).toMatchObject({ kind: "duplicate" });
    expect(health.counters().intraday).toMatchObject({ messages: 3, gaps: 1, duplicates: 1, lastSeq: 13 });
    expect(health.counters().positions.messages).toBe(0);
  });

  it("restart() forgets the seq baselines but keeps the counters", () => {
    const health = new StreamHealth(() => 0);
    health.track(msg("positions", "DU1", 50));
    health.restart();
    // A new connection may start anywhere: neither a gap nor a duplicate.
    expect(health.track(msg("positions", "DU1", 3))).toMatchObject({ kind: "new", gap: false });
    expect(health.counters().positions).toMatchObject({ messages: 2, gaps: 0, duplicates: 0, lastSeq: 3 });
  });

  it("counts an envelope without seq or key as a bad frame, not a message", () => {
    const health = new StreamHealth(() => 0);
    expect(health.track({ type: "vwap", key: "ES" })).toEqual({ kind: "bad" });
    health.badFrame();
    expect(health.badFrames).toBe(2);
    expect(health.counters().intraday.messages).toBe(0);
  });
});
