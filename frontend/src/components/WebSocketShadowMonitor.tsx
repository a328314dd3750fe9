import { useState } from "react";

import { useNow } from "../hooks/useNow";
import { useDesk, useOps, useTelemetry } from "../hooks/useDesk";
import { useLiveRuntime, useWebSocket } from "../hooks/useWebSocket";
import { getDataSource, useCutoverFlags } from "../hooks/useWebSocketAware";
import { WINDOW_MS } from "../services/telemetry";
import { FEATURES } from "../types";
import type { Feature, Stage } from "../types";
import { formatAge, formatRate } from "./format";
import { StaleNote } from "./Panel";
import { ParityRow } from "./ParityRow";
import { StageDialog } from "./StageDialog";
import type { StageMove } from "./StageDialog";
import { TableWrap } from "./TableWrap";

/**
 * The operations view of the cutover. On top, per feature, parity at a glance from `GET
 * /api/ops/monitor` (polled every 2 s): stage, the stored verdict with its age and reason,
 * paired/mismatched, gaps/resyncs, lag, the last mismatching path, a ramp or guard in progress,
 * sparklines of what this page receives (messages/s, freshness lag; last 5 minutes) and, for
 * operators, the stage moves the stage machine allows, each confirmed in a dialog.
 *
 * Below, the stream as this page sees it: the connection and what its resumes did, and per
 * feature its flag, source, traffic (also while shadowed), gaps, resyncs and duplicates.
 * Resyncs stand beside gaps because they are the healed kind of the same jump (docs/contracts.md,
 * "Resyncs are counted apart from gaps"): a gap is state the page missed, a resync state the
 * server brought it back to.
 */
