import type { ReactNode } from "react";

import type { OpsFeature, OpsRestReader } from "../services/ops";
import type { Sample } from "../services/series";
import type { Feature, Stage } from "../types";
import { formatDuration, formatInteger, formatMs, formatRate, formatTime } from "./format";
import { Sparkline } from "./Sparkline";

interface ParityRowProps {
  feature: Feature;
  /** The feature as the ops monitor last reported it; undefined while it cannot be read. */
  ops: OpsFeature | undefined;
  /** Seconds since the monitor answer was received (ages move on between polls). */
  sinceAnswerS: number;
  rate: readonly Sample[];
  lag: readonly Sample[];
  /** The sparklines' span, ms since the epoch. */
  from: number;
  to: number;
  /** Stage buttons are drawn only for operators. */
  operator: boolean;
  onMove: (feature: Feature, to: Stage, opener: HTMLElement) => void;
}

/** A button's visible word and its accessible name (the whole move; it contains the word, as WCAG 2.5.3 asks). */
function moveWords(feature: Feature, from: Stage, to: Stage): [word: string, name: string] {
  if (to === "live" && from === "live") return ["percent", `Change the live percent of ${feature}`];
  if (to === "shadow" && (from === "live" || from === "complete"))
    return ["roll back", `roll back ${feature} to shadow`];
  return [to, `Move ${feature} to ${to}`];
}

/** "page/abc: 40 · token/ci: 12" (at most `shown` readers, then how many more), for a title. */
export function readersText(readers: readonly OpsRestReader[], shown = 8): string {
  if (!readers.length) return "no REST reads in the last 5 minutes";
  const named = readers.slice(0, shown).map((r) => `${r.label}: ${formatInteger(r.count)}`);
  const more = readers.length > shown ? ` · ${readers.length - shown} more` : "";
  return `REST reads, last 5 min — ${named.join(" · ")}${more}`;
}

/**
 * One feature of the shadow monitor: its stage, the stored parity verdict (age, reason,
 * counts, lag, last mismatching path), who still reads its REST endpoints (reads/min over the
 * last 5 minutes, the readers in the title), a ramp or guard in progress, the page's own view of
 * the stream (messages/s and freshness lag, last 5 minutes), and for operators the allowed moves.
 */
