/** What the server sends on the stream, and how a raw frame becomes one. */

import type { EnvelopeType } from "../../types";

export type ServerMessageType = EnvelopeType | "flags" | "subscribed" | "heartbeat" | "pong" | "error";

export interface ServerMessage {
  type: string;
  [field: string]: unknown;
}

export interface FlagsMessage extends ServerMessage {
  type: "flags";
  client?: string;
  features: Record<string, unknown>;
}

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
