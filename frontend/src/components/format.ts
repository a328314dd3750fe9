/** Number, time and age formatting for the panels (fixed en-US so the e2e tests can parse it). */

import { tickDecimals } from "../instruments";

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** `1234567.891` -> `1,234,567.89`; "—" for a missing value. */
export function formatMoney(value: number | null | undefined): string {
  return typeof value === "number" && Number.isFinite(value) ? money.format(value) : "—";
}

const priceFormats = new Map<number, Intl.NumberFormat>();

function priceFormat(decimals: number): Intl.NumberFormat {
  let format = priceFormats.get(decimals);
  if (!format) {
    format = new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
    priceFormats.set(decimals, format);
  }
  return format;
}

/**
 * A price of `symbol` with the decimals of its tick size (services/instruments.ts): ES `5950.25`,
 * YM `43,931`, GC `2,650.4`, CL `68.50`. Averages (VWAP, average fill price) are not on the tick
 * grid; they are rounded to the tick's decimals, not snapped to a tick. Without a known symbol:
 * as many decimals as the value needs, at least two (`68.5` -> `68.50`, `1.2345` -> `1.2345`).
 */
export function formatPrice(value: number | null | undefined, symbol?: string): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const decimals =
    (symbol !== undefined ? tickDecimals(symbol) : null) ??
    Math.min(6, Math.max(2, (String(value).split(".")[1] ?? "").length));
  return priceFormat(decimals).format(value);
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

/** A wall-clock instant (ms since the epoch) as the viewer's local `HH:MM:SS` ("stale since 14:02:03"). */
export function formatClock(at: number): string {
  const d = new Date(at);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** A duration in seconds, short: `4 s`, `3m 10s`, `2h 05m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Milliseconds, short: `12 ms`, `1.4 s`; "—" for a missing value. */
export function formatMs(value: number | null | undefined): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}
