import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// Local development only: in production the backend serves dist/ on the same origin as REST
// and WebSocket, so the page uses relative URLs and needs no proxy.
const backend = "http://127.0.0.1:8000";

export default defineConfig({
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
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["./src/test/setup.ts"],
    restoreMocks: true,
  },
});
