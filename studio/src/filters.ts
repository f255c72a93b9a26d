/**
 * The entity browser's filter rows, sort and page, as the body of `POST /api/query/E`
 * (the host's filter language: `{field: v}`, `{field: {"$gt": v}}`, `$order`, `$limit`,
 * `$offset`). Tested in test/filters.test.ts.
 */
import { type FieldInfo, kindOf, parseValue } from "./schema.ts";

export type FilterOp = "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "like" | "in" | "null" | "notnull";

export const filterOps: { op: FilterOp; label: string }[] = [
  { op: "eq", label: "=" },
  { op: "ne", label: "≠" },
  { op: "gt", label: ">" },
  { op: "gte", label: "≥" },
  { op: "lt", label: "<" },
  { op: "lte", label: "≤" },
  { op: "like", label: "contains" },
  { op: "in", label: "one of (comma-separated)" },
  { op: "null", label: "is empty" },
  { op: "notnull", label: "is not empty" },
];

export interface FilterRow {
  field: string;
  op: FilterOp;
  value: string;
}

export interface ListState {
  filters: FilterRow[];
  sort: { field: string; dir: "asc" | "desc" } | null;
  page: number;
  pageSize: number;
}

const opKey: Partial<Record<FilterOp, string>> = { eq: "$eq", ne: "$not", gt: "$gt", gte: "$gte", lt: "$lt", lte: "$lte", like: "$like", in: "$in" };

/**
 * The query body for `state`, asking for one row more than a page so the browser knows
 * whether a next page exists. Throws an Error naming the first bad filter. `fields` gives
 * each field's type (`id` is text).
 */
export function buildQuery(state: ListState, fields: readonly FieldInfo[]): Record<string, unknown> {
  const byName = new Map<string, FieldInfo>(fields.map((f) => [f.name, f]));
  byName.set("id", { name: "id", type: "string", optional: false, unique: true });
  const conditions = new Map<string, Record<string, unknown>>();
  for (const row of state.filters) {
    const field = byName.get(row.field);
    if (!field) throw new Error(`unknown field ${row.field}`);
    const ops = conditions.get(field.name) ?? {};
    conditions.set(field.name, ops);
    if (row.op === "null") {
      ops.$eq = null;
      continue;
    }
    if (row.op === "notnull") {
      ops.$not = null;
      continue;
    }
    if (row.op === "like" && kindOf(field.type) !== "text") throw new Error(`"contains" works on text fields; ${field.name} is ${field.type}`);
    const strict = { ...field, optional: false };
    const parse = (t: string) => {
      const p = parseValue(strict, t);
      if (!p.ok) throw new Error(p.message);
      return p.value;
    };
    const key = opKey[row.op]!;
    if (key in ops) throw new Error(`${field.name} has two "${row.op}" filters; keep one`);
    ops[key] = row.op === "in" ? splitList(row.value).map(parse) : row.op === "like" ? row.value : parse(row.value);
  }
  const body: Record<string, unknown> = {};
  for (const [name, ops] of conditions) body[name] = ops;
  if (state.sort) {
    if (!byName.has(state.sort.field)) throw new Error(`unknown sort field ${state.sort.field}`);
    body.$order = { [state.sort.field]: state.sort.dir };
  }
  body.$limit = state.pageSize + 1;
  body.$offset = state.page * state.pageSize;
  return body;
}

/** "a, b ,c" → ["a","b","c"]; empty items dropped. */
export function splitList(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/** The next sort after clicking a column's header: ascending, then descending, then none. */
export function nextSort(current: ListState["sort"], field: string): ListState["sort"] {
  if (!current || current.field !== field) return { field, dir: "asc" };
  if (current.dir === "asc") return { field, dir: "desc" };
  return null;
}

/** Splits the `pageSize + 1` rows a query answered into the page and whether more follow. */
export function pageOf<T>(rows: readonly T[], pageSize: number): { rows: T[]; hasMore: boolean } {
  return { rows: rows.slice(0, pageSize), hasMore: rows.length > pageSize };
}
