import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { MemoryStore, PylonError, type PylonClient, type Row, type StoreCommit } from "../src";
import { EventStreamTransport } from "../src/sse-transport";
import { WebSocketTransport } from "../src/websocket-transport";
import { TestHost, eventually, signedInClient } from "./support/host";

let host: TestHost;
const clients: PylonClient[] = [];
beforeAll(async () => {
  host = await TestHost.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await host.admin("/api/__test__/reset", { method: "POST", body: {} });
});
afterAll(async () => {
  await host?.dispose();
});

const track = (c: PylonClient) => (clients.push(c), c);
const addTodo = (title: string, extra: Record<string, unknown> = {}) =>
  host.admin("/api/entities/Todo", { body: { title, done: false, ...extra } });
const titles = (rows: Row[]) => rows.map((r) => r.title);

test("sync from zero, then live changes over the WebSocket", async () => {
  for (let i = 0; i < 150; i++) await addTodo(`old ${i}`);
  const client = track(await signedInClient(host));
  await eventually("150 rows", () => client.rows("Todo").length === 150);
  expect(client.sync.transport?.name).toBe("websocket");
  const created = await addTodo("fresh");
  await eventually("the live insert", () => client.rows("Todo").some((r) => r.id === created.id));
  await host.admin(`/api/entities/Todo/${created.id}`, { method: "PATCH", body: { done: true } });
  await eventually("the live update", () => client.rows("Todo", { where: { title: "fresh" } })[0]?.done === true);
  await host.admin(`/api/entities/Todo/${created.id}`, { method: "DELETE" });
  await eventually("the live delete", () => !client.rows("Todo").some((r) => r.id === created.id));
});

test("SSE transport follows the log too", async () => {
  const client = track(await signedInClient(host, { transport: "sse" }));
  expect(client.sync.transport?.name).toBe("sse");
  const created = await addTodo("over sse");
  await eventually("the SSE insert", () => client.rows("Todo").some((r) => r.id === created.id));
});

test("live queries: filter, sort, limit; callbacks fire on change", async () => {
  const client = track(await signedInClient(host));
  const seen: string[][] = [];
  const live = client.liveQuery("Todo", { where: { done: false, priority: { $gte: 2 } }, orderBy: { priority: "desc" }, limit: 2 }, (rows) =>
    seen.push(titles(rows) as string[]),
  );
  expect(seen).toEqual([[]]);
  await addTodo("low", { priority: 1 });
  await addTodo("mid", { priority: 2 });
  await eventually("mid shows", () => seen.at(-1)?.join() === "mid");
  await addTodo("high", { priority: 5 });
  await eventually("high first", () => seen.at(-1)?.join() === "high,mid");
  await addTodo("top", { priority: 9 });
  await eventually("limit 2", () => seen.at(-1)?.join() === "top,high");
  // A change outside the result does not call back.
  const calls = seen.length;
  const other = await addTodo("other low", { priority: 0 });
  await eventually("the replica has it", () => client.rows("Todo").some((r) => r.id === other.id));
  expect(seen.length).toBe(calls);
  // Optimistic writes count as well.
  await client.insert("Todo", { title: "mine", done: false, priority: 7 });
  expect(seen.at(-1)).toEqual(["top", "mine"]);
  live.stop();
});

test("a forced 410 clears the replica and resyncs from zero", async () => {
  await addTodo("kept");
  const store = new MemoryStore();
  // A cursor from another database (epoch) and a row the host never had.
  await store.commit({
    putRows: [{ entity: "Todo", id: "ghost", data: { id: "ghost", title: "ghost", done: false } }],
    cursor: { last_seq: 3, epoch: "not-this-database" },
  });
  const client = track(host.client({ store }));
  await client.auth.register(`resync-${Date.now()}@example.com`, "correct horse battery");
  await client.settled();
  // register() wiped the store for the new user; put the stale state back.
  await store.commit({
    putRows: [{ entity: "Todo", id: "ghost", data: { id: "ghost", title: "ghost", done: false } }],
    cursor: { last_seq: 3, epoch: "not-this-database" },
  });
  let resets = 0;
  const reset = client.replica.reset.bind(client.replica);
  client.replica.reset = async (o) => (resets++, reset(o));
  await client.start();
  await eventually("resynced", () => client.rows("Todo").some((r) => r.title === "kept"));
  expect(resets).toBeGreaterThan(0);
  expect(client.rows("Todo").some((r) => r.id === "ghost")).toBe(false);
  expect(client.replica.cursor?.epoch).not.toBe("not-this-database");
});