export function ParityRow({ feature, ops, sinceAnswerS, rate, lag, from, to, operator, onMove }: ParityRowProps) {
  const v = ops?.verdict ?? null;
  const verdictText = ops === undefined ? "—" : v ? v.verdict : "no verdict";
  const verdictClass = v ? `verdict verdict-${v.verdict.toLowerCase()}` : "verdict verdict-none";
  const age = v && v.age_s !== null ? `${formatDuration(v.age_s + sinceAnswerS)} ago` : "—";
  const reason = v
    ? v.reasons.length
      ? v.reasons.join("; ")
      : v.verdict === "PASS"
        ? "every pair matched"
        : "—"
    : "—";
  const ramp = ops?.ramp ? (ops.ramp.text ?? ops.ramp.status ?? "ramping") : "—";
  const guard = ops?.guard
    ? `guarded by ${ops.guard.host}:${ops.guard.pid ?? "?"}${ops.guard.since ? ` since ${formatTime(ops.guard.since)}` : ""}`
    : "—";
  const restRate = ops?.rest_reads_per_min ?? null;
  const readers = ops ? readersText(ops.rest_readers) : "—";
  const latestRate = rate[rate.length - 1]?.v ?? null;
  // Messages come about once a second, sampled once a second: the newest lag of the last 5 s, so
  // the figure does not blink to "—" on every second that happened to get none.
  const latestLag = [...lag].reverse().find((s) => s.v !== null && s.t >= to - 5000)?.v ?? null;
  return (
    <li className="parity-row" data-testid={`monitor-${feature}`} data-verdict={v?.verdict ?? "none"} tabIndex={-1}>
      <div className="parity-id">
        <code className="parity-name">{feature}</code>
        {ops ? (
          <span
            className={`stage stage-${ops.stage}`}
            title={ops.updated_by ? `by ${ops.updated_by}${ops.reason ? `: ${ops.reason}` : ""}` : undefined}
          >
            {ops.stage}
            {ops.stage === "live" ? ` ${ops.percent}%` : ""}
          </span>
        ) : null}
      </div>
      <div className="parity-main">
        <div className="parity-verdict">
          <span className={verdictClass} data-testid="verdict">
            {verdictText}
          </span>
          <span className="subtle" data-testid="verdict-age" title={v?.judged_at ?? undefined}>
            {age}
          </span>
          {v ? (
            <span
              className={v.valid ? "gate gate-open" : "gate"}
              title={v.source ? `judged by ${v.source}` : undefined}
            >
              {v.valid ? "opens gate" : "gate closed"}
            </span>
          ) : null}
          <span className="parity-reason" data-testid="verdict-reason" title={reason}>
            {reason}
          </span>
        </div>
        <dl className="parity-metrics">
          <Metric term="Paired">{formatInteger(v?.paired)}</Metric>
          <Metric term="Mismatched">
            <span className={v?.mismatched ? "negative" : undefined}>{formatInteger(v?.mismatched)}</span>
          </Metric>
          <Metric term="Gaps">{formatInteger(v?.gaps)}</Metric>
          <Metric term="Resyncs">{formatInteger(v?.resyncs)}</Metric>
          <Metric term="Lag" title="freshness lag of the diff's pairs: mean / max">
            {formatMs(v?.lag_ms.mean)} / {formatMs(v?.lag_ms.max)}
          </Metric>
        </dl>
        <dl className="parity-metrics">
          <Metric term="REST reads/min" title={readers} testId="rest-reads">
            {restRate === null ? "—" : formatRate(restRate)}
          </Metric>
          <Metric term="Mismatch at" title={v?.last_mismatch_path ?? "—"}>
            <code data-testid="last-mismatch">{v?.last_mismatch_path ?? "—"}</code>
          </Metric>
          <Metric term="Ramp" title={ops?.ramp?.why ? `${ramp} (${ops.ramp.why})` : ramp} testId="ramp">
            {ramp}
          </Metric>
          <Metric term="Guard" title={guard} testId="guard">
            {guard}
          </Metric>
        </dl>
      </div>
      <div className="parity-sparks">
        <div className="spark-cell">
          <span className="subtle">msgs/s {latestRate === null ? "—" : formatRate(latestRate)}</span>
          <Sparkline
            samples={rate}
            from={from}
            to={to}
            zeroBased
            label={`${feature} WebSocket messages per second, last 5 minutes`}
            format={formatRate}
            testId={`spark-${feature}-rate`}
          />
        </div>
        <div className="spark-cell">
          <span className="subtle">lag {formatMs(latestLag)}</span>
          <Sparkline
            samples={lag}
            from={from}
            to={to}
            zeroBased
            label={`${feature} freshness lag (receipt minus write time), last 5 minutes`}
            format={formatMs}
            testId={`spark-${feature}-lag`}
          />
        </div>
      </div>
      {operator && ops && ops.allowed.length ? (
        <div className="parity-actions" role="group" aria-label={`Stage of ${feature}`}>
          {ops.allowed.map((target) => {
            const [word, name] = moveWords(feature, ops.stage, target);
            return (
              <button
                key={target}
                type="button"
                className={word === "roll back" ? "secondary danger" : "secondary"}
                data-testid={`stage-${feature}-${target}`}
                aria-label={name}
                onClick={(e) => onMove(feature, target, e.currentTarget)}
              >
                {word}
              </button>
            );
          })}
        </div>
      ) : null}
    </li>
  );
}

/**
 * One term of the metrics line. The value keeps to one line; a longer one ends in "…" and the
 * whole of it is in the title (a path or a ramp's status line can be long).
 */
function Metric({
  term,
  title,
  testId,
  children,
}: {
  term: string;
  title?: string;
  testId?: string;
  children: ReactNode;
}) {
  return (
    <div>
      <dt>{term}</dt>
      <dd data-testid={testId} title={title}>
        {children}
      </dd>
    </div>
  );
}
