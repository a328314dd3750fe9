import type { ReactNode } from "react";

import { useNow } from "../hooks/useNow";
import { useFeatureFlag } from "../hooks/useWebSocketAware";
import type { FeatureView } from "../services/live";
import { formatAge, formatClock } from "./format";
import { SourceBadge } from "./SourceBadge";

interface PanelProps {
  title: string;
  view: FeatureView;
  /** The `seq` shown when it is not simply the view's newest (intraday shows the bar's). */
  seq?: number | null;
  /** Controls in the heading line, between the title and the badge (the intraday symbol picker). */
  controls?: ReactNode;
  /** Whether the panel has something to show yet. */
  ready: boolean;
  /** Where the panel sits in the dashboard's grid (`panel-account`, …). */
  className?: string;
  /** Extra items for the footer line (the chart attribution). */
  meta?: ReactNode;
  children: ReactNode;
}

/**
 * A feature panel: heading, source badge, data, and the `seq` and age of what is shown. The
 * badge (and `data-source`, `data-stage`) say what OpenFeature answers for the feature. While
 * the view is stale (socket down for a WebSocket-rendered feature, or a failed REST refresh) it
 * is dimmed, says since when, and carries `data-stale="true"`; the badge stops saying WebSocket.
 */
export function Panel({ title, view, seq = view.seq, controls, ready, className, meta, children }: PanelProps) {
  const now = useNow(250);
  const flag = useFeatureFlag(view.feature);
  const delivering = !(flag.source === "websocket" && view.stale);
  return (
    <section
      aria-label={title}
      className={className ? `panel ${className}` : "panel"}
      data-source={flag.source}
      data-stage={flag.stage}
      data-stale={view.stale ? "true" : undefined}
    >
      <header className="panel-head">
        <h2>{title}</h2>
        {controls}
        <SourceBadge source={flag.source} stage={flag.stage} delivering={delivering} />
      </header>
      <div className="panel-body">
        {ready ? children : <p className="placeholder">{view.error ?? "Waiting for data…"}</p>}
      </div>
      <footer className="panel-meta">
        {seq !== null ? (
          <span>
            seq <span data-testid="seq">{seq}</span>
          </span>
        ) : null}
        {view.updatedAt !== null ? (
          <span>
            updated <span data-testid="updated">{formatAge(view.updatedAt, Math.max(now, view.updatedAt))}</span>
          </span>
        ) : null}
        {view.staleSince !== null ? (
          <StaleNote
            since={view.staleSince}
            why={
              view.source === "websocket"
                ? "The WebSocket is not connected; this catches up by itself when it reconnects"
                : `The last REST refresh failed${view.error ? ` (${view.error})` : ""}; polling goes on`
            }
          />
        ) : null}
        {/* A stale view's error is in its stale note's title: one line, not two. */}
        {ready && view.error && !view.stale ? <span className="panel-error">{view.error}</span> : null}
        {meta}
      </footer>
    </section>
  );
}

/** "stale since HH:MM:SS" (local wall clock), with why in its title. */
export function StaleNote({ since, why }: { since: number; why: string }) {
  return (
    <span className="panel-stale" data-testid="stale" title={why}>
      stale since {formatClock(since)}
    </span>
  );
}
