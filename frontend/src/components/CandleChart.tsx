import { useEffect, useRef } from "react";
import { CandlestickSeries, ColorType, LineSeries, createChart } from "lightweight-charts";
import type { IChartApi, ISeriesApi, Time, UTCTimestamp } from "lightweight-charts";

import { tickDecimals, tickSize } from "../instruments";
import type { Candle, LinePoint } from "../services/series";

/**
 * One-minute candles and the VWAP line of one symbol, drawn by TradingView's lightweight-charts
 * (canvas). Times are simulated market time, shown in UTC. The library's logo link is off: the
 * panel carries the attribution link its licence asks for, outside this `aria-hidden` canvas
 * box, whose figures a screen reader gets from the panel's text instead.
 */

interface Props {
  symbol: string;
  candles: readonly Candle[];
  vwap: readonly LinePoint[];
}

interface Held {
  api: IChartApi;
  candles: ISeriesApi<"Candlestick">;
  vwap: ISeriesApi<"Line">;
  symbol: string | null;
  shownCandles: readonly Candle[];
  shownVwap: readonly LinePoint[];
}

const COLORS = { up: "#15803d", down: "#b91c1c", vwap: "#1d4ed8", grid: "#eef1f5", text: "#5b6676" };

/**
 * Bring `series` from showing `shown` to showing `next`: `update` for what was appended or
 * changed at the end (the usual tick), `setData` when the list was replaced or its head moved
 * (another symbol, or the oldest candle dropped off the kept window). Exported for tests.
 */
export function syncSeries<T extends { time: number }>(
  series: { setData(data: never[]): void; update(point: never): void },
  shown: readonly T[],
  next: readonly T[],
  toPoint: (item: T) => unknown,
): void {
  if (shown === next) return;
  const lastShown = shown[shown.length - 1];
  const lastNext = next[next.length - 1];
  if (!lastShown || !lastNext || next[0]?.time !== shown[0]?.time || lastNext.time < lastShown.time) {
    series.setData(next.map(toPoint) as never[]);
    return;
  }
  for (const item of next) {
    if (item.time >= lastShown.time) series.update(toPoint(item) as never);
  }
}

const candlePoint = (c: Candle) => ({
  time: c.time as UTCTimestamp as Time,
  open: c.open,
  high: c.high,
  low: c.low,
  close: c.close,
});
const linePoint = (p: LinePoint) => ({ time: p.time as UTCTimestamp as Time, value: p.value });

export function CandleChart({ symbol, candles, vwap }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const held = useRef<Held | null>(null);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const api = createChart(element, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "#ffffff" },
        textColor: COLORS.text,
        fontSize: 11,
        attributionLogo: false,
      },
      grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
      rightPriceScale: { borderVisible: false },
      // A fixed bar width: fitting a chart that starts with one candle would make it a slab.
      timeScale: { borderVisible: false, timeVisible: true, secondsVisible: false, rightOffset: 1, barSpacing: 8 },
    });
    const candleSeries = api.addSeries(CandlestickSeries, {
      upColor: COLORS.up,
      downColor: COLORS.down,
      borderVisible: false,
      wickUpColor: COLORS.up,
      wickDownColor: COLORS.down,
    });
    const vwapSeries = api.addSeries(LineSeries, {
      color: COLORS.vwap,
      lineWidth: 2,
      priceLineVisible: false,
      lastValueVisible: true,
      title: "VWAP",
    });
    held.current = { api, candles: candleSeries, vwap: vwapSeries, symbol: null, shownCandles: [], shownVwap: [] };
    return () => {
      held.current = null;
      api.remove();
    };
  }, []);

  useEffect(() => {
    const chart = held.current;
    if (!chart) return;
    if (chart.symbol !== symbol) {
      const priceFormat = {
        type: "price" as const,
        precision: tickDecimals(symbol) ?? 2,
        minMove: tickSize(symbol) ?? 0.01,
      };
      chart.candles.applyOptions({ priceFormat });
      chart.vwap.applyOptions({ priceFormat });
      chart.candles.setData(candles.map(candlePoint));
      chart.vwap.setData(vwap.map(linePoint));
      chart.api.timeScale().scrollToRealTime();
      chart.symbol = symbol;
    } else {
      syncSeries(chart.candles, chart.shownCandles, candles, candlePoint);
      syncSeries(chart.vwap, chart.shownVwap, vwap, linePoint);
    }
    chart.shownCandles = candles;
    chart.shownVwap = vwap;
  }, [symbol, candles, vwap]);

  return (
    <div ref={box} className="chart" data-testid="intraday-chart" data-candles={candles.length} aria-hidden="true" />
  );
}
