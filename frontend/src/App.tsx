import { useCallback, useEffect, useRef, useState } from "react";

import { Dashboard } from "./components/Dashboard";
import type { RuntimeFactory } from "./components/Dashboard";
import { LoginPage } from "./components/LoginPage";
import { createApi } from "./services/api";
import type { Api } from "./services/api";
import { LiveRuntime } from "./services/live";
import { getClientId } from "./services/websocket-cutover";

type Session =
  | { status: "loading" }
  | { status: "unreachable"; message: string }
  | { status: "anonymous"; notice: string | null }
  | { status: "authenticated"; username: string; accounts: string[]; generation: number };

interface AppProps {
  api?: Api;
  /** Builds the data runtime after login (tests inject fake WebSocket and fetch). */
  createRuntime?: RuntimeFactory;
}

const defaultApi = createApi();

export function App({ api = defaultApi, createRuntime }: AppProps) {
  const [session, setSession] = useState<Session>({ status: "loading" });
  // Each sign-in (or session re-check that finds one) mounts a fresh dashboard and runtime.
  const generation = useRef(0);
  const signedIn = useCallback((username: string, accounts: string[]) => {
    generation.current += 1;
    setSession({ status: "authenticated", username, accounts, generation: generation.current });
  }, []);

  const makeRuntime = useCallback<RuntimeFactory>(
    (hooks) => createRuntime?.(hooks) ?? new LiveRuntime({ api, clientId: getClientId(), ...hooks }),
    [api, createRuntime],
  );

  /** Ask the backend who is logged in (this also sets the `csrftoken` cookie). */
  const refresh = useCallback(
    async (notice: string | null = null) => {
      try {
        const info = await api.session();
        if (info.authenticated && info.username) {
          signedIn(info.username, info.accounts ?? []);
        } else {
          setSession({ status: "anonymous", notice });
        }
      } catch (e) {
        setSession({ status: "unreachable", message: e instanceof Error ? e.message : String(e) });
      }
    },
    [api, signedIn],
  );

  useEffect(() => {
    void refresh();
  }, [refresh]);

  const login = useCallback(
    async (username: string, password: string) => {
      const answer = await api.login(username, password);
      try {
        const info = await api.session();
        if (info.authenticated && info.username) {
          signedIn(info.username, info.accounts ?? []);
          return;
        }
      } catch {
        // Fall through with what the login answer said.
      }
      signedIn(answer.username ?? username, []);
    },
    [api, signedIn],
  );

  const logout = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      // Logged out or not, the page shows the login form; the next request will tell.
    }
    await refresh();
  }, [api, refresh]);

  switch (session.status) {
    case "loading":
      return (
        <main className="login">
          <p className="subtle" role="status">
            Loading…
          </p>
        </main>
      );
    case "unreachable":
      return (
        <main className="login">
          <div className="login-card">
            <p className="error" role="alert">
              Cannot reach the backend: {session.message}
            </p>
            <button type="button" onClick={() => void refresh()}>
              Retry
            </button>
          </div>
        </main>
      );
    case "anonymous":
      return <LoginPage onLogin={login} notice={session.notice} />;
    case "authenticated":
      return (
        <Dashboard
          key={session.generation}
          username={session.username}
          accounts={session.accounts}
          createRuntime={makeRuntime}
          onLogout={logout}
          onSessionLost={() => void refresh("Your session ended. Log in again.")}
        />
      );
  }
}
