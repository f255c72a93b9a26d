import { PylonError } from "./errors";
import type { Http } from "./http";

/** A session the host answered to a sign-in. */
export interface Session {
  token: string;
  user_id: string;
  expires_at?: number | string;
  guest?: boolean;
  is_guest?: boolean;
}

/** `GET /api/auth/me`. */
export interface Me {
  user_id: string | null;
  is_admin?: boolean;
  is_guest?: boolean;
  tenant_id?: string | null;
  [key: string]: unknown;
}

/** An API key as created (`key` is shown only once). */
export interface ApiKey {
  key: string;
  id: string;
  prefix: string;
  name: string | null;
  scopes: string[] | null;
  expires_at: number | string | null;
  created_at: number | string;
}

/**
 * Every sign-in flow of the host. Each successful flow stores the token (the client's
 * `TokenStorage`) and tells `onChange`, which restarts sync as the new user.
 */
export class Auth {
  constructor(
    private readonly http: Http,
    private readonly onChange: (token: string | null) => void,
  ) {}

  get token(): string | null {
    return this.http.tokens.get();
  }

  /** Uses `token` (a session token or an API key `pk.…`) from now on; null signs out locally. */
  setToken(token: string | null): void {
    if (token === this.http.tokens.get()) return;
    this.http.tokens.set(token);
    this.onChange(token);
  }

  private async session(path: string, body: unknown): Promise<Session> {
    const s = await this.http.request<Session>(path, { body, anonymous: true });
    this.setToken(s.token);
    return s;
  }

  register(email: string, password: string, displayName?: string): Promise<Session> {
    return this.session("/api/auth/password/register", { email, password, displayName });
  }

  login(email: string, password: string): Promise<Session> {
    return this.session("/api/auth/password/login", { email, password });
  }

  /** Mails a sign-in code; in `--dev` the answer carries `dev_code`. */
  sendMagicCode(email: string): Promise<{ sent: boolean; email: string; dev_code?: string }> {
    return this.http.request("/api/auth/magic/send", { body: { email }, anonymous: true });
  }

  verifyMagicCode(email: string, code: string): Promise<Session> {
    return this.session("/api/auth/magic/verify", { email, code });
  }

  /** A guest session (`POST /api/auth/guest`). */
  guest(): Promise<Session> {
    return this.session("/api/auth/guest", {});
  }

  /** better-auth's anonymous session (`POST /api/auth/anonymous`). */
  anonymous(): Promise<Session> {
    return this.session("/api/auth/anonymous", {});
  }

  /** Acts as the owner of an API key (`pk.…`) from now on. */
  useApiKey(key: string): void {
    this.setToken(key);
  }

  /** Makes an API key for the signed-in user (a session is required). */
  createApiKey(opts: { name?: string; scopes?: string[]; expires_at?: number } = {}): Promise<ApiKey> {
    return this.http.request("/api/auth/api-keys", { body: opts });
  }

  /**
   * The URL to send the browser to for OAuth sign-in with `provider`. The host redirects
   * back to `callback` with its session cookie set, or to `errorCallback` with
   * `oauth_error`; `handleOAuthCallback` finishes either.
   */
  oauthLoginUrl(provider: string, opts: { callback: string; errorCallback?: string }): string {
    const q = new URLSearchParams({ callback: opts.callback, redirect: "1" });
    if (opts.errorCallback) q.set("error_callback", opts.errorCallback);
    return this.http.url(`/api/auth/login/${encodeURIComponent(provider)}?${q}`);
  }

  /**
   * Finishes OAuth on the page the provider or host sent the browser back to: an
   * `oauth_error` becomes a PylonError; `state` + `code` (a single-page app that handles
   * the provider's redirect itself) are exchanged for a session; a `token` parameter is
   * stored; otherwise the host's session cookie is asked who it is.
   */
  async handleOAuthCallback(url: string, provider?: string): Promise<Session | Me> {
    const q = new URL(url).searchParams;
    const error = q.get("oauth_error");
    if (error) throw new PylonError(401, error, q.get("oauth_error_message") ?? "OAuth sign-in failed");
    const token = q.get("token");
    if (token) {
      this.setToken(token);
      return { token, user_id: (await this.me()).user_id ?? "" };
    }
    const state = q.get("state");
    const code = q.get("code");
    if (state && code && provider) {
      return this.session(`/api/auth/callback/${encodeURIComponent(provider)}`, { state, code });
    }
    return this.me();
  }

  me(): Promise<Me> {
    return this.http.request("/api/auth/me");
  }

  /** A new token for this session (the old one ends). */
  async refresh(): Promise<Session> {
    const s = await this.http.request<Session>("/api/auth/refresh", { method: "POST", body: {} });
    // The same user: keep the replica, just swap the token.
    this.http.tokens.set(s.token);
    return s;
  }

  /** Ends the session at the host (best effort) and forgets the token. */
  async logout(): Promise<void> {
    if (this.token && !this.token.startsWith("pk.")) {
      try {
        await this.http.request("/api/auth/logout", { method: "POST", body: {} });
      } catch (e) {
        if (!(e instanceof PylonError) || e.status === 0) throw e;
      }
    }
    this.setToken(null);
  }
}
