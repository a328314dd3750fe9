import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { App } from "./App";
import { createApi } from "./services/api";
import { Http } from "./services/http";
import {
  backendRoutes,
  envelope,
  fakeFetch,
  fakeRuntime,
  flag,
  flagsMessage,
  opsAnswer,
  POSITIONS,
} from "./test/fakes";
import type { FakeSocket, Route } from "./test/fakes";

function setup(options: { loggedIn?: boolean; loginStatus?: number; operator?: boolean } = {}) {
  let loggedIn = options.loggedIn ?? false;
  let cookie = "csrftoken=token-before-login";
  const routes: Record<string, Route> = {
    ...backendRoutes({ balance: 12, positions: 34, bar: 56, vwap: 78, markets: 9 }),
    "/api/session": () => ({
      body: loggedIn ? { authenticated: true, username: "alice", accounts: ["DU1234"] } : { authenticated: false },
    }),
    "POST /api/session/login": (call) => {
      const body = call.body as { username: string; password: string };
      if (options.loginStatus === 401 || body.password !== "s3cret") {
        return { status: 401, body: { error: "wrong username or password" } };
      }
      loggedIn = true;
      cookie = "csrftoken=token-after-login"; // Django rotates the token at login
      return { body: { authenticated: true, username: body.username } };
    },
    "/api/ops/monitor": () => ({ body: opsAnswer(options.operator ?? true) }),
    "POST /api/session/logout": () => {
      loggedIn = false;
      return { body: { authenticated: false } };
    },
  };
  const http = fakeFetch(routes);
  const api = createApi(new Http({ fetch: http.fetch, cookies: () => `theme=dark; ${cookie}` }));
  const runtimes: Array<ReturnType<typeof fakeRuntime>> = [];
  const createRuntime = ({ onUnauthorized }: { onUnauthorized: () => void }) => {
    const made = fakeRuntime(routes, { onUnauthorized });
    runtimes.push(made);
    return made.runtime;
  };
  /** The socket the newest runtime opened last. */
  const socket = (): FakeSocket => {
    const made = runtimes.at(-1);
    if (!made) throw new Error("no runtime was created");
    return made.ws.last();
  };
  render(<App api={api} createRuntime={createRuntime} />);
  return { http, socket, runtimes, setLoggedIn: (value: boolean) => (loggedIn = value) };
}

async function logIn(password = "s3cret") {
  const form = await screen.findByRole("form", { name: "Log in" });
  fireEvent.change(within(form).getByLabelText("Username"), { target: { value: "alice" } });
  fireEvent.change(within(form).getByLabelText("Password"), { target: { value: password } });
  fireEvent.click(within(form).getByRole("button", { name: "Log in" }));
}

describe("login", () => {
  it("posts the credentials as JSON with the CSRF header from the cookie", async () => {
    const { http } = setup();
    await logIn();
    await screen.findByRole("heading", { level: 1, name: "Thor" });
    const post = http.calls.find((c) => c.method === "POST" && c.url === "/api/session/login");
    expect(post?.headers["X-CSRFToken"]).toBe("token-before-login");
    expect(post?.headers["Content-Type"]).toBe("application/json");
    expect(post?.body).toEqual({ username: "alice", password: "s3cret" });
    // The session was read first: that request is what sets the csrftoken cookie.
    expect(http.calls[0]?.url).toBe("/api/session");
  });

  it("shows an alert on 401 and stays on the form", async () => {
    setup();
    await logIn("wrong");
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("wrong username or password");
    expect(screen.getByRole("form", { name: "Log in" })).toBeTruthy();
    expect(screen.queryByRole("heading", { name: "Thor" })).toBeNull();
  });

  it("labels both inputs (label for=) and names the form", async () => {
    setup();
    const form = await screen.findByRole("form", { name: "Log in" });
    const user = within(form).getByLabelText("Username");
    const password = within(form).getByLabelText("Password");
    expect(user.tagName).toBe("INPUT");
    expect(password.getAttribute("type")).toBe("password");
    const label = form.querySelector(`label[for="${user.id}"]`);
    expect(label?.textContent).toBe("Username");
  });

  it("logs out with the rotated CSRF token and closes the stream", async () => {
    const { http, socket } = setup();
    await logIn();
    await screen.findByRole("button", { name: "Log out" });
    const ws = await waitFor(socket); // the runtime starts in an effect, after the first paint
    act(() => ws.open());
    fireEvent.click(screen.getByRole("button", { name: "Log out" }));
    await screen.findByRole("form", { name: "Log in" });
    const post = http.calls.find((c) => c.method === "POST" && c.url === "/api/session/logout");
    expect(post?.headers["X-CSRFToken"]).toBe("token-after-login");
    expect(ws.closedWith?.code).toBe(1000);
  });

  it("goes back to the login form, with a notice, when the stream closes with 4401", async () => {
    const { socket, setLoggedIn } = setup({ loggedIn: true });
    await screen.findByRole("heading", { name: "Thor" });
    const ws = await waitFor(socket); // the runtime starts in an effect, after the first paint
    act(() => ws.open());
    setLoggedIn(false); // the session expired on the backend
    act(() => ws.drop(4401, "authentication required"));
    await screen.findByRole("form", { name: "Log in" });
    expect(screen.getByRole("status").textContent).toContain("Your session ended");
    expect(screen.queryByRole("alert")).toBeNull();
  });
});

