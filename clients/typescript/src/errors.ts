/** An error answered by the host (`{"error":{"code","message"}}`) or raised by the client. */
export class PylonError extends Error {
  /** The host's stable UPPER_SNAKE code (or a client code such as NETWORK_ERROR). */
  readonly code: string;
  /** HTTP status, 0 when the request never got an answer. */
  readonly status: number;
  /** Every other key of the host's error object (e.g. `oldest_seq`). */
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "PylonError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** True when the request never reached the host (retry later; nothing was decided). */
  get isNetwork(): boolean {
    return this.status === 0;
  }

  /** Builds the error from a host body; `fallback` when the body is not the error shape. */
  static fromBody(status: number, body: unknown, fallback = "HTTP_ERROR"): PylonError {
    const err = (body as { error?: Record<string, unknown> } | null)?.error;
    if (err && typeof err === "object") {
      const { code, message, ...rest } = err;
      return new PylonError(status, String(code ?? fallback), String(message ?? ""), rest);
    }
    return new PylonError(status, fallback, `HTTP ${status}`);
  }

  static network(cause: unknown): PylonError {
    return new PylonError(0, "NETWORK_ERROR", `the host could not be reached: ${String(cause)}`);
  }
}
