import { describe, expect, it, vi } from "vitest";

import { flag } from "../test/fakes";
import { CLIENT_ID_KEY, CutoverState, getClientId, sourceOf } from "./websocket-cutover";

describe("getClientId", () => {
  it("generates an id once and keeps it in localStorage thor.clientId", () => {
    const generate = vi.fn(() => "0b7c9f1e-1111-4222-8333-444455556666");
    const first = getClientId(localStorage, generate);
    const second = getClientId(localStorage, generate);
    expect(first).toBe("0b7c9f1e-1111-4222-8333-444455556666");
    expect(second).toBe(first);
    expect(generate).toHaveBeenCalledTimes(1);
    expect(localStorage.getItem(CLIENT_ID_KEY)).toBe(first);
  });

  it("uses crypto.randomUUID by default", () => {
    const id = getClientId(localStorage);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("replaces a stored id the backend would refuse", () => {
    localStorage.setItem(CLIENT_ID_KEY, "has spaces/and slashes");
    expect(getClientId(localStorage, () => "fresh-id")).toBe("fresh-id");
  });
});

describe("CutoverState", () => {
  it("treats every feature as off on REST before any flags arrive", () => {
    const cutover = new CutoverState("c1");
    expect(cutover.get("positions")).toMatchObject({ stage: "off", source: "rest", version: 0 });
    expect(cutover.source("intraday")).toBe("rest");
  });

  it("switches the source when flags change (REST -> WebSocket -> REST)", () => {
    const cutover = new CutoverState("c1");
    const changes: string[][] = [];
    cutover.subscribe((features) => changes.push(features));
    cutover.apply({ positions: flag("shadow", 3) });
    expect(cutover.source("positions")).toBe("rest");
    cutover.apply({ positions: flag("live", 4) });
    expect(cutover.source("positions")).toBe("websocket");
    cutover.apply({ positions: flag("shadow", 5) });
    expect(cutover.source("positions")).toBe("rest");
    expect(changes).toEqual([["positions"], ["positions"], ["positions"]]);
  });

  it("never lets a lower version override a higher one", () => {
    const cutover = new CutoverState("c1");
    cutover.apply({ account_balance: flag("live", 9) });
    // A REST answer read before the push arrives after it.
    const changed = cutover.apply({ account_balance: flag("shadow", 8) });
    expect(changed).toEqual([]);
    expect(cutover.get("account_balance")).toMatchObject({ stage: "live", version: 9 });
  });

  it("applies each feature on its own version", () => {
    const cutover = new CutoverState("c1");
    cutover.apply({ positions: flag("live", 5), intraday: flag("shadow", 2) });
    cutover.apply({ positions: flag("off", 4), intraday: flag("live", 3) });
    expect(cutover.stage("positions")).toBe("live");
    expect(cutover.stage("intraday")).toBe("live");
  });

  it("follows the backend's bucket: live but outside the percent reads REST", () => {
    const cutover = new CutoverState("c1");
    cutover.apply({ global_market: flag("live", 2, "rest", 10) });
    expect(cutover.source("global_market")).toBe("rest");
  });

  it("ignores unknown features and malformed flags", () => {
    const cutover = new CutoverState("c1");
    const before = cutover.snapshot();
    expect(cutover.apply({ orders: flag("live", 1), positions: { stage: "sideways", version: 1 } })).toEqual([]);
    expect(cutover.snapshot()).toBe(before);
  });

  it("reads complete as WebSocket whatever the source field says", () => {
    expect(sourceOf(flag("complete", 1, "rest"))).toBe("websocket");
    expect(sourceOf(flag("live", 1, "rest"))).toBe("rest");
  });
});
