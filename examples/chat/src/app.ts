// The chat page: sign-in, channels, live messages, presence and typing through rooms,
// image attachments through files, unread counts kept by a job. Bundled by Bun into
// web/app.js (`make chat`), with the TypeScript client compiled in.
import { IndexedDBStore, LocalStorageTokenStorage, PylonClient, PylonError, type LiveQuery, type Peer, type RoomEvent, type Row } from "../../../clients/typescript/src";

// The replica lives in IndexedDB: a reload shows what was synced before at once, offline too,
// and sync resumes from the stored cursor.
const pylon = new PylonClient({ baseUrl: location.origin, tokens: new LocalStorageTokenStorage("chat.token"), store: new IndexedDBStore("chat") });
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

let me: { id: string; name: string } | null = null;
let channels: Row[] = [];
let unread = new Map<string, Row>(); // channelId → the caller's Unread row
let current: Row | null = null;
let messagesQuery: LiveQuery | null = null;
let room: string | null = null;
const here = new Map<string, { name: string; typing: boolean }>();
const images = new Map<string, Promise<string>>();

function showError(where: "signin-error" | "app-error", e: unknown) {
  $(where).textContent = e instanceof PylonError ? `${e.message} (${e.code})` : String(e);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...kids: (Node | string)[]) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...kids);
  return node;
}

// ---- sign-in ----

/** The user's chosen name; an email-code account is named after its address until then. */
function displayName(user: Row | undefined): string {
  const email = String(user?.email ?? "");
  const name = String(user?.displayName ?? "");
  return name && name !== email ? name : email.split("@")[0] || "me";
}

async function signedIn() {
  const who = await pylon.auth.me();
  if (!who.user_id) throw new PylonError(401, "AUTH_REQUIRED", "sign in again");
  await pylon.start();
  me = { id: who.user_id, name: displayName(pylon.rows("User").find((u) => u.id === who.user_id)) };
  $("me").textContent = me.name;
  $("signin").hidden = true;
  $("app").hidden = false;
  pylon.liveQuery("Channel", { orderBy: { name: "asc" } }, (rows) => { channels = rows; renderChannels(); routeFromLocation(); });
  pylon.liveQuery("Unread", { where: { userId: me.id } }, (rows) => {
    unread = new Map(rows.map((r) => [String(r.channelId), r]));
    renderChannels();
    renderMembership();
  });
  pylon.liveQuery("User", {}, (rows) => {
    const mine = rows.find((u) => u.id === me?.id);
    if (me && mine) $("me").textContent = me.name = displayName(mine);
  });
}

$("password-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target as HTMLFormElement;
  const data = new FormData(form);
  const action = ((ev as SubmitEvent).submitter as HTMLButtonElement | null)?.value ?? "login";
  try {
    const email = String(data.get("email")), password = String(data.get("password"));
    if (action === "register") await pylon.auth.register(email, password, String(data.get("name") || "") || undefined);
    else await pylon.auth.login(email, password);
    await signedIn();
  } catch (e) {
    showError("signin-error", e);
  }
});

$("send-code").addEventListener("click", async () => {
  const form = $("code-form") as HTMLFormElement;
  try {
    const sent = await pylon.auth.sendMagicCode(String(new FormData(form).get("email")));
    // --dev answers the code (the host prints the mail to its log too).
    if (sent.dev_code) (form.elements.namedItem("code") as HTMLInputElement).value = sent.dev_code;
    $("signin-error").textContent = "Code sent: check your email.";
  } catch (e) {
    showError("signin-error", e);
  }
});

$("code-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = new FormData(ev.target as HTMLFormElement);
  try {
    await pylon.auth.verifyMagicCode(String(data.get("email")), String(data.get("code")));
    await signedIn();
  } catch (e) {
    showError("signin-error", e);
  }
});

$("logout").addEventListener("click", async () => {
  await leaveRoom();
  await pylon.auth.logout().catch(() => {});
  location.assign("/");
});

// ---- channels ----

function renderChannels() {
  const list = $("channels");
  list.replaceChildren(...channels.map((c) => {
    const count = Number(unread.get(String(c.id))?.count ?? 0);
    const button = el("button", { type: "button" }, `#${c.name}`);
    button.dataset.testid = `channel-${c.name}`;
    button.dataset.unread = String(count);
    if (current?.id === c.id) button.setAttribute("aria-current", "true");
    if (count > 0 && current?.id !== c.id) {
      const badge = el("span", { className: "badge" }, String(count));
      badge.dataset.testid = `unread-${c.name}`;
      badge.setAttribute("aria-label", `${count} unread`);
      button.append(badge);
    }
    button.addEventListener("click", () => select(c, true));
    return el("li", {}, button);
  }));
}

function routeFromLocation() {
  const m = location.pathname.match(/^\/c\/([a-z0-9_-]+)$/);
  if (!m || current?.name === m[1]) return;
  const c = channels.find((x) => x.name === m[1]);
  if (c) select(c, false);
}
window.addEventListener("popstate", routeFromLocation);

$("new-channel").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target as HTMLFormElement;
  try {
    const made = await pylon.functions.call<{ id: string; name: string }>("createChannel", { name: String(new FormData(form).get("name")) });
    form.reset();
    history.pushState({}, "", `/c/${made.name}`);
    await waitFor(() => channels.some((c) => c.id === made.id));
    routeFromLocation();
  } catch (e) {
    showError("app-error", e);
  }
});

