import { useEffect, useId, useRef, useState } from "react";
import type { FormEvent } from "react";
import { createPortal } from "react-dom";

import type { OpsVerdict, StageRequest } from "../services/ops";
import { HttpError } from "../services/http";
import type { Feature, Stage } from "../types";

export interface StageMove {
  feature: Feature;
  from: Stage;
  to: Stage;
  /** The feature's current percent (a live → live move changes only that). */
  percent: number;
  verdict: OpsVerdict | null;
}

interface StageDialogProps {
  move: StageMove;
  /** Posts the change; raises HttpError with the server's message when refused. */
  onSubmit: (request: StageRequest) => Promise<void>;
  /** The dialog is done (confirmed or cancelled); focus goes back to `returnFocus`. */
  onClose: () => void;
  /** Where focus goes when the dialog closes (the button that opened it); else the page decides. */
  returnFocus?: HTMLElement | null;
}

const FOCUSABLE =
  'button:not([disabled]), textarea:not([disabled]), input:not([disabled]), select:not([disabled]), [href], [tabindex]:not([tabindex="-1"])';

/** What a move is called: "Enable", "Roll back", "Change percent", … */
export function moveTitle(from: Stage, to: Stage): string {
  if (to === "live") return from === "live" ? "Change the live percent" : "Enable (shadow → live)";
  if (to === "shadow") return from === "off" ? "Start shadowing (off → shadow)" : `Roll back (${from} → shadow)`;
  if (to === "complete") return "Complete (live → complete)";
  return `Turn off (${from} → off)`;
}

/**
 * The confirmation of a stage change: a modal dialog asking for the reason (required, it goes to
 * the audit log), a percent for → live, and for → live the "Force past the parity gate" checkbox.
 * Focus starts in the reason, Tab stays inside, Escape cancels, and focus returns to the opener.
 * The page behind is `inert` while it is open. A refusal shows in the dialog as an alert with
 * the server's message (the gate's or the stage machine's), and the dialog stays open.
 */
export function StageDialog({ move, onSubmit, onClose, returnFocus }: StageDialogProps) {
  const id = useId();
  const box = useRef<HTMLDivElement>(null);
  const reasonRef = useRef<HTMLTextAreaElement>(null);
  const [reason, setReason] = useState("");
  const [percent, setPercent] = useState(move.from === "live" && move.to === "live" ? String(move.percent) : "");
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const toLive = move.to === "live";

  useEffect(() => {
    reasonRef.current?.focus();
    // The rest of the page is out of reach (keyboard and screen readers) while the dialog is open.
    const page = returnFocus?.closest(".app") ?? null;
    page?.setAttribute("inert", "");
    return () => {
      page?.removeAttribute("inert");
      if (returnFocus?.isConnected) returnFocus.focus();
    };
  }, [returnFocus]);

  // Keys are heard on the document, not the dialog box: they must work wherever focus is (a
  // click on the backdrop leaves it on <body>).
  const busyRef = useRef(busy);
  busyRef.current = busy;
  const closeRef = useRef(onClose);
  closeRef.current = onClose;
  useEffect(() => {
    function keyDown(event: KeyboardEvent) {
      if (event.key === "Escape") {
        event.preventDefault();
        if (!busyRef.current) closeRef.current();
        return;
      }
      if (event.key !== "Tab" || !box.current) return;
      const items = Array.from(box.current.querySelectorAll<HTMLElement>(FOCUSABLE));
      const first = items[0];
      const last = items[items.length - 1];
      if (!first || !last) return;
      const inside = box.current.contains(document.activeElement);
      if (!inside || (event.shiftKey && document.activeElement === first)) {
        event.preventDefault();
        (event.shiftKey ? last : first).focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    }
    document.addEventListener("keydown", keyDown);
    return () => document.removeEventListener("keydown", keyDown);
  }, []);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    if (busy) return;
    if (!reason.trim()) {
      setError("Give a reason: it is recorded in the audit log with your name.");
      reasonRef.current?.focus();
      return;
    }
    let pct: number | null = null;
    if (toLive && percent.trim() !== "") {
      pct = Number(percent);
      if (!Number.isInteger(pct) || pct < 0 || pct > 100) {
        setError("The percent is a whole number from 0 to 100.");
        return;
      }
    }
    setBusy(true);
    setError(null);
    try {
      await onSubmit({
        feature: move.feature,
        to: move.to,
        percent: pct,
        reason: reason.trim(),
        force: toLive && force,
      });
      onClose();
    } catch (e) {
      setBusy(false);
      if (e instanceof HttpError) setError(e.message);
      else setError(`The backend did not answer: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  const verdict = move.verdict;
  const gate = !toLive
    ? null
    : verdict === null
      ? "No parity verdict is stored: the gate will refuse unless you force it."
      : verdict.valid
        ? `The stored verdict (${verdict.verdict}) opens the gate.`
        : `The stored verdict (${verdict.verdict}) does not open the gate: the change is refused unless you force it.`;

  return createPortal(
    <div className="dialog-backdrop">
      <div
        ref={box}
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby={`${id}-title`}
        aria-describedby={`${id}-what`}
      >
        <form onSubmit={submit} noValidate>
          <h2 id={`${id}-title`}>{moveTitle(move.from, move.to)}</h2>
          <p id={`${id}-what`} className="subtle">
            <code>{move.feature}</code> is at <strong>{move.from}</strong>
            {move.from === "live" ? ` (${move.percent} %)` : ""}; this moves it to <strong>{move.to}</strong> through
            the flag store, audited under your name.{gate ? ` ${gate}` : ""}
          </p>
          <div className="field">
            <label htmlFor={`${id}-reason`}>Reason</label>
            <textarea
              id={`${id}-reason`}
              ref={reasonRef}
              required
              rows={3}
              value={reason}
              aria-invalid={error !== null && !reason.trim() ? true : undefined}
              onChange={(e) => setReason(e.target.value)}
            />
          </div>
          {toLive ? (
            <div className="field field-inline">
              <label htmlFor={`${id}-percent`}>Percent of clients</label>
              <input
                id={`${id}-percent`}
                type="number"
                inputMode="numeric"
                min={0}
                max={100}
                step={1}
                placeholder="100"
                value={percent}
                onChange={(e) => setPercent(e.target.value)}
              />
            </div>
          ) : null}
          {toLive ? (
            <div className="field field-check">
              <input id={`${id}-force`} type="checkbox" checked={force} onChange={(e) => setForce(e.target.checked)} />
              <label htmlFor={`${id}-force`}>Force past the parity gate</label>
            </div>
          ) : null}
          {error ? (
            <p className="error" role="alert">
              {error}
            </p>
          ) : null}
          <div className="dialog-actions">
            <button type="button" className="secondary" onClick={onClose} disabled={busy}>
              Cancel
            </button>
            {/* Not `disabled` while busy: a disabled button drops focus to <body>. */}
            <button type="submit" aria-disabled={busy} aria-busy={busy}>
              Confirm
            </button>
          </div>
        </form>
      </div>
    </div>,
    document.body,
  );
}
