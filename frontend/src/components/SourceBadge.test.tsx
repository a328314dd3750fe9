import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import type { DataSource, Stage } from "../types";
import { SourceBadge } from "./SourceBadge";

describe("SourceBadge", () => {
  const cases: Array<[DataSource, Stage, string]> = [
    ["websocket", "live", "WebSocket"],
    ["websocket", "complete", "WebSocket"],
    ["rest", "shadow", "REST (shadow)"],
    ["rest", "live", "REST"],
    ["rest", "off", "REST"],
  ];
  it.each(cases)("source %s at stage %s reads %s", (source, stage, text) => {
    render(<SourceBadge source={source} stage={stage} />);
    expect(screen.getByTestId("source-badge").textContent).toBe(text);
  });

  it.each(["live", "complete"] as Stage[])(
    "never says WebSocket while the socket is not delivering (stage %s)",
    (stage) => {
      render(<SourceBadge source="websocket" stage={stage} delivering={false} />);
      expect(screen.getByTestId("source-badge").textContent).toBe("Disconnected");
    },
  );

  it("keeps a REST badge when not delivering: REST does not depend on the socket", () => {
    render(<SourceBadge source="rest" stage="shadow" delivering={false} />);
    expect(screen.getByTestId("source-badge").textContent).toBe("REST (shadow)");
  });
});
