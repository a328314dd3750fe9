/**
 * The latest envelope per (type, key) that the views render, whichever side it came from.
 *
 * REST answers and pushed messages race (a poll answered just before a push, a gap refetch
 * answered after the next push), so an envelope older than the one held is refused: `seq` only
 * moves forward and a view never steps back to an older state. An equal `seq` refreshes
 * `receivedAt` (the state was confirmed current at that time) without changing the data.
 */

import type { DataSource, Envelope, EnvelopeType } from "../types";
import { Subscribable } from "./subscribable";

export interface StoredEnvelope<T = unknown> {
  envelope: Envelope<T>;
  /** The side that delivered the newest `seq`. */
  via: DataSource;
  /** When the state was last received or confirmed (ms since the epoch). */
  receivedAt: number;
}

export class FeatureStore {
  private readonly entries = new Map<string, StoredEnvelope>();
  private readonly changes = new Subscribable();
  private revision = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Store `envelope` unless an entry with a newer `seq` is held; returns whether it was stored. */
  apply(envelope: Envelope, via: DataSource): boolean {
    const id = `${envelope.type}|${envelope.key}`;
    const current = this.entries.get(id);
    if (current && envelope.seq < current.envelope.seq) return false;
    const same = current !== undefined && envelope.seq === current.envelope.seq;
    this.entries.set(id, {
      envelope: same ? current.envelope : envelope,
      via: same ? current.via : via,
      receivedAt: this.now(),
    });
    this.revision += 1;
    this.changes.notify();
    return true;
  }

  get<T = unknown>(type: EnvelopeType, key: string): StoredEnvelope<T> | undefined {
    return this.entries.get(`${type}|${key}`) as StoredEnvelope<T> | undefined;
  }

  /** Every entry of `type`, ordered by key. */
  all<T = unknown>(type: EnvelopeType): StoredEnvelope<T>[] {
    const out: StoredEnvelope<T>[] = [];
    for (const entry of this.entries.values()) {
      if (entry.envelope.type === type) out.push(entry as StoredEnvelope<T>);
    }
    return out.sort((a, b) => (a.envelope.key < b.envelope.key ? -1 : a.envelope.key > b.envelope.key ? 1 : 0));
  }

  /** A number that changes whenever anything is stored (a `useSyncExternalStore` snapshot). */
  getRevision(): number {
    return this.revision;
  }

  subscribe(listener: () => void): () => void {
    return this.changes.subscribe(listener);
  }

  clear(): void {
    this.entries.clear();
    this.revision += 1;
    this.changes.notify();
  }
}
