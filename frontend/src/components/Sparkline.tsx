import type { Sample } from "../services/series";

/**
 * A small inline-SVG line of samples over a time span. SVG rather than a lightweight-charts
 * series: the page draws nine of these, and each chart instance brings canvases, a resize
 * observer, a render loop and axes to hide; a path of a few hundred points is one element,
 * crisp at any zoom, and its numbers stay in the DOM (the label says the latest and largest).
 */

export interface SparklineProps {
  samples: readonly Sample[];
  /** The span drawn, ms since the epoch; default: the samples' own. */
  from?: number;
  to?: number;
  /** What it shows, for the accessible name ("positions messages per second, last 5 minutes"). */
  label: string;
  format: (value: number) => string;
  testId: string;
  /** Scale from zero (rates, lags) rather than from the smallest value (equity). */
  zeroBased?: boolean;
  width?: number;
  height?: number;
}

/** The SVG path of `samples`: `M`/`L` segments, broken at holes (null values). Exported for tests. */
export function sparkPath(
  samples: readonly Sample[],
  box: { from: number; to: number; width: number; height: number; min: number; max: number },
): string {
  const spanT = Math.max(1, box.to - box.from);
  const spanV = box.max - box.min || 1;
  const pad = 1.5; // keep the stroke inside the box
  let d = "";
  let pen = false;
  for (const s of samples) {
    if (s.v === null || s.t < box.from || s.t > box.to) {
      pen = false;
      continue;
    }
    const x = ((s.t - box.from) / spanT) * box.width;
    const y = pad + (1 - (s.v - box.min) / spanV) * (box.height - 2 * pad);
    d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
    pen = true;
  }
  return d;
}

export function Sparkline({
  samples,
  from,
  to,
  label,
  format,
  testId,
  zeroBased = false,
  width = 120,
  height = 26,
}: SparklineProps) {
  const values = samples.map((s) => s.v).filter((v): v is number => v !== null);
  const first = samples[0]?.t ?? 0;
  const last = samples[samples.length - 1]?.t ?? first;
  const start = from ?? first;
  const end = to ?? last;
  const max = values.length ? Math.max(...values) : 0;
  const min = zeroBased ? 0 : values.length ? Math.min(...values) : 0;
  const latest = [...samples].reverse().find((s) => s.v !== null)?.v ?? null;
  const name =
    values.length === 0
      ? `${label}: no data yet`
      : `${label}: latest ${latest === null ? "—" : format(latest)}, highest ${format(max)}`;
  const d = sparkPath(samples, {
    from: start,
    to: end,
    width,
    height,
    min,
    max: zeroBased ? Math.max(max, 1e-9) : max,
  });
  return (
    <svg
      className="spark"
      role="img"
      aria-label={name}
      data-testid={testId}
      data-points={samples.length}
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      preserveAspectRatio="none"
    >
      <title>{name}</title>
      <line className="spark-base" x1={0} x2={width} y1={height - 0.5} y2={height - 0.5} />
      {d ? <path className="spark-line" d={d} /> : null}
    </svg>
  );
}
