import { mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PylonClient, type PylonClientOptions } from "../../src";

/** The repository root (clients/typescript/test/support → four levels up). */
export const repoRoot = resolve(import.meta.dir, "../../../..");
export const ADMIN_TOKEN = "ts-client-test-admin-token";

/** The manifest the suites run against: users, todos (title required), functions. */
export const testManifest = {
  manifest_version: 1,
  name: "tsclient",
  version: "0.1.0",
  entities: [
    {
      name: "User",
      fields: [
        { name: "email", type: "string", optional: false, unique: true },
        { name: "displayName", type: "string", optional: true, unique: false },
      ],
      indexes: [],
    },
    {
      name: "Todo",
      fields: [
        { name: "title", type: "string", optional: false, unique: false },
        { name: "done", type: "bool", optional: false, unique: false },
        { name: "priority", type: "int", optional: true, unique: false },
      ],
      indexes: [],
    },
  ],
  routes: [],
  queries: [],
  actions: [],
  policies: [],
};

const functions: Record<string, string> = {
  "functions/double.ts": `import { query, v } from "@pylon/functions";
export default query({ args: { n: v.number() }, async handler(ctx, { n }) { return { doubled: n * 2 }; } });
`,
  "functions/countdown.ts": `import { action, v } from "@pylon/functions";
export default action({ args: { from: v.number(), fail: v.optional(v.boolean()) }, async handler(ctx, { from, fail }) {
  for (let i = from; i > 0; i--) ctx.stream.write(String(i));
  if (fail) ctx.error("COUNTDOWN_FAILED", "as asked");
  return { liftoff: true };
} });
`,
};

/** Asks the kernel for a free loopback port. */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/**
 * A real `pylon-host` (the release build of this repository) on a free loopback port, in
 * `--dev`, with its own temp folder, manifest and SQLite file. `restart()` keeps the
 * database and port.
 */
export class TestHost {
  readonly dir: string;
  readonly port: number;
  private proc: ReturnType<typeof Bun.spawn> | null = null;
  private log = "";

  private constructor(
    private readonly pluginsDir: string,
    private readonly extraEnv: Record<string, string>,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "pylon-tsclient-"));
    this.port = freePort();
  }

  /** `pluginsDir`: the plugins folder (default: the repository's `plugins/`); `env`: more settings. */
  static async start(opts: { pluginsDir?: string; env?: Record<string, string> } = {}): Promise<TestHost> {
    const host = new TestHost(opts.pluginsDir ?? join(repoRoot, "plugins"), opts.env ?? {});
    writeFileSync(join(host.dir, "pylon.manifest.json"), JSON.stringify(testManifest, null, 2));
    for (const [path, text] of Object.entries(functions)) {
      mkdirSync(dirname(join(host.dir, path)), { recursive: true });
      writeFileSync(join(host.dir, path), text);
    }
    await host.launch();
    return host;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PYLON_") && v !== undefined) env[k] = v;
    env.PYLON_ADMIN_TOKEN = ADMIN_TOKEN;
    env.PYLON_BUN = process.execPath;
    env.PYLON_FN_WORKERS = "1";
    // Every test signs up fresh users from one address: the per-address auth buckets are off.
    env.PYLON_AUTH_RATE_LIMIT_SEND = "0";
    env.PYLON_AUTH_RATE_LIMIT_LOGIN = "0";
    env.PYLON_AUTH_RATE_LIMIT_VERIFY = "0";
    Object.assign(env, this.extraEnv);
    const bin = join(repoRoot, ".build/release/pylon-host");
    this.proc = Bun.spawn(
      [bin, "serve", "--plugins", this.pluginsDir, "--manifest", join(this.dir, "pylon.manifest.json"),
        "--db", join(this.dir, "app.db"), "--port", String(this.port), "--no-compat-ports", "--dev"],
      { env, stdout: "pipe", stderr: "pipe", cwd: this.dir },
    );
    this.drain(this.proc.stdout as ReadableStream<Uint8Array>);
    this.drain(this.proc.stderr as ReadableStream<Uint8Array>);
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`pylon-host exited (${this.proc.exitCode}):\n${this.log}`);
      try {
        const res = await fetch(`${this.url}/health`);
        if (res.ok) return;
      } catch {}
      if (Date.now() > deadline) throw new Error(`pylon-host did not answer /health:\n${this.log}`);
      await Bun.sleep(50);
    }
  }

  private async drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.log = (this.log + decoder.decode(chunk)).slice(-20000);
  }

  /** Stops the host (SIGTERM, then SIGKILL after 15 s). */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    p.kill("SIGTERM");
    const killer = setTimeout(() => p.kill("SIGKILL"), 15_000);
    await p.exited;
    clearTimeout(killer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** An admin request (for checking what the host holds). */
  async admin(path: string, init: { method?: string; body?: unknown } = {}): Promise<any> {
    const res = await fetch(this.url + path, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** A client of this host with fast reconnects (tests wait for outcomes, never for time). */
  client(opts: Partial<PylonClientOptions> = {}): PylonClient {
    return new PylonClient({ baseUrl: this.url, reconnectBaseMs: 100, reconnectMaxMs: 500, ...opts });
  }
}

/** Waits until `check` holds (polling), failing with `what` after a generous minute. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await Bun.sleep(25);
  }
}

let userCounter = 0;

/** A fresh signed-in client (password account) that has started syncing. */
export async function signedInClient(host: TestHost, opts: Partial<PylonClientOptions> = {}): Promise<PylonClient> {
  const client = host.client(opts);
  const email = `user${++userCounter}-${Date.now()}@example.com`;
  await client.auth.register(email, "correct horse battery", "Tester");
  await client.start();
  await eventually("sync live", () => client.sync.status === "live");
  return client;
}

/**
 * A plugins folder with the repository's plugins and the example shard sim
 * (examples/shard-arena, compiled here with `make`). Remove it with `rmSync`.
 */
export function pluginsWithArena(): string {
  const dir = mkdtempSync(join(tmpdir(), "pylon-tsclient-plugins-"));
  for (const name of readdirSync(join(repoRoot, "plugins"))) symlinkSync(join(repoRoot, "plugins", name), join(dir, name));
  const made = Bun.spawnSync(["make", "-s", "-C", join(repoRoot, "examples/shard-arena"), `BUILD_DIR=${dir}`]);
  if (made.exitCode !== 0) throw new Error(`building examples/shard-arena failed:\n${made.stderr.toString()}`);
  return dir;
}
