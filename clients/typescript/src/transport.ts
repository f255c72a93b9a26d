import { PylonError } from "./errors";
import type { ChangeEvent } from "./replica";

/** What a realtime stream hands the sync engine. */
export interface StreamHandlers {
  /** The stream is established (rooms re-join here). */
  onOpen(): void;
  onChange(e: ChangeEvent): void;
  /** Any other frame: room events, presence/topic relays. */
  onMessage(m: Record<string, unknown>): void;
}

/** Where a stream starts: after `since` of database `epoch`. */
export interface StreamStart {
  since: number;
  epoch?: string;
  token: string;
}

/**
 * A realtime transport. `run` resolves when the stream ends, and rejects with
 * RESYNC_REQUIRED (a PylonError) when the host says the cursor is no good, or with
 * TRANSPORT_UNAVAILABLE when the stream could not be opened at all.
 */
export interface Transport {
  readonly name: string;
  run(start: StreamStart, handlers: StreamHandlers, signal: AbortSignal): Promise<void>;
  /** Sends a client frame (presence/topic relays); false if this transport cannot. */
  send(message: unknown): boolean;
}

/** Sorts one decoded frame into a change event or another message. */
export function dispatchFrame(frame: unknown, handlers: StreamHandlers): void {
  if (!frame || typeof frame !== "object") return;
  const f = frame as Record<string, unknown>;
  // The host's resync notice is its 410 body; other error frames (a relay refused) are messages.
  if (f.type === undefined && (f.error as { code?: unknown } | undefined)?.code === "RESYNC_REQUIRED") {
    throw PylonError.fromBody(410, f);
  }
  if (typeof f.seq === "number" && typeof f.entity === "string" && typeof f.kind === "string" && f.type === undefined) {
    handlers.onChange(f as unknown as ChangeEvent);
  } else {
    handlers.onMessage(f);
  }
}

export const unavailable = (why: string) => new PylonError(0, "TRANSPORT_UNAVAILABLE", why);

export function streamQuery(start: StreamStart): string {
  const q = new URLSearchParams({ since: String(start.since) });
  if (start.epoch && start.since > 0) q.set("epoch", start.epoch);
  return q.toString();
}
