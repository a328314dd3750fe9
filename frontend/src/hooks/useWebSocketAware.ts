/**
 * Feature-aware hooks. The flag hooks (`useCutoverFlags`, `useFeatureFlag`,
 * `useWebSocketEnabled`) ask OpenFeature, through the client of the page's domain
 * (useFlags.tsx, src/services/openfeature.ts), never the runtime's private flag state. The data
 * hook (`useFeatureData`) registers the view with the runtime, which gets WebSocket data when
 * the feature's source for this client is `websocket` and polls REST otherwise (src/services/live.ts).
 */

import { useEffect, useMemo, useSyncExternalStore } from "react";

import type { FeatureView } from "../services/live";
import { sourceOf } from "../services/websocket-cutover";
import { interestKey } from "../types";
import type { DataSource, Feature, FeatureFlag, FeatureParams, FlagMap, Stage } from "../types";
import { useOpenFeatureFlags } from "./useFlags";
import { useLiveRuntime } from "./useWebSocket";

/** Where this client renders `feature` from, given the flags (`complete` is always WebSocket). */
export function getDataSource(feature: Feature, flags: FlagMap): DataSource {
  return sourceOf(flags[feature]);
}

export type BadgeText = "WebSocket" | "REST (shadow)" | "REST" | "Disconnected";

/**
 * The source badge: `WebSocket`, `REST (shadow)` (REST while WebSocket is shadowed) or `REST`;
 * `Disconnected` for a WebSocket-rendered feature while the socket is not delivering, so the
 * badge never claims a live source the page is not receiving (issue 15).
 */
export function badgeText(source: DataSource, stage: Stage, delivering = true): BadgeText {
  if (source === "websocket") return delivering ? "WebSocket" : "Disconnected";
  return stage === "shadow" ? "REST (shadow)" : "REST";
}

/**
 * Every feature's flag as OpenFeature evaluates it (stage and its flagMetadata; `source` from the
 * boolean flag); re-renders when an answer changes. `off` on REST until the provider is READY.
 */
export function useCutoverFlags(): FlagMap {
  const flags = useOpenFeatureFlags();
  return useSyncExternalStore(flags.subscribe, flags.snapshot);
}

/** One feature's flag, as OpenFeature evaluates it. */
export function useFeatureFlag(feature: Feature): FeatureFlag {
  return useCutoverFlags()[feature];
}

/** Whether this client renders `feature` from WebSocket: OpenFeature's boolean flag `feature`. */
export function useWebSocketEnabled(feature: Feature): boolean {
  return useFeatureFlag(feature).source === "websocket";
}

/**
 * The data of one feature's view (`params`: account for balance/positions, symbol for intraday),
 * with its flag, source, newest `seq`, update time and error. Registers the view with the
 * runtime while mounted, which polls REST or listens to WebSocket by the feature's source.
 */
export function useFeatureData(feature: Feature, params: FeatureParams = {}): FeatureView {
  const runtime = useLiveRuntime();
  const key = interestKey(feature, params);
  // `params` is usually a fresh object each render: depend on its key, not its identity.
  const stable = useMemo(() => ({ ...params }), [key]);
  useEffect(() => runtime.register(feature, stable), [runtime, feature, stable]);
  const revision = useSyncExternalStore(runtime.subscribe, runtime.getRevision);
  return useMemo(() => runtime.view(feature, stable), [runtime, feature, stable, revision]);
}
