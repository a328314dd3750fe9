/** React access to the page's data runtime and its WebSocket connection. */

import { createContext, useContext, useSyncExternalStore } from "react";

import type { LiveRuntime } from "../services/live";
import type { ConnectionState, WebSocketManager } from "../services/stream";

/** Provided once by the dashboard; tests provide a runtime built on fakes. */
export const LiveRuntimeContext = createContext<LiveRuntime | null>(null);

export function useLiveRuntime(): LiveRuntime {
  const runtime = useContext(LiveRuntimeContext);
  if (!runtime) throw new Error("useLiveRuntime() needs a <LiveRuntimeContext.Provider> above it");
  return runtime;
}

export interface UseWebSocket {
  state: ConnectionState;
  manager: WebSocketManager;
  /** Send a JSON command (e.g. `{action: "flags"}`); false when not connected. */
  send: (command: Record<string, unknown>) => boolean;
}

/** The connection state (re-renders on change) and the manager. */
export function useWebSocket(): UseWebSocket {
  const runtime = useLiveRuntime();
  const manager = runtime.manager;
  const state = useSyncExternalStore(
    (listener) => manager.on("state", listener),
    () => manager.getState(),
  );
  return { state, manager, send: (command) => manager.send(command) };
}

export function useConnectionState(): ConnectionState {
  return useWebSocket().state;
}
