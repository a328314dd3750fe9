/**
 * A set of listeners with subscribe/notify: the one implementation behind every `subscribe` and
 * `on(...)` of the services (after TanStack Query's `Subscribable`).
 *
 * Owners hold one per channel rather than extending it: the WebSocket manager has a channel per
 * event and per message type, and a class can only extend once.
 */

export type Listener<TArgs extends unknown[]> = (...args: TArgs) => void;

export class Subscribable<TArgs extends unknown[] = []> {
  private readonly listeners = new Set<Listener<TArgs>>();

  /**
   * Add `listener` (once, however often it is passed); returns the undo. Bound, because React's
   * `useSyncExternalStore` and the owners pass it around detached from this object.
   */
  readonly subscribe = (listener: Listener<TArgs>): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /**
   * Call every listener with `args`. A copy is walked, so a listener that subscribes or
   * unsubscribes another (a re-render, a stop on 4401) changes the next notify, not this one.
   */
  notify(...args: TArgs): void {
    for (const listener of [...this.listeners]) listener(...args);
  }
}
