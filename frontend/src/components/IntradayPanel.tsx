import { useId, useState } from "react";

import { useFeatureData } from "../hooks/useWebSocketAware";
import { SYMBOLS } from "../types";
import type { Bar, Vwap } from "../types";
import { formatInteger, formatPrice, formatTime } from "./format";
import { Panel } from "./Panel";

/** The current intraday bar and VWAP of one symbol, picked with the "Symbol" select. */
export function IntradayPanel({ initialSymbol = "ES" }: { initialSymbol?: string }) {
  const [symbol, setSymbol] = useState(initialSymbol);
  const selectId = useId();
  const view = useFeatureData("intraday", { symbol });
  const barEntry = view.entries.find((e) => e.envelope.type === "intraday_bar");
  const vwapEntry = view.entries.find((e) => e.envelope.type === "vwap");
  const bar = barEntry?.envelope.data as Bar | undefined;
  const vwap = vwapEntry?.envelope.data as Vwap | undefined;
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
  return (
    <Panel
      title="Intraday"
      view={view}
      seq={barEntry?.envelope.seq ?? vwapEntry?.envelope.seq ?? null}
      controls={controls}
      ready={bar !== undefined || vwap !== undefined}
    >
      <p className="subtle">
        {symbol} · bar from {formatTime(bar?.start)}
      </p>
      <dl className="figures figures-compact">
        <div className="figure">
          <dt>Open</dt>
          <dd className="num" data-testid="bar-open">{formatPrice(bar?.open)}</dd>
        </div>
        <div className="figure">
          <dt>High</dt>
          <dd className="num" data-testid="bar-high">{formatPrice(bar?.high)}</dd>
        </div>
        <div className="figure">
          <dt>Low</dt>
          <dd className="num" data-testid="bar-low">{formatPrice(bar?.low)}</dd>
        </div>
        <div className="figure">
          <dt>Close</dt>
          <dd className="num" data-testid="bar-close">{formatPrice(bar?.close)}</dd>
        </div>
        <div className="figure">
          <dt>Volume</dt>
          <dd className="num" data-testid="bar-volume">{formatInteger(bar?.volume)}</dd>
        </div>
        <div className="figure figure-main">
          <dt>VWAP</dt>
          <dd className="num" data-testid="vwap">{formatPrice(vwap?.vwap)}</dd>
        </div>
        <div className="figure">
          <dt>Cum. volume</dt>
          <dd className="num" data-testid="cum-volume">{formatInteger(vwap?.cum_volume)}</dd>
        </div>
        <div className="figure">
          <dt>VWAP seq</dt>
          <dd className="num" data-testid="vwap-seq">{vwapEntry?.envelope.seq ?? "—"}</dd>
        </div>
      </dl>
    </Panel>
  );
}