describe("dashboard DOM contract", () => {
  it("renders header, connection state, four panels with badge/seq/updated, and the monitor", async () => {
    const { socket } = setup({ loggedIn: true });
    await screen.findByRole("heading", { level: 1, name: "Thor" });
    expect(screen.getByRole("button", { name: "Log out" })).toBeTruthy();
    expect(screen.getByTestId("username").textContent).toBe("alice");
    const ws = await waitFor(socket); // the runtime starts in an effect, after the first paint
    expect(screen.getByTestId("connection-state").textContent).toBe("connecting");
    act(() => {
      ws.open();
      ws.receive(
        flagsMessage({
          account_balance: flag("live", 3),
          positions: flag("shadow", 2),
          intraday: flag("off", 1),
          global_market: flag("live", 5, "rest", 10),
        }),
      );
    });
    expect(screen.getByTestId("connection-state").textContent).toBe("connected");

    const panels = {
      "Account balance": ["WebSocket", "websocket"],
      Positions: ["REST (shadow)", "rest"],
      Intraday: ["REST", "rest"],
      "Global markets": ["REST", "rest"],
    } as const;
    for (const [name, [badge, source]] of Object.entries(panels)) {
      const panel = screen.getByRole("region", { name });
      expect(panel.tagName).toBe("SECTION");
      expect(panel.getAttribute("aria-label")).toBe(name);
      expect(within(panel).getByRole("heading", { level: 2 }).textContent).toBe(name);
      expect(within(panel).getByTestId("source-badge").textContent).toBe(badge);
      expect(panel.getAttribute("data-source")).toBe(source);
      await waitFor(() => expect(within(panel).getByTestId("seq").textContent).toMatch(/^\d+$/));
      expect(within(panel).getByTestId("updated").textContent).toMatch(/^\d+\.\d s ago$/);
    }

    const balance = screen.getByRole("region", { name: "Account balance" });
    expect(within(balance).getByTestId("seq").textContent).toBe("12");
    expect(within(balance).getByTestId("equity").textContent).toBe("1,012,345.68");
    expect(within(balance).getByTestId("cash").textContent).toBe("1,000,000.00");
    expect(within(balance).getByTestId("buying-power").textContent).toBe("955,000.00");
    expect(within(balance).getByTestId("unrealized-pnl").textContent).toBe("12,345.67");

    const positions = screen.getByRole("region", { name: "Positions" });
    const headers = within(positions)
      .getAllByRole("columnheader")
      .map((th) => th.textContent);
    expect(headers).toEqual(["Symbol", "Qty", "Avg price", "Last", "Market value", "Unrealized P&L"]);
    expect(within(positions).getByRole("cell", { name: "ES" })).toBeTruthy();

    const intraday = screen.getByRole("region", { name: "Intraday" });
    const select = within(intraday).getByLabelText("Symbol") as HTMLSelectElement;
    expect(select.tagName).toBe("SELECT");
    expect(Array.from(select.options).map((o) => o.value)).toEqual(["ES", "NQ", "YM", "RTY", "CL", "GC"]);
    expect(within(intraday).getByTestId("seq").textContent).toBe("56");

    const markets = screen.getByRole("region", { name: "Global markets" });
    const rows = within(markets).getAllByRole("row").slice(1);
    expect(rows.map((r) => r.getAttribute("data-market"))).toEqual(["CME", "LSE"]);
    expect(within(rows[0] as HTMLElement).getByText("open")).toBeTruthy();
    expect(within(rows[1] as HTMLElement).getByText("closed")).toBeTruthy();

    const monitor = screen.getByRole("region", { name: "Shadow monitor" });
    const table = within(monitor).getByRole("table");
    for (const feature of ["account_balance", "positions", "intraday", "global_market"]) {
      expect(table.querySelector(`tr[data-feature="${feature}"]`)).not.toBeNull();
    }
    const balanceRow = table.querySelector('tr[data-feature="account_balance"]') as HTMLElement;
    expect(balanceRow.querySelector('[data-col="stage"]')?.textContent).toBe("live");
    expect(balanceRow.querySelector('[data-col="source"]')?.textContent).toBe("websocket");
    expect(balanceRow.querySelector('[data-col="version"]')?.textContent).toBe("3");
    expect(within(monitor).getByTestId("monitor-connection-state").textContent).toBe("connected");
    // Exactly one connection-state element, so a strict locator finds it.
    expect(screen.getAllByTestId("connection-state")).toHaveLength(1);
  });

  it("switches a panel's badge and data-source when a flags message arrives, and shows pushed data", async () => {
    const { socket } = setup({ loggedIn: true });
    await screen.findByRole("heading", { name: "Thor" });
    const ws = await waitFor(socket); // the runtime starts in an effect, after the first paint
    act(() => {
      ws.open();
      ws.receive(flagsMessage({ positions: flag("shadow", 1) }));
    });
    const panel = screen.getByRole("region", { name: "Positions" });
    await waitFor(() => expect(within(panel).getByTestId("seq").textContent).toBe("34"));
    expect(within(panel).getByTestId("source-badge").textContent).toBe("REST (shadow)");

    act(() => {
      ws.receive(flagsMessage({ positions: flag("live", 2) }));
      ws.receive(envelope("positions", "DU1234", 35, POSITIONS));
    });
    expect(within(panel).getByTestId("source-badge").textContent).toBe("WebSocket");
    expect(panel.getAttribute("data-source")).toBe("websocket");
    expect(within(panel).getByTestId("seq").textContent).toBe("35");

    act(() => ws.receive(flagsMessage({ positions: flag("live", 1) }))); // stale version: ignored
    expect(within(panel).getByTestId("source-badge").textContent).toBe("WebSocket");
    act(() => ws.receive(flagsMessage({ positions: flag("shadow", 3) })));
    expect(within(panel).getByTestId("source-badge").textContent).toBe("REST (shadow)");
    expect(panel.getAttribute("data-source")).toBe("rest");
  });
});

