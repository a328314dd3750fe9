/**
 * When to try the connection again: "full jitter" exponential back-off,
 * `random() * min(cap, base * 2^attempt)` (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"), so a backend restart is not met by every client at the same instant.
 *
 * The attempt count starts over once a connection has stayed up for `stableMs`, not merely
 * opened: a server that accepts and drops at once still backs off.
 */

export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  /** How long a connection must stay up before the back-off starts from the beginning again. */
  stableMs?: number;
  /** A number in [0, 1): seed it in tests. */
  random?: () => number;
  now?: () => number;
}

/** The full-jitter delay before reconnect number `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

export class Backoff {
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly stableMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private attempt = 0;
  private upSince: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  /** The delay of the retry now scheduled, if any (for the monitor and tests). */
  pendingDelay: number | null = null;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 30_000;
    this.stableMs = options.stableMs ?? 10_000;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** Forget past failures (a fresh start). */
  reset(): void {
    this.attempt = 0;
  }

  /** A connection opened: it counts as stable from now on. */
  connected(): void {
    this.upSince = this.now();
  }

  /** The connection ended: if it had stayed up long enough, the next retry is quick again. */
  disconnected(): void {
    if (this.upSince !== null && this.now() - this.upSince >= this.stableMs) this.attempt = 0;
    this.upSince = null;
  }

  /** Run `retry` after the next delay (replacing a retry already scheduled); returns the delay. */
  schedule(retry: () => void): number {
    this.cancel();
    const delay = backoffDelay(this.attempt, this.baseMs, this.capMs, this.random);
    this.attempt += 1;
    this.pendingDelay = delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pendingDelay = null;
      retry();
    }, delay);
    return delay;
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.pendingDelay = null;
  }
}
