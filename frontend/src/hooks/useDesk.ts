/** React access to the dashboard's desk: the ops monitor, chart history and stream telemetry. */

import { createContext, useContext, useSyncExternalStore } from "react";

import type { Desk } from "../services/desk";
import type { MarketHistory } from "../services/history";
import type { OpsSnapshot } from "../services/ops";
import type { StreamTelemetry } from "../services/telemetry";

export const DeskContext = createContext<Desk | null>(null);

export function useDesk(): Desk {
  const desk = useContext(DeskContext);
  if (!desk) throw new Error("useDesk() needs a <DeskContext.Provider> above it");
  return desk;
}

/** The monitor as last polled; re-renders on every answer or failure. */
export function useOps(): OpsSnapshot {
  const { ops } = useDesk();
  return useSyncExternalStore(ops.subscribe, ops.snapshot);
}

/** The chart history; re-renders when a chart has something new. */
export function useHistory(): MarketHistory {
  const { history } = useDesk();
  useSyncExternalStore(history.subscribe, history.getRevision);
  return history;
}

/** The stream telemetry; re-renders at each sample (every second). */
export function useTelemetry(): StreamTelemetry {
  const { telemetry } = useDesk();
  useSyncExternalStore(telemetry.subscribe, telemetry.getRevision);
  return telemetry;
}