describe("operations console", () => {
  it("labels the market clock as simulated, with its speed once measured or reported", async () => {
    setup({ loggedIn: true });
    await screen.findByRole("heading", { name: "Thor" });
    const clock = screen.getByTestId("sim-clock");
    expect(clock.textContent).toContain("simulated market time");
    expect(clock.getAttribute("title")).toContain("faster than the wall clock");
  });

  it("gives an operator stage buttons and a viewer none", async () => {
    setup({ loggedIn: true, operator: true });
    await screen.findByRole("heading", { name: "Thor" });
    await screen.findByTestId("stage-positions-live");
    cleanup();
    setup({ loggedIn: true, operator: false });
    await screen.findByRole("heading", { name: "Thor" });
    await waitFor(() => expect(screen.getByTestId("ops-status").textContent).toContain("read-only"));
    expect(document.querySelector('[data-testid^="stage-"]')).toBeNull();
    expect(screen.getByTestId("monitor-positions")).toBeTruthy();
  });

  it("stops polling the monitor once logged out", async () => {
    const { runtimes } = setup({ loggedIn: true });
    await screen.findByRole("button", { name: "Log out" });
    const polls = () => runtimes.at(-1)?.http.count("/api/ops/monitor") ?? 0;
    await waitFor(() => expect(polls()).toBeGreaterThan(0));
    fireEvent.click(screen.getByRole("button", { name: "Log out" }));
    await screen.findByRole("form", { name: "Log in" });
    const atLogout = polls();
    await new Promise((resolve) => setTimeout(resolve, 2100)); // one poll interval
    expect(polls()).toBe(atLogout);
  });
});
