import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { MemoryStore, MemoryTokenStorage, type PylonClient, type Rejection } from "../src";
import { TestHost, eventually, signedInClient } from "./support/host";

let host: TestHost;
const clients: PylonClient[] = [];
beforeAll(async () => {
  host = await TestHost.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
});
afterAll(async () => {
  await host?.dispose();
});

const track = (c: PylonClient) => (clients.push(c), c);
const serverTodos = async (title: string) => ((await host.admin("/api/entities/Todo?limit=1000")).data as any[]).filter((r) => r.title.startsWith(title));

test("writes made while the host is down are replayed once after reconnect; sync resumes from the cursor", async () => {
  const client = track(await signedInClient(host));
  const seenBefore = await host.admin("/api/entities/Todo", { body: { title: "before restart", done: false } });
  await eventually("the row before the restart", () => client.rows("Todo").some((r) => r.id === seenBefore.id));
  const cursorBefore = client.replica.cursor!;
  let resets = 0;
  const reset = client.replica.reset.bind(client.replica);
  client.replica.reset = async (o) => (resets++, reset(o));

  await host.stop();
  await eventually("the client notices", () => client.sync.status !== "live");
  const ids = [];
  for (const n of [1, 2, 3]) ids.push(await client.insert("Todo", { title: `offline ${n}`, done: false }));
  await client.update("Todo", ids[0], { done: true });
  expect(ids.every((id) => id.startsWith("_pending_"))).toBe(true);
  // Optimistic rows show at once.
  expect(client.rows("Todo", { where: { title: { $like: "offline%" } } }).length).toBe(3);

  await host.restart();
  await eventually("the queue drains and the rows come back", async () =>
    client.queue.pending.length === 0 && client.replica.ops.length === 0 &&
    client.rows("Todo", { where: { title: { $like: "offline%" } } }).every((r) => !r.id.startsWith("_pending_")),
  );
  const onServer = await serverTodos("offline");
  expect(onServer.map((r) => r.title).sort()).toEqual(["offline 1", "offline 2", "offline 3"]);
  expect(onServer.find((r) => r.title === "offline 1").done).toBe(true);
  expect(client.rows("Todo", { where: { title: { $like: "offline%" } } }).length).toBe(3);
  // Resumed, not resynced: same database, the cursor went on from where it was.
  expect(resets).toBe(0);
  expect(client.replica.cursor!.epoch).toBe(cursorBefore.epoch);
  expect(client.replica.cursor!.last_seq).toBeGreaterThan(cursorBefore.last_seq);
  const after = await host.admin("/api/entities/Todo", { body: { title: "after restart", done: false } });
  await eventually("live again", () => client.rows("Todo").some((r) => r.id === after.id));
});

test("an op whose answer was lost is sent again and applied once (op_id)", async () => {
  const client = track(await signedInClient(host));
  // The first push reaches the host, but the client never sees the answer.
  let dropped = false;
  const realRequest = client.http.request.bind(client.http);
  client.http.request = (async (path: string, opts: any) => {
    const answer = await realRequest(path, opts);
    if (path === "/api/sync/push" && !dropped) {
      dropped = true;
      throw new (await import("../src")).PylonError(0, "NETWORK_ERROR", "answer lost");
    }
    return answer;
  }) as typeof client.http.request;
  await client.insert("Todo", { title: "lost answer", done: false });
  await eventually("the op is settled", () => dropped && client.replica.ops.length === 0);
  expect((await serverTodos("lost answer")).length).toBe(1);
});

test("a rejected optimistic write is rolled back and reported", async () => {
  const client = track(await signedInClient(host));
  const rejections: Rejection[] = [];
  client.onReject((r) => rejections.push(r));
  const shown: number[] = [];
  const live = client.liveQuery("Todo", { where: { done: false, priority: 99 } }, (rows) => shown.push(rows.length));
  // `title` is required: the host refuses the insert.
  await client.insert("Todo", { done: false, priority: 99 });
  expect(shown).toContain(1);
  await eventually("the rejection", () => rejections.length === 1);
  expect(rejections[0].op.kind).toBe("insert");
  expect(rejections[0].error.code).toBeTruthy();
  expect(client.rows("Todo", { where: { priority: 99 } })).toEqual([]);
  expect(shown.at(-1)).toBe(0);
  expect(client.replica.ops).toEqual([]);
  live.stop();
});

