/**
 * The part of the browser WebSocket the manager touches, so tests can inject a fake, and the
 * close codes of the stream.
 */

export interface CloseEventLike {
  code: number;
  reason: string;
}

export interface MessageEventLike {
  data: unknown;
}

/** The part of the browser WebSocket the manager uses (tests inject a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: CloseEventLike) => void) | null;
  onmessage: ((ev: MessageEventLike) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketCtor = new (url: string) => WebSocketLike;

/** Close codes (backend/global_markets/consumers.py). */
export const CLOSE_UNAUTHENTICATED = 4401;
/** Our own code when we drop a connection that stopped answering pings. */
export const CLOSE_PONG_TIMEOUT = 4000;
export const CONNECTING = 0;
export const OPEN = 1;

/**
 * Close `ws`; one still connecting is closed as soon as it opens, because closing it mid-handshake
 * makes the browser log "WebSocket is closed before the connection is established" (React's
 * development double mount, a fast logout).
 */
export function closeQuietly(ws: WebSocketLike, code: number, reason: string): void {
  if (ws.readyState === CONNECTING) {
    ws.onopen = () => ws.close(code, reason);
    return;
  }
  ws.close(code, reason);
}

export function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onclose = null;
  ws.onmessage = null;
  ws.onerror = null;
}
