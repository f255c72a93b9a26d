import { PylonError } from "./errors";
import type { TokenStorage } from "./token-storage";

/** Request options of `Http.request`. */
export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** A raw body (files); sent as is instead of JSON. */
  raw?: BodyInit;
  headers?: Record<string, string>;
  /** Send without the stored token. */
  anonymous?: boolean;
  signal?: AbortSignal;
}

/** The HTTP side of the client: base URL, bearer token, JSON in and out, typed errors. */
export class Http {
  constructor(
    readonly baseUrl: string,
    readonly tokens: TokenStorage,
    private readonly fetchImpl?: typeof fetch,
  ) {}

  url(path: string): string {
    return this.baseUrl.replace(/\/+$/, "") + path;
  }

  headers(extra: Record<string, string> = {}, anonymous = false): Record<string, string> {
    const h: Record<string, string> = { ...extra };
    const token = anonymous ? null : this.tokens.get();
    if (token) h["Authorization"] = `Bearer ${token}`;
    return h;
  }

  /** Sends a request and answers the response; network failures become NETWORK_ERROR. */
  async send(path: string, opts: RequestOptions = {}): Promise<Response> {
    const extra: Record<string, string> = { ...(opts.headers ?? {}) };
    let body: BodyInit | undefined = opts.raw;
    if (opts.body !== undefined && body === undefined) {
      extra["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    try {
      return await (this.fetchImpl ?? fetch)(this.url(path), {
        method: opts.method ?? (body === undefined ? "GET" : "POST"),
        headers: this.headers(extra, opts.anonymous),
        body,
        signal: opts.signal,
        credentials: "include",
      });
    } catch (e) {
      if ((e as Error)?.name === "AbortError") throw e;
      throw PylonError.network(e);
    }
  }

  /** A JSON request: the parsed body on 2xx, else a PylonError with the host's code. */
  async request<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.send(path, opts);
    return (await Http.json(res)) as T;
  }

  /** Parses a response: the JSON body on 2xx, a PylonError otherwise. */
  static async json(res: Response): Promise<unknown> {
    const text = await res.text();
    let parsed: unknown = null;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!res.ok) throw PylonError.fromBody(res.status, parsed);
    return parsed;
  }
}
