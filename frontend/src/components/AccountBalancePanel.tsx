import { useHistory } from "../hooks/useDesk";
import { useFeatureData } from "../hooks/useWebSocketAware";
import type { Balance } from "../types";
import { formatMoney, formatTime } from "./format";
import { Panel } from "./Panel";
import { Sparkline } from "./Sparkline";

const ROWS: Array<[label: string, field: keyof Balance, testId: string]> = [
  ["Equity", "equity", "equity"],
  ["Cash", "cash", "cash"],
  ["Buying power", "buying_power", "buying-power"],
  ["Unrealized P&L", "unrealized_pnl", "unrealized-pnl"],
  ["Realized P&L", "realized_pnl", "realized-pnl"],
  ["Margin used", "margin_used", "margin-used"],
];

/** The account's balance figures and a sparkline of its equity since the page opened. */
export function AccountBalancePanel({ account }: { account: string | undefined }) {
  const view = useFeatureData("account_balance", { account });
  const history = useHistory();
  const balance = view.entries.find((e) => e.envelope.type === "account_balance")?.envelope.data as Balance | undefined;
  const equity = history.equity(balance?.account ?? account ?? "");
  return (
    <Panel title="Account balance" view={view} ready={balance !== undefined} className="panel-account">
      {balance ? (
        <>
          <p className="subtle">
            {balance.account} · {balance.currency} · as of {formatTime(balance.as_of)}
          </p>
          <dl className="figures">
            {ROWS.map(([label, field, testId]) => {
              const value = balance[field] as number;
              const sign = field.endsWith("pnl") ? (value < 0 ? " negative" : value > 0 ? " positive" : "") : "";
              return (
                <div key={field} className={field === "equity" ? "figure figure-main" : "figure"}>
                  <dt>{label}</dt>
                  <dd className={`num${sign}`} data-testid={testId}>
                    {formatMoney(value)}
                  </dd>
                </div>
              );
            })}
          </dl>
          <div className="equity-spark">
            <span className="subtle">Equity since login</span>
            <Sparkline
              samples={equity}
              label={`${balance.account} equity since login`}
              format={formatMoney}
              testId="equity-spark"
              width={240}
              height={34}
            />
          </div>
        </>
      ) : null}
    </Panel>
  );
}
