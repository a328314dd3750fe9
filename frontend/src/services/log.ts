/**
 * Debug logging of WebSocket traffic the page does not render (shadow messages).
 *
 * On by default at `console.debug` (hidden unless the console shows "Verbose"); set localStorage
 * `thor.wsLog` to "off" to silence it. Never console.error/warn: disconnects and 401s before
 * login are expected, and the end-to-end tests fail on any console error.
 */

export const WS_LOG_KEY = "thor.wsLog";

export function wsLogEnabled(storage: Pick<Storage, "getItem"> | null = safeStorage()): boolean {
  try {
    return storage?.getItem(WS_LOG_KEY) !== "off";
  } catch {
    return true;
  }
}

export function wsDebug(...args: unknown[]): void {
  if (wsLogEnabled()) console.debug("[WS]", ...args);
}

function safeStorage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
