import type { Replica, Row } from "./replica";

/** A field condition: a value (equality) or operators. */
export type Condition =
  | unknown
  | { $eq?: unknown; $ne?: unknown; $gt?: unknown; $gte?: unknown; $lt?: unknown; $lte?: unknown; $in?: unknown[]; $like?: string };

/** A live query: rows of `entity` matching `where`, sorted by `orderBy`, at most `limit`. */
export interface QuerySpec {
  where?: Record<string, Condition>;
  orderBy?: Record<string, "asc" | "desc"> | [string, "asc" | "desc"][];
  limit?: number;
}

const OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$like"];

function isOperators(c: unknown): c is Record<string, unknown> {
  return !!c && typeof c === "object" && !Array.isArray(c) && Object.keys(c).some((k) => OPS.includes(k));
}

/** SQL LIKE (`%`, `_`), case-insensitive as SQLite's. */
function like(value: unknown, pattern: string): boolean {
  const re = pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/%/g, ".*").replace(/_/g, ".");
  return new RegExp(`^${re}$`, "is").test(String(value ?? ""));
}

function matches(value: unknown, cond: Condition): boolean {
  if (!isOperators(cond)) return value === cond || (cond === null && value === undefined);
  const c = cond as Record<string, unknown>;
  const v = value as number | string;
  if ("$eq" in c && value !== c.$eq) return false;
  if ("$ne" in c && value === c.$ne) return false;
  if ("$gt" in c && !(v > (c.$gt as number))) return false;
  if ("$gte" in c && !(v >= (c.$gte as number))) return false;
  if ("$lt" in c && !(v < (c.$lt as number))) return false;
  if ("$lte" in c && !(v <= (c.$lte as number))) return false;
  if ("$in" in c && !(c.$in as unknown[]).includes(value)) return false;
  if ("$like" in c && !like(value, String(c.$like))) return false;
  return true;
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  return (a as number) < (b as number) ? -1 : 1;
}

/** Evaluates a query over rows (what the replica shows now). */
export function runQuery(rows: Row[], spec: QuerySpec): Row[] {
  const where = Object.entries(spec.where ?? {});
  let out = rows.filter((r) => where.every(([f, c]) => matches(r[f], c)));
  const order = Array.isArray(spec.orderBy) ? spec.orderBy : Object.entries(spec.orderBy ?? {});
  // Ties fall back to the id, so the order is stable across evaluations.
  out.sort((x, y) => {
    for (const [f, dir] of order) {
      const c = compare(x[f], y[f]);
      if (c !== 0) return dir === "desc" ? -c : c;
    }
    return compare(x.id, y.id);
  });
  if (spec.limit !== undefined) out = out.slice(0, Math.max(0, spec.limit));
  return out;
}

/**
 * A query kept up to date over the replica: `callback` runs with the first result and
 * again whenever the result changes (a change of the entity that leaves the result as
 * it was does not call it).
 */
export class LiveQuery {
  rows: Row[] = [];
  private last = "";
  private readonly unsubscribe: () => void;

  constructor(
    private readonly replica: Replica,
    readonly entity: string,
    readonly spec: QuerySpec,
    private readonly callback: (rows: Row[]) => void,
  ) {
    this.unsubscribe = replica.subscribe((entities) => {
      if (entities.has(entity)) this.refresh();
    });
    this.refresh();
  }

  private refresh(): void {
    const rows = runQuery(this.replica.visible(this.entity), this.spec);
    const key = JSON.stringify(rows);
    if (key === this.last) return;
    this.last = key;
    this.rows = rows;
    this.callback(rows);
  }

  stop(): void {
    this.unsubscribe();
  }
}
