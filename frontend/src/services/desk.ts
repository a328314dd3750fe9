/**
 * Everything the dashboard runs beside the data runtime: the operations monitor poller, the
 * chart history and the stream telemetry. One object so the dashboard starts, stops and waits for
 * them together (logout waits for in-flight requests, as it does for the runtime's).
 *
 * The monitor is read at once whenever a flag changes (a `flags` message: a stage moved, from
 * the page, the CLI or a ramp), not only at its 2 s poll, so the stage it shows follows the panels.
 */

import type { LiveRuntime } from "./live";
import { MarketHistory } from "./history";
import { OpsMonitor } from "./ops";
import type { OpsMonitorOptions } from "./ops";
import { StreamTelemetry } from "./telemetry";

export interface DeskOptions {
  onUnauthorized?: () => void;
  ops?: Omit<OpsMonitorOptions, "onUnauthorized">;
}

export class Desk {
  readonly ops: OpsMonitor;
  readonly history: MarketHistory;
  readonly telemetry: StreamTelemetry;
  private offFlags: (() => void) | null = null;

  constructor(
    readonly runtime: LiveRuntime,
    options: DeskOptions = {},
  ) {
    this.ops = new OpsMonitor(runtime.api, {
      ...options.ops,
      ...(options.onUnauthorized ? { onUnauthorized: options.onUnauthorized } : {}),
    });
    this.history = new MarketHistory(runtime.store);
    this.telemetry = new StreamTelemetry(runtime.manager, {
      clockOffsetMs: () => this.ops.snapshot().clockOffsetMs,
    });
  }

  start(): void {
    this.history.start();
    this.telemetry.start();
    this.ops.start();
    this.offFlags ??= this.runtime.cutover.subscribe(() => void this.ops.refresh(true));
  }

  stop(): void {
    this.offFlags?.();
    this.offFlags = null;
    this.ops.stop();
    this.telemetry.stop();
    this.history.stop();
  }

  idle(): Promise<void> {
    return this.ops.idle();
  }
}
