/** Number, time and age formatting for the panels (fixed en-US so the e2e tests can parse it). */

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** `1234567.891` -> `1,234,567.89`; "—" for a missing value. */
export function formatMoney(value: number | null | undefined): string {
  return typeof value === "number" && Number.isFinite(value) ? money.format(value) : "—";
}

/** A price with as many decimals as it needs, at least two: `68.5` -> `68.50`, `2380.1` -> `2,380.10`. */
export function formatPrice(value: number | null | undefined): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const decimals = Math.min(6, Math.max(2, (String(value).split(".")[1] ?? "").length));
  return new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals }).format(
    value,
  );
}

export function formatInteger(value: number | null | undefined): string {
  return typeof value === "number" && Number.isFinite(value) ? integer.format(value) : "—";
}

/** Age of an update: `0.4 s ago`, `12.0 s ago`, `3 min ago`, `2 h ago`. */
export function formatAge(updatedAt: number, now: number): string {
  const seconds = Math.max(0, now - updatedAt) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

/** An ISO time as `HH:MM:SS` UTC (simulated times; the market clock is not the viewer's). */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return `${at.toISOString().slice(11, 19)} UTC`;
}

/** An ISO time within the coming week as `Tue 14:30 UTC`. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const day = at.toLocaleDateString("en-GB", { weekday: "short", timeZone: "UTC" });
  return `${day} ${at.toISOString().slice(11, 16)} UTC`;
}

/** A rate with one decimal: `2.5`. */
export function formatRate(value: number): string {
  return value.toFixed(1);
}
