/**
 * A recording stand-in for `lightweight-charts` in jsdom, which has no canvas (vite.config.ts
 * aliases the package to this file for Vitest only). It keeps what a component gave each series,
 * and refuses an `update` older than the last point as the real library does, so tests check
 * what the chart was fed. The real drawing is tested in Chromium (tests/e2e).
 */

export const ColorType = { Solid: "solid", VerticalGradient: "gradient" } as const;
export const CrosshairMode = { Normal: 0, Magnet: 1, Hidden: 2, MagnetOHLC: 3 } as const;
export const LineStyle = { Solid: 0, Dotted: 1, Dashed: 2, LargeDashed: 3, SparseDotted: 4 } as const;
export const CandlestickSeries = { type: "Candlestick" } as const;
export const LineSeries = { type: "Line" } as const;

export interface FakePoint {
  time: number;
  [field: string]: unknown;
}

export class FakeSeries {
  data: FakePoint[] = [];
  setDataCalls = 0;
  updateCalls = 0;

  constructor(
    readonly type: string,
    public options: Record<string, unknown>,
  ) {}

  setData(data: FakePoint[]): void {
    this.setDataCalls += 1;
    this.data = [...data];
  }

  update(point: FakePoint): void {
    this.updateCalls += 1;
    const last = this.data[this.data.length - 1];
    if (last && point.time < last.time) throw new Error("Cannot update oldest data");
    if (last && point.time === last.time) this.data[this.data.length - 1] = point;
    else this.data.push(point);
  }

  applyOptions(options: Record<string, unknown>): void {
    this.options = { ...this.options, ...options };
  }
}

export class FakeChart {
  readonly series: FakeSeries[] = [];
  removed = false;

  constructor(
    readonly container: HTMLElement,
    public options: Record<string, unknown>,
  ) {}

  addSeries(definition: { type: string }, options: Record<string, unknown> = {}): FakeSeries {
    const series = new FakeSeries(definition.type, options);
    this.series.push(series);
    return series;
  }

  applyOptions(options: Record<string, unknown>): void {
    this.options = { ...this.options, ...options };
  }

  timeScale() {
    return { fitContent: () => {}, scrollToRealTime: () => {} };
  }

  remove(): void {
    this.removed = true;
  }
}

/** Every chart created since the last `resetCharts()`, oldest first. */
export const charts: FakeChart[] = [];

export function resetCharts(): void {
  charts.length = 0;
}

export function createChart(container: HTMLElement, options: Record<string, unknown> = {}): FakeChart {
  const chart = new FakeChart(container, options);
  charts.push(chart);
  return chart;
}
