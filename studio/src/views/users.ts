/**
 * Users and sessions: the user entity's rows (the manifest's `auth.user.entity`, `User`
 * by default; pick another here), live sessions (`/api/admin/auth/sessions`, ids are the
 * token's hash prefix — no token is ever shown), pending one-time codes and links, and a
 * user's GDPR export.
 */
import { seg } from "../api.ts";
import { button, field, h, notice, page, select, table } from "../dom.ts";
import { formatTime } from "../format.ts";
import type { ViewContext } from "../view.ts";

type Row = Record<string, unknown>;

export async function usersView(ctx: ViewContext): Promise<HTMLElement> {
  const q = new URLSearchParams(location.search);
  const names = ctx.entities.map((e) => e.name);
  const userEntity = q.get("entity") && names.includes(q.get("entity")!) ? q.get("entity")! : names.includes("User") ? "User" : names[0];
  const [users, sessions, codes] = await Promise.all([
    userEntity ? ctx.api.get<{ data: Row[] }>(`/api/entities/${seg(userEntity)}?limit=100`).then((r) => r.data) : Promise.resolve([]),
    ctx.api.get<Row[]>("/api/admin/auth/sessions"),
    ctx.api.get<Row[]>("/api/admin/auth/magic_codes"),
  ]);
  const out = h("div", { "aria-live": "polite" });
  const picker = select(names.map((n) => ({ value: n, label: n })), userEntity, { "data-testid": "user-entity" });
  picker.addEventListener("change", () => ctx.navigate(`/studio/users?entity=${encodeURIComponent(picker.value)}`));
  const exportUser = async (id: string) => {
    try {
      const data = await ctx.api.post(`/api/admin/users/${seg(id)}/export`);
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `user-${id}.json` }, `Download the export of ${id}`);
      out.replaceChildren(notice("ok", "Export ready."), a);
      a.focus();
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  };
  const time = (k: string) => (r: Row) => formatTime(r[k]);
  return page("view-users", "Users & sessions",
    field("User entity", picker),
    out,
    table(`${userEntity ?? "User"} rows (first 100)`, users, [
      { key: "id", render: (r) => h("a", { href: `/studio/entities/${seg(userEntity)}/${seg(String(r.id))}`, onclick: (e: Event) => { e.preventDefault(); ctx.navigate(`/studio/entities/${seg(userEntity)}/${seg(String(r.id))}`); } }, String(r.id).slice(0, 16)) },
      ...Object.keys(users[0] ?? {}).filter((k) => k !== "id").slice(0, 5).map((k) => ({ key: k })),
      { key: "export", label: "GDPR", render: (r) => button("Export", () => void exportUser(String(r.id))) },
    ], "users-table"),
    table("Live sessions", sessions, [
      { key: "id", label: "Session (hash prefix)" }, { key: "user_id", label: "User" }, { key: "device" },
      { key: "created_at", label: "Created", render: time("created_at") }, { key: "expires_at", label: "Expires", render: time("expires_at") },
    ], "sessions-table"),
    table("Pending one-time codes and links", codes, [
      { key: "purpose" }, { key: "email" }, { key: "user_id", label: "User" },
      { key: "created_at", label: "Created", render: time("created_at") }, { key: "expires_at", label: "Expires", render: time("expires_at") },
    ], "codes-table"));
}