export function WebSocketShadowMonitor() {
  const runtime = useLiveRuntime();
  const desk = useDesk();
  const { state, manager } = useWebSocket();
  const flags = useCutoverFlags();
  const ops = useOps();
  const telemetry = useTelemetry();
  const now = useNow(1000); // rates decay without messages: re-read the counters every second
  const [move, setMove] = useState<{ move: StageMove; opener: HTMLElement } | null>(null);
  const counters = manager.counters();
  const rest = runtime.restRequestCounts();
  const resumes = manager.resumes;
  const byFeature = new Map(ops.data?.features.map((f) => [f.feature, f]) ?? []);
  const operator = ops.data?.operator === true;
  const sinceAnswerS = ops.receivedAt === null ? 0 : Math.max(0, now - ops.receivedAt) / 1000;
  const disconnectedAt = runtime.disconnectedAt();
  const staleSince =
    ops.failedSince !== null && disconnectedAt !== null
      ? Math.min(ops.failedSince, disconnectedAt)
      : (ops.failedSince ?? disconnectedAt);

  const open = (feature: Feature, to: Stage, opener: HTMLElement) => {
    const f = byFeature.get(feature);
    if (!f) return;
    setMove({ move: { feature, from: f.stage, to, percent: f.percent, verdict: f.verdict }, opener });
  };

  return (
    <section
      aria-label="Shadow monitor"
      className="panel monitor"
      data-stale={staleSince !== null ? "true" : undefined}
    >
      <header className="panel-head">
        <h2>Shadow monitor</h2>
        <p className="monitor-connection">
          Connection{" "}
          <span className={`conn conn-${state}`} data-testid="monitor-connection-state">
            {state}
          </span>
          <span className="subtle" data-testid="ops-status">
            {" "}
            · parity{" "}
            {ops.error
              ? `not read: ${ops.error}`
              : ops.receivedAt !== null
                ? `read ${formatAge(ops.receivedAt, Math.max(now, ops.receivedAt))}`
                : "loading…"}
            {ops.data ? (operator ? " · you may change stages" : " · read-only (not an operator)") : ""}
          </span>
          {staleSince !== null ? (
            <>
              {" "}
              <StaleNote
                since={staleSince}
                why={
                  ops.failedSince !== null
                    ? `The ops monitor could not be read (${ops.error ?? "no answer"}); it is tried again every 2 s`
                    : "The WebSocket is not connected: rates and lags are not being measured"
                }
              />
            </>
          ) : null}
        </p>
      </header>
      <ul className="parity" aria-label="Parity per feature">
        {FEATURES.map((feature) => (
          <ParityRow
            key={feature}
            feature={feature}
            ops={byFeature.get(feature)}
            sinceAnswerS={sinceAnswerS}
            rate={telemetry.rate(feature)}
            lag={telemetry.lag(feature)}
            from={now - WINDOW_MS}
            to={now}
            operator={operator}
            onMove={open}
          />
        ))}
      </ul>
      <h3 className="monitor-sub">Stream, as this page sees it</h3>
      <p className="monitor-connection subtle">
        opened {manager.connections} · pong timeouts {manager.pongTimeouts}
        {manager.nextReconnectDelay !== null ? ` · retry in ${(manager.nextReconnectDelay / 1000).toFixed(1)} s` : ""} ·
        client <code>{runtime.clientId}</code>
      </p>
      <p className="monitor-connection subtle" data-testid="monitor-resumes">
        Resumes sent <span data-testid="monitor-resumes-sent">{resumes.sent}</span> · answered{" "}
        <span data-testid="monitor-resumes-answered">{resumes.answered}</span> · replayed{" "}
        <span data-testid="monitor-replayed">{resumes.replayed}</span> · resynced{" "}
        <span data-testid="monitor-resynced">{resumes.resynced}</span> · healed{" "}
        <span data-testid="monitor-healed">{resumes.healed}</span>
      </p>
      <TableWrap label="Stream table">
        <table>
          <caption className="visually-hidden">WebSocket cutover state per feature</caption>
          <thead>
            <tr>
              <th scope="col">Feature</th>
              <th scope="col">Stage</th>
              <th scope="col">Source</th>
              <th scope="col" className="num">Messages</th>
              <th scope="col" className="num">Msgs/s</th>
              <th scope="col" className="num">Gaps</th>
              <th scope="col" className="num">Resyncs</th>
              <th scope="col" className="num">Duplicates</th>
              <th scope="col" className="num">Flag version</th>
              <th scope="col" className="num">Last seq</th>
              <th scope="col" className="num">REST requests</th>
              <th scope="col" className="num">Live %</th>
            </tr>
          </thead>
          <tbody>
            {FEATURES.map((feature) => {
              const flag = flags[feature];
              const c = counters[feature];
              const source = getDataSource(feature, flags);
              return (
                <tr key={feature} data-feature={feature}>
                  <th scope="row">
                    <code>{feature}</code>
                  </th>
                  <td
                    data-col="stage"
                    className={`stage stage-${flag.stage}`}
                    title={flag.override ? `forced by the backend's environment (${flag.override})` : undefined}
                  >
                    {flag.stage}
                  </td>
                  <td data-col="source">{source}</td>
                  <td data-col="messages" className="num">{c.messages}</td>
                  <td data-col="rate" className="num">{formatRate(c.rate)}</td>
                  <td data-col="gaps" className={c.gaps ? "num negative" : "num"}>{c.gaps}</td>
                  <td data-col="resyncs" className="num">{c.resyncs}</td>
                  <td data-col="duplicates" className={c.duplicates ? "num negative" : "num"}>{c.duplicates}</td>
                  <td data-col="version" className="num">{flag.version}</td>
                  <td data-col="last-seq" className="num">{c.lastSeq ?? "—"}</td>
                  <td data-col="rest" className="num">{rest[feature]}</td>
                  <td data-col="percent" className="num">{flag.percent}%</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </TableWrap>
      {move ? (
        <StageDialog
          move={move.move}
          returnFocus={move.opener}
          onClose={() => setMove(null)}
          onSubmit={async (request) => {
            await desk.ops.changeStage(request);
          }}
        />
      ) : null}
    </section>
  );
}
