import { ErrorCode, NOOP_PROVIDER, OpenFeature, ProviderEvents, ProviderStatus } from "@openfeature/web-sdk";
import type { EventDetails, Hook } from "@openfeature/web-sdk";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { backendRoutes, fakeRuntime, flag, flagsMessage } from "../test/fakes";
import type { Route } from "../test/fakes";
import type { FeatureFlag } from "../types";
import { OpenFeatureFlags, ThorcutWebProvider } from "./openfeature";

/**
 * OpenFeature's API is a global singleton: each test binds its own domain (never the page's,
 * `thor`), so no client's handlers outlive their test, and afterEach clears the providers.
 */
let domains = 0;
let DOMAIN = "";
const EVENT_TYPES = [ProviderEvents.Ready, ProviderEvents.ConfigurationChanged, ProviderEvents.Stale, ProviderEvents.Error];

const flush = () => vi.advanceTimersByTimeAsync(0);

/** A runtime on fakes whose `GET /api/cutover/flags` answers `flags` (a Route), its provider, and a client. */
function setup(flags: Route = () => ({ body: { client: "test-client", features: {} } })) {
  const routes = backendRoutes({ balance: 1, positions: 1, bar: 1, vwap: 1, markets: 1 });
  routes["/api/cutover/flags"] = flags;
  const made = fakeRuntime(routes);
  domains += 1;
  DOMAIN = `openfeature-test-${domains}`;
  const provider = new ThorcutWebProvider(made.runtime);
  const client = OpenFeature.getClient(DOMAIN);
  const events: Array<[type: ProviderEvents, details: EventDetails | undefined]> = [];
  for (const type of EVENT_TYPES) client.addHandler(type, (details) => void events.push([type, details]));
  return { ...made, provider, client, events, types: () => events.map(([type]) => type) };
}

