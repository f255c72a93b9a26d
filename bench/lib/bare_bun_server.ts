// The peer of bench/functions.sh: the same two operations as bench/fn-app/functions, on a
// bare Bun.serve with bun:sqlite (WAL, synchronous=NORMAL like pylon's SQLite store), no
// framework, no validation layer, no change log. Usage: bun bare_bun_server.ts PORT DB.
import { Database } from "bun:sqlite";

const port = Number(process.argv[2]);
const db = new Database(process.argv[3], { create: true });
db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000");
db.exec("CREATE TABLE IF NOT EXISTS Item (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL, done INTEGER NOT NULL)");
const get = db.prepare("SELECT id, title, done FROM Item WHERE id = ?");
const insert = db.prepare("INSERT INTO Item (id, title, done) VALUES (?, ?, 0)");
let n = 0;
const json = (v: unknown, status = 200) =>
  new Response(JSON.stringify(v), { status, headers: { "Content-Type": "application/json" } });

Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/health") return json({ status: "ok" });
    const args = (await req.json()) as Record<string, unknown>;
    if (path === "/getItem") {
      if (typeof args.id !== "string") return json({ error: "id must be a string" }, 400);
      const row = get.get(args.id) as { id: string; title: string; done: number } | null;
      return json({ result: row ? { ...row, done: row.done !== 0 } : null });
    }
    if (path === "/addItem") {
      if (typeof args.title !== "string") return json({ error: "title must be a string" }, 400);
      const id = `${Date.now().toString(16)}-${process.pid}-${++n}`;
      insert.run(id, args.title);
      return json({ result: { id } });
    }
    return json({ error: "not found" }, 404);
  },
});
