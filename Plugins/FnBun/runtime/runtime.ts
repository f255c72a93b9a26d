// The FnBun worker: `bun run runtime.ts <functionsDir>`. Speaks NDJSON with the host's
// FnBun plugin over stdin/stdout (Pylon's frames, multiplexed: many calls in flight,
// matched by call_id, db replies by op_id). stdout carries protocol frames only.
import { plugin } from "bun";
import { readdirSync } from "fs";
import { join, basename, extname, resolve } from "path";
import * as api from "./functions.ts";
import type { FunctionDefinition, Auth } from "./functions.ts";

const out = (s: string) => process.stderr.write(s + "\n");
const fmt = (a: unknown[]) => a.map((x) => (typeof x === "string" ? x : Bun.inspect(x))).join(" ");
console.log = console.info = console.debug = console.warn = console.error = (...a: unknown[]) => out(fmt(a));

plugin({
  name: "pylon-functions",
  setup(build) {
    for (const n of ["@pylon/functions", "@pylonsync/functions"]) build.module(n, () => ({ exports: api, loader: "object" }));
  },
});

// Frames sent while handling one batch of input (or one turn of the event loop) leave in
// one write: under load many calls are in flight, and a write per frame costs more than
// the frame.
let outbox: string[] = [];
let flushQueued = false;

function flush() {
  flushQueued = false;
  if (outbox.length === 0) return;
  const text = outbox.join("");
  outbox = [];
  process.stdout.write(text);
}

function send(frame: Record<string, unknown>) {
  let line: string;
  try {
    line = JSON.stringify(frame);
  } catch (e) {
    line = JSON.stringify({ type: "error", call_id: frame.call_id, code: "RESULT_NOT_SERIALIZABLE", message: `the function returned a value that is not JSON: ${e}` });
  }
  outbox.push(line + "\n");
  if (!flushQueued) {
    flushQueued = true;
    setImmediate(flush);
  }
}

const dir = resolve(process.argv[2] ?? "functions");
const registry = new Map<string, FunctionDefinition>();

async function load() {
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => /\.(ts|js|mts|mjs)$/.test(f) && !f.endsWith(".d.ts")).sort();
  } catch (e) {
    out(`[fn] cannot read ${dir}: ${e}`);
  }
  for (const f of files) {
    const name = basename(f, extname(f));
    try {
      const m = await import(join(dir, f));
      const d = m.default as FunctionDefinition | undefined;
      if (!d || typeof d.handler !== "function" || !["query", "mutation", "action"].includes(d.type)) {
        out(`[fn] ${f}: the default export is not a query, mutation or action definition; skipped`);
        continue;
      }
      registry.set(name, d);
    } catch (e) {
      out(`[fn] ${f} failed to load and is skipped: ${e instanceof Error ? e.stack ?? e.message : e}`);
    }
  }
}

// ---- db RPC ----
type Pending = { resolve: (v: any) => void; reject: (e: unknown) => void };
const pending = new Map<string, Pending>();
const opCounters = new Map<string, number>();

function rpc(callId: string, frame: Record<string, unknown>, type = "db"): Promise<any> {
  const n = (opCounters.get(callId) ?? 0) + 1;
  opCounters.set(callId, n);
  const opId = `${callId}#${n}`;
  return new Promise((resolve, reject) => {
    pending.set(opId, { resolve, reject });
    send({ ...frame, type, call_id: callId, op_id: opId });
  });
}

function makeDb(callId: string, writable: boolean) {
  const r = (op: string, f: Record<string, unknown>) => rpc(callId, { op, ...f });
  const reader: Record<string, Function> = {
    get: (entity: string, id: string) => r("get", { entity, id }),
    list: (entity: string) => r("list", { entity }),
    query: (entity: string, filter: Record<string, unknown> = {}) => r("query", { entity, data: filter }),
    lookup: (entity: string, field: string, value: unknown) => r("lookup", { entity, field, value }),
    paginate: (entity: string, o: { cursor?: string | null; numItems?: number } = {}) =>
      r("paginate", { entity, after: o.cursor ?? null, limit: o.numItems ?? 20 }),
    search: (entity: string, body: Record<string, unknown> = {}) => r("search", { entity, data: body ?? {} }),
    queryGraph: (query: Record<string, unknown>) => r("query_graph", { entity: "", data: query ?? {} }),
  };
  if (!writable) {
    for (const m of ["insert", "update", "delete", "link", "unlink"])
      reader[m] = () => Promise.reject(new api.FunctionError("READ_ONLY", `ctx.db.${m} is not available in a query; use a mutation`));
    return reader;
  }
  return {
    ...reader,
    insert: async (entity: string, data: Record<string, unknown>) => (await r("insert", { entity, data })).id,
    update: async (entity: string, id: string, data: Record<string, unknown>) => (await r("update", { entity, id, data })).updated,
    delete: async (entity: string, id: string) => (await r("delete", { entity, id })).deleted,
    link: async (entity: string, id: string, relation: string, targetId: string) =>
      (await r("link", { entity, id, relation, target_id: targetId })).linked,
    unlink: async (entity: string, id: string, relation: string) => (await r("unlink", { entity, id, relation })).unlinked,
  };
}

