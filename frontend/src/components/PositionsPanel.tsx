import { useFeatureData } from "../hooks/useWebSocketAware";
import type { Positions } from "../types";
import { formatInteger, formatMoney, formatPrice } from "./format";
import { Panel } from "./Panel";
import { TableWrap } from "./TableWrap";

export function PositionsPanel({ account }: { account: string | undefined }) {
  const view = useFeatureData("positions", { account });
  const data = view.entries.find((e) => e.envelope.type === "positions")?.envelope.data as Positions | undefined;
  return (
    <Panel title="Positions" view={view} ready={data !== undefined} className="panel-positions">
      {data ? (
        <TableWrap label="Positions table">
          <table>
            <caption className="visually-hidden">Open positions of {data.account}</caption>
            <thead>
              <tr>
                <th scope="col">Symbol</th>
                <th scope="col" className="num">Qty</th>
                <th scope="col" className="num">Avg price</th>
                <th scope="col" className="num">Last</th>
                <th scope="col" className="num">Market value</th>
                <th scope="col" className="num">Unrealized P&amp;L</th>
              </tr>
            </thead>
            <tbody>
              {data.positions.length === 0 ? (
                <tr>
                  <td colSpan={6} className="placeholder">
                    No open positions
                  </td>
                </tr>
              ) : (
                data.positions.map((p) => (
                  <tr key={p.symbol} data-symbol={p.symbol}>
                    <td>{p.symbol}</td>
                    <td className="num">{formatInteger(p.quantity)}</td>
                    <td className="num">{formatPrice(p.avg_price, p.symbol)}</td>
                    <td className="num">{formatPrice(p.last_price, p.symbol)}</td>
                    <td className="num">{formatMoney(p.market_value)}</td>
                    <td className={`num${p.unrealized_pnl < 0 ? " negative" : p.unrealized_pnl > 0 ? " positive" : ""}`}>
                      {formatMoney(p.unrealized_pnl)}
                    </td>
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
    </Panel>
  );
}
