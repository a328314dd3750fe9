import { describe, expect, it, vi } from "vitest";

import { Subscribable } from "./subscribable";

describe("Subscribable", () => {
  it("calls every listener with the notified arguments, in subscription order", () => {
    const channel = new Subscribable<[name: string, n: number]>();
    const calls: string[] = [];
    channel.subscribe((name, n) => calls.push(`a:${name}:${n}`));
    channel.subscribe((name, n) => calls.push(`b:${name}:${n}`));
    channel.notify("x", 1);
    expect(calls).toEqual(["a:x:1", "b:x:1"]);
  });

  it("stops calling a listener once its undo ran, and keeps the others", () => {
    const channel = new Subscribable();
    const kept = vi.fn();
    const dropped = vi.fn();
    channel.subscribe(kept);
    const off = channel.subscribe(dropped);
    off();
    off(); // twice is harmless
    channel.notify();
    expect(kept).toHaveBeenCalledTimes(1);
    expect(dropped).not.toHaveBeenCalled();
  });

  it("holds a listener once however often it subscribed", () => {
    const channel = new Subscribable();
    const listener = vi.fn();
    const off = channel.subscribe(listener);
    channel.subscribe(listener);
    channel.notify();
    expect(listener).toHaveBeenCalledTimes(1);
    off();
    channel.notify();
    expect(listener).toHaveBeenCalledTimes(1);
  });

  it("notifies the listeners present when notify began, whatever they change meanwhile", () => {
    const channel = new Subscribable();
    const calls: string[] = [];
    const late = () => calls.push("late");
    let offSecond = () => {};
    channel.subscribe(() => {
      calls.push("first");
      offSecond(); // e.g. a stop() that unwires every listener
      channel.subscribe(late);
    });
    offSecond = channel.subscribe(() => calls.push("second"));
    channel.notify();
    expect(calls).toEqual(["first", "second"]);
    channel.notify();
    expect(calls).toEqual(["first", "second", "first", "late"]);
  });

  it("subscribe works detached from the object (as useSyncExternalStore calls it)", () => {
    const channel = new Subscribable();
    const { subscribe } = channel;
    const listener = vi.fn();
    const off = subscribe(listener);
    channel.notify();
    off();
    channel.notify();
    expect(listener).toHaveBeenCalledTimes(1);
  });
});
