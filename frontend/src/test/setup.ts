import { cleanup } from "@testing-library/react";
import { afterEach, beforeEach, expect, vi } from "vitest";
import type { MockInstance } from "vitest";

let errors: MockInstance<typeof console.error>;
let warnings: MockInstance<typeof console.warn>;

beforeEach(() => {
  // The page logs WebSocket traffic at debug level; keep test output readable.
  vi.spyOn(console, "debug").mockImplementation(() => {});
  // The end-to-end tests fail on any console error; so do these (React act() warnings included).
  errors = vi.spyOn(console, "error");
  warnings = vi.spyOn(console, "warn");
});

// Vitest has no globals here, so Testing Library cannot register its own cleanup.
afterEach(() => {
  cleanup();
  localStorage.clear();
  expect(errors, "console.error was called").not.toHaveBeenCalled();
  expect(warnings, "console.warn was called").not.toHaveBeenCalled();
});
