import { PylonError } from "./errors";
import type { Http } from "./http";
import type { ChangeEvent, Replica } from "./replica";
import { EventStreamTransport } from "./sse-transport";
import type { Cursor } from "./store";
import type { StreamHandlers, Transport } from "./transport";
import { WebSocketTransport } from "./websocket-transport";
import type { WriteQueue } from "./write-queue";

/** How the engine keeps up: a WebSocket (SSE when it cannot open), SSE only, or polling pull. */
export type TransportChoice = "auto" | "websocket" | "sse" | "poll";

export interface SyncOptions {
  transport?: TransportChoice;
  /** Reconnect back-off: full jitter between 0 and min(max, base·2ⁿ). */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Poll interval without a stream (anonymous callers, `transport: "poll"`). */
  pollMs?: number;
}

export type SyncStatus = "stopped" | "connecting" | "live" | "offline";

interface PullPage {
  changes: ChangeEvent[];
  cursor: Cursor;
  has_more: boolean;
}

/** How long a stream must hold before the reconnect back-off starts over. */
const STABLE_MS = 5000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Keeps the replica in step with the host: push the write queue, pull from the stored
 * cursor until caught up, then follow a realtime stream from that cursor; on any drop,
 * back off and do it again. Every batch of events is stored (rows and cursor in one
 * commit) before the cursor moves, events are applied one batch at a time in order, and
 * RESYNC_REQUIRED clears the replica (not the write queue) and starts from zero.
 */
export class SyncEngine {
  status: SyncStatus = "stopped";
  transport: Transport | null = null;
  private abort: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private applying: Promise<void> = Promise.resolve();
  private inbox: ChangeEvent[] = [];
  private failures = 0;
  private endStream: (() => void) | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private applyFailure: unknown = null;
  private resyncs = 0;
  private statusListeners = new Set<(s: SyncStatus) => void>();
  private messageListeners = new Set<(m: Record<string, unknown>) => void>();
  private openListeners = new Set<() => void>();
  private readonly ws: WebSocketTransport;
  private readonly sse: EventStreamTransport;
  private readonly options: Required<SyncOptions>;

  constructor(
    private readonly http: Http,
    private readonly replica: Replica,
    private readonly queue: WriteQueue,
    options: SyncOptions = {},
  ) {
    this.options = { transport: "auto", reconnectBaseMs: 1000, reconnectMaxMs: 30000, pollMs: 1000, ...options };
    this.ws = new WebSocketTransport(http.baseUrl);
    this.sse = new EventStreamTransport(http);
  }

