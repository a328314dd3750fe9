import { useEffect, useRef, useState } from "react";

import { DeskContext } from "../hooks/useDesk";
import { FeatureFlagsProvider } from "../hooks/useFlags";
import { LiveRuntimeContext, useConnectionState } from "../hooks/useWebSocket";
import { Desk } from "../services/desk";
import type { LiveRuntime } from "../services/live";
import { AccountBalancePanel } from "./AccountBalancePanel";
import { GlobalMarketsPanel } from "./GlobalMarketsPanel";
import { IntradayPanel } from "./IntradayPanel";
import { PositionsPanel } from "./PositionsPanel";
import { SimClock } from "./SimClock";
import { WebSocketShadowMonitor } from "./WebSocketShadowMonitor";

export type RuntimeFactory = (hooks: { onUnauthorized: () => void }) => LiveRuntime;

interface DashboardProps {
  username: string;
  accounts: string[];
  createRuntime: RuntimeFactory;
  onLogout: () => Promise<void>;
  onSessionLost: () => void;
}

/**
 * The page after login: one data runtime (WebSocket + REST) for the four panels and the monitor,
 * its flags bound to OpenFeature's `thor` domain for the flag hooks, and the desk beside it (ops
 * monitor poller, chart history, stream telemetry).
 */
export function Dashboard({ username, accounts, createRuntime, onLogout, onSessionLost }: DashboardProps) {
  const lost = useRef(onSessionLost);
  lost.current = onSessionLost;
  const [runtime] = useState(() => createRuntime({ onUnauthorized: () => lost.current() }));
  const [desk] = useState(() => new Desk(runtime, { onUnauthorized: () => lost.current() }));
  useEffect(() => {
    runtime.start();
    return () => runtime.stop();
  }, [runtime]);
  useEffect(() => {
    desk.start();
    return () => desk.stop();
  }, [desk]);
  const [account, setAccount] = useState<string | undefined>(accounts[0]);

  return (
    <LiveRuntimeContext.Provider value={runtime}>
      <FeatureFlagsProvider feed={runtime}>
        <DeskContext.Provider value={desk}>
          <div className="app">
            <header className="topbar">
              <h1>Thor</h1>
              <SimClock />
              <div className="topbar-right">
                <ConnectionIndicator />
                {accounts.length > 1 ? (
                  <span className="controls">
                    <label htmlFor="account-select">Account</label>
                    <select id="account-select" value={account} onChange={(e) => setAccount(e.target.value)}>
                      {accounts.map((a) => (
                        <option key={a} value={a}>
                          {a}
                        </option>
                      ))}
                    </select>
                  </span>
                ) : account ? (
                  <span className="subtle">{account}</span>
                ) : null}
                <span className="user">
                  Signed in as <strong data-testid="username">{username}</strong>
                </span>
                <button
                  type="button"
                  onClick={async () => {
                    // Close the stream and let the last polls finish before the session ends.
                    runtime.stop();
                    desk.stop();
                    await Promise.all([runtime.idle(), desk.idle()]);
                    await onLogout();
                  }}
                >
                  Log out
                </button>
              </div>
            </header>
            <main className="grid">
              <AccountBalancePanel account={account} />
              <PositionsPanel account={account} />
              <IntradayPanel />
              <GlobalMarketsPanel />
              <WebSocketShadowMonitor />
            </main>
          </div>
        </DeskContext.Provider>
      </FeatureFlagsProvider>
    </LiveRuntimeContext.Provider>
  );
}

function ConnectionIndicator() {
  const state = useConnectionState();
  return (
    <span className={`conn conn-${state}`}>
      <span className="dot" aria-hidden="true" />
      <span className="visually-hidden">WebSocket </span>
      <span data-testid="connection-state" role="status">
        {state}
      </span>
    </span>
  );
}