test("the cursor moves only after the rows are stored (a failed commit skips nothing)", async () => {
  class FlakyStore extends MemoryStore {
    failNext = 0;
    async commit(c: StoreCommit) {
      if (c.putRows?.length && this.failNext > 0) {
        this.failNext--;
        throw new Error("disk full");
      }
      return super.commit(c);
    }
  }
  const store = new FlakyStore();
  const client = track(await signedInClient(host, { store }));
  store.failNext = 1;
  const before = client.replica.cursor?.last_seq ?? 0;
  const a = await addTodo("after a failed commit");
  await eventually("the row arrives on the retry", () => client.rows("Todo").some((r) => r.id === a.id));
  expect(store.failNext).toBe(0);
  expect(client.replica.cursor!.last_seq).toBeGreaterThan(before);
  // What the store holds is what memory holds.
  const snap = await store.load();
  expect(snap.rows.some((r) => r.id === a.id)).toBe(true);
  expect(snap.cursor?.last_seq).toBe(client.replica.cursor!.last_seq);
});

test("an old insert replayed after a delete never resurrects the row", async () => {
  const client = track(host.client());
  await client.replica.load();
  const cursor = (n: number) => ({ last_seq: n, epoch: "e" });
  await client.replica.applyEvents([{ seq: 1, entity: "Todo", row_id: "r1", kind: "insert", data: { title: "a", done: false } }], cursor(1));
  await client.replica.applyEvents([{ seq: 5, entity: "Todo", row_id: "r1", kind: "delete" }], cursor(5));
  // A stream that started earlier delivers the insert and an update again, in one batch.
  client.replica.cursor = cursor(0);
  await client.replica.applyEvents(
    [
      { seq: 1, entity: "Todo", row_id: "r1", kind: "insert", data: { title: "a", done: false } },
      { seq: 2, entity: "Todo", row_id: "r1", kind: "update", data: { done: true } },
    ],
    cursor(5),
  );
  expect(client.rows("Todo")).toEqual([]);
});

test("signing in as someone else wipes the replica and syncs again as them", async () => {
  await addTodo("shared");
  const client = track(await signedInClient(host));
  await eventually("the row", () => client.rows("Todo").length === 1);
  let resets = 0;
  const reset = client.replica.reset.bind(client.replica);
  client.replica.reset = async (o) => (resets++, reset(o));
  const other = await client.auth.guest();
  await client.settled();
  expect(resets).toBe(1);
  await eventually("live again", () => client.sync.status === "live");
  await eventually("the row again", () => client.rows("Todo").length === 1);
  expect((await client.auth.me()).user_id).toBe(other.user_id);
});

test("the WebSocket and SSE streams report a stale cursor as RESYNC_REQUIRED", async () => {
  await addTodo("one");
  const client = host.client();
  const s = await client.auth.guest();
  const handlers = { onOpen() {}, onChange() {}, onMessage() {} };
  const start = { since: 1, epoch: "not-this-database", token: s.token };
  const ws = await new WebSocketTransport(host.url).run(start, handlers, new AbortController().signal).catch((e) => e);
  expect(ws).toBeInstanceOf(PylonError);
  expect(ws.code).toBe("RESYNC_REQUIRED");
  const sse = await new EventStreamTransport(client.http).run(start, handlers, new AbortController().signal).catch((e) => e);
  expect(sse).toBeInstanceOf(PylonError);
  expect(sse.code).toBe("RESYNC_REQUIRED");
});
