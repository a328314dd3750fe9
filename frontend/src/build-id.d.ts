/** The page's build id, replaced at build time (vite.config.ts `define`; page-build.mjs says how it is made). */
declare const __THOR_PAGE_BUILD__: string;
