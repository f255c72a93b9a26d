/** Pure formatting of host data for tables and charts (tested in test/format.test.ts). */

/** A cell's text: strings as they are, null as an em dash, objects as compact JSON, cut to `max` characters. */
export function cellText(v: unknown, max = 120): string {
  let s: string;
  if (v === null || v === undefined) s = "—";
  else if (typeof v === "string") s = v;
  else if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") s = String(v);
  else s = JSON.stringify(v);
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** Bytes as B / KiB / MiB / GiB with one decimal above bytes. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${n < 0 ? "-" : ""}${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A duration in milliseconds as µs / ms / s / min / h, short. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "—";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** A count with thousands separators and at most `digits` decimals (no locale: tests stay stable). */
export function formatNumber(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return "—";
  const fixed = Number.isInteger(n) ? String(Math.abs(n)) : Math.abs(n).toFixed(digits).replace(/\.?0+$/, "");
  const [int, frac] = fixed.split(".");
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${n < 0 ? "-" : ""}${grouped}${frac ? "." + frac : ""}`;
}

/**
 * A time the host sends (Unix seconds, Unix milliseconds, an ISO 8601 string, or the
 * change log's Unix seconds followed by "Z") as
 * `YYYY-MM-DD HH:MM:SS` UTC; anything else as it came.
 */
export function formatTime(v: unknown): string {
  let d: Date | null = null;
  if (typeof v === "number" && Number.isFinite(v)) d = new Date(v > 1e11 ? v : v * 1000);
  else if (typeof v === "string" && /^\d{4}-\d{2}-\d{2}/.test(v)) d = new Date(v);
  else if (typeof v === "string" && /^\d{1,12}Z$/.test(v)) d = new Date(Number(v.slice(0, -1)) * 1000); // the change log's "<unix seconds>Z"
  if (!d || Number.isNaN(d.getTime())) return cellText(v);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", "");
}

/** The columns of a list of rows: `id` first, then every key in first-seen order. */
export function columnsOf(rows: readonly Record<string, unknown>[], preferred: readonly string[] = []): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  const add = (k: string) => {
    if (!seen.has(k)) {
      seen.add(k);
      out.push(k);
    }
  };
  if (rows.some((r) => "id" in r)) add("id");
  for (const k of preferred) add(k);
  for (const r of rows) for (const k of Object.keys(r)) add(k);
  return out;
}

/** A job's or workflow's status as a short class name for styling (`ok`, `bad`, `wait`, `idle`). */
export function statusTone(status: unknown): "ok" | "bad" | "wait" | "idle" {
  const s = String(status ?? "").toLowerCase();
  if (["completed", "ok", "running", "true", "enabled"].includes(s)) return "ok";
  if (["dead", "failed", "error", "rolled_back", "cancelled", "false"].includes(s)) return "bad";
  if (["pending", "retrying", "sleeping", "waitingforevent", "scheduled"].includes(s)) return "wait";
  return "idle";
}

/** A change-log event (`{"seq","entity","row_id","kind","data"?}`) as one line of the live tail. */
export function changeSummary(e: { seq?: unknown; entity?: unknown; row_id?: unknown; kind?: unknown; data?: unknown; timestamp?: unknown }): string {
  const parts = [`#${cellText(e.seq)}`, String(e.kind ?? "?"), `${cellText(e.entity)} ${cellText(e.row_id, 16)}`];
  if (e.timestamp !== undefined) parts.unshift(formatTime(e.timestamp));
  if (e.data && typeof e.data === "object") parts.push(cellText(e.data, 160));
  return parts.join(" · ");
}
