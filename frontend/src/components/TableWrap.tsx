import type { ReactNode } from "react";

/**
 * A table's horizontal scroll box. On a narrow screen the table scrolls sideways inside it rather
 * than clipping or widening the page; it is focusable and named, so a keyboard can scroll it too
 * (axe: scrollable-region-focusable).
 */
export function TableWrap({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div className="table-wrap" role="region" aria-label={label} tabIndex={0}>
      {children}
    </div>
  );
}
