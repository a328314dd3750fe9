import react from "@vitejs/plugin-react";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";

import { pageBuild } from "./page-build.mjs";

// Local development only: in production the backend serves dist/ on the same origin as REST
// and WebSocket, so the page uses relative URLs and needs no proxy.
const backend = "http://127.0.0.1:8000";

// The build id (THOR_PAGE_BUILD, else a hash of the page's sources): compiled into the page, which
// sends it with every REST call (`X-Thor-Client: page/<id>`, services/http.ts), and written to
// dist/build.json for the backend, which publishes the build it serves.
const build = pageBuild(decodeURIComponent(new URL(".", import.meta.url).pathname));

const buildJson: Plugin = {
  name: "thor-build-json",
  apply: "build",
  generateBundle() {
    this.emitFile({ type: "asset", fileName: "build.json", source: `${JSON.stringify({ build })}\n` });
  },
};

export default defineConfig(({ mode }) => ({
  plugins: [react(), buildJson],
  base: "/",
  define: { __THOR_PAGE_BUILD__: JSON.stringify(build) },
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
