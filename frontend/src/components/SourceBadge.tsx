import { badgeText } from "../hooks/useWebSocketAware";
import type { DataSource, Stage } from "../types";

interface SourceBadgeProps {
  source: DataSource;
  stage: Stage;
  /** False while a WebSocket-rendered feature's socket is down: the badge then says `Disconnected`. */
  delivering?: boolean;
}

/** `WebSocket`, `REST (shadow)`, `REST` or `Disconnected`: where this panel's numbers come from right now. */
export function SourceBadge({ source, stage, delivering = true }: SourceBadgeProps) {
  const text = badgeText(source, stage, delivering);
  const kind = text === "Disconnected" ? " badge-down" : text === "REST (shadow)" ? " badge-shadow" : "";
  const how =
    text === "Disconnected"
      ? "rendered from WebSocket push, which is not connected: what is shown is the last state received"
      : `rendering from ${source === "websocket" ? "WebSocket push" : "REST polling"}`;
  return (
    <span className={`badge badge-${source}${kind}`} data-testid="source-badge" title={`stage ${stage}, ${how}`}>
      {text}
    </span>
  );
}
