import { useId, useState } from "react";
import type { FormEvent } from "react";

import { HttpError } from "../services/http";

interface LoginPageProps {
  /** Resolves when logged in; raises HttpError 401 on a wrong username or password. */
  onLogin: (username: string, password: string) => Promise<void>;
  /** Why the user is here again (e.g. the session ended), shown above the form. */
  notice?: string | null;
}

export function LoginPage({ onLogin, notice }: LoginPageProps) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const id = useId();

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await onLogin(username, password);
    } catch (e) {
      setPassword("");
      if (e instanceof HttpError && e.status === 401) {
        setError("Log in failed: wrong username or password.");
      } else if (e instanceof HttpError && e.status === 403) {
        setError("Log in failed: the security token expired. Reload the page and try again.");
      } else {
        setError(`Log in failed: ${e instanceof Error ? e.message : "the backend did not answer"}.`);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="login">
      <form aria-label="Log in" className="login-card" onSubmit={submit}>
        <h1>Sign in</h1>
        <p className="subtle">Paper trading desk: live account, positions, intraday and market status.</p>
        {notice ? (
          <p className="notice" role="status">
            {notice}
          </p>
        ) : null}
        <div className="field">
          <label htmlFor={`${id}-username`}>Username</label>
          <input
            id={`${id}-username`}
            name="username"
            autoComplete="username"
            required
            value={username}
            onChange={(e) => setUsername(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-password`}>Password</label>
          <input
            id={`${id}-password`}
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </div>
        {error ? (
          <p className="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy} aria-busy={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
