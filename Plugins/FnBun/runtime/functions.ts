// @pylon/functions (also importable as @pylonsync/functions): the API app code in
// functions/*.ts uses. Shipped inside libPylonFnBun.so and served to app code by the
// worker's module plugin (see runtime.ts), so no npm registry is involved.

/** A validator is plain JSON; the same object is reported as the function's args schema. */
export interface Validator {
  type: string;
  optional?: boolean;
  table?: string;
  items?: Validator;
  fields?: Record<string, Validator>;
  variants?: Validator[];
  value?: unknown;
}

export const v = {
  string: (): Validator => ({ type: "string" }),
  datetime: (): Validator => ({ type: "string" }),
  richtext: (): Validator => ({ type: "string" }),
  number: (): Validator => ({ type: "number" }),
  float: (): Validator => ({ type: "number" }),
  int: (): Validator => ({ type: "int" }),
  boolean: (): Validator => ({ type: "boolean" }),
  bool: (): Validator => ({ type: "boolean" }),
  id: (table: string): Validator => ({ type: "id", table }),
  null: (): Validator => ({ type: "null" }),
  array: (items: Validator): Validator => ({ type: "array", items }),
  object: (fields: Record<string, Validator>): Validator => ({ type: "object", fields }),
  optional: (inner: Validator): Validator => ({ ...inner, optional: true }),
  union: (...variants: Validator[]): Validator => ({ type: "union", variants }),
  literal: (value: string | number | boolean | null): Validator => ({ type: "literal", value }),
  any: (): Validator => ({ type: "any" }),
};

function typeOf(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "array";
  return typeof x;
}

/** `o[k]` only when `o` has it itself: an inherited value (a prototype polluted by an
 *  earlier call's code, e.g. a deep merge of `{"__proto__": ...}`) must not fill in a
 *  field the caller left out. */
