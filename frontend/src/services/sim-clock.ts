/**
 * The simulated market clock, as the page can know it.
 *
 * The backend's market runs at `THOR_SIM_SPEED` (60x by default: one simulated minute per
 * second), so its times run ahead of the wall clock. Every envelope carries both clocks: `ts`
 * is the wall-clock time the state was written, `data.as_of` the simulated time it is of
 * (backend/thor_trading/messages.py). Two states of one stream therefore measure the speed:
 * (as_of2 - as_of1) / (ts2 - ts1). The monitor's `sim_speed`, when the backend reports it, is
 * used instead of the measurement.
 */

const SAMPLES = 9;
/** Shorter wall-clock steps are too coarse to measure with (ts has millisecond resolution). */
const MIN_WALL_MS = 200;

/** A measured speed, made readable: within 5 % of a whole number it is that number (`60`), else one decimal. */
export function roundSpeed(speed: number): number {
  const whole = Math.round(speed);
  if (whole > 0 && Math.abs(speed - whole) / whole < 0.05) return whole;
  return Math.round(speed * 10) / 10;
}

function median(values: readonly number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? null) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export class SimClockEstimate {
  private readonly last = new Map<string, { wall: number; sim: number }>();
  private samples: number[] = [];
  /** The newest simulated time seen (ms since the epoch). */
  marketTime: number | null = null;

  /** One state of stream `stream`: its `ts` (wall clock) and `as_of` (simulated), both ISO strings. */
  observe(stream: string, ts: unknown, asOf: unknown): void {
    const wall = typeof ts === "string" ? Date.parse(ts) : Number.NaN;
    const sim = typeof asOf === "string" ? Date.parse(asOf) : Number.NaN;
    if (!Number.isFinite(wall) || !Number.isFinite(sim)) return;
    if (this.marketTime === null || sim > this.marketTime) this.marketTime = sim;
    const before = this.last.get(stream);
    this.last.set(stream, { wall, sim });
    if (!before) return;
    const dWall = wall - before.wall;
    const dSim = sim - before.sim;
    if (dWall < MIN_WALL_MS || dSim <= 0) return;
    this.samples = [...this.samples.slice(-(SAMPLES - 1)), dSim / dWall];
  }

  /** The measured speed (simulated seconds per wall-clock second), or null before two states of a stream. */
  speed(): number | null {
    const m = median(this.samples);
    return m === null ? null : roundSpeed(m);
  }
}

/** The clock's label: `simulated market time (60× speed)`, or the same with "speed not known yet". */
export function simClockLabel(speed: number | null): string {
  if (speed === null) return "simulated market time (speed not known yet)";
  return `simulated market time (${speed}× speed)`;
}
