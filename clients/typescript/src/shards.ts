import { PylonError } from "./errors";
import { readEventStream } from "./event-stream";
import { Http } from "./http";

/** A shard as `GET /api/shards/:id` answers it. */
export interface ShardInfo {
  id: string;
  sim?: string;
  running: boolean;
  tick: number;
  subscribers: number;
  input_queue: number;
  /** The shard's roster: a matched shard's group, or the `players` it was created with (only they and the admin may read, watch or play it). */
  players?: string[];
  [key: string]: unknown;
}

/** One snapshot for this subscriber: the shard's tick and the sim's JSON view. */
export interface ShardFrame {
  tick: number;
  snapshot: unknown;
}

/** The host's answer to an input: `seq` is the shard's, `client_seq` echoes the client's. */
export interface ShardAck {
  seq: number;
  tick: number;
  client_seq?: number;
}

export interface ShardHandlers {
  onFrame(frame: ShardFrame): void;
  /** An input was applied at `tick`. */
  onAck?(ack: ShardAck): void;
  /** An input was rejected (the sim's or the host's code), with its `client_seq` if it had one. */
  onInputError?(error: PylonError, clientSeq?: number): void;
  /** The stream ended: the host's reason (`stopped`, `replaced`, …), or an error. */
  onEnd?(reason: string, error?: PylonError): void;
}

export interface SubscribeOptions {
  /** The subscriber id; the host defaults it to the caller's user id. */
  sid?: string;
  /**
   * `"sse"` (default): the host's SSE stream, inputs by HTTP. `"ws"`: the shard WebSocket
   * (the ShardWS plugin; binary tick frames, inputs and acks on the socket) at `wsUrl`,
   * by default the host's address on its port + 3, as Pylon's.
   */
  transport?: "sse" | "ws";
  wsUrl?: string;
}

/** A live subscription: inputs go out as this subscriber; `close()` ends it. */
export interface ShardSubscription {
  readonly shardId: string;
  /**
   * Sends one input. Its ack or rejection arrives through the handlers (`onAck`,
   * `onInputError`); an input the host refuses before queueing it rejects here too (SSE)
   * or arrives as `onInputError` (WebSocket).
   */
  input(input: unknown, clientSeq?: number): Promise<void>;
  close(): void;
}

/**
 * The 8-byte big-endian tick + snapshot framing of Pylon's shard WebSocket: the tick as
 * hi·2³² + lo (exact up to 2⁵³), the rest JSON.
 */
export function decodeTickFrame(bytes: ArrayBuffer | Uint8Array): ShardFrame {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (view.byteLength < 8) throw new PylonError(0, "BAD_FRAME", `a shard frame has at least 8 bytes, got ${view.byteLength}`);
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const tick = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
  return { tick, snapshot: JSON.parse(new TextDecoder().decode(view.subarray(8))) };
}

/**
 * Shards (`/api/shards/*`): create (admin), look up, subscribe to a shard's snapshots, and
 * send inputs as a subscriber. Subscriptions use the host's SSE stream
 * (`GET /api/shards/:id/connect`), which works wherever HTTP does.
 */
export class Shards {
  constructor(private readonly http: Http) {}

  /** Starts a shard of `sim` (admin); `players` (user ids) admits only them and the admin. */
  create(sim: string, opts: { id?: string; config?: unknown; settings?: Record<string, unknown>; players?: string[] } = {}): Promise<ShardInfo> {
    return this.http.request("/api/shards", { body: { sim, ...opts } });
  }

  get(id: string): Promise<ShardInfo> {
    return this.http.request(`/api/shards/${encodeURIComponent(id)}`);
  }

  /** One input as `sid` (default: the caller), which must be subscribed. */
  input(id: string, input: unknown, opts: { clientSeq?: number; sid?: string } = {}): Promise<{ accepted: boolean; seq: number }> {
    const body: Record<string, unknown> = { input };
    if (opts.clientSeq !== undefined) body.client_seq = opts.clientSeq;
    if (opts.sid !== undefined) body.subscriber_id = opts.sid;
    return this.http.request(`/api/shards/${encodeURIComponent(id)}/input`, { body });
  }