function own(o: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

/** The first problem with `value` against `schema`, or null. `path` names the value. */
export function check(schema: Validator, value: unknown, path: string): string | null {
  switch (schema.type) {
    case "string":
    case "number":
    case "boolean":
      return typeof value === schema.type ? null : `${path}: expected ${schema.type}, got ${typeOf(value)}`;
    case "int":
      if (typeof value !== "number") return `${path}: expected int, got ${typeOf(value)}`;
      return Number.isInteger(value) ? null : `${path}: expected int, got non-integer ${value}`;
    case "id":
      return typeof value === "string" ? null : `${path}: expected id${schema.table ? ` of ${schema.table}` : ""} (a string), got ${typeOf(value)}`;
    case "null":
      return value === null ? null : `${path}: expected null, got ${typeOf(value)}`;
    case "array": {
      if (!Array.isArray(value)) return `${path}: expected array, got ${typeOf(value)}`;
      if (!schema.items) return null;
      for (let i = 0; i < value.length; i++) {
        const p = check(schema.items, value[i], `${path}[${i}]`);
        if (p) return p;
      }
      return null;
    }
    case "object": {
      if (typeOf(value) !== "object") return `${path}: expected object, got ${typeOf(value)}`;
      const o = value as Record<string, unknown>;
      for (const [k, f] of Object.entries(schema.fields ?? {})) {
        const v = own(o, k);
        if (v === undefined) {
          if (f.optional) continue;
          return `${path}.${k}: required field missing`;
        }
        const p = check(f, v, `${path}.${k}`);
        if (p) return p;
      }
      return null;
    }
    case "union": {
      const vs = schema.variants ?? [];
      if (vs.some((s) => check(s, value, path) === null)) return null;
      return `${path}: expected one of ${vs.map((s) => s.type === "literal" ? JSON.stringify(s.value) : s.type).join(" | ")}, got ${typeOf(value)}`;
    }
    case "literal":
      return value === schema.value ? null : `${path}: expected ${JSON.stringify(schema.value)}, got ${JSON.stringify(value) ?? typeOf(value)}`;
    default:
      return null; // "any" and unknown types pass, as in Pylon
  }
}

/** Every problem with the top-level `args` (null or undefined count as missing there). */
export function validateArgs(schema: Record<string, Validator>, args: unknown): string[] {
  if (typeOf(args) !== "object") return ["args must be an object"];
  const a = args as Record<string, unknown>;
  const problems: string[] = [];
  for (const [k, s] of Object.entries(schema)) {
    const v = own(a, k);
    if (v === undefined || v === null) {
      if (!s.optional) problems.push(`Missing required field "${k}" (type: ${s.type})`);
      continue;
    }
    const p = check(s, v, k);
    if (p) problems.push(p);
  }
  return problems;
}

export interface Auth {
  userId: string | null;
  isAdmin: boolean;
  isGuest: boolean;
  roles: string[];
  tenantId: string | null;
}

export type Row = Record<string, any> & { id: string };

/** The body of `ctx.db.search` (the same as `POST /api/search/E`). */
export interface SearchQuery {
  query?: string;
  filters?: Record<string, unknown>;
  facets?: string[];
  sort?: [string, "asc" | "desc"] | Record<string, "asc" | "desc">;
  page?: number;
  page_size?: number;
}

export interface SearchResult {
  hits: Row[];
  /** facet field → value → count */
  facetCounts: Record<string, Record<string, number>>;
  total: number;
  tookMs: number;
}

/** `ctx.db.queryGraph`: entity → {where, include, limit} (the same as `POST /api/query`). */
export type GraphQuery = Record<string, { where?: Record<string, unknown>; include?: Record<string, unknown>; limit?: number }>;

export interface DbReader {
  get(entity: string, id: string): Promise<Row | null>;
  list(entity: string): Promise<Row[]>;
  query(entity: string, filter?: Record<string, unknown>): Promise<Row[]>;
  lookup(entity: string, field: string, value: unknown): Promise<Row | null>;
  paginate(entity: string, opts?: { cursor?: string | null; numItems?: number }): Promise<{ page: Row[]; nextCursor: string | null; isDone: boolean }>;
  /** Full-text search with facets; needs the entity's `search` config and a read rule that does not depend on the row. */
  search(entity: string, body?: SearchQuery): Promise<SearchResult>;
  /** Several entities with their related rows at once: `{E: [row]}`. */
  queryGraph(query: GraphQuery): Promise<Record<string, Row[]>>;
}

export interface DbWriter extends DbReader {
  insert(entity: string, data: Record<string, unknown>): Promise<string>;
  update(entity: string, id: string, data: Record<string, unknown>): Promise<boolean>;
  delete(entity: string, id: string): Promise<boolean>;
  /** Sets `relation`'s foreign key on the row (false when the row does not exist). */
  link(entity: string, id: string, relation: string, targetId: string): Promise<boolean>;
  /** Clears `relation`'s foreign key on the row. */
  unlink(entity: string, id: string, relation: string): Promise<boolean>;
}

export interface Stream {
  write(data: string): void;
  writeEvent(event: string, data: string): void;
}

export interface QueryCtx { db: DbReader; auth: Auth; env: Record<string, string | undefined> }
/** Durable scheduled calls: stored by the host (in a mutation, inside its transaction). */
export interface Scheduler {
  runAfter(ms: number, fn: string, args?: Record<string, unknown>): Promise<string>;
  runAt(at: number | Date, fn: string, args?: Record<string, unknown>): Promise<string>;
  /** True when the call had not run yet and now never will. */
  cancel(id: string): Promise<boolean>;
}

/** Options of `ctx.jobs.enqueue`; all optional. */
export interface JobOptions {
  priority?: "low" | "normal" | "high" | "critical";
  /** A named queue (its concurrency limit is the host's `PYLON_JOBS_QUEUES`); default "default". */
  queue?: string;
  delayMs?: number;
  /** Retries after the first failure, with exponential back-off; default 3, at most 25. */
  maxRetries?: number;
  /** A second enqueue with the same key returns the first job's id and enqueues nothing. */
  idempotencyKey?: string;
}

/** Durable jobs: run at least once, retried with back-off, dead-lettered after the last retry. */
export interface Jobs {
  /** Enqueues a job that runs the mutation or action `fn` with `args`; its id. */
  enqueue(fn: string, args?: Record<string, unknown>, opts?: JobOptions): Promise<string>;
  /** True when the job was pending or running and is now cancelled. */
  cancel(id: string): Promise<boolean>;
}

/** Durable workflows, started and fed from a function (in a mutation, inside its transaction:
 *  a rolled-back mutation starts nothing and delivers nothing). Not available in queries. */
export interface Workflows {
  /** Starts the workflow `name` with `input`; the new instance's id ("wf_…").
   *  Throws WORKFLOW_START_FAILED when no workflow has that name. */
  start(name: string, input?: Record<string, unknown>): Promise<string>;
  /** Sends `event` with `data` to instance `id`: true when it woke the workflow waiting for it,
   *  false when kept until the workflow waits for it. Throws NOT_FOUND (no such instance),
   *  WORKFLOW_FINISHED (it has ended) or WORKFLOW_INBOX_FULL (100 events already kept). */
  sendEvent(id: string, event: string, data?: unknown): Promise<boolean>;
}

/** Options of `ctx.cron.register`. */
export interface CronOptions {
  /** The mutation or action each occurrence runs (as a durable job). */
  function: string;
  /** An IANA zone name whose wall clock the expression reads; default "UTC". */
  timezone?: string;
  /** The job's args (JSON, at most 8 KiB); default `{ scheduled: true, timestamp }`. */
  payload?: Record<string, unknown>;
}

/** Cron tasks registered from functions, beside the manifest's `cron` list (in a mutation,
 *  inside its transaction: a rolled-back mutation registers and removes nothing). Kept in
 *  the store: they survive restarts and run once per occurrence across hosts. Not available
 *  in queries. */
export interface Cron {
  /** Registers task `name` (or replaces its definition) with a 5-field expression or a macro
   *  ("@hourly"); true when new or changed, false when the same definition was there.
   *  Throws CRON_INVALID, CRON_TIMEZONE_INVALID, CRON_NAME_TAKEN (a manifest task's name),
   *  CRON_LIMIT (100 registered tasks), FN_NOT_FOUND, FN_IS_QUERY or FN_IS_WORKFLOW. */
  register(name: string, schedule: string, opts: CronOptions): Promise<boolean>;
  /** Removes task `name`; false when no function registered one by that name. */
  unregister(name: string): Promise<boolean>;
}

export interface MutationCtx {
  db: DbWriter;
  auth: Auth;
  env: Record<string, string | undefined>;
  stream: Stream;
  scheduler: Scheduler;
  jobs: Jobs;
  workflows: Workflows;
  cron: Cron;
  error(code: string, message: string): never;
}
/** The HTTP request of a webhook call (`/api/webhooks/NAME`). */
export interface WebhookRequest {
  method: string;
  /** The path with the query string, as requested. */
  path: string;
  /** Lowercased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  rawBody: string;
}

/** A shard as the host reports it (`GET /api/shards/:id`). */
export interface ShardInfo {
  id: string; sim: string; running: boolean; tick: number; subscribers: number; input_queue: number;
  tick_rate_hz: number; max_subscribers: number; idle_ticks_before_shutdown: number; max_input_queue: number;
  persist_every_ticks: number;
  /** The shard's roster (a matched shard's group, or the `players` it was created with). */
  players?: string[];
}

/** Shards of the loaded sims (pylon.shard.sim/1); in actions only (not transactional). */
export interface Shards {
  /**
   * Starts a shard of `sim`; `config` goes to the sim, `settings` are the shard's (tick_rate_hz, ...).
   * `players` (1 to 1024 distinct user ids) gives it a roster: over HTTP and the shard WebSocket only
   * they (each as itself) and the admin may read, watch or play it; to anyone else it is not found.
   * Without it the sim alone admits. A bad list fails with INVALID_PLAYERS and starts no shard.
   */
  create(sim: string, opts?: { id?: string; config?: Record<string, unknown>; settings?: Record<string, number>; players?: string[] }): Promise<ShardInfo>;
  /** The running shard `id`, or null. */
  get(id: string): Promise<ShardInfo | null>;
  /** Queues `input` as `subscriberId` for the next tick; its server seq. */
  input(id: string, subscriberId: string, input: unknown, clientSeq?: number): Promise<{ accepted: true; seq: number }>;
}

export interface ActionCtx extends MutationCtx {
  /** Set when the action runs as a webhook; its args are then `{ rawBody }`. */
  request?: WebhookRequest;
  shards: Shards;
  /** Runs a query / mutation / action as the same user (admin rights dropped); a mutation in its own transaction. */
  runQuery(name: string, args?: Record<string, unknown>): Promise<any>;
  runMutation(name: string, args?: Record<string, unknown>): Promise<any>;
  runAction(name: string, args?: Record<string, unknown>): Promise<any>;
}

/**
 * A workflow's context: an action's, plus durable steps. The host runs the workflow again
 * from the top for every step (a replay): a step already completed returns its recorded
 * output without running, so code outside steps must be deterministic and cheap, and
 * anything with an effect belongs in a step. A step runs at least once (again if the host
 * dies before recording it); steps run one at a time, in order.
 */
export interface WorkflowCtx extends ActionCtx {
  workflowId: string;
  /** Runs `fn` once, durably: its result (JSON) is recorded and returned on every replay.
   *  A step that throws is retried (up to the workflow's maxRetries, with back-off), then
   *  the workflow fails. Names must be stable across replays. */
  step<T>(name: string, fn: () => T | Promise<T>): Promise<T>;
  /** Sleeps durably ("30s", "15m", "24h", "2d", or milliseconds as a number). */
  sleep(duration: string | number): Promise<void>;
  /** Waits durably until `POST /api/workflows/:id/event` delivers `event` (one sent
   *  before the wait is kept for it); resolves with the event's data. */
  waitForEvent<T = unknown>(event: string): Promise<T>;
}

type Handler<C> = (ctx: C, args: any) => unknown;
type Def<C> =
  | { args?: Record<string, Validator>; handler: Handler<C>; privileged?: boolean; policies?: "enforce" | "trusted" }
  | Handler<C>;

export interface FunctionDefinition {
  type: "query" | "mutation" | "action" | "workflow";
  /** A workflow's: how often a failing step is retried before the workflow fails (default 3). */
  maxRetries?: number;
  description?: string;
  args?: Record<string, Validator>;
  handler: Handler<any>;
  /** ctx.db bypasses the manifest's policies even where the app enforces them on
   *  functions (the default already bypasses them, as in Pylon). */
  privileged?: boolean;
  /** "enforce": ctx.db obeys the caller's policies whatever the app's setting; "trusted":
   *  the same as `privileged: true`. */
  policies?: "enforce" | "trusted";
}

function define(type: FunctionDefinition["type"], def: Def<any>): FunctionDefinition {
  if (typeof def === "function") return { type, handler: def };
  if (def.policies !== undefined && def.policies !== "enforce" && def.policies !== "trusted") {
    throw new Error(`policies must be "enforce" or "trusted", got ${JSON.stringify(def.policies)}`);
  }
  return { type, ...def };
}

export const query = (def: Def<QueryCtx>) => define("query", def);
export const mutation = (def: Def<MutationCtx>) => define("mutation", def);
export const action = (def: Def<ActionCtx>) => define("action", def);

/** A durable workflow, started with `POST /api/workflows/start` {"name", "input"}. */
export function workflow(def: { args?: Record<string, Validator>; handler: Handler<WorkflowCtx>; maxRetries?: number; description?: string } | Handler<WorkflowCtx>) {
  const d = define("workflow", def as Def<any>);
  if (d.maxRetries !== undefined && !(Number.isInteger(d.maxRetries) && d.maxRetries >= 0 && d.maxRetries <= 25)) {
    throw new Error(`maxRetries must be an integer from 0 to 25, got ${JSON.stringify(d.maxRetries)}`);
  }
  return d;
}

/** An error with a stable code: thrown by ctx.error, returned to the caller as-is. */
export class FunctionError extends Error {
  code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}
