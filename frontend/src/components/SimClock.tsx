import { useHistory, useOps } from "../hooks/useDesk";
import { simClockLabel } from "../services/sim-clock";
import { formatTime } from "./format";

/**
 * The market clock, labelled as what it is: simulated time running at `THOR_SIM_SPEED` (60x by
 * default), so it is hours ahead of the wall clock after a few minutes. The speed is the
 * backend's `sim_speed` when the ops monitor reports it, else measured from the data.
 */
export function SimClock() {
  const history = useHistory();
  const ops = useOps();
  const reported = ops.data?.sim_speed ?? null;
  const speed = reported ?? history.clock.speed();
  const at = history.clock.marketTime;
  const how =
    reported !== null
      ? "speed reported by the backend (THOR_SIM_SPEED)"
      : speed !== null
        ? "speed measured from the data: simulated time (as_of) against the time it was written (ts)"
        : "the speed is measured once two updates have arrived";
  return (
    <span
      className="sim-clock"
      data-testid="sim-clock"
      title={`The demo market runs faster than the wall clock (one simulated minute per second at 60×), so its times run ahead of yours; ${how}.`}
    >
      <span className="sim-clock-time">Market {at === null ? "—" : formatTime(new Date(at).toISOString())}</span>{" "}
      <span className="subtle">{simClockLabel(speed)}</span>
    </span>
  );
}
