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
      if (!d || typeof d.handler !== "function" || !["query", "mutation", "action", "workflow"].includes(d.type)) {
        out(`[fn] ${f}: the default export is not a query, mutation, action or workflow definition; skipped`);
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

/** One running call: its id and how many operations it has sent (op ids are `<call>#<n>`). */
type CallState = { id: string; ops: number };

/** Sends `frame` (an object of its own, completed here: no copies per operation) for call `c`. */
function rpc(c: CallState, frame: Record<string, unknown>, type = "db"): Promise<any> {
  const opId = c.id + "#" + ++c.ops;
  frame.type = type;
  frame.call_id = c.id;
  frame.op_id = opId;
  return new Promise((resolve, reject) => {
    pending.set(opId, { resolve, reject });
    send(frame);
  });
}

const readOnly = (m: string) => () =>
  Promise.reject(new api.FunctionError("READ_ONLY", `ctx.db.${m} is not available in a query; use a mutation`));
const queryOnlyWrites = { insert: readOnly("insert"), update: readOnly("update"), delete: readOnly("delete"), link: readOnly("link"), unlink: readOnly("unlink") };

function makeDb(c: CallState, writable: boolean) {
  const reader: Record<string, Function> = {
    get: (entity: string, id: string) => rpc(c, { op: "get", entity, id }),
    list: (entity: string) => rpc(c, { op: "list", entity }),
    query: (entity: string, filter: Record<string, unknown> = {}) => rpc(c, { op: "query", entity, data: filter }),
    lookup: (entity: string, field: string, value: unknown) => rpc(c, { op: "lookup", entity, field, value }),
    paginate: (entity: string, o: { cursor?: string | null; numItems?: number } = {}) =>
      rpc(c, { op: "paginate", entity, after: o.cursor ?? null, limit: o.numItems ?? 20 }),
    search: (entity: string, body: Record<string, unknown> = {}) => rpc(c, { op: "search", entity, data: body ?? {} }),
    queryGraph: (query: Record<string, unknown>) => rpc(c, { op: "query_graph", entity: "", data: query ?? {} }),
  };
  const w = writable
    ? {
        insert: async (entity: string, data: Record<string, unknown>) => (await rpc(c, { op: "insert", entity, data })).id,
        update: async (entity: string, id: string, data: Record<string, unknown>) => (await rpc(c, { op: "update", entity, id, data })).updated,
        delete: async (entity: string, id: string) => (await rpc(c, { op: "delete", entity, id })).deleted,
        link: async (entity: string, id: string, relation: string, targetId: string) =>
          (await rpc(c, { op: "link", entity, id, relation, target_id: targetId })).linked,
        unlink: async (entity: string, id: string, relation: string) => (await rpc(c, { op: "unlink", entity, id, relation })).unlinked,
      }
    : queryOnlyWrites;
  reader.insert = w.insert;
  reader.update = w.update;
  reader.delete = w.delete;
  reader.link = w.link;
  reader.unlink = w.unlink;
  return reader;
}

/** Durations for ctx.sleep: a number of milliseconds, or "500ms", "30s", "15m", "24h", "2d"
 *  (a bare number in a string is seconds, as Pylon's runner reads it). */
function durationMs(d: unknown): number {
  if (typeof d === "number" && Number.isFinite(d) && d >= 0) return Math.floor(d);
  const m = typeof d === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(d) : null;
  if (!m) throw new api.FunctionError("INVALID_DURATION", `ctx.sleep takes milliseconds or a duration such as "30s", "15m", "24h", "2d"; got ${JSON.stringify(d)}`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Math.floor(parseFloat(m[1]) * unit[m[2] ?? "s"]);
}

const errorText = (e: any) => (e && typeof e.code === "string" && e.code ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e));

/**
 * Adds a workflow's durable steps to `ctx`. The host sends the steps completed so far
 * (`args.steps`); the handler is replayed against them and the first new step, sleep or
 * wait decides the call's answer (`decided`), after which every durable call parks for
 * good: nothing after it runs in this call.
 */
function workflowCtx(ctx: Record<string, unknown>, w: any) {
  const done: { name: string; output: unknown }[] = Array.isArray(w.steps) ? w.steps : [];
  let next = 0;
  let suspended = false;
  let decide!: (d: Record<string, unknown>) => void;
  const decided = new Promise<Record<string, unknown>>((r) => (decide = r));
  const parked = new Promise<never>(() => {});
  const suspend = (d: Record<string, unknown>) => {
    if (!suspended) {
      suspended = true;
      decide(d);
    }
    return parked;
  };
  /** The recorded entry for the next durable call, which must ask for the same thing. */
  const replay = (name: string) => {
    if (next >= done.length) return undefined;
    const s = done[next];
    if (s?.name !== name)
      throw new api.FunctionError("WORKFLOW_NONDETERMINISTIC",
        `durable call ${next} was "${s?.name}" when it ran and is "${name}" now: a workflow must make the same steps, sleeps and waits in the same order on every replay`);
    next++;
    return { output: s.output };
  };
  ctx.workflowId = String(w.workflow_id ?? "");
  ctx.step = async (name: string, fn: () => unknown) => {
    if (suspended) return parked;
    const r = replay(String(name));
    if (r) return r.output;
    const t0 = performance.now();
    let output: unknown;
    try {
      output = await fn();
    } catch (e) {
      return suspend({ action: "fail", step_name: String(name), error: errorText(e) });
    }
    return suspend({ action: "step_complete", step_name: String(name), output: output === undefined ? null : output, duration_ms: Math.round(performance.now() - t0) });
  };
  ctx.sleep = async (d: unknown) => {
    if (suspended) return parked;
    const ms = durationMs(d);
    if (replay("sleep")) return;
    return suspend({ action: "sleep", duration_ms: ms });
  };
  ctx.waitForEvent = async (event: string) => {
    if (suspended) return parked;
    const r = replay("event:" + String(event));
    if (r) return r.output;
    return suspend({ action: "wait_event", event: String(event) });
  };
  return decided;
}

async function handleCall(f: any) {
  const callId = String(f.call_id);
  const c: CallState = { id: callId, ops: 0 };
  try {
    const def = registry.get(f.fn_name);
    if (!def) return send({ type: "error", call_id: callId, code: "FN_NOT_FOUND", message: `no function named "${f.fn_name}"` });
    if (f.fn_type && f.fn_type !== def.type)
      return send({ type: "error", call_id: callId, code: "FN_TYPE_MISMATCH", message: `"${f.fn_name}" is a ${def.type}, not a ${f.fn_type}` });
    const workflow = def.type === "workflow" ? (f.args ?? {}) : null;
    const args = workflow ? (workflow.input ?? {}) : (f.args ?? {});
    if (def.args) {
      const problems = api.validateArgs(def.args, args);
      if (problems.length) return send({ type: "error", call_id: callId, code: "INVALID_ARGS", message: problems.join("; ") });
    }
    const a = f.auth ?? {};
    const auth: Auth = { userId: a.user_id ?? null, isAdmin: !!a.is_admin, isGuest: !!a.is_guest, roles: a.roles ?? [], tenantId: a.tenant_id ?? null };
    const ctx: Record<string, unknown> = { auth, env: process.env, db: makeDb(c, def.type !== "query") };
    if (def.type !== "query") {
      ctx.stream = {
        // A lone UTF-16 surrogate (text cut in the middle of an emoji) is not JSON the host
        // reads: the whole chunk was lost. It becomes U+FFFD instead.
        write: (data: string) => send({ type: "stream", call_id: callId, data: String(data).toWellFormed() }),
        writeEvent: (event: string, data: string) =>
          send({ type: "stream", call_id: callId, event: String(event).toWellFormed(), data: String(data).toWellFormed() }),
      };
      ctx.error = (code: string, message: string) => {
        throw new api.FunctionError(code, message);
      };
      // Durable: the host stores the schedule (in a mutation, in its transaction).
      const schedule = async (fn: string, args: unknown, when: Record<string, number>) =>
        (await rpc(c, Object.assign({ op: "schedule", fn_name: String(fn), args: args ?? {} }, when))).id as string;
      ctx.scheduler = {
        runAfter: (ms: number, fn: string, args?: unknown) => schedule(fn, args, { delay_ms: Math.max(0, Math.floor(ms)) }),
        runAt: (at: number | Date, fn: string, args?: unknown) => schedule(fn, args, { run_at: at instanceof Date ? at.getTime() : Math.floor(at) }),
        cancel: async (id: string) => (await rpc(c, { op: "cancel_schedule", schedule_id: id })).cancelled as boolean,
      };
      // Durable jobs with retries: the host stores the job (in a mutation, in its transaction).
      ctx.jobs = {
        enqueue: async (name: string, args?: unknown, opts?: Record<string, unknown>) => {
          const o = opts ?? {};
          const frame = { op: "enqueue_job", name: String(name), args: args ?? {}, priority: o.priority, queue: o.queue,
            delay_ms: o.delayMs, max_retries: o.maxRetries, idempotency_key: o.idempotencyKey };
          return (await rpc(c, frame)).id as string;
        },
        cancel: async (id: string) => (await rpc(c, { op: "cancel_job", job_id: String(id) })).cancelled as boolean,
      };
      // Durable workflows: the host stores the instance or the event (in a mutation, in its transaction).
      ctx.workflows = {
        start: async (name: string, input?: unknown) =>
          (await rpc(c, { op: "workflow_start", name: String(name), input: input ?? {} })).id as string,
        sendEvent: async (id: string, event: string, data?: unknown) =>
          (await rpc(c, { op: "workflow_event", workflow_id: String(id), event: String(event), data: data ?? null })).delivered as boolean,
      };
      // Cron tasks: the host stores the task (in a mutation, in its transaction); every host's ticker runs it.
      ctx.cron = {
        register: async (name: string, schedule: string, opts?: Record<string, unknown>) => {
          const o = opts ?? {};
          const frame = { op: "cron_register", name: String(name), schedule: String(schedule), function: o.function == null ? undefined : String(o.function),
            timezone: o.timezone, payload: o.payload };
          return (await rpc(c, frame)).registered as boolean;
        },
        unregister: async (name: string) => (await rpc(c, { op: "cron_unregister", name: String(name) })).removed as boolean,
      };
    } else {
      const readOnly = (what: string) => async () => {
        throw new api.FunctionError("READ_ONLY", `${what} is not available in a query; use a mutation or an action`);
      };
      ctx.workflows = { start: readOnly("ctx.workflows"), sendEvent: readOnly("ctx.workflows") };
      ctx.cron = { register: readOnly("ctx.cron"), unregister: readOnly("ctx.cron") };
    }
    if (def.type === "action" || def.type === "workflow") {
      const run = (fn_type: string) => (fn_name: string, fnArgs: unknown = {}) => rpc(c, { fn_name, fn_type, args: fnArgs ?? {} }, "run_fn");
      ctx.runQuery = run("query");
      ctx.runMutation = run("mutation");
      ctx.runAction = run("action");
      // Shards (pylon.shard.sim/1): side effects outside any transaction, so actions only.
      ctx.shards = {
        create: async (sim: string, opts?: Record<string, unknown>) => {
          const o = opts ?? {};
          // `players` goes as given: the host checks it (400 INVALID_PLAYERS), as on POST /api/shards.
          return await rpc(c, { op: "shard_create", sim: String(sim), id: o.id ?? null, config: o.config ?? {}, settings: o.settings ?? {},
            players: o.players ?? null });
        },
        get: async (id: string) => await rpc(c, { op: "shard_get", id: String(id) }),
        input: async (id: string, subscriberId: string, input: unknown, clientSeq?: number) =>
          await rpc(c, { op: "shard_input", id: String(id), subscriber_id: String(subscriberId), input: input ?? null, client_seq: clientSeq ?? null }),
      };
      const q = f.request;
      if (q && typeof q === "object")
        ctx.request = { method: String(q.method ?? ""), path: String(q.path ?? ""), headers: q.headers ?? {}, rawBody: String(q.raw_body ?? "") };
    }
    if (workflow) {
      const decided = workflowCtx(ctx, workflow);
      const finished = Promise.resolve().then(() => def.handler(ctx, args)).then((v) => ({ action: "complete", output: v === undefined ? null : v }));
      return send({ type: "return", call_id: callId, value: await Promise.race([finished, decided]) });
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
  functions: [...registry].map(([name, d]) => ({
    name, fn_type: d.type, args_schema: d.args ?? null,
    privileged: !!d.privileged || d.policies === "trusted", enforce_policies: d.policies === "enforce",
    ...(d.type === "workflow" ? { description: d.description ?? "", max_retries: d.maxRetries ?? 3 } : {}),
  })),
});

const decoder = new TextDecoder();
let buf = "";
for await (const chunk of Bun.stdin.stream()) {
  buf += decoder.decode(chunk, { stream: true });
  // Every complete line of the chunk, then the rest is kept (one slice per chunk, not per line).
  let start = 0;
  let i: number;
  while ((i = buf.indexOf("\n", start)) >= 0) {
    const line = buf.slice(start, i);
    start = i + 1;
    if (!line.trim()) continue;
    let f: unknown;
    try {
      f = JSON.parse(line);
    } catch {
      continue; // unparseable lines are skipped, as in Pylon
    }
    onFrame(f);
  }
  if (start > 0) buf = buf.slice(start);
}
for (const p of pending.values()) p.reject(new api.FunctionError("HOST_GONE", "the host closed the connection"));
flush();
process.exit(0);
