/** What the server sends on the stream, what the page sends to resume it, and how a raw frame becomes one. */

import { isEnvelopeType } from "../../types";
import type { EnvelopeType } from "../../types";

export type ServerMessageType = EnvelopeType | "flags" | "subscribed" | "heartbeat" | "pong" | "resumed" | "error";

export interface ServerMessage {
  type: string;
  [field: string]: unknown;
}

export interface FlagsMessage extends ServerMessage {
  type: "flags";
  client?: string;
  features: Record<string, unknown>;
}

/**
 * The end of a resume's answer (docs/contracts.md, "Resuming a stream"): how many envelopes were
 * replayed and how many streams were sent as their current state (`resync`). `healed` marks one
 * the server sent unasked, after its own path to Redis broke and healed.
 */
export interface ResumedMessage extends ServerMessage {
  type: "resumed";
  replayed: number;
  resynced: number;
  healed?: boolean;
}

/** One entry of a resume's `since`: the last `seq` the page holds for one (type, key). */
export interface ResumePoint {
  type: EnvelopeType;
  key: string;
  seq: number;
}

/** The contract's limits on `since`: a resume that breaks any of them is refused whole. */
export const RESUME_MAX_STREAMS = 1000;
const KEY_MAX_LENGTH = 64; // characters (code points), as the server counts them
/** The longest frame the server reads (over it, it closes with 1009): a resume names the streams that fit. */
export const FRAME_MAX_BYTES = 65536;
const utf8 = new TextEncoder();

/** A frame as a message, or null when it is not a JSON object with a string `type`. */
export function parseFrame(raw: unknown): ServerMessage | null {
  let message: unknown;
  try {
    message = typeof raw === "string" ? JSON.parse(raw) : null;
  } catch {
    message = null;
  }
  if (!message || typeof message !== "object" || typeof (message as ServerMessage).type !== "string") return null;
  return message as ServerMessage;
}

export function isFlagsMessage(message: ServerMessage): message is FlagsMessage {
  return message.type === "flags" && !!message.features && typeof message.features === "object";
}

export function isResumedMessage(message: ServerMessage): message is ResumedMessage {
  return message.type === "resumed" && count(message.replayed) && count(message.resynced);
}

/** Whether an envelope arrived marked `"resync": true` (its current state, not the next version). */
export function isResync(message: ServerMessage): boolean {
  return message.resync === true;
}

/**
 * The `resume` command for `points`: one entry per stream (the highest `seq` when a stream is
 * named twice), in a stable order, and only entries the server accepts. The server refuses a
 * resume whole when one entry is malformed, so a bad entry is left out here rather than costing
 * every other stream its replay; a stream left out is answered with its current state, which is
 * what a page that holds nothing valid for it needs anyway.
 */
export function resumeCommand(points: Iterable<ResumePoint>): { action: "resume"; since: ResumePoint[] } {
  const best = new Map<string, ResumePoint>();
  for (const point of points) {
    if (!isEnvelopeType(point.type)) continue;
    if (typeof point.key !== "string" || point.key.length < 1 || [...point.key].length > KEY_MAX_LENGTH) continue;
    if (!Number.isSafeInteger(point.seq) || point.seq < 0) continue;
    const id = `${point.type}|${point.key}`;
    const held = best.get(id);
    if (!held || point.seq > held.seq) best.set(id, { type: point.type, key: point.key, seq: point.seq });
  }
  const since = [...best.values()].sort((a, b) =>
    a.type !== b.type ? (a.type < b.type ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
  );
  // Far more streams than the page shows; past either limit, the rest are answered as resyncs.
  const kept: ResumePoint[] = [];
  let room = FRAME_MAX_BYTES - utf8.encode(JSON.stringify({ action: "resume", since: [] })).length + 1;
  for (const point of since.slice(0, RESUME_MAX_STREAMS)) {
    room -= utf8.encode(JSON.stringify(point)).length + 1; // with the comma before it
    if (room < 0) break;
    kept.push(point);
  }
  return { action: "resume", since: kept };
}

function count(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}