async function handleCall(f: any) {
  const callId = String(f.call_id);
  try {
    const def = registry.get(f.fn_name);
    if (!def) return send({ type: "error", call_id: callId, code: "FN_NOT_FOUND", message: `no function named "${f.fn_name}"` });
    if (f.fn_type && f.fn_type !== def.type)
      return send({ type: "error", call_id: callId, code: "FN_TYPE_MISMATCH", message: `"${f.fn_name}" is a ${def.type}, not a ${f.fn_type}` });
    const args = f.args ?? {};
    if (def.args) {
      const problems = api.validateArgs(def.args, args);
      if (problems.length) return send({ type: "error", call_id: callId, code: "INVALID_ARGS", message: problems.join("; ") });
    }
    const a = f.auth ?? {};
    const auth: Auth = { userId: a.user_id ?? null, isAdmin: !!a.is_admin, isGuest: !!a.is_guest, roles: a.roles ?? [], tenantId: a.tenant_id ?? null };
    const ctx: Record<string, unknown> = { auth, env: process.env, db: makeDb(callId, def.type !== "query") };
    if (def.type !== "query") {
      ctx.stream = {
        write: (data: string) => send({ type: "stream", call_id: callId, data: String(data) }),
        writeEvent: (event: string, data: string) => send({ type: "stream", call_id: callId, event, data: String(data) }),
      };
      ctx.error = (code: string, message: string) => {
        throw new api.FunctionError(code, message);
      };
      // Durable: the host stores the schedule (in a mutation, in its transaction).
      const schedule = async (fn: string, args: unknown, when: Record<string, number>) =>
        (await rpc(callId, { op: "schedule", fn_name: String(fn), args: args ?? {}, ...when })).id as string;
      ctx.scheduler = {
        runAfter: (ms: number, fn: string, args?: unknown) => schedule(fn, args, { delay_ms: Math.max(0, Math.floor(ms)) }),
        runAt: (at: number | Date, fn: string, args?: unknown) => schedule(fn, args, { run_at: at instanceof Date ? at.getTime() : Math.floor(at) }),
        cancel: async (id: string) => (await rpc(callId, { op: "cancel_schedule", schedule_id: id })).cancelled as boolean,
      };
    }
    if (def.type === "action") {
      const run = (fn_type: string) => (fn_name: string, fnArgs: unknown = {}) => rpc(callId, { fn_name, fn_type, args: fnArgs ?? {} }, "run_fn");
      ctx.runQuery = run("query");
      ctx.runMutation = run("mutation");
      ctx.runAction = run("action");
      const q = f.request;
      if (q && typeof q === "object")
        ctx.request = { method: String(q.method ?? ""), path: String(q.path ?? ""), headers: q.headers ?? {}, rawBody: String(q.raw_body ?? "") };
    }
    const value = await def.handler(ctx, args);
    send({ type: "return", call_id: callId, value: value === undefined ? null : value });
  } catch (e: any) {
    if (e && typeof e.code === "string" && e.code.length > 0) {
      send({ type: "error", call_id: callId, code: e.code, message: e.message || "Handler error" });
    } else {
      out(`[fn] ${f.fn_name} threw: ${e instanceof Error ? e.stack ?? e.message : e}`);
      send({ type: "error", call_id: callId, code: "HANDLER_ERROR", message: "Internal handler error" });
    }
  } finally {
    opCounters.delete(callId);
  }
}

function onFrame(f: any) {
  if (!f || typeof f !== "object") return;
  if (f.type === "call") {
    void handleCall(f);
  } else if (f.type === "result" && typeof f.op_id === "string") {
    const p = pending.get(f.op_id);
    if (!p) return;
    pending.delete(f.op_id);
    if (f.error) p.reject(new api.FunctionError(String(f.error.code ?? "DB_ERROR"), String(f.error.message ?? "database operation failed")));
    else p.resolve(f.data ?? null);
  }
}

await load();
send({
  type: "ready",
  functions: [...registry].map(([name, d]) => ({ name, fn_type: d.type, args_schema: d.args ?? null, privileged: !!d.privileged })),
});

const decoder = new TextDecoder();
let buf = "";
for await (const chunk of Bun.stdin.stream()) {
  buf += decoder.decode(chunk, { stream: true });
  let i: number;
  while ((i = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (!line.trim()) continue;
    let f: unknown;
    try {
      f = JSON.parse(line);
    } catch {
      continue; // unparseable lines are skipped, as in Pylon
    }
    onFrame(f);
  }
}
for (const p of pending.values()) p.reject(new api.FunctionError("HOST_GONE", "the host closed the connection"));
flush();
process.exit(0);
