import { afterAll, beforeAll, expect, test } from "bun:test";
import { PylonError } from "../src";
import { TestHost, eventually } from "./support/host";

let host: TestHost;
beforeAll(async () => {
  host = await TestHost.start();
});
afterAll(async () => {
  await host?.dispose();
});

const email = (tag: string) => `${tag}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;

test("password register, login, wrong password as a typed error, logout", async () => {
  const client = host.client();
  const address = email("pw");
  const reg = await client.auth.register(address, "correct horse battery", "Pat");
  expect(reg.token.startsWith("pylon_")).toBe(true);
  expect((await client.auth.me()).user_id).toBe(reg.user_id);

  const other = host.client();
  const login = await other.auth.login(address, "correct horse battery");
  expect(login.user_id).toBe(reg.user_id);

  const wrong = await host.client().auth.login(address, "not the password").catch((e) => e);
  expect(wrong).toBeInstanceOf(PylonError);
  expect(wrong.status).toBe(401);
  expect(wrong.code).toBe("INVALID_CREDENTIALS");

  const weak = await host.client().auth.register(email("weak"), "short").catch((e) => e);
  expect(weak.code).toBe("WEAK_PASSWORD");

  await other.auth.logout();
  expect(other.auth.token).toBeNull();
  // The ended session no longer signs anyone in.
  const stale = host.client();
  stale.auth.setToken(login.token);
  expect((await stale.auth.me()).user_id ?? null).toBeNull();
});

test("refresh swaps the token and ends the old one", async () => {
  const client = host.client();
  const first = await client.auth.register(email("refresh"), "correct horse battery");
  const next = await client.auth.refresh();
  expect(next.token).not.toBe(first.token);
  expect((await client.auth.me()).user_id).toBe(first.user_id);
  const old = host.client();
  old.auth.setToken(first.token);
  expect((await old.auth.me()).user_id ?? null).toBeNull();
});

test("guest and anonymous sessions", async () => {
  const guest = host.client();
  const g = await guest.auth.guest();
  expect(g.user_id).toBeTruthy();
  expect((await guest.auth.me()).user_id).toBe(g.user_id);
  const anon = host.client();
  const a = await anon.auth.anonymous();
  expect((await anon.auth.me()).user_id).toBe(a.user_id);
});

test("magic code: send (dev_code in --dev) and verify; a wrong code is INVALID_CODE", async () => {
  const client = host.client();
  const address = email("magic");
  const sent = await client.auth.sendMagicCode(address);
  expect(sent.sent).toBe(true);
  expect(sent.dev_code).toMatch(/^\d{6}$/);
  const wrongCode = sent.dev_code === "000000" ? "111111" : "000000";
  const wrong = await client.auth.verifyMagicCode(address, wrongCode).catch((e) => e);
  expect(wrong.code).toBe("INVALID_CODE");
  const session = await client.auth.verifyMagicCode(address, sent.dev_code!);
  expect((await client.auth.me()).user_id).toBe(session.user_id);
});

test("API key: made by a session, then used alone", async () => {
  const owner = host.client();
  const s = await owner.auth.register(email("key"), "correct horse battery");
  const key = await owner.auth.createApiKey({ name: "ci" });
  expect(key.key.startsWith("pk.")).toBe(true);
  const bot = host.client();
  bot.auth.useApiKey(key.key);
  expect((await bot.auth.me()).user_id).toBe(s.user_id);
  // The key opens a realtime stream too.
  await bot.start();
  await eventually("the key's stream", () => bot.sync.status === "live" && bot.sync.transport?.name === "websocket");
  await bot.stop();
  const bad = host.client();
  bad.auth.useApiKey(key.key.slice(0, -2) + (key.key.endsWith("AA") ? "BB" : "AA"));
  const err = await bad.auth.me().catch((e) => e);
  expect(err.code).toBe("INVALID_API_KEY");
});

test("OAuth: the login URL and the callback's outcomes", async () => {
  const client = host.client();
  const url = new URL(client.auth.oauthLoginUrl("acme", { callback: "http://localhost:5173/home", errorCallback: "http://localhost:5173/login" }));
  expect(url.origin + url.pathname).toBe(`${host.url}/api/auth/login/acme`);
  expect(url.searchParams.get("callback")).toBe("http://localhost:5173/home");
  expect(url.searchParams.get("error_callback")).toBe("http://localhost:5173/login");
  expect(url.searchParams.get("redirect")).toBe("1");

  const denied = await client.auth.handleOAuthCallback("http://localhost:5173/login?oauth_error=OAUTH_DENIED&oauth_error_message=no").catch((e) => e);
  expect(denied).toBeInstanceOf(PylonError);
  expect(denied.code).toBe("OAUTH_DENIED");

  // A callback that carries a session token stores it.
  const session = await host.client().auth.guest();
  const landed = await client.auth.handleOAuthCallback(`http://localhost:5173/home?token=${session.token}`);
  expect(landed.user_id).toBe(session.user_id);
  expect(client.auth.token).toBe(session.token);
});
