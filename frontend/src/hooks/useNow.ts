import { useEffect, useState } from "react";

/** The current time, refreshed every `intervalMs` (for "updated 0.4 s ago" and rates). */
export function useNow(intervalMs: number, now: () => number = Date.now): number {
  const [value, setValue] = useState(now);
  useEffect(() => {
    const id = setInterval(() => setValue(now()), intervalMs);
    return () => clearInterval(id);
  }, [intervalMs, now]);
  return value;
}
