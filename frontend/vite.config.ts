import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// Local development only: in production the backend serves dist/ on the same origin as REST
// and WebSocket, so the page uses relative URLs and needs no proxy.
const backend = "http://127.0.0.1:8000";

export default defineConfig(({ mode }) => ({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
  },
  server: {
    // Keep the browser's Host header (no changeOrigin): Django's CSRF check compares Origin with Host.
    proxy: {
      "/api": { target: backend },
      "/ws": { target: backend, ws: true },
      "/metrics": { target: backend },
    },
    // Tests only: instruments.test.ts reads the backend's contract table (market.py) as text.
    ...(mode === "test" ? { fs: { allow: [".", "../backend/thor_trading"] } } : {}),
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["./src/test/setup.ts"],
    restoreMocks: true,
    // jsdom has no canvas: the charts run on a recording stand-in (the real one is tested in Chromium, tests/e2e).
    alias: {
      "lightweight-charts": decodeURIComponent(new URL("./src/test/lightweight-charts-fake.ts", import.meta.url).pathname),
    },
  },
}));
