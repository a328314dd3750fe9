import { describe, expect, it } from "vitest";

import { FRAME_MAX_BYTES, RESUME_MAX_STREAMS, isResumedMessage, resumeCommand } from "./messages";
import type { ResumePoint } from "./messages";

describe("resumeCommand", () => {
  it("names each stream once, at its highest seq, in a stable order", () => {
    expect(
      resumeCommand([
        { type: "vwap", key: "ES", seq: 4 },
        { type: "account_balance", key: "DU1234", seq: 9 },
        { type: "vwap", key: "ES", seq: 6 },
        { type: "intraday_bar", key: "ES", seq: 0 },
        { type: "vwap", key: "ES", seq: 5 },
      ]),
    ).toEqual({
      action: "resume",
      since: [
        { type: "account_balance", key: "DU1234", seq: 9 },
        { type: "intraday_bar", key: "ES", seq: 0 },
        { type: "vwap", key: "ES", seq: 6 },
      ],
    });
  });

  it("leaves out what the server would refuse the whole resume for", () => {
    const bad = [
      { type: "heartbeat", key: "x", seq: 1 }, // never resumed
      { type: "positions", key: "", seq: 1 },
      { type: "positions", key: "K".repeat(65), seq: 1 },
      { type: "positions", key: "DU1", seq: -1 },
      { type: "positions", key: "DU2", seq: 1.5 },
      { type: "positions", key: "DU3", seq: true },
      { type: "positions", key: "DU4", seq: Number.MAX_SAFE_INTEGER + 2 },
    ] as unknown as ResumePoint[];
    const good: ResumePoint = { type: "positions", key: "K".repeat(64), seq: 12 };
    expect(resumeCommand([...bad, good]).since).toEqual([good]);
  });

  it("keeps to the contract's 1,000 streams", () => {
    const many = Array.from({ length: 1500 }, (_, i) => ({ type: "market_status" as const, key: `M${i}`, seq: i }));
    expect(resumeCommand(many).since).toHaveLength(RESUME_MAX_STREAMS);
  });

  it("names only the streams that fit one frame the server reads", () => {
    // 64 characters of four UTF-8 bytes each: 1,000 such streams would be over 280 KB.
    const many = Array.from({ length: 1000 }, (_, i) => ({
      type: "market_status" as const,
      key: `${String(i).padStart(3, "0")}${"😀".repeat(61)}`,
      seq: Number.MAX_SAFE_INTEGER - i,
    }));
    const command = resumeCommand(many);
    const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;
    expect(command.since.length).toBeGreaterThan(100);
    expect(command.since.length).toBeLessThan(1000);
    expect(bytes(command)).toBeLessThanOrEqual(FRAME_MAX_BYTES);
    expect(bytes({ ...command, since: [...command.since, many[command.since.length]] })).toBeGreaterThan(FRAME_MAX_BYTES);
    expect(command.since).toEqual(many.slice(0, command.since.length)); // the first ones, in order
  });

  it("counts a key's length in characters, as the server does", () => {
    const key = "😀".repeat(64); // 128 UTF-16 units, 64 characters
    expect(resumeCommand([{ type: "market_status", key, seq: 1 }]).since).toHaveLength(1);
    expect(resumeCommand([{ type: "market_status", key: key + "x", seq: 1 }]).since).toHaveLength(0);
  });
});

describe("isResumedMessage", () => {
  it("reads resumed with its counts, healed or not, and nothing else", () => {
    expect(isResumedMessage({ type: "resumed", replayed: 2, resynced: 0 })).toBe(true);
    expect(isResumedMessage({ type: "resumed", replayed: 0, resynced: 1, healed: true })).toBe(true);
    expect(isResumedMessage({ type: "resumed", replayed: "2", resynced: 0 })).toBe(false);
    expect(isResumedMessage({ type: "positions", replayed: 0, resynced: 0 })).toBe(false);
  });
});