  /**
   * Follows the shard's snapshots as `opts.sid`. Resolves once the host has accepted the
   * subscription (a refusal rejects with the host's error: 403, 404 `SHARD_NOT_FOUND`, …).
   */
  async subscribe(id: string, handlers: ShardHandlers, opts: SubscribeOptions = {}): Promise<ShardSubscription> {
    if (opts.transport === "ws") return this.subscribeSocket(id, handlers, opts);
    const abort = new AbortController();
    const q = opts.sid !== undefined ? `?sid=${encodeURIComponent(opts.sid)}` : "";
    const res = await this.http.send(`/api/shards/${encodeURIComponent(id)}/connect${q}`, {
      headers: { Accept: "text/event-stream" },
      signal: abort.signal,
    });
    if (!res.ok || !res.body) {
      await Http.json(res); // throws the host's error
      throw new PylonError(res.status, "SUBSCRIBE_FAILED", `the shard stream answered ${res.status}`);
    }
    let ended = false;
    const end = (reason: string, error?: PylonError) => {
      if (ended) return;
      ended = true;
      handlers.onEnd?.(reason, error);
    };
    readEventStream(res.body, (e) => dispatch(e.event, e.data, e.id, handlers, end))
      .then(() => end(abort.signal.aborted ? "closed" : "disconnected"))
      .catch((err) => end(abort.signal.aborted ? "closed" : "disconnected", abort.signal.aborted ? undefined : PylonError.network(err)));
    return {
      shardId: id,
      input: async (input, clientSeq) => {
        await this.input(id, input, { clientSeq, sid: opts.sid });
      },
      close: () => {
        abort.abort();
        end("closed");
      },
    };
  }

  /** The default shard WebSocket address: the host's, on its port + 3. */
  socketUrl(): string {
    const u = new URL(this.http.baseUrl);
    const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
    return `${u.protocol === "https:" ? "wss:" : "ws:"}//${u.hostname}:${port + 3}/`;
  }

  /** Subscribes over the shard WebSocket; resolves at the first frame, rejects with the close reason. */
  private subscribeSocket(id: string, handlers: ShardHandlers, opts: SubscribeOptions): Promise<ShardSubscription> {
    const url = new URL(opts.wsUrl ?? this.socketUrl());
    url.searchParams.set("shard", id);
    if (opts.sid !== undefined) url.searchParams.set("sid", opts.sid);
    const token = this.http.tokens.get();
    const ws = token ? new WebSocket(url, [`bearer.${encodeURIComponent(token)}`]) : new WebSocket(url);
    ws.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      let open = false;
      const subscription: ShardSubscription = {
        shardId: id,
        input: async (input, clientSeq) => {
          const message: Record<string, unknown> = { input };
          if (clientSeq !== undefined) message.client_seq = clientSeq;
          if (ws.readyState !== WebSocket.OPEN) throw new PylonError(0, "NOT_CONNECTED", "the shard socket is closed");
          ws.send(JSON.stringify(message));
        },
        close: () => ws.close(1000),
      };
      ws.onmessage = (m) => {
        if (typeof m.data === "string") {
          const type = (JSON.parse(m.data) as { type?: unknown }).type;
          if (type === "ack" || type === "error") dispatch(type, m.data, undefined, handlers, () => {});
          return;
        }
        if (!open) {
          open = true;
          resolve(subscription);
        }
        handlers.onFrame(decodeTickFrame(m.data as ArrayBuffer));
      };
      ws.onclose = (c) => {
        const [code, ...rest] = String(c.reason ?? "").split(": ");
        const error = c.code === 1000 ? undefined : new PylonError(c.code, code || `WS_${c.code}`, rest.join(": ") || String(c.reason ?? ""));
        if (!open) reject(error ?? new PylonError(c.code, "SUBSCRIBE_FAILED", "the shard socket closed before the first frame"));
        handlers.onEnd?.(c.code === 1000 ? "closed" : code || `closed ${c.code}`, error);
      };
    });
  }
}

/** One SSE event of a shard stream to the handlers. */
function dispatch(event: string, data: string, id: string | undefined, handlers: ShardHandlers, end: (r: string, e?: PylonError) => void) {
  const body = JSON.parse(data) as Record<string, any>;
  switch (event) {
    case "ack":
      handlers.onAck?.({ seq: Number(body.seq), tick: Number(body.tick), ...(body.client_seq != null ? { client_seq: Number(body.client_seq) } : {}) });
      break;
    case "error": {
      const err = new PylonError(400, String(body.error?.code ?? "INPUT_REJECTED"), String(body.error?.message ?? ""));
      handlers.onInputError?.(err, body.client_seq != null ? Number(body.client_seq) : undefined);
      break;
    }
    case "end":
      end(String(body.reason ?? "ended"));
      break;
    default:
      handlers.onFrame({ tick: Number(id ?? body.tick ?? 0), snapshot: body });
  }
}
