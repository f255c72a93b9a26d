import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { PylonError, type PylonClient, type RoomEvent } from "../src";
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

test("function calls, whole and streamed, with the host's errors", async () => {
  const client = track(await signedInClient(host));
  expect(await client.functions.call("double", { n: 21 })).toEqual({ doubled: 42 });
  const bad = await client.functions.call("double", { n: "x" }).catch((e) => e);
  expect(bad).toBeInstanceOf(PylonError);
  expect(bad.code).toBe("INVALID_ARGS");
  const missing = await client.functions.call("nope").catch((e) => e);
  expect(missing.code).toBe("FN_NOT_FOUND");

  const chunks: string[] = [];
  expect(await client.functions.stream("countdown", { from: 3 }, (c) => chunks.push(c))).toEqual({ liftoff: true });
  expect(chunks).toEqual(["3", "2", "1"]);
  const failedChunks: string[] = [];
  const failed = await client.functions.stream("countdown", { from: 2, fail: true }, (c) => failedChunks.push(c)).catch((e) => e);
  expect(failed).toBeInstanceOf(PylonError);
  expect(failed.code).toBe("COUNTDOWN_FAILED");
  expect(failedChunks).toEqual(["2", "1"]);
});

test("rooms: join, presence, broadcast and leave reach the other member through its stream", async () => {
  const alice = track(await signedInClient(host));
  const bob = track(await signedInClient(host));
  const aliceId = (await alice.auth.me()).user_id!;
  const bobId = (await bob.auth.me()).user_id!;
  const seen: RoomEvent[] = [];
  alice.rooms.on("lobby", (e) => seen.push(e));
  expect(await alice.rooms.join("lobby", { name: "Alice" })).toEqual([]);
  const peers = await bob.rooms.join("lobby", { name: "Bob" });
  expect(peers.map((p) => p.user_id)).toEqual([aliceId]);
  await eventually("bob's join", () => seen.some((e) => e.type === "join" && e.user_id === bobId));
  expect(await bob.rooms.setPresence("lobby", { typing: true })).toBe(true);
  await eventually("bob's presence", () => seen.some((e) => e.type === "presence" && (e.data as any)?.typing === true));
  expect(await bob.rooms.broadcast("lobby", "wave", { hi: 1 })).toBe(true);
  await eventually("bob's broadcast", () => seen.some((e) => e.type === "broadcast" && e.topic === "wave"));
  expect((await alice.rooms.members("lobby")).length).toBe(2);
  await bob.rooms.leave("lobby");
  await eventually("bob's leave", () => seen.some((e) => e.type === "leave" && e.user_id === bobId));
  // Not a member: the host says so.
  expect(await bob.rooms.broadcast("lobby", "wave")).toBe(false);
});

test("files: upload, download, signed URL without credentials, delete", async () => {
  const client = track(await signedInClient(host));
  const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) % 256);
  const info = await client.files.upload(bytes, "data.bin", "application/octet-stream");
  expect(info.size).toBe(bytes.length);
  expect(await client.files.download(info.id)).toEqual(bytes);
  const url = await client.files.signedUrl(info.id, 60);
  const anonymous = await fetch(url);
  expect(anonymous.status).toBe(200);
  expect(new Uint8Array(await anonymous.arrayBuffer())).toEqual(bytes);
  const stranger = track(await signedInClient(host));
  const hidden = await stranger.files.download(info.id).catch((e) => e);
  expect(hidden.code).toBe("FILE_NOT_FOUND");
  await client.files.delete(info.id);
  const gone = await client.files.download(info.id).catch((e) => e);
  expect(gone.status).toBe(404);
});
