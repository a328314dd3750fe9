import { useNow } from "../hooks/useNow";
import { useLiveRuntime, useWebSocket } from "../hooks/useWebSocket";
import { getDataSource, useCutoverFlags } from "../hooks/useWebSocketAware";
import { FEATURES } from "../types";
import { formatRate } from "./format";

/**
 * Per feature: its cutover stage, where this client renders it from, the WebSocket traffic seen
 * (also while shadowed), gaps, resyncs, duplicates and the flag version; plus the connection
 * itself and what its resumes did. Resyncs stand beside gaps because they are the healed kind of
 * the same jump (docs/contracts.md, "Resyncs are counted apart from gaps"): a gap is state the
 * page missed, a resync state the server brought it back to.
 */
export function WebSocketShadowMonitor() {
  const runtime = useLiveRuntime();
  const { state, manager } = useWebSocket();
  const flags = useCutoverFlags();
  useNow(1000); // rates decay without messages: re-read the counters every second
  const counters = manager.counters();
  const rest = runtime.restRequestCounts();
  const resumes = manager.resumes;
  return (
    <section aria-label="Shadow monitor" className="panel monitor">
      <header className="panel-head">
        <h2>Shadow monitor</h2>
        <p className="monitor-connection">
          Connection <span className={`conn conn-${state}`} data-testid="monitor-connection-state">{state}</span>
          <span className="subtle">
            {" "}
            · opened {manager.connections} · pong timeouts {manager.pongTimeouts}
            {manager.nextReconnectDelay !== null ? ` · retry in ${(manager.nextReconnectDelay / 1000).toFixed(1)} s` : ""}
            {" "}· client <code>{runtime.clientId}</code>
          </span>
        </p>
        <p className="monitor-connection subtle" data-testid="monitor-resumes">
          Resumes sent <span data-testid="monitor-resumes-sent">{resumes.sent}</span>
          {" "}· answered <span data-testid="monitor-resumes-answered">{resumes.answered}</span>
          {" "}· replayed <span data-testid="monitor-replayed">{resumes.replayed}</span>
          {" "}· resynced <span data-testid="monitor-resynced">{resumes.resynced}</span>
          {" "}· healed <span data-testid="monitor-healed">{resumes.healed}</span>
        </p>
      </header>
      <div className="table-wrap">
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
      </div>
    </section>
  );
}
