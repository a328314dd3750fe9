// The page's build id, worked out when the page is built (vite.config.ts): the page sends it with
// every REST call as `X-Thor-Client: page/<id>`, and the build writes it to dist/build.json, which
// the backend publishes in Redis as the build it serves (docs/contracts.md, "Retiring REST").
// Plain JavaScript run by Node at build time: the page's own TypeScript has no Node types.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

/** What the id may be: `page/<id>` must be a client label (1 to 64 characters of A-Za-z0-9._:/@+-). */
export const BUILD_ID = /^[A-Za-z0-9._:\/@+-]{1,59}$/;
/** The page's sources, relative to frontend/: a change to any of them is a new build. */
export const SOURCES = ["src", "index.html", "package-lock.json"];

/** Every file of `SOURCES` under `root`, as sorted paths with `/` separators. */
function sourceFiles(root) {
  const out = [];
  const walk = (relative) => {
    const path = join(root, relative);
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch (error) {
      if (error.code === "ENOTDIR") {
        out.push(relative); // a file
        return;
      }
      if (error.code === "ENOENT") return;
      throw error;
    }
    for (const entry of entries) walk(`${relative}/${entry.name}`);
  };
  for (const name of SOURCES) walk(name);
  return out.sort();
}

/**
 * The build id: `THOR_PAGE_BUILD` when set (it must match `BUILD_ID`, or this throws saying so),
 * else the first 12 hex digits of a SHA-256 over the page's sources (each file's path and bytes).
 */
export function pageBuild(root, env = process.env) {
  const given = env.THOR_PAGE_BUILD;
  if (given !== undefined && given !== "") {
    if (!BUILD_ID.test(given)) {
      throw new Error(
        `THOR_PAGE_BUILD=${JSON.stringify(given)} cannot be a build id: use 1 to 59 characters of A-Za-z0-9._:/@+- ` +
          "(the page sends it as X-Thor-Client: page/<id>), or unset it to use a hash of the page's sources",
      );
    }
    return given;
  }
  const hash = createHash("sha256");
  for (const file of sourceFiles(root)) {
    hash.update(`${file}\0`);
    hash.update(readFileSync(join(root, file)));
    hash.update("\0");
  }
  return hash.digest("hex").slice(0, 12);
}
