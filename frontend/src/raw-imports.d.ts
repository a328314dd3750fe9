/** Vite's `?raw` imports (a file's text), used by contract tests that read the backend's source. */
declare module "*?raw" {
  const text: string;
  export default text;
}
