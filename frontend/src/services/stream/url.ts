import { FEATURES } from "../../types";
import type { Feature } from "../../types";

/** `ws(s)://<host>/ws/stream/?client=…&features=…` for the page's own origin. */
export function streamUrl(
  location: { protocol: string; host: string },
  clientId: string,
  features: readonly Feature[] = FEATURES,
): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // The feature list is sent with literal commas, as the brief's URL shows (Django splits on ",").
  return `${scheme}//${location.host}/ws/stream/?client=${encodeURIComponent(clientId)}&features=${features.join(",")}`;
}
