/** A row of the replica: its entity, id and fields (the fields include `id`). */
export interface StoredRow {
  entity: string;
  id: string;
  data: Record<string, unknown>;
}

/** Where the replica has read the change log up to (`epoch` names the host's database). */
export interface Cursor {
  last_seq: number;
  epoch?: string;
}

/** A queued write (`POST /api/sync/push` change) with its exactly-once `op_id`. */
export interface QueuedOp {
  op_id: string;
  entity: string;
  kind: "insert" | "update" | "delete";
  row_id: string;
  data?: Record<string, unknown>;
  /** Set once the host took the op: the server row id and the log's newest seq then. */
  acked?: { row_id: string; seq: number };
}

/** A delete the replica has seen: older inserts/updates of the row are ignored. */
export interface Tombstone {
  entity: string;
  id: string;
  seq: number;
}

/** Everything a store holds. */
export interface StoreSnapshot {
  rows: StoredRow[];
  tombstones: Tombstone[];
  cursor: Cursor | null;
  ops: QueuedOp[];
}

/** One atomic change of a store: rows and the cursor land together or not at all. */
export interface StoreCommit {
  putRows?: StoredRow[];
  deleteRows?: { entity: string; id: string }[];
  tombstones?: Tombstone[];
  cursor?: Cursor;
  putOps?: QueuedOp[];
  deleteOps?: string[];
}

/**
 * Durable state of a client: the replica's rows and tombstones, its cursor, and the write
 * queue. `commit` is atomic, so a crash between storing rows and the cursor cannot skip
 * data (the rows come again and are applied again, which is harmless).
 */
export interface ReplicaStore {
  load(): Promise<StoreSnapshot>;
  commit(change: StoreCommit): Promise<void>;
  /** Forgets rows, tombstones and cursor (a resync or another user); keeps the write queue unless `ops`. */
  clear(opts?: { ops?: boolean }): Promise<void>;
}

export const rowKey = (entity: string, id: string): string => `${entity}\u0000${id}`;

/** A store in memory (Bun, Node, tests): survives client restarts within the process. */
export class MemoryStore implements ReplicaStore {
  private rows = new Map<string, StoredRow>();
  private tombstones = new Map<string, Tombstone>();
  private cursor: Cursor | null = null;
  private ops = new Map<string, QueuedOp>();

  async load(): Promise<StoreSnapshot> {
    return structuredClone({
      rows: [...this.rows.values()],
      tombstones: [...this.tombstones.values()],
      cursor: this.cursor,
      ops: [...this.ops.values()],
    });
  }

  async commit(c: StoreCommit): Promise<void> {
    const copy = structuredClone(c);
    for (const r of copy.putRows ?? []) this.rows.set(rowKey(r.entity, r.id), r);
    for (const r of copy.deleteRows ?? []) this.rows.delete(rowKey(r.entity, r.id));
    for (const t of copy.tombstones ?? []) this.tombstones.set(rowKey(t.entity, t.id), t);
    for (const o of copy.putOps ?? []) this.ops.set(o.op_id, o);
    for (const id of copy.deleteOps ?? []) this.ops.delete(id);
    if (copy.cursor) this.cursor = copy.cursor;
  }

  async clear(opts: { ops?: boolean } = {}): Promise<void> {
    this.rows.clear();
    this.tombstones.clear();
    this.cursor = null;
    if (opts.ops) this.ops.clear();
  }
}
