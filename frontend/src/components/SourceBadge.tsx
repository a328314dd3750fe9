import { badgeText } from "../hooks/useWebSocketAware";
import type { DataSource, Stage } from "../types";

/** `WebSocket`, `REST (shadow)` or `REST`: where this panel's numbers come from right now. */
export function SourceBadge({ source, stage }: { source: DataSource; stage: Stage }) {
  const text = badgeText(source, stage);
  return (
    <span
      className={`badge badge-${source}${text === "REST (shadow)" ? " badge-shadow" : ""}`}
      data-testid="source-badge"
      title={`stage ${stage}, rendering from ${source === "websocket" ? "WebSocket push" : "REST polling"}`}
    >
      {text}
    </span>
  );
}