test("pending ids: an update and delete of a row not yet pushed follow it (id_map)", async () => {
  const client = track(await signedInClient(host));
  await client.stop(); // queue while not syncing
  const keep = await client.insert("Todo", { title: "mapped keep", done: false });
  await client.update("Todo", keep, { priority: 3 });
  const drop = await client.insert("Todo", { title: "mapped drop", done: false });
  await client.delete("Todo", drop);
  expect(client.rows("Todo", { where: { title: { $like: "mapped%" } } }).map((r) => r.title)).toEqual(["mapped keep"]);
  await client.start();
  await eventually("settled", () => client.replica.ops.length === 0);
  const onServer = await serverTodos("mapped");
  expect(onServer.map((r) => [r.title, r.priority])).toEqual([["mapped keep", 3]]);
  const local = client.rows("Todo", { where: { title: { $like: "mapped%" } } });
  expect(local.map((r) => r.id)).toEqual([onServer[0].id]);
});

test("a new client on the same store resumes from the stored cursor, with its queued writes", async () => {
  const store = new MemoryStore();
  const tokens = new MemoryTokenStorage();
  const first = track(await signedInClient(host, { store, tokens }));
  const a = await host.admin("/api/entities/Todo", { body: { title: "resume a", done: false } });
  await eventually("a", () => first.rows("Todo").some((r) => r.id === a.id));
  await first.stop();
  await first.insert("Todo", { title: "resume queued", done: false }); // stored, not pushed
  const cursor = (await store.load()).cursor!;
  const b = await host.admin("/api/entities/Todo", { body: { title: "resume b", done: false } });

  const second = track(host.client({ store, tokens }));
  const pulls: string[] = [];
  const realRequest = second.http.request.bind(second.http);
  second.http.request = ((path: string, opts: any) => {
    if (path.startsWith("/api/sync/pull")) pulls.push(path);
    return realRequest(path, opts);
  }) as typeof second.http.request;
  await second.start();
  await eventually("b and the queued write", async () =>
    second.rows("Todo").some((r) => r.id === b.id) && second.replica.ops.length === 0 &&
    (await serverTodos("resume queued")).length === 1,
  );
  expect(new URL(pulls[0], host.url).searchParams.get("since")).toBe(String(cursor.last_seq));
  expect(second.rows("Todo").some((r) => r.id === a.id)).toBe(true);
});

test("a queue over the host's body limit goes in smaller pushes; only an op too big on its own is refused", async () => {
  const small = await TestHost.start({ env: { PYLON_MAX_BODY_BYTES: String(64 * 1024) } });
  try {
    const client = track(await signedInClient(small));
    const rejections: Rejection[] = [];
    client.onReject((r) => rejections.push(r));
    await client.stop(); // queue while not syncing: one push would carry all of them
    for (const n of [1, 2, 3, 4, 5, 6]) await client.insert("Todo", { title: `bulky ${n} ` + "x".repeat(20_000), done: false });
    await client.insert("Todo", { title: "huge " + "y".repeat(100_000), done: false });
    await client.start();
    await eventually("settled", () => client.replica.ops.length === 0);
    const onServer = ((await small.admin("/api/entities/Todo?limit=100")).data as any[]).map((r) => r.title.split(" ").slice(0, 2).join(" "));
    expect(onServer.sort()).toEqual(["bulky 1", "bulky 2", "bulky 3", "bulky 4", "bulky 5", "bulky 6"]);
    expect(rejections.length).toBe(1);
    expect(rejections[0].op.data!.title).toStartWith("huge ");
    expect(rejections[0].error.status).toBe(413);
  } finally {
    await small.dispose();
  }
});

test("a push the host does not take from this caller (401, 403) keeps the ops; they go once it does", async () => {
  const client = track(await signedInClient(host));
  const rejections: Rejection[] = [];
  client.onReject((r) => rejections.push(r));
  let refused = 0;
  const realRequest = client.http.request.bind(client.http);
  const { PylonError } = await import("../src");
  client.http.request = (async (path: string, opts: any) => {
    if (path === "/api/sync/push" && refused < 2) {
      refused++;
      throw refused === 1 ? new PylonError(401, "UNAUTHORIZED", "signed out") : new PylonError(403, "FORBIDDEN", "origin refused");
    }
    return realRequest(path, opts);
  }) as typeof client.http.request;
  await client.insert("Todo", { title: "kept through 401", done: false });
  await eventually("the op is settled", () => refused === 2 && client.replica.ops.length === 0);
  expect(rejections).toEqual([]);
  expect((await serverTodos("kept through 401")).length).toBe(1);
});
