import type { Cursor, QueuedOp, ReplicaStore, StoreCommit, StoredRow, Tombstone } from "./store";
import { rowKey } from "./store";

/** A change event of the host's log (pull page, WebSocket frame or SSE `data:`). */
export interface ChangeEvent {
  seq: number;
  entity: string;
  row_id: string;
  kind: "insert" | "update" | "delete";
  data?: Record<string, unknown>;
}

export type Row = Record<string, unknown> & { id: string };

/**
 * The local copy of the host's rows plus the client's queued writes laid over them.
 * Server rows change only through `applyEvents` (which stores rows and cursor in one
 * commit before the cursor moves in memory); the visible rows are the server rows with
 * every queued op applied, so dropping a rejected op rolls its optimistic change back.
 */
export class Replica {
  private rows = new Map<string, Map<string, Row>>();
  private tombstones = new Map<string, number>();
  cursor: Cursor | null = null;
  ops: QueuedOp[] = [];
  private listeners = new Set<(entities: Set<string>) => void>();

  constructor(readonly store: ReplicaStore) {}

  async load(): Promise<void> {
    const snap = await this.store.load();
    this.rows.clear();
    this.tombstones.clear();
    for (const r of snap.rows) this.table(r.entity).set(r.id, r.data as Row);
    for (const t of snap.tombstones) this.tombstones.set(rowKey(t.entity, t.id), t.seq);
    this.cursor = snap.cursor;
    this.ops = snap.ops;
    this.notify(new Set([...this.rows.keys(), ...this.ops.map((o) => o.entity)]));
  }

  private table(entity: string): Map<string, Row> {
    let t = this.rows.get(entity);
    if (!t) this.rows.set(entity, (t = new Map()));
    return t;
  }

  /** Calls `fn` with the entities whose visible rows may have changed. */
  subscribe(fn: (entities: Set<string>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  notify(entities: Set<string>): void {
    if (entities.size === 0) return;
    for (const fn of [...this.listeners]) fn(entities);
  }

  /**
   * Applies change events and moves the cursor to `cursor`: first the store commits the
   * rows, tombstones and cursor together, then memory follows. Events at or below the
   * current cursor, and inserts/updates older than a delete of their row, are ignored.
   */
  async applyEvents(events: ChangeEvent[], cursor: Cursor): Promise<void> {
    const from = this.cursor?.last_seq ?? 0;
    const rows = new Map<string, StoredRow>();
    const deleted = new Map<string, { entity: string; id: string }>();
    const tombs = new Map<string, Tombstone>();
    const current = (entity: string, id: string): Row | undefined => {
      const k = rowKey(entity, id);
      if (deleted.has(k)) return undefined;
      return (rows.get(k)?.data as Row | undefined) ?? this.rows.get(entity)?.get(id);
    };
    for (const e of events) {
      if (e.seq <= from) continue;
      const k = rowKey(e.entity, e.row_id);
      if (e.kind === "delete") {
        rows.delete(k);
        deleted.set(k, { entity: e.entity, id: e.row_id });
        tombs.set(k, { entity: e.entity, id: e.row_id, seq: e.seq });
        continue;
      }
      const tomb = Math.max(this.tombstones.get(k) ?? 0, tombs.get(k)?.seq ?? 0);
      if (e.seq < tomb) continue; // an old write replayed after the delete: never resurrect
      const base = e.kind === "insert" ? {} : (current(e.entity, e.row_id) ?? {});
      deleted.delete(k);
      rows.set(k, { entity: e.entity, id: e.row_id, data: { ...base, ...(e.data ?? {}), id: e.row_id } });
    }
    const commit: StoreCommit = {
      putRows: [...rows.values()],
      deleteRows: [...deleted.values()],
      tombstones: [...tombs.values()],
      cursor,
    };
    // Ops the host took whose effect the log now carries leave the overlay.
    const settled = this.ops.filter((o) => o.acked && o.acked.seq <= cursor.last_seq);
    if (settled.length) commit.deleteOps = settled.map((o) => o.op_id);
    await this.store.commit(commit);
    for (const r of rows.values()) this.table(r.entity).set(r.id, r.data as Row);
    for (const d of deleted.values()) this.rows.get(d.entity)?.delete(d.id);
    for (const [k, t] of tombs) this.tombstones.set(k, t.seq);
    this.ops = this.ops.filter((o) => !settled.includes(o));
    this.cursor = cursor;
    const touched = new Set([...events.map((e) => e.entity), ...settled.map((o) => o.entity)]);
    this.notify(touched);
  }

  /** Forgets every server row, tombstone and the cursor (resync); the write queue stays. */
  async reset(opts: { ops?: boolean } = {}): Promise<void> {
    await this.store.clear(opts);
    const entities = new Set([...this.rows.keys(), ...(opts.ops ? this.ops.map((o) => o.entity) : [])]);
    this.rows.clear();
    this.tombstones.clear();
    this.cursor = null;
    if (opts.ops) this.ops = [];
    this.notify(entities);
  }

  /** Stores and applies a change of the write queue (new ops, acks, removals). */
  async updateOps(put: QueuedOp[], remove: string[] = []): Promise<void> {
    // An acked op the replica has already read past is settled: its effect is in the rows.
    const seen = this.cursor?.last_seq ?? 0;
    remove = [...remove, ...put.filter((o) => o.acked && o.acked.seq <= seen).map((o) => o.op_id)];
    put = put.filter((o) => !(o.acked && o.acked.seq <= seen));
    await this.store.commit({ putOps: put, deleteOps: remove });
    const gone = new Set(remove);
    const touched = new Set([...put, ...this.ops.filter((o) => gone.has(o.op_id))].map((o) => o.entity));
    const next = this.ops.filter((o) => !gone.has(o.op_id));
    for (const op of put) {
      const i = next.findIndex((o) => o.op_id === op.op_id);
      if (i >= 0) next[i] = op;
      else next.push(op);
    }
    this.ops = next;
    this.notify(touched);
  }

  /** The server's row (no queued writes applied). */
  serverRow(entity: string, id: string): Row | undefined {
    return this.rows.get(entity)?.get(id);
  }

  /** The visible rows of `entity`: server rows with the queued writes applied in order. */
  visible(entity: string): Row[] {
    const view = new Map<string, Row>(this.rows.get(entity) ?? []);
    for (const op of this.ops) {
      if (op.entity !== entity) continue;
      const mapped = op.acked?.row_id;
      if (op.kind === "insert") {
        // Once the host's row has arrived it stands in for the optimistic one.
        if (mapped && view.has(mapped)) continue;
        view.set(op.row_id, { ...(op.data ?? {}), id: op.row_id });
      } else if (op.kind === "update") {
        const row = view.get(op.row_id);
        if (row) view.set(op.row_id, { ...row, ...(op.data ?? {}), id: op.row_id });
      } else {
        view.delete(op.row_id);
      }
    }
    return [...view.values()];
  }
}
