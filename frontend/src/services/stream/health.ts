/**
 * What the stream is doing, per feature: messages, rate, gaps, duplicates.
 *
 * `seq` is tracked per (type, key): a jump of more than one is a gap (counted, the message is
 * still delivered as the newest state); a `seq` seen before (or older) is a duplicate (counted,
 * not delivered). After a reconnect the baselines restart, since the new connection begins
 * wherever the server is.
 */

import { FEATURES, TYPE_FEATURE, isFeature } from "../../types";
import type { Envelope, EnvelopeType, Feature } from "../../types";
import type { ServerMessage } from "./messages";

export interface FeatureCounters {
  /** Envelopes received (duplicates included). */
  messages: number;
  /** Envelopes per second over the last `rateWindowMs`. */
  rate: number;
  gaps: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
}

/** The verdict on one envelope message. */
export type Tracked =
  | { kind: "bad" }
  | { kind: "duplicate"; envelope: Envelope }
  | { kind: "new"; envelope: Envelope; feature: Feature; gap: boolean };

interface Tally {
  messages: number;
  gaps: number;
  duplicates: number;
  lastSeq: number | null;
  lastMessageAt: number | null;
  times: number[];
}

function newTally(): Tally {
  return { messages: 0, gaps: 0, duplicates: 0, lastSeq: null, lastMessageAt: null, times: [] };
}

export class StreamHealth {
  private readonly lastSeq = new Map<string, number>();
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
    const gap = last !== undefined && seq > last + 1;
    this.lastSeq.set(id, seq);
    tally.lastSeq = seq;
    if (gap) tally.gaps += 1;
    return { kind: "new", envelope, feature, gap };
  }

  /** A new connection: its first `seq` per (type, key) is neither a gap nor a duplicate. Counters stay. */
  restart(): void {
    this.lastSeq.clear();
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