  onStatus(fn: (s: SyncStatus) => void): () => void {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  /** Frames that are not change events (room events, presence/topic relays). */
  onMessage(fn: (m: Record<string, unknown>) => void): () => void {
    this.messageListeners.add(fn);
    return () => this.messageListeners.delete(fn);
  }

  /** Called each time a realtime stream opens (after every reconnect). */
  onOpen(fn: () => void): () => void {
    this.openListeners.add(fn);
    return () => this.openListeners.delete(fn);
  }

  private setStatus(s: SyncStatus): void {
    if (this.status === s) return;
    this.status = s;
    for (const fn of [...this.statusListeners]) fn(s);
  }

  get running(): boolean {
    return this.loop !== null;
  }

  start(): void {
    if (this.loop) return;
    const abort = (this.abort = new AbortController());
    this.loop = this.run(abort.signal);
  }

  async stop(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.abort?.abort();
    await this.loop;
    await this.applying;
    this.loop = null;
    this.abort = null;
    this.transport = null;
    this.setStatus("stopped");
  }

  /** Pushes queued writes now if the engine is running (errors wait for the next connect). */
  kick(): void {
    if (!this.loop || this.retryTimer) return;
    this.queue.flush().catch(() => {
      // Not reached or not answered: try again later while running (the ops keep their op_ids).
      if (!this.loop) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.kick();
      }, this.options.reconnectBaseMs);
    });
  }

  /** Sends a presence/topic frame over the WebSocket; false when none is open. */
  send(message: unknown): boolean {
    return this.transport?.send(message) ?? false;
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.setStatus("connecting");
      try {
        await this.queue.flush();
        await this.pullAll(signal);
        this.resyncs = 0;
        const opened = Date.now();
        await this.follow(signal);
        // A stream that ends soon after opening (refused, host going down) backs off too;
        // only a connection that held for a while resets the back-off.
        if (Date.now() - opened < STABLE_MS) this.failures++;
        else this.failures = 0;
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof PylonError && e.code === "RESYNC_REQUIRED") {
          await this.resync(signal);
          continue;
        }
        this.setStatus("offline");
        this.failures++;
      }
      if (signal.aborted) break;
      await sleep(this.backoff(), signal);
    }
  }

  private backoff(): number {
    if (this.failures === 0) return 0;
    const cap = Math.min(this.options.reconnectMaxMs, this.options.reconnectBaseMs * 2 ** (this.failures - 1));
    return Math.random() * cap;
  }

  /** Clears the replica and starts from zero; a second resync in a row backs off first. */
  private async resync(signal: AbortSignal): Promise<void> {
    await this.applying;
    await this.replica.reset();
    if (this.resyncs++ > 0) await sleep(Math.min(30000, 1000 * 2 ** this.resyncs), signal);
  }

  /** Pulls pages from the stored cursor until the host has nothing more. */
  private async pullAll(signal: AbortSignal): Promise<void> {
    await this.applying;
    for (;;) {
      if (signal.aborted) return;
      const c = this.replica.cursor;
      const q = new URLSearchParams({ since: String(c?.last_seq ?? 0), limit: "1000" });
      if (c?.epoch && c.last_seq > 0) q.set("epoch", c.epoch);
      const page = await this.http.request<PullPage>(`/api/sync/pull?${q}`, { signal });
      // The cursor is adopted even over an empty page (it moves past events we may not read).
      await this.replica.applyEvents(page.changes, page.cursor);
      if (!page.has_more) return;
    }
  }

  /** Follows a stream (or polls) until it ends; resolves on a normal end. */
  private async follow(outer: AbortSignal): Promise<void> {
    // This stream's own stop: the engine's, or a failed store commit (then pull again).
    const stream = new AbortController();
    const stop = () => stream.abort();
    outer.addEventListener("abort", stop, { once: true });
    this.endStream = stop;
    try {
      await this.followStream(stream.signal);
    } finally {
      outer.removeEventListener("abort", stop);
      this.endStream = null;
    }
    if (this.applyFailure) {
      const e = this.applyFailure;
      this.applyFailure = null;
      throw e;
    }
  }

  private async followStream(signal: AbortSignal): Promise<void> {
    const token = this.http.tokens.get();
    const choice = this.options.transport;
    if (!token || choice === "poll") return this.poll(signal);
    const handlers: StreamHandlers = {
      onOpen: () => {
        this.setStatus("live");
        this.kick();
        for (const fn of [...this.openListeners]) fn();
      },
      onChange: (e) => this.receive(e),
      onMessage: (m) => {
        for (const fn of [...this.messageListeners]) fn(m);
      },
    };
    const start = () => ({ since: this.replica.cursor?.last_seq ?? 0, epoch: this.replica.cursor?.epoch, token });
    if (choice !== "sse") {
      this.transport = this.ws;
      try {
        await this.ws.run(start(), handlers, signal);
        await this.applying;
        return;
      } catch (e) {
        if (!(e instanceof PylonError && e.code === "TRANSPORT_UNAVAILABLE") || choice === "websocket") throw e;
      }
    }
    this.transport = this.sse;
    await this.sse.run(start(), handlers, signal);
    await this.applying;
  }

  private async poll(signal: AbortSignal): Promise<void> {
    this.setStatus("live");
    while (!signal.aborted) {
      await sleep(this.options.pollMs, signal);
      await this.queue.flush();
      await this.pullAll(signal);
    }
  }

  /** Queues a streamed event; batches are applied (stored, then cursor moved) in order. */
  private receive(e: ChangeEvent): void {
    // After a failed commit nothing more is applied from this stream (it would skip the
    // failed batch); the next pull reads from the unmoved cursor.
    if (this.applyFailure) return;
    this.inbox.push(e);
    if (this.inbox.length > 1) return;
    this.applying = this.applying.then(async () => {
      const batch = this.inbox;
      this.inbox = [];
      if (this.applyFailure) return;
      const seq = Math.max(...batch.map((b) => b.seq));
      const current = this.replica.cursor;
      if (current && seq <= current.last_seq) return;
      try {
        await this.replica.applyEvents(batch, { last_seq: seq, epoch: current?.epoch });
      } catch (err) {
        // Nothing was stored and the cursor did not move: end the stream and pull again.
        this.applyFailure = err;
        this.endStream?.();
      }
    });
  }

  /** Resolves once the replica has read the log up to `seq`. */
  async waitForSeq(seq: number, timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.replica.cursor?.last_seq ?? 0) < seq) {
      if (Date.now() > deadline) throw new PylonError(0, "TIMEOUT", `the replica did not reach seq ${seq}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
