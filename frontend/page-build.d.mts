/** Types of page-build.mjs (Node, build time only). */
export declare const BUILD_ID: RegExp;
export declare const SOURCES: readonly string[];
/** The build id: `THOR_PAGE_BUILD`, else 12 hex digits of a hash of the page's sources under `root`. */
export declare function pageBuild(root: string, env?: Record<string, string | undefined>): string;
