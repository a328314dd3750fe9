import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { Sparkline, sparkPath } from "./Sparkline";

describe("Sparkline", () => {
  it("draws one segment per run of values, broken at holes, scaled into the box", () => {
    const box = { from: 0, to: 100, width: 100, height: 23, min: 0, max: 10 };
    const d = sparkPath(
      [
        { t: 0, v: 0 },
        { t: 50, v: 10 },
        { t: 60, v: null },
        { t: 100, v: 5 },
      ],
      box,
    );
    expect(d).toBe("M0.0 21.5L50.0 1.5M100.0 11.5");
    expect(sparkPath([{ t: -5, v: 1 }], box)).toBe(""); // outside the span
  });

  it("is an image named by what it shows, its latest and highest value", () => {
    render(
      <Sparkline
        samples={[
          { t: 0, v: 2 },
          { t: 1000, v: 3.5 },
          { t: 2000, v: null },
        ]}
        label="positions messages per second, last 5 minutes"
        format={(v) => v.toFixed(1)}
        testId="spark-positions-rate"
        zeroBased
      />,
    );
    const svg = screen.getByRole("img", { name: /positions messages per second/ });
    expect(svg.getAttribute("aria-label")).toBe(
      "positions messages per second, last 5 minutes: latest 3.5, highest 3.5",
    );
    expect(svg.getAttribute("data-testid")).toBe("spark-positions-rate");
    expect(svg.getAttribute("data-points")).toBe("3");
    expect(svg.querySelector("path")?.getAttribute("d")).toMatch(/^M0\.0 .*L60\.0 /);
  });

  it("says so when there is nothing yet", () => {
    render(<Sparkline samples={[]} label="equity" format={String} testId="equity-spark" />);
    expect(screen.getByTestId("equity-spark").getAttribute("aria-label")).toBe("equity: no data yet");
    expect(screen.getByTestId("equity-spark").querySelector("path")).toBeNull();
  });
});