async function waitFor(ok: () => boolean) {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
}

function select(c: Row, push: boolean) {
  if (current?.id === c.id) return;
  current = c;
  if (push) history.pushState({}, "", `/c/${c.name}`);
  $("channel-title").textContent = `#${c.name}`;
  $("app-error").textContent = "";
  messagesQuery?.stop();
  // The newest 200, shown oldest first.
  messagesQuery = pylon.liveQuery("Message", { where: { channelId: c.id }, orderBy: { createdAt: "desc" }, limit: 200 },
    (rows) => renderMessages([...rows].reverse()));
  renderChannels();
  renderMembership();
}

function renderMembership() {
  const joined = !!current && unread.has(String(current.id));
  $("join").hidden = !current || joined;
  $("composer").hidden = !joined;
  if (current && joined && room !== `chat:${current.id}`) enterRoom(`chat:${current.id}`);
  if (current && joined && Number(unread.get(String(current.id))?.count ?? 0) > 0) markRead();
}

$("join").addEventListener("click", async () => {
  if (!current) return;
  try {
    await pylon.functions.call("joinChannel", { channelId: current.id });
  } catch (e) {
    showError("app-error", e);
  }
});

let marking = false;
async function markRead() {
  if (marking || !current) return;
  marking = true;
  try {
    await pylon.functions.call("markRead", { channelId: current.id });
  } catch {
    // Tried again below or on the next change.
  } finally {
    marking = false;
  }
  // A count that rose while the call was out (a message in between) is cleared too.
  if (current && Number(unread.get(String(current.id))?.count ?? 0) > 0) setTimeout(markRead, 200);
}

// ---- messages ----

function renderMessages(rows: Row[]) {
  $("messages").replaceChildren(...rows.map((m) => {
    const item = el("li", {}, el("span", { className: "author" }, String(m.authorName)), el("span", { className: "body" }, String(m.body ?? "")));
    item.dataset.testid = "message";
    if (m.fileId) {
      const img = el("img", { alt: `image from ${m.authorName}` });
      img.dataset.testid = "message-image";
      imageURL(String(m.fileId)).then((u) => (img.src = u)).catch(() => (img.alt = "image unavailable"));
      item.append(img);
    }
    return item;
  }));
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

/** Images are downloaded with the caller's session (files are readable by members) and shown from a blob. */
function imageURL(fileId: string): Promise<string> {
  let url = images.get(fileId);
  if (!url) {
    url = pylon.files.download(fileId).then((bytes) => URL.createObjectURL(new Blob([bytes])));
    images.set(fileId, url);
  }
  return url;
}

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!current) return;
  const form = ev.target as HTMLFormElement;
  const body = (form.elements.namedItem("body") as HTMLInputElement).value;
  const picker = form.elements.namedItem("image") as HTMLInputElement;
  try {
    let fileId: string | undefined;
    const file = picker.files?.[0];
    if (file) fileId = (await pylon.files.upload(file, file.name, file.type || "application/octet-stream")).id;
    await pylon.functions.call("sendMessage", { channelId: current.id, body, ...(fileId ? { fileId } : {}) });
    form.reset();
    typing(false);
  } catch (e) {
    showError("app-error", e);
  }
});

// ---- presence and typing (rooms) ----

async function enterRoom(name: string) {
  await leaveRoom();
  room = name;
  here.clear();
  pylon.rooms.on(name, onRoomEvent);
  try {
    const peers: Peer[] = await pylon.rooms.join(name, { name: me?.name, typing: false });
    for (const p of peers) here.set(p.user_id, { name: String((p.data as any)?.name ?? "someone"), typing: !!(p.data as any)?.typing });
  } catch (e) {
    showError("app-error", e);
  }
  renderHere();
}

async function leaveRoom() {
  if (!room) return;
  const old = room;
  room = null;
  await pylon.rooms.leave(old).catch(() => {});
}

function onRoomEvent(e: RoomEvent) {
  if (e.room !== room || !e.user_id || e.user_id === me?.id) return;
  const data = (e.data ?? {}) as { name?: string; typing?: boolean };
  if (e.type === "leave") here.delete(e.user_id);
  else if (e.type === "join" || e.type === "presence") {
    here.set(e.user_id, { name: data.name ?? here.get(e.user_id)?.name ?? "someone", typing: !!data.typing });
  }
  renderHere();
}

function renderHere() {
  const others = [...here.values()];
  $("here").textContent = [me?.name ?? "", ...others.map((o) => o.name)].filter(Boolean).join(", ");
  const typers = others.filter((o) => o.typing).map((o) => o.name);
  $("typing").textContent = typers.length === 0 ? "" : `${typers.join(", ")} ${typers.length === 1 ? "is" : "are"} typing…`;
}

let typingTimer: ReturnType<typeof setTimeout> | undefined;
let typingNow = false;
function typing(on: boolean) {
  clearTimeout(typingTimer);
  if (on) typingTimer = setTimeout(() => typing(false), 3000);
  if (on === typingNow || !room) return;
  typingNow = on;
  pylon.rooms.setPresence(room, { name: me?.name, typing: on }).catch(() => {});
}
$("composer").addEventListener("input", (ev) => {
  if ((ev.target as HTMLElement).getAttribute("name") === "body") typing(true);
});

// ---- start ----

signedIn().catch(() => {
  $("signin").hidden = false;
});
