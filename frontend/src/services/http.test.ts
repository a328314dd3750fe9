import { describe, expect, it } from "vitest";

import { fakeFetch } from "../test/fakes";
import { Http, HttpError, readCookie } from "./http";

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
});
