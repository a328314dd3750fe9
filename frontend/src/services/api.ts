/** The backend's REST API (backend/thor_trading/urls.py), typed. All paths are same-origin. */

import type { Envelope, Feature, FeatureParams } from "../types";
import { Http } from "./http";
import type { StageChangeAnswer, StageRequest } from "./ops";

export interface SessionInfo {
  authenticated: boolean;
  username?: string;
  accounts?: string[];
}

export interface FlagsResponse {
  client: string;
  features: Partial<Record<string, unknown>>;
}

export interface Api {
  /** Who is logged in; also makes the backend set the `csrftoken` cookie. */
  session(): Promise<SessionInfo>;
  /** Raises HttpError 401 on a wrong username or password. */
  login(username: string, password: string): Promise<SessionInfo>;
  logout(): Promise<void>;
  flags(clientId: string): Promise<FlagsResponse>;
  /** The REST envelopes of one feature's view: one for balance/positions, bar + vwap, every market. */
  fetchFeature(feature: Feature, params: FeatureParams): Promise<Envelope[]>;
  /** The operations monitor (raw JSON: `parseMonitor` in ops.ts checks its shape). */
  opsMonitor(): Promise<unknown>;
  /** A stage change (CSRF header from the cookie); raises HttpError with the server's message when refused. */
  changeStage(request: StageRequest): Promise<StageChangeAnswer>;
}

export function createApi(http: Http = new Http()): Api {
  const q = encodeURIComponent;
  return {
    session: () => http.get<SessionInfo>("/api/session"),
    login: (username, password) => http.post<SessionInfo>("/api/session/login", { username, password }),
    logout: async () => {
      await http.post<unknown>("/api/session/logout", {});
    },
    opsMonitor: () => http.get<unknown>("/api/ops/monitor"),
    changeStage: (request) => http.post<StageChangeAnswer>("/api/ops/stage", request),
    flags: (clientId) => http.get<FlagsResponse>(`/api/cutover/flags?client=${q(clientId)}`),
    fetchFeature: async (feature, params) => {
      const account = params.account ? `?account=${q(params.account)}` : "";
      switch (feature) {
        case "account_balance":
          return [await http.get<Envelope>(`/api/account/balance${account}`)];
        case "positions":
          return [await http.get<Envelope>(`/api/account/positions${account}`)];
        case "intraday": {
          const symbol = q(params.symbol ?? "");
          return Promise.all([
            http.get<Envelope>(`/api/intraday/${symbol}/bar`),
            http.get<Envelope>(`/api/intraday/${symbol}/vwap`),
          ]);
        }
        case "global_market":
          return (await http.get<{ markets: Envelope[] }>("/api/markets/status")).markets;
      }
    },
  };
}
