import { PylonError } from "./errors";
import type { Http } from "./http";
import { opId, pendingId } from "./ids";
import type { Replica } from "./replica";
import type { QueuedOp } from "./store";

/** One per-change result of `POST /api/sync/push`. */
interface PushResult {
  index: number;
  status: "applied" | "deduped" | "error";
  row_id?: string;
  code?: string;
  message?: string;
}

interface PushReply {
  applied: number;
  deduped: number;
  errors: string[];
  cursor: { last_seq: number };
  id_map: Record<string, string>;
  results: PushResult[];
}

/** A queued write the host refused; its optimistic change has been rolled back. */
export interface Rejection {
  op: QueuedOp;
  error: PylonError;
}

/**
 * Offline writes: each insert/update/delete is stored in the replica's queue with an
 * `op_id` (and a `_pending_` id for inserts) before anything is sent, shows at once in
 * the replica, and is pushed by `flush`. The host applies each `op_id` once, so an op
 * whose answer was lost is simply sent again. A refused op leaves the queue, which rolls
 * its optimistic change back, and is reported to `onReject`.
 */
export class WriteQueue {
  private flushing: Promise<void> | null = null;
  /** Ops per push: halved after a 413 (the batch was over the host's body limit), back to
   * `MAX_BATCH` once the queue has drained. */
  private batchSize = MAX_BATCH;
  private rejectListeners = new Set<(r: Rejection) => void>();

  constructor(
    private readonly http: Http,
    private readonly replica: Replica,
    private readonly clientId: string,
    /** Called after a write is queued (the sync engine pushes it when online). */
    private readonly queued: () => void,
  ) {}

  onReject(fn: (r: Rejection) => void): () => void {
    this.rejectListeners.add(fn);
    return () => this.rejectListeners.delete(fn);
  }

  /** Queues an insert; answers the optimistic `_pending_` id. */
  async insert(entity: string, data: Record<string, unknown>): Promise<string> {
    const row_id = pendingId();
    await this.enqueue({ op_id: opId(), entity, kind: "insert", row_id, data });
    return row_id;
  }

  async update(entity: string, id: string, patch: Record<string, unknown>): Promise<void> {
    await this.enqueue({ op_id: opId(), entity, kind: "update", row_id: id, data: patch });
  }

  async delete(entity: string, id: string): Promise<void> {
    await this.enqueue({ op_id: opId(), entity, kind: "delete", row_id: id });
  }

  private async enqueue(op: QueuedOp): Promise<void> {
    await this.replica.updateOps([op]);
    this.queued();
  }

  /** Ops not yet taken by the host. */
  get pending(): QueuedOp[] {
    return this.replica.ops.filter((o) => !o.acked);
  }

  /** Pushes every pending op (one push at a time); network errors are thrown, ops kept. */
  flush(): Promise<void> {
    this.flushing ??= this.pushAll().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async pushAll(): Promise<void> {
    for (;;) {
      const batch = this.pending.slice(0, this.batchSize);
      if (batch.length === 0) {
        this.batchSize = MAX_BATCH;
        return;
      }
      await this.push(batch);
    }
  }

  private async push(batch: QueuedOp[]): Promise<void> {
    let reply: PushReply;
    try {
      reply = await this.http.request<PushReply>("/api/sync/push", {
        body: {
          changes: batch.map(({ op_id, entity, kind, row_id, data }) => ({ op_id, entity, kind, row_id, data })),
          client_id: this.clientId,
        },
      });
    } catch (e) {
      if (!(e instanceof PylonError) || undecided(e.status)) throw e;
      if (e.status === 413 && batch.length > 1) {
        // Too big as one body: the next pushes take half as many ops.
        this.batchSize = Math.max(1, Math.floor(batch.length / 2));
        return;
      }
      // Any other answer refuses the batch as it is (a single op over the limit included).
      await this.reject(batch.map((op) => ({ op, error: e })));
      return;
    }
    const idMap = reply.id_map ?? {};
    const acked: QueuedOp[] = [];
    const rejected: Rejection[] = [];
    batch.forEach((op, i) => {
      const r = reply.results?.[i];
      if (r?.status === "error") {
        rejected.push({ op, error: new PylonError(400, r.code ?? "PUSH_REJECTED", r.message ?? "") });
      } else {
        acked.push({ ...op, acked: { row_id: r?.row_id ?? idMap[op.row_id] ?? op.row_id, seq: reply.cursor.last_seq } });
      }
    });
    // Later ops that name a pending id the host has now mapped are rewritten to the server id.
    const rewritten = this.replica.ops
      .filter((o) => !batch.some((b) => b.op_id === o.op_id))
      .filter((o) => o.row_id in idMap || Object.values(o.data ?? {}).some((v) => typeof v === "string" && v in idMap))
      .map((o) => ({ ...o, row_id: idMap[o.row_id] ?? o.row_id, data: o.data && mapValues(o.data, idMap) }));
    await this.replica.updateOps([...acked, ...rewritten]);
    await this.reject(rejected);
  }

  private async reject(rejected: Rejection[]): Promise<void> {
    if (rejected.length === 0) return;
    await this.replica.updateOps([], rejected.map((r) => r.op.op_id));
    for (const r of rejected) for (const fn of [...this.rejectListeners]) fn(r);
  }
}

/** The most ops one push sends. */
const MAX_BATCH = 100;

/**
 * Nothing was decided about the ops: the host was not reached (0), is busy (429) or
 * failing (5xx), or did not take the caller (401: signed out or a dead key; 403: refused
 * before looking at the ops). They stay queued and are sent again later, e.g. after the
 * user signs in again.
 */
function undecided(status: number): boolean {
  return status === 0 || status === 401 || status === 403 || status === 429 || status >= 500;
}

function mapValues(data: Record<string, unknown>, idMap: Record<string, string>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, typeof v === "string" && v in idMap ? idMap[v] : v]));
}
