import { useFeatureData } from "../hooks/useWebSocketAware";
import type { MarketStatus } from "../types";
import { formatDateTime } from "./format";
import { Panel } from "./Panel";
import { TableWrap } from "./TableWrap";

/**
 * The session column never repeats "open"/"closed" (the status column's words), so the row's
 * status reads unambiguously: the backend's sessions are pre, regular, post and closed.
 */
const SESSION_LABELS: Record<string, string> = { pre: "pre-market", regular: "regular", post: "after-hours", closed: "—" };

/** One row per exchange: open or closed, the session, and when that changes next. */
export function GlobalMarketsPanel() {
  const view = useFeatureData("global_market");
  const markets = view.entries
    .filter((e) => e.envelope.type === "market_status")
    .map((e) => ({ seq: e.envelope.seq, m: e.envelope.data as MarketStatus }));
  return (
    <Panel title="Global markets" view={view} ready={markets.length > 0} className="panel-markets">
      <TableWrap label="Exchange sessions table">
        <table>
          <caption className="visually-hidden">Exchange sessions</caption>
          <thead>
            <tr>
              <th scope="col">Market</th>
              <th scope="col" className="col-name">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Session</th>
              <th scope="col">Next change</th>
            </tr>
          </thead>
          <tbody>
            {markets.map(({ m, seq }) => (
              <tr key={m.market} data-market={m.market} data-seq={seq}>
                <td title={m.name}>{m.market}</td>
                <td className="col-name" title={m.name}>
                  {m.name}
                </td>
                <td>
                  <span className={m.is_open ? "status status-open" : "status status-closed"} data-testid="market-status">
                    {m.is_open ? "open" : "closed"}
                  </span>
                </td>
                <td>{SESSION_LABELS[m.session] ?? m.session}</td>
                <td title={m.next_change}>{formatDateTime(m.next_change)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
    </Panel>
  );
}
