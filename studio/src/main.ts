/**
 * The studio's shell: sign-in, the navigation and the view router (History API paths
 * under /studio/, which the host answers with this page). Each view lives in views/.
 */
import { Api, ApiError, unavailableOf } from "./api.ts";
import { button, clear, field, h, notice } from "./dom.ts";
import { entitiesOf } from "./schema.ts";
import { parseRoute, type View, type ViewContext } from "./view.ts";
import { entitiesView } from "./views/entities.ts";
import { tailView } from "./views/tail.ts";
import { usersView } from "./views/users.ts";
import { functionsView } from "./views/functions.ts";
import { jobsView } from "./views/jobs.ts";
import { realtimeView } from "./views/realtime.ts";
import { cacheView } from "./views/cache.ts";
import { metricsView } from "./views/metrics.ts";

const views: { path: string; label: string; view: View }[] = [
  { path: "entities", label: "Data", view: entitiesView },
  { path: "tail", label: "Change log", view: tailView },
  { path: "users", label: "Users & sessions", view: usersView },
  { path: "functions", label: "Functions", view: functionsView },
  { path: "jobs", label: "Jobs & workflows", view: jobsView },
  { path: "realtime", label: "Shards & rooms", view: realtimeView },
  { path: "cache", label: "Cache", view: cacheView },
  { path: "metrics", label: "Metrics", view: metricsView },
];

const api = new Api();
const root = document.getElementById("app")!;
let leave: (() => void)[] = [];
let entities = [] as ReturnType<typeof entitiesOf>;

/** Whether the caller is the admin: `/api/auth/me` says so for the admin token (and an admin session, should one exist). */
async function isAdmin(): Promise<boolean> {
  try {
    const me = await api.get<{ is_admin?: boolean }>("/api/auth/me");
    return me?.is_admin === true;
  } catch {
    return false;
  }
}

function signInForm(message?: string): HTMLElement {
  const token = h("input", { type: "password", name: "token", autocomplete: "off", required: true, "data-testid": "signin-token" });
  const status = h("div", { "aria-live": "polite" });
  if (message) status.append(notice("error", message));
  const form = h("form", { "data-testid": "view-signin", class: "signin" },
    h("h1", {}, "Pylon Studio"),
    h("p", {}, "Sign in with the host's admin token (PYLON_ADMIN_TOKEN). It is kept in this tab's session storage only."),
    field("Admin token", token),
    h("button", { type: "submit", "data-testid": "signin-submit" }, "Sign in"),
    status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    api.setToken(token.value.trim());
    if (await isAdmin()) {
      start();
    } else {
      api.setToken(null);
      clear(status);
      status.append(notice("error", "That token is not the admin token (the host did not report is_admin)."));
      token.focus();
    }
  });
  queueMicrotask(() => token.focus());
  return form;
}

function signOut(): void {
  api.setToken(null);
  for (const f of leave) f();
  leave = [];
  clear(root);
  root.append(signInForm());
}

function navigate(path: string): void {
  history.pushState(null, "", path);
  void render();
}

function shell(): { nav: HTMLElement; main: HTMLElement } {
  const nav = h("nav", { "aria-label": "Studio sections", "data-testid": "nav" },
    h("ul", {}, ...views.map((v) => h("li", {}, h("a", { href: `/studio/${v.path}`, "data-nav": v.path }, v.label)))));
  nav.addEventListener("click", (e) => {
    const a = (e.target as HTMLElement).closest("a");
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    navigate(a.getAttribute("href")!);
  });
  const main = h("main", { id: "main", tabindex: -1 });
  clear(root);
  root.append(
    h("a", { href: "#main", class: "skip" }, "Skip to content"),
    h("header", {}, h("h1", {}, "Pylon Studio"), button("Sign out", signOut, { "data-testid": "signout" })),
    nav, main);
  return { nav, main };
}

let frame: { nav: HTMLElement; main: HTMLElement } | null = null;

async function render(): Promise<void> {
  for (const f of leave) f();
  leave = [];
  if (!frame) frame = shell();
  const route = parseRoute(location.pathname);
  const entry = views.find((v) => v.path === route.view) ?? views[0];
  for (const a of frame.nav.querySelectorAll("a")) {
    if (a.dataset.nav === entry.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${entry.label} · Pylon Studio`;
  const ctx: ViewContext = {
    api, rest: entry.path === route.view ? route.rest : [], entities, navigate,
    onLeave: (f) => leave.push(f),
  };
  const main = frame.main;
  clear(main);
  main.append(h("p", { role: "status" }, "Loading…"));
  try {
    const el = await entry.view(ctx);
    clear(main);
    main.append(el);
  } catch (e) {
    clear(main);
    if (e instanceof ApiError && (e.status === 401 || e.status === 403) && !(await isAdmin())) return signOut();
    main.append(notice("error", e instanceof Error ? e.message : String(e)));
  }
  main.querySelector<HTMLElement>("h2")?.focus();
}

async function start(): Promise<void> {
  const [manifest, doc] = await Promise.all([api.get("/api/manifest").catch(() => null), api.get("/api/openapi.json").catch(() => null)]);
  entities = entitiesOf(manifest);
  api.unavailable = unavailableOf(doc);
  frame = null;
  await render();
}

window.addEventListener("popstate", () => void render());
void (async () => (await isAdmin()) ? start() : (clear(root), root.append(signInForm())))();
