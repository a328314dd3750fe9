import type { ReactNode } from "react";

import { useNow } from "../hooks/useNow";
import type { FeatureView } from "../services/live";
import { formatAge } from "./format";
import { SourceBadge } from "./SourceBadge";

interface PanelProps {
  title: string;
  view: FeatureView;
  /** The `seq` shown when it is not simply the view's newest (intraday shows the bar's). */
  seq?: number | null;
  /** Controls between the heading and the data (the intraday symbol picker). */
  controls?: ReactNode;
  /** Whether the panel has something to show yet. */
  ready: boolean;
  children: ReactNode;
}

/** A feature panel: heading, source badge, data, and the `seq` and age of what is shown. */
export function Panel({ title, view, seq = view.seq, controls, ready, children }: PanelProps) {
  const now = useNow(250);
  return (
    <section
      aria-label={title}
      className="panel"
      data-source={view.source}
      data-stage={view.flag.stage}
      data-stale={view.stale ? "true" : undefined}
    >
      <header className="panel-head">
        <h2>{title}</h2>
        <SourceBadge source={view.source} stage={view.flag.stage} />
      </header>
      {controls}
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
        {view.stale ? (
          // Not polled meanwhile: REST is retired at complete, and the resume on reconnect catches up.
          <span
            className="panel-stale"
            data-testid="stale"
            title="The WebSocket is not connected; this catches up by itself when it reconnects"
          >
            stale: not connected
          </span>
        ) : null}
        {ready && view.error ? <span className="panel-error">{view.error}</span> : null}
      </footer>
    </section>
  );
}
