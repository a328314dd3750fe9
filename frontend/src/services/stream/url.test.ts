import { describe, expect, it } from "vitest";

import { streamUrl } from "./url";

describe("streamUrl", () => {
  it("builds ws(s)://host/ws/stream/ with the client id and features", () => {
    expect(streamUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "abc-1")).toBe(
      "ws://127.0.0.1:8000/ws/stream/?client=abc-1&features=account_balance,positions,intraday,global_market",
    );
    expect(streamUrl({ protocol: "https:", host: "thor.example" }, "x")).toMatch(/^wss:\/\/thor\.example\/ws\/stream\/\?client=x&/);
  });
});
