import { useId, useState } from "react";

import { useHistory } from "../hooks/useDesk";
import { useFeatureData } from "../hooks/useWebSocketAware";
import { SYMBOLS } from "../types";
import type { Bar, Vwap } from "../types";
import { CandleChart } from "./CandleChart";
import { formatInteger, formatPrice, formatTime } from "./format";
import { Panel } from "./Panel";

const ATTRIBUTION = "TradingView Lightweight Charts™, Copyright (c) 2025 TradingView, Inc.";

/**
 * One symbol, picked with the "Symbol" select: the current bar and VWAP as figures, and a chart
 * of one-minute candles with the VWAP line, accumulated from whichever source the feature reads.
 */
export function IntradayPanel({ initialSymbol = "ES" }: { initialSymbol?: string }) {
  const [symbol, setSymbol] = useState(initialSymbol);
  const selectId = useId();
  const view = useFeatureData("intraday", { symbol });
  const history = useHistory();
  const barEntry = view.entries.find((e) => e.envelope.type === "intraday_bar");
  const vwapEntry = view.entries.find((e) => e.envelope.type === "vwap");
  const bar = barEntry?.envelope.data as Bar | undefined;
  const vwap = vwapEntry?.envelope.data as Vwap | undefined;
  const candles = history.candles(symbol);
  const line = history.vwap(symbol);
  const controls = (
    <div className="controls">
      <label htmlFor={selectId}>Symbol</label>
      <select id={selectId} value={symbol} onChange={(e) => setSymbol(e.target.value)}>
        {SYMBOLS.map((s) => (
          <option key={s} value={s}>
            {s}
          </option>
        ))}
      </select>
    </div>
  );
  const attribution = (
    <a
      className="attribution"
      href="https://www.tradingview.com/"
      target="_blank"
      rel="noopener noreferrer"
      title={ATTRIBUTION}
    >
      Charts by TradingView
    </a>
  );
  return (
    <Panel
      title="Intraday"
      view={view}
      seq={barEntry?.envelope.seq ?? vwapEntry?.envelope.seq ?? null}
      controls={controls}
      ready={bar !== undefined || vwap !== undefined}
      className="panel-intraday"
      meta={attribution}
    >
      <dl className="figures figures-inline">
        <div className="figure">
          <dt>Bar</dt>
          <dd>{formatTime(bar?.start)}</dd>
        </div>
        <div className="figure">
          <dt>Open</dt>
          <dd className="num" data-testid="bar-open">
            {formatPrice(bar?.open, symbol)}
          </dd>
        </div>
        <div className="figure">
          <dt>High</dt>
          <dd className="num" data-testid="bar-high">
            {formatPrice(bar?.high, symbol)}
          </dd>
        </div>
        <div className="figure">
          <dt>Low</dt>
          <dd className="num" data-testid="bar-low">
            {formatPrice(bar?.low, symbol)}
          </dd>
        </div>
        <div className="figure">
          <dt>Close</dt>
          <dd className="num" data-testid="bar-close">
            {formatPrice(bar?.close, symbol)}
          </dd>
        </div>
        <div className="figure">
          <dt>Volume</dt>
          <dd className="num" data-testid="bar-volume">
            {formatInteger(bar?.volume)}
          </dd>
        </div>
        <div className="figure figure-vwap">
          <dt>VWAP</dt>
          <dd className="num" data-testid="vwap">
            {formatPrice(vwap?.vwap, symbol)}
          </dd>
        </div>
        <div className="figure">
          <dt>Cum. volume</dt>
          <dd className="num" data-testid="cum-volume">
            {formatInteger(vwap?.cum_volume)}
          </dd>
        </div>
        <div className="figure">
          <dt>VWAP seq</dt>
          <dd className="num" data-testid="vwap-seq">
            {vwapEntry?.envelope.seq ?? "—"}
          </dd>
        </div>
      </dl>
      <p className="visually-hidden">
        Chart of {symbol}: {candles.length} one-minute candles in simulated market time
        {candles.length ? `, last close ${formatPrice(candles[candles.length - 1]?.close, symbol)}` : ""}
        {line.length ? `, VWAP ${formatPrice(line[line.length - 1]?.value, symbol)}` : ""}.
      </p>
      <CandleChart symbol={symbol} candles={candles} vwap={line} />
    </Panel>
  );
}