function restFlags(features: Record<string, unknown>): Route {
  return () => ({ body: { client: "test-client", features } });
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(async () => {
  vi.useRealTimers();
  OpenFeature.clearHooks();
  OpenFeature.clearHandlers();
  await OpenFeature.clearContexts();
  await OpenFeature.clearProviders();
});

describe("ThorcutWebProvider readiness", () => {
  it("is NOT_READY (the caller's default) until the first flags arrive, then READY; initialize waited", async () => {
    const { runtime, provider, client, types } = setup(restFlags({ positions: flag("live", 3) }));
    let initialized = false;
    void OpenFeature.setProviderAndWait(DOMAIN, provider).then(() => (initialized = true));
    await flush();
    expect(client.providerStatus).toBe(ProviderStatus.NOT_READY);
    expect(initialized).toBe(false);
    const before = client.getStringDetails("positions", "off");
    expect(before).toMatchObject({ value: "off", reason: "ERROR", errorCode: ErrorCode.PROVIDER_NOT_READY });
    expect(client.getBooleanValue("positions", false)).toBe(false);

    runtime.start();
    await flush();
    expect(initialized).toBe(true);
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(types()).toEqual([ProviderEvents.Ready]);
    expect(client.getStringValue("positions", "off")).toBe("live");
    runtime.stop();
  });

  it("is READY when the first flags arrive even when they equal the defaults (nothing changed)", async () => {
    const { runtime, provider, client, types } = setup(); // every feature absent: all stay off
    void OpenFeature.setProviderAndWait(DOMAIN, provider);
    runtime.start();
    await flush();
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(types()).toEqual([ProviderEvents.Ready]);
    expect(client.getStringDetails("intraday", "shadow")).toMatchObject({ value: "off", reason: "STATIC" });
    runtime.stop();
  });

  it("is READY at once when the flags are already in", async () => {
    const { runtime, provider, client, types } = setup(restFlags({ intraday: flag("shadow", 2) }));
    runtime.start();
    await flush();
    expect(runtime.cutover.loaded).toBe(true);
    await OpenFeature.setProviderAndWait(DOMAIN, provider);
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(types()).toEqual([ProviderEvents.Ready]);
    expect(client.getStringValue("intraday", "off")).toBe("shadow");
    runtime.stop();
  });

  it("becomes READY from the WebSocket's flags message when REST has not answered", async () => {
    const { runtime, ws, provider, client } = setup(() => new Promise(() => {})); // REST never answers
    void OpenFeature.setProviderAndWait(DOMAIN, provider);
    runtime.start();
    ws.last().open();
    ws.last().receive(flagsMessage({ intraday: flag("shadow", 2) }));
    await flush();
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(client.getStringValue("intraday", "off")).toBe("shadow");
    runtime.stop();
  });
});

describe("ThorcutWebProvider evaluation", () => {
  const FLAGS: Record<string, FeatureFlag> = {
    account_balance: flag("complete", 9, "rest"), // complete is WebSocket whatever `source` says
    positions: flag("live", 4, "websocket", 25), // inside this client's bucket
    intraday: flag("live", 5, "rest", 25), // outside it
    global_market: { ...flag("shadow", 2), override: "false" }, // forced by the backend's env
  };

  async function ready() {
    const made = setup(restFlags(FLAGS));
    made.runtime.start();
    await OpenFeature.setProviderAndWait(DOMAIN, made.provider);
    return made;
  }

  it("answers a string flag with the stage: variant, reason STATIC, and the flag's metadata", async () => {
    const { runtime, client } = await ready();
    expect(client.getStringDetails("positions", "off")).toEqual({
      flagKey: "positions",
      value: "live",
      variant: "live",
      reason: "STATIC",
      flagMetadata: { stage: "live", version: 4, percent: 25, source: "websocket" },
    });
    expect(client.getStringDetails("global_market", "off")).toMatchObject({
      value: "shadow",
      flagMetadata: { stage: "shadow", version: 2, percent: 100, source: "rest", override: "false" },
    });
    expect(client.getStringDetails("account_balance", "off").flagMetadata.source).toBe("websocket");
    runtime.stop();
  });

  it("answers a boolean flag with whether this page reads the feature from WebSocket", async () => {
    const { runtime, client } = await ready();
    expect(client.getBooleanDetails("positions", false)).toMatchObject({ value: true, variant: "websocket", reason: "SPLIT" });
    expect(client.getBooleanDetails("intraday", true)).toMatchObject({ value: false, variant: "rest", reason: "SPLIT" });
    expect(client.getBooleanDetails("account_balance", false)).toMatchObject({
      value: true,
      variant: "websocket",
      reason: "STATIC",
      flagMetadata: { stage: "complete", version: 9 },
    });
    expect(client.getBooleanDetails("global_market", true)).toMatchObject({ value: false, variant: "rest", reason: "STATIC" });
    runtime.stop();
  });

  it("answers an unknown flag with the caller's default and FLAG_NOT_FOUND", async () => {
    const { runtime, client } = await ready();
    const details = client.getStringDetails("orders", "off");
    expect(details).toMatchObject({ value: "off", reason: "ERROR", errorCode: ErrorCode.FLAG_NOT_FOUND });
    expect(details.errorMessage).toContain("account_balance, positions, intraday, global_market");
    expect(client.getBooleanDetails("Positions", true)).toMatchObject({ value: true, errorCode: ErrorCode.FLAG_NOT_FOUND });
    expect(client.getNumberDetails("orders", 7)).toMatchObject({ value: 7, errorCode: ErrorCode.FLAG_NOT_FOUND });
    runtime.stop();
  });

  it("answers a number or object evaluation of a feature with the caller's default and TYPE_MISMATCH", async () => {
    const { runtime, client } = await ready();
    const number = client.getNumberDetails("positions", 42);
    expect(number).toMatchObject({ value: 42, reason: "ERROR", errorCode: ErrorCode.TYPE_MISMATCH });
    expect(number.errorMessage).toContain("not a number");
    const object = client.getObjectDetails("positions", { stage: "off" });
    expect(object).toMatchObject({ value: { stage: "off" }, reason: "ERROR", errorCode: ErrorCode.TYPE_MISMATCH });
    runtime.stop();
  });

  it("refuses a targeting key of another client (INVALID_CONTEXT); this page's own is fine", async () => {
    const { runtime, client } = await ready();
    await OpenFeature.setContext(DOMAIN, { targetingKey: "someone-else" });
    const details = client.getBooleanDetails("positions", false);
    expect(details).toMatchObject({ value: false, reason: "ERROR", errorCode: ErrorCode.INVALID_CONTEXT });
    expect(details.errorMessage).toContain('"test-client", not "someone-else"');
    await OpenFeature.setContext(DOMAIN, { targetingKey: "test-client" });
    expect(client.getBooleanValue("positions", false)).toBe(true);
    runtime.stop();
  });

  it("runs the client's hooks: before and after see a good evaluation, error sees a bad one", async () => {
    const { runtime, client } = await ready();
    const seen: string[] = [];
    const hook: Hook = {
      before: (context) => void seen.push(`before ${context.flagKey} ${context.flagValueType}`),
      after: (context, details) => void seen.push(`after ${context.flagKey} ${String(details.value)} ${details.reason}`),
      error: (context, error) => void seen.push(`error ${context.flagKey} ${(error as { code?: string }).code}`),
      finally: (context, details) => void seen.push(`finally ${context.flagKey} ${String(details.value)}`),
    };
    client.addHooks(hook);
    client.getStringValue("intraday", "off");
    client.getNumberValue("intraday", 0);
    expect(seen).toEqual([
      "before intraday string",
      "after intraday live STATIC",
      "finally intraday live",
      "before intraday number",
      "error intraday TYPE_MISMATCH",
      "finally intraday 0",
    ]);
    runtime.stop();
  });
});

describe("ThorcutWebProvider events", () => {
  async function connected(features: Record<string, unknown> = { positions: flag("shadow", 3) }) {
    const made = setup(restFlags(features));
    made.runtime.start();
    await OpenFeature.setProviderAndWait(DOMAIN, made.provider);
    made.ws.last().open();
    made.events.length = 0;
    return made;
  }

  it("emits CONFIGURATION_CHANGED with the changed flags, and nothing for a lower version or no change", async () => {
    const { runtime, ws, client, events, types } = await connected();
    ws.last().receive(flagsMessage({ positions: flag("live", 4), intraday: flag("shadow", 1) }));
    await flush();
    expect(types()).toEqual([ProviderEvents.ConfigurationChanged]);
    expect(events[0]?.[1]).toMatchObject({ flagsChanged: ["positions", "intraday"], domain: DOMAIN, providerName: "thorcut" });
    expect(client.getBooleanValue("positions", false)).toBe(true);

    events.length = 0;
    ws.last().receive(flagsMessage({ positions: flag("shadow", 3) })); // older than what is held
    ws.last().receive(flagsMessage({ positions: flag("live", 4), intraday: flag("shadow", 1) })); // the same again
    await flush();
    expect(events).toEqual([]);
    expect(client.getStringDetails("positions", "off")).toMatchObject({ value: "live", flagMetadata: { version: 4 } });
    runtime.stop();
  });

  it("is STALE while the WebSocket is down after a connection, READY again when it reconnects", async () => {
    const made = setup(restFlags({ positions: flag("live", 4) }));
    made.runtime.start();
    await OpenFeature.setProviderAndWait(DOMAIN, made.provider);
    const { runtime, ws, client, events, types } = made;
    // Connecting for the first time: the REST answer is current, not stale.
    expect(client.getStringDetails("positions", "off").reason).toBe("STATIC");
    ws.last().open();
    events.length = 0;

    ws.last().drop(1006);
    await flush();
    expect(types()).toEqual([ProviderEvents.Stale]);
    expect(events[0]?.[1]?.message).toContain("WebSocket is not connected");
    expect(client.providerStatus).toBe(ProviderStatus.STALE);
    expect(client.getStringDetails("positions", "off")).toMatchObject({ value: "live", reason: "STALE" });
    expect(client.getBooleanDetails("positions", false)).toMatchObject({ value: true, reason: "STALE" });

    await vi.advanceTimersByTimeAsync(60_000); // the reconnect's back-off
    expect(types()).toEqual([ProviderEvents.Stale]); // reconnecting is still not connected: one STALE
    ws.last().open();
    await flush();
    expect(types()).toEqual([ProviderEvents.Stale, ProviderEvents.Ready]);
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(client.getStringDetails("positions", "off").reason).toBe("STATIC");
    runtime.stop();
  });

  it("is in ERROR when the flags endpoint fails before any flags, READY when the WebSocket brings them", async () => {
    const { runtime, ws, provider, client, events, types } = setup(() => ({ status: 503, body: { error: "unavailable" } }));
    const initialized = OpenFeature.setProviderAndWait(DOMAIN, provider);
    runtime.start();
    await expect(initialized).rejects.toThrow("GET /api/cutover/flags answered 503 (unavailable)");
    expect(types()).toEqual([ProviderEvents.Error]);
    expect(events[0]?.[1]?.message).toContain("answered 503");
    expect(client.providerStatus).toBe(ProviderStatus.ERROR);
    const details = client.getStringDetails("positions", "off");
    expect(details).toMatchObject({ value: "off", reason: "ERROR", errorCode: ErrorCode.PROVIDER_NOT_READY });
    expect(details.errorMessage).toContain("until the WebSocket brings them");

    ws.last().open();
    ws.last().receive(flagsMessage({ positions: flag("live", 4) }));
    await flush();
    expect(types()).toEqual([ProviderEvents.Error, ProviderEvents.Ready]);
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    expect(client.getStringValue("positions", "off")).toBe("live");
    runtime.stop();
  });

  it("rejects initialize at once when the flags endpoint had already failed", async () => {
    const { runtime, provider } = setup(() => ({ status: 500, body: {} }));
    runtime.start();
    await flush();
    await expect(OpenFeature.setProviderAndWait(DOMAIN, provider)).rejects.toThrow("answered 500 (HTTP 500)");
    runtime.stop();
  });

  it("emits nothing once closed (replaced by another provider), and follows again when bound again", async () => {
    const { runtime, ws, provider, client, events } = await connected();
    const emitted = vi.fn();
    provider.events.addHandler(ProviderEvents.ConfigurationChanged, emitted);
    await OpenFeature.setProviderAndWait(DOMAIN, NOOP_PROVIDER);
    events.length = 0;
    ws.last().receive(flagsMessage({ positions: flag("live", 9) }));
    ws.last().drop(1006);
    await flush();
    expect(emitted).not.toHaveBeenCalled();
    expect(events).toEqual([]);
    expect(client.getStringValue("positions", "off")).toBe("off"); // the no-op provider's answer: the default

    // Bound again, it follows the feed again.
    await OpenFeature.setProviderAndWait(DOMAIN, provider);
    expect(client.getStringDetails("positions", "off")).toMatchObject({ value: "live", reason: "STALE" });
    await flush();
    expect(client.providerStatus).toBe(ProviderStatus.STALE); // READY from the SDK, then STALE
    await vi.advanceTimersByTimeAsync(60_000); // the reconnect's back-off
    ws.last().open();
    await flush();
    expect(client.providerStatus).toBe(ProviderStatus.READY);
    ws.last().receive(flagsMessage({ positions: flag("shadow", 10) }));
    await flush();
    expect(emitted).toHaveBeenCalledTimes(1);
    expect(client.getStringDetails("positions", "off")).toMatchObject({ value: "shadow", reason: "STATIC" });
    runtime.stop();
  });
});

describe("OpenFeatureFlags", () => {
  function listen(flags: OpenFeatureFlags) {
    const listener = vi.fn();
    const off = flags.subscribe(listener);
    return { listener, off };
  }

  it("is every feature off on REST before the provider is ready, then the provider's answers", async () => {
    const { runtime, ws, provider, client } = setup(restFlags({ positions: flag("live", 4), intraday: flag("shadow", 2) }));
    const flags = new OpenFeatureFlags(client);
    const { listener, off } = listen(flags);
    const initial = flags.snapshot();
    expect(initial.positions).toEqual({ stage: "off", percent: 0, version: 0, source: "rest", override: null });
    expect(flags.snapshot()).toBe(initial);

    runtime.start();
    await OpenFeature.setProviderAndWait(DOMAIN, provider);
    expect(listener).toHaveBeenCalled();
    const loaded = flags.snapshot();
    expect(loaded.positions).toEqual({ stage: "live", percent: 100, version: 4, source: "websocket", override: null });
    expect(loaded.intraday).toMatchObject({ stage: "shadow", source: "rest", version: 2 });

    ws.last().open();
    listener.mockClear();
    ws.last().receive(flagsMessage({ intraday: flag("live", 3) }));
    await flush();
    expect(listener).toHaveBeenCalled();
    const changed = flags.snapshot();
    expect(changed.intraday).toMatchObject({ stage: "live", source: "websocket" });
    expect(flags.snapshot()).toBe(changed);

    // A STALE changes no value: the same snapshot, so React does not re-render for it.
    const before = flags.snapshot();
    ws.last().drop(1006);
    await flush();
    expect(flags.snapshot()).toBe(before);

    off();
    listener.mockClear();
    ws.last().open();
    await flush();
    expect(listener).not.toHaveBeenCalled();
    runtime.stop();
  });

  it("follows the client's events once, however many listen", () => {
    const client = OpenFeature.getClient("openfeature-test-listeners");
    const flags = new OpenFeatureFlags(client);
    const a = listen(flags);
    const b = listen(flags);
    expect(client.getHandlers(ProviderEvents.ConfigurationChanged)).toHaveLength(1);
    a.off();
    a.off(); // a second undo is a no-op
    expect(client.getHandlers(ProviderEvents.ConfigurationChanged)).toHaveLength(1);
    b.off();
    expect(client.getHandlers(ProviderEvents.ConfigurationChanged)).toHaveLength(0);
  });
});
