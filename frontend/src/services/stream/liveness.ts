/**
 * Whether the connection still answers. Browsers cannot see protocol pings, so every
 * `intervalMs` the client sends `{"action": "ping"}`; no `pong` within `timeoutMs` means the
 * connection is dead (a half-open TCP connection never fires `close` in time), and `dead` is
 * called so the owner can drop it and reopen.
 */

export interface LivenessOptions {
  intervalMs?: number;
  timeoutMs?: number;
  /** Send one ping; false when it could not go out (then no pong is awaited). */
  ping: () => boolean;
  /** No pong came back in time. */
  dead: () => void;
}

export class Liveness {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly sendPing: () => boolean;
  private readonly dead: () => void;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;

  /** Connections declared dead because no pong came back. */
  timeouts = 0;

  constructor(options: LivenessOptions) {
    this.intervalMs = options.intervalMs ?? 15_000;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.sendPing = options.ping;
    this.dead = options.dead;
  }

  start(): void {
    this.stop();
    this.pingTimer = setInterval(() => this.ping(), this.intervalMs);
  }

  stop(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    if (this.pongTimer !== null) clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
  }

  /** A `pong` arrived. */
  pong(): void {
    if (this.pongTimer === null) return;
    clearTimeout(this.pongTimer);
    this.pongTimer = null;
  }

  private ping(): void {
    if (this.pongTimer !== null) return; // still waiting for the last one
    if (!this.sendPing()) return;
    this.pongTimer = setTimeout(() => {
      this.pongTimer = null;
      this.timeouts += 1;
      this.dead();
    }, this.timeoutMs);
  }
}
