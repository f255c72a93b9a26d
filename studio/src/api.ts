/**
 * The studio's one way to the host: same-origin `fetch` with the admin token as
 * `Authorization: Bearer` (kept in sessionStorage, so it ends with the tab), or with no
 * header so an admin session cookie, if the host ever grants one, is used instead.
 * Every failure becomes an `ApiError` carrying the host's `{"error":{"code","message"}}`.
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const TOKEN_KEY = "pylon.studio.token";

/** A capability the host has no plugin for, as `GET /api/openapi.json` lists it (`x-pylon-unavailable`). */
export interface Unavailable {
  capability: string;
  routePrefixes: string[];
}

/** The capability that makes `path` answer 501 on this host, if any (its query string aside). */
export function unavailableFor(path: string, list: readonly Unavailable[]): string | null {
  const p = path.split("?")[0];
  for (const u of list) {
    if (u.routePrefixes.some((prefix) => p === prefix || p.startsWith(prefix + "/"))) return u.capability;
  }
  return null;
}

export class Api {
  private token: string | null;
  /**
   * Set at sign-in from the API document: calls to these routes are answered here with
   * the 501 the host would give, so a page never makes a request it knows fails (a
   * browser logs every failed request as a console error).
   */
  unavailable: Unavailable[] = [];

  constructor(private readonly storage: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null = globalThis.sessionStorage ?? null) {
    this.token = storage?.getItem(TOKEN_KEY) ?? null;
  }

  get hasToken(): boolean {
    return this.token !== null;
  }

  setToken(token: string | null): void {
    this.token = token;
    if (token === null) this.storage?.removeItem(TOKEN_KEY);
    else this.storage?.setItem(TOKEN_KEY, token);
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { Accept: "application/json", ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** Sends a request and returns its parsed JSON body (null for an empty body). */
  async call<T = unknown>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const missing = unavailableFor(path, this.unavailable);
    if (missing) throw new ApiError(501, "CAPABILITY_UNAVAILABLE", `${missing} is not configured on this host: no plugin provides it.`);
    const init: RequestInit = { method, headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }), credentials: "same-origin", signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    const text = await res.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!res.ok) throw errorFrom(res.status, parsed);
    return parsed as T;
  }

  get<T = unknown>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>("GET", path, undefined, signal);
  }

  post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }
}

/** The host's error envelope as an `ApiError` (anything else keeps the HTTP status). */
export function errorFrom(status: number, body: unknown): ApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (e && typeof e.code === "string") return new ApiError(status, e.code, typeof e.message === "string" ? e.message : e.code);
  return new ApiError(status, `HTTP_${status}`, typeof body === "string" && body ? body.slice(0, 200) : `the host answered ${status}`);
}

/** `x-pylon-unavailable` of the API document; junk gives nothing. */
export function unavailableOf(doc: unknown): Unavailable[] {
  const list = (doc as { "x-pylon-unavailable"?: unknown } | null)?.["x-pylon-unavailable"];
  if (!Array.isArray(list)) return [];
  return list
    .filter((u) => typeof u?.capability === "string" && Array.isArray(u.routePrefixes))
    .map((u) => ({ capability: u.capability, routePrefixes: u.routePrefixes.filter((p: unknown): p is string => typeof p === "string") }));
}

/** Encodes one path segment (an entity name, an id, a job name) so it stays one segment. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/** A view section's data, or the error the host gave for it (shown in the section's place). */
export async function attempt<T>(p: Promise<T>): Promise<T | Error> {
  try {
    return await p;
  } catch (e) {
    return e as Error;
  }
}
