/**
 * Same-origin JSON over fetch with the session cookie and Django's CSRF header, and on every call
 * `X-Thor-Client: page/<build>`: the backend counts each feature's REST reads by client, so that
 * thorcut tells this build's reads from those of older bundles still open in some tab before an
 * endpoint is retired (docs/contracts.md, "Retiring REST").
 */

/** This page's build id (THOR_PAGE_BUILD at build time, else a hash of the page's sources). */
export const PAGE_BUILD: string = __THOR_PAGE_BUILD__;
/** Who this page is to the backend's count of REST reads. */
export const PAGE_CLIENT = `page/${PAGE_BUILD}`;
export const CLIENT_HEADER = "X-Thor-Client";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** A non-2xx answer; `message` is the backend's `{"error": …}` text when it sent one. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** The value of cookie `name` in a `document.cookie` string, or null. */
export function readCookie(name: string, cookies: string): string | null {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      return decodeURIComponent(part.slice(eq + 1).trim());
    }
  }
  return null;
}

export interface HttpOptions {
  fetch?: FetchLike;
  /** Where cookies are read from (the CSRF token); default `document.cookie`. */
  cookies?: () => string;
  /** The `X-Thor-Client` value; default `page/<build>`. */
  client?: string;
}

export class Http {
  private readonly fetchImpl: FetchLike;
  private readonly cookies: () => string;
  private readonly client: string;

  constructor(options: HttpOptions = {}) {
    // Look `fetch` up at call time, not at construction, so a page-level stub still applies.
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.cookies = options.cookies ?? (() => (typeof document === "undefined" ? "" : document.cookie));
    this.client = options.client ?? PAGE_CLIENT;
  }

  /** GET `path` and return its JSON; raises HttpError on a non-2xx status. */
  get<T>(path: string): Promise<T> {
    return this.request<T>(path, { method: "GET" });
  }

  /**
   * POST `body` as JSON with `X-CSRFToken` from the `csrftoken` cookie, read at each call:
   * Django rotates the token at login, so a token cached earlier would be refused.
   */
  post<T>(path: string, body: unknown): Promise<T> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    const token = readCookie("csrftoken", this.cookies());
    if (token) headers["X-CSRFToken"] = token;
    return this.request<T>(path, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
  }

  private async request<T>(path: string, init: RequestInit): Promise<T> {
    const response = await this.fetchImpl(path, {
      ...init,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        [CLIENT_HEADER]: this.client,
        ...(init.headers as Record<string, string> | undefined),
      },
    });
    const text = await response.text();
    let body: unknown = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    if (!response.ok) {
      const error =
        body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string"
          ? (body as { error: string }).error
          : `HTTP ${response.status}`;
      throw new HttpError(response.status, error);
    }
    return body as T;
  }
}
