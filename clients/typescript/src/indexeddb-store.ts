import type { Cursor, QueuedOp, ReplicaStore, StoreCommit, StoreSnapshot, StoredRow, Tombstone } from "./store";
import { rowKey } from "./store";

const STORES = ["rows", "tombstones", "meta", "ops"] as const;

/** Resolves when an IndexedDB request succeeds. */
function done<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Resolves when a transaction commits (so the data is on disk before the caller goes on). */
function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/**
 * The replica in a browser's IndexedDB (database `name`): rows, tombstones, cursor and
 * write queue in four object stores, each commit one transaction over all of them.
 */
export class IndexedDBStore implements ReplicaStore {
  private db: Promise<IDBDatabase> | null = null;
  /** Orders ops stored within one millisecond. */
  private counter = 0;

  constructor(private readonly name = "pylon-replica") {}

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(this.name, 1);
      req.onupgradeneeded = () => {
        for (const s of STORES) if (!req.result.objectStoreNames.contains(s)) req.result.createObjectStore(s);
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }

  async load(): Promise<StoreSnapshot> {
    const tx = (await this.open()).transaction([...STORES], "readonly");
    const [rows, tombstones, ops, cursor] = await Promise.all([
      done(tx.objectStore("rows").getAll()) as Promise<StoredRow[]>,
      done(tx.objectStore("tombstones").getAll()) as Promise<Tombstone[]>,
      done(tx.objectStore("ops").getAll()) as Promise<(QueuedOp & { order: number })[]>,
      done(tx.objectStore("meta").get("cursor")) as Promise<Cursor | undefined>,
    ]);
    ops.sort((a, b) => a.order - b.order);
    return { rows, tombstones, ops: ops.map(({ order: _, ...op }) => op), cursor: cursor ?? null };
  }

  async commit(c: StoreCommit): Promise<void> {
    const tx = (await this.open()).transaction([...STORES], "readwrite");
    const rows = tx.objectStore("rows");
    for (const r of c.putRows ?? []) rows.put(r, rowKey(r.entity, r.id));
    for (const r of c.deleteRows ?? []) rows.delete(rowKey(r.entity, r.id));
    const tombs = tx.objectStore("tombstones");
    for (const t of c.tombstones ?? []) tombs.put(t, rowKey(t.entity, t.id));
    const ops = tx.objectStore("ops");
    // Queue order survives reloads: each op keeps the time it was first stored.
    for (const o of c.putOps ?? []) {
      const old = (await done(ops.get(o.op_id))) as { order?: number } | undefined;
      ops.put({ ...o, order: old?.order ?? Date.now() * 1000 + (this.counter++ % 1000) }, o.op_id);
    }
    for (const id of c.deleteOps ?? []) ops.delete(id);
    if (c.cursor) tx.objectStore("meta").put(c.cursor, "cursor");
    await committed(tx);
  }

  async clear(opts: { ops?: boolean } = {}): Promise<void> {
    const tx = (await this.open()).transaction([...STORES], "readwrite");
    tx.objectStore("rows").clear();
    tx.objectStore("tombstones").clear();
    tx.objectStore("meta").clear();
    if (opts.ops) tx.objectStore("ops").clear();
    await committed(tx);
  }
}
