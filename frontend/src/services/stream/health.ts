/**
 * What the stream is doing, per feature: messages, rate, gaps, resyncs, duplicates.
 *
 * `seq` is tracked per (type, key): a jump of more than one is a gap (counted, the message is
 * still delivered as the newest state); a `seq` seen before (or older) is a duplicate (counted,
 * not delivered). After a reconnect the baselines restart, since the new connection begins
 * wherever the server is: its first message is not a gap (docs/contracts.md, "The message
 * envelope").
 *
 * A jump that arrives marked `"resync": true` is a *resync*, not a gap: the server had no
 * history to replay and sent the current state instead, so the page is current again; it is
 * staleness that healed, counted apart ("Resuming a stream"). Across a reconnect its baseline is
 * the newest `seq` received before the drop, so a resync answering the page's `resume` is counted
 * too. The first envelope of a stream the page never received is neither, marked or not.
 */

import { FEATURES, TYPE_FEATURE, isFeature } from "../../types";
import type { Envelope, EnvelopeType, Feature } from "../../types";
import { isResync } from "./messages";
import type { ResumePoint, ServerMessage } from "./messages";

export interface FeatureCounters {
  /** Envelopes received (duplicates included). */
  messages: number;
  /** Envelopes per second over the last `rateWindowMs`. */
  rate: number;
  gaps: number;
  /** `seq` jumps that arrived marked `resync` (counted instead of a gap). */
  resyncs: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
}

/** The verdict on one envelope message. */
export type Tracked =
  | { kind: "bad" }
  | { kind: "duplicate"; envelope: Envelope }
  | { kind: "new"; envelope: Envelope; feature: Feature; gap: boolean; resync: boolean };

interface Tally {
  messages: number;
  gaps: number;
  resyncs: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
  times: number[];
}

function newTally(): Tally {
  return { messages: 0, gaps: 0, resyncs: 0, duplicates: 0, lastSeq: null, lastMessageAt: null, times: [] };
}

export class StreamHealth {
  /** The connection's baseline per (type, key): gaps and duplicates are judged against it. */
  private readonly lastSeq = new Map<string, number>();
  /** The newest `seq` received before this connection opened: the baseline of a resync that answers its resume. */
  private readonly resumedFrom = new Map<string, number>();
  /** The newest `seq` received per (type, key), over every connection: what the page resumes from. */
  private readonly newest = new Map<string, ResumePoint>();
  private readonly tallies = new Map<Feature, Tally>();

  /** Frames that were not a JSON object with a `type`, and envelopes without `seq` or `key`. */
  badFrames = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly rateWindowMs = 10_000,
  ) {
    for (const feature of FEATURES) this.tallies.set(feature, newTally());
  }

  /** A frame that was not a JSON object with a `type`. */
  badFrame(): void {
    this.badFrames += 1;
  }

  /** Count an envelope message of type `msg.type` and say whether it is new, a duplicate or malformed. */
  track(msg: ServerMessage): Tracked {
    const type = msg.type as EnvelopeType;
    const feature: Feature = isFeature(msg.feature) ? msg.feature : TYPE_FEATURE[type];
    const { seq, key } = msg;
    if (typeof seq !== "number" || typeof key !== "string") {
      this.badFrames += 1;
      return { kind: "bad" };
    }
    const envelope = msg as unknown as Envelope;
    const tally = this.tallies.get(feature) ?? newTally();
    const now = this.now();
    tally.messages += 1;
    tally.lastMessageAt = now;
    tally.times.push(now);
    prune(tally.times, now - this.rateWindowMs);

    const id = `${type}|${key}`;
    const last = this.lastSeq.get(id);
    if (last !== undefined && seq <= last) {
      tally.duplicates += 1;
      return { kind: "duplicate", envelope };
    }
    const marked = isResync(msg);
    const baseline = last ?? (marked ? this.resumedFrom.get(id) : undefined);
    const jumped = baseline !== undefined && seq > baseline + 1;
    const gap = jumped && !marked;
    const resync = jumped && marked;
    this.lastSeq.set(id, seq);
    const held = this.newest.get(id);
    if (!held || seq > held.seq) this.newest.set(id, { type, key, seq });
    tally.lastSeq = seq;
    if (gap) tally.gaps += 1;
    if (resync) tally.resyncs += 1;
    return { kind: "new", envelope, feature, gap, resync };
  }

  /**
   * A new connection: its first `seq` per (type, key) is neither a gap nor a duplicate, but a
   * marked one that jumps over what the page received before the drop is a resync. Counters stay.
   */
  restart(): void {
    this.lastSeq.clear();
    this.resumedFrom.clear();
    for (const [id, point] of this.newest) this.resumedFrom.set(id, point.seq);
  }

  /** The newest `seq` received per (type, key), over every connection (shadow traffic included). */
  received(): ResumePoint[] {
    return [...this.newest.values()];
  }

  /** Per-feature counters as of now (rates are computed at the call). */
  counters(): Record<Feature, FeatureCounters> {
    const now = this.now();
    const out = {} as Record<Feature, FeatureCounters>;
    for (const feature of FEATURES) {
      const t = this.tallies.get(feature) ?? newTally();
      prune(t.times, now - this.rateWindowMs);
      out[feature] = {
        messages: t.messages,
        rate: t.times.length / (this.rateWindowMs / 1000),
        gaps: t.gaps,
        resyncs: t.resyncs,
        duplicates: t.duplicates,
        lastSeq: t.lastSeq,
        lastMessageAt: t.lastMessageAt,
      };
    }
    return out;
  }
}

/** Drop timestamps older than `since` from the front of an ascending list. */
function prune(times: number[], since: number): void {
  let drop = 0;
  while (drop < times.length && (times[drop] ?? Infinity) <= since) drop += 1;
  if (drop) times.splice(0, drop);
}
