/** Where the client keeps its session token between page loads or process runs. */
export interface TokenStorage {
  get(): string | null;
  set(token: string | null): void;
}

/** Keeps the token for the life of the object (Bun, tests, server-side code). */
export class MemoryTokenStorage implements TokenStorage {
  private token: string | null = null;
  get(): string | null {
    return this.token;
  }
  set(token: string | null): void {
    this.token = token;
  }
}

/** Keeps the token in `localStorage` under `key` (browsers). */
export class LocalStorageTokenStorage implements TokenStorage {
  constructor(private readonly key = "pylon.token") {}
  get(): string | null {
    return globalThis.localStorage?.getItem(this.key) ?? null;
  }
  set(token: string | null): void {
    if (token === null) globalThis.localStorage?.removeItem(this.key);
    else globalThis.localStorage?.setItem(this.key, token);
  }
}
