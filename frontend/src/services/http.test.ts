import { describe, expect, it } from "vitest";

import { fakeFetch } from "../test/fakes";
import { Http, HttpError, PAGE_BUILD, PAGE_CLIENT, readCookie } from "./http";

describe("readCookie", () => {
  it("finds a cookie among others and decodes it", () => {
    expect(readCookie("csrftoken", "a=1; csrftoken=abc%3D; b=2")).toBe("abc=");
    expect(readCookie("csrftoken", "xcsrftoken=no")).toBeNull();
    expect(readCookie("csrftoken", "")).toBeNull();
  });
});

describe("Http", () => {
  it("reads the CSRF token at each POST (Django rotates it at login)", async () => {
    let cookie = "csrftoken=first";
    const http = fakeFetch({ "POST /x": () => ({ body: {} }) });
    const client = new Http({ fetch: http.fetch, cookies: () => cookie });
    await client.post("/x", {});
    cookie = "csrftoken=second";
    await client.post("/x", {});
    expect(http.calls.map((c) => c.headers["X-CSRFToken"])).toEqual(["first", "second"]);
  });

  it("raises HttpError with the backend's error text and status", async () => {
    const http = fakeFetch({ "/api/account/balance": () => ({ status: 401, body: { error: "authentication required" } }) });
    const client = new Http({ fetch: http.fetch, cookies: () => "" });
    const error = await client.get("/api/account/balance").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).status).toBe(401);
    expect((error as HttpError).message).toBe("authentication required");
  });

  it("sends same-origin credentials (the session cookie)", async () => {
    const seen: RequestInit[] = [];
    const client = new Http({
      fetch: async (_url, init) => {
        seen.push(init ?? {});
        return { ok: true, status: 200, text: async () => "{}" } as Response;
      },
    });
    await client.get("/api/session");
    expect(seen[0]?.credentials).toBe("same-origin");
  });

  it("names this page build in X-Thor-Client on every call, GET and POST", async () => {
    const http = fakeFetch({
      "/api/account/balance": () => ({ body: {} }),
      "POST /api/session/login": () => ({ body: {} }),
    });
    const client = new Http({ fetch: http.fetch, cookies: () => "csrftoken=t" });
    await client.get("/api/account/balance");
    await client.post("/api/session/login", {});
    expect(http.calls.map((c) => c.headers["X-Thor-Client"])).toEqual([PAGE_CLIENT, PAGE_CLIENT]);
    expect(http.calls[1]?.headers["X-CSRFToken"]).toBe("t");
    // A label the backend accepts as it is: page/<build>, 1 to 64 characters of A-Za-z0-9._:/@+-.
    expect(PAGE_CLIENT).toBe(`page/${PAGE_BUILD}`);
    expect(PAGE_CLIENT).toMatch(/^[A-Za-z0-9._:/@+-]{1,64}$/);
  });

  it("sends another client name when given one", async () => {
    const http = fakeFetch({ "/api/markets/status": () => ({ body: { markets: [] } }) });
    await new Http({ fetch: http.fetch, cookies: () => "", client: "script/probe" }).get("/api/markets/status");
    expect(http.calls[0]?.headers["X-Thor-Client"]).toBe("script/probe");
  });
});
