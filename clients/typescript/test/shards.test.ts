import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { decodeTickFrame, PylonError, type ShardAck, type ShardFrame, type PylonClient } from "../src";
import { ADMIN_TOKEN, TestHost, eventually, freePort, pluginsWithArena, signedInClient } from "./support/host";

let host: TestHost;
let plugins: string;
const wsPort = freePort();
beforeAll(async () => {
  plugins = pluginsWithArena();
  host = await TestHost.start({ pluginsDir: plugins, env: { PYLON_SHARD_WS_PORT: String(wsPort) } });
});
afterAll(async () => {
  await host?.dispose();
  rmSync(plugins, { recursive: true, force: true });
});

test("the 8-byte big-endian tick framing decodes, up to 2^53", () => {
  const json = new TextEncoder().encode('{"a":1}');
  const frame = new Uint8Array(8 + json.length);
  new DataView(frame.buffer).setUint32(0, 3);
  new DataView(frame.buffer).setUint32(4, 7);
  frame.set(json, 8);
  expect(decodeTickFrame(frame)).toEqual({ tick: 3 * 2 ** 32 + 7, snapshot: { a: 1 } });
  expect(() => decodeTickFrame(new Uint8Array(4))).toThrow(PylonError);
});

test("subscribe over SSE: snapshots with ticks, inputs acked with client_seq, rejected inputs reported, end", async () => {
  const admin = host.client();
  admin.auth.setToken(ADMIN_TOKEN);
  const shard = await admin.shards.create("arena", { config: { width: 1000, height: 1000 } });
  const client: PylonClient = await signedInClient(host);
  const me = (await client.auth.me()).user_id!;
  expect((await client.shards.get(shard.id)).id).toBe(shard.id);

  const frames: ShardFrame[] = [];
  const acks: ShardAck[] = [];
  const rejected: { code: string; clientSeq?: number }[] = [];
  let ended = "";
  const sub = await client.shards.subscribe(shard.id, {
    onFrame: (f) => frames.push(f),
    onAck: (a) => acks.push(a),
    onInputError: (e, clientSeq) => rejected.push({ code: e.code, clientSeq }),
    onEnd: (reason) => (ended = reason),
  });
  await eventually("two frames", () => frames.length >= 2);
  expect(frames[1].tick).toBeGreaterThan(frames[0].tick);

  await sub.input({ spawn: [500, 500] }, 1);
  await eventually("the ack of client_seq 1", () => acks.some((a) => a.client_seq === 1));
  await eventually("my player in a snapshot", () => (frames.at(-1)?.snapshot as any)?.you?.id === me);
  await sub.input({ spawn: [-5, 99999] }, 2);
  await eventually("the rejection of client_seq 2", () => rejected.some((r) => r.clientSeq === 2));
  expect(rejected.find((r) => r.clientSeq === 2)!.code).toBe("INPUT_REJECTED");

  // Another user cannot send input as me.
  const stranger = await signedInClient(host);
  const refused = await stranger.shards.input(shard.id, { move_to: [1, 1] }, { sid: me }).catch((e) => e);
  expect(refused).toBeInstanceOf(PylonError);
  expect(refused.status).toBe(403);

  await admin.http.request(`/api/shards/${shard.id}`, { method: "DELETE" });
  await eventually("the end of the stream", () => ended !== "");
  sub.close();
  const gone = await client.shards.subscribe(shard.id, { onFrame() {} }).catch((e) => e);
  expect(gone).toBeInstanceOf(PylonError);
  expect(gone.code).toBe("SHARD_NOT_FOUND");
  for (const c of [client, stranger, admin]) await c.stop();
});

test("subscribe over the shard WebSocket: binary tick frames, acks and rejections on the socket, close codes", async () => {
  const admin = host.client();
  admin.auth.setToken(ADMIN_TOKEN);
  const shard = await admin.shards.create("arena", {});
  const client = await signedInClient(host);
  const me = (await client.auth.me()).user_id!;
  const wsUrl = `ws://127.0.0.1:${wsPort}/`;
  const frames: ShardFrame[] = [];
  const acks: ShardAck[] = [];
  const rejected: { code: string; clientSeq?: number }[] = [];
  const ends: string[] = [];
  const sub = await client.shards.subscribe(shard.id, {
    onFrame: (f) => frames.push(f),
    onAck: (a) => acks.push(a),
    onInputError: (e, clientSeq) => rejected.push({ code: e.code, clientSeq }),
    onEnd: (reason) => ends.push(reason),
  }, { transport: "ws", wsUrl });
  await eventually("two frames", () => frames.length >= 2);
  expect(frames[1].tick).toBeGreaterThan(frames[0].tick);
  await sub.input({ spawn: [100, 100] }, 7);
  await eventually("the ack of client_seq 7", () => acks.some((a) => a.client_seq === 7));
  await eventually("my player in a snapshot", () => (frames.at(-1)?.snapshot as any)?.you?.id === me);
  await sub.input({ move_to: [-1, -1] }, 8);
  await eventually("the rejection of client_seq 8", () => rejected.some((r) => r.clientSeq === 8 && r.code === "INPUT_REJECTED"));

  // An unknown shard and a caller who is not signed in are refused with the host's reason.
  const missing = await client.shards.subscribe("no-such-shard", { onFrame() {} }, { transport: "ws", wsUrl }).catch((e) => e);
  expect(missing).toBeInstanceOf(PylonError);
  expect(missing.code).toBe("SHARD_NOT_FOUND");
  const anonymous = host.client();
  const refused = await anonymous.shards.subscribe(shard.id, { onFrame() {} }, { transport: "ws", wsUrl }).catch((e) => e);
  expect(refused).toBeInstanceOf(PylonError);
  expect(refused.status).toBe(1008);

  await admin.http.request(`/api/shards/${shard.id}`, { method: "DELETE" });
  await eventually("the socket's end", () => ends.length > 0);
  sub.close();
  for (const c of [client, admin, anonymous]) await c.stop();
});
