/**
 * Shards and rooms: `GET /api/shards` (each shard's tick, subscribers and queued input;
 * stop one with DELETE) and `GET /api/rooms` (each room's member count; pick one to see its
 * members from `GET /api/rooms/:name`). A capability the host lacks shows its 501 message.
 */
import { attempt, seg } from "../api.ts";
import { button, h, notice, page, table } from "../dom.ts";
import { formatTime } from "../format.ts";
import type { ViewContext } from "../view.ts";

type Row = Record<string, unknown>;

export async function realtimeView(ctx: ViewContext): Promise<HTMLElement> {
  const [shards, rooms] = await Promise.all([attempt(ctx.api.get<Row[]>("/api/shards")), attempt(ctx.api.get<Row[]>("/api/rooms"))]);
  const out = h("div", { "aria-live": "polite" });
  const members = h("div", { "data-testid": "room-members" });
  const showRoom = async (name: string) => {
    try {
      const r = await ctx.api.get<{ room: string; members: Row[] }>(`/api/rooms/${seg(name)}`);
      members.replaceChildren(table(`Members of ${r.room}`, r.members ?? [], [
        { key: "user_id", label: "User" }, { key: "data", label: "Presence data" },
        { key: "joined_at", label: "Joined", render: (m) => formatTime(m.joined_at) },
      ]));
    } catch (e) {
      members.replaceChildren(notice("error", (e as Error).message));
    }
  };
  const stop = (id: string) => button("Stop", async () => {
    if (!confirm(`Stop shard ${id}?`)) return;
    try {
      await ctx.api.call("DELETE", `/api/shards/${seg(id)}`);
      ctx.navigate("/studio/realtime");
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  });
  return page("view-realtime", "Shards & rooms", out,
    h("h3", {}, "Shards"),
    shards instanceof Error ? notice("error", shards.message) : table("Running shards", shards, [
      { key: "id" }, { key: "sim" }, { key: "running" }, { key: "tick" }, { key: "subscribers" }, { key: "input_queue", label: "Queued input" },
      { key: "stop", label: "Action", render: (r) => stop(String(r.id)) },
    ], "shards-table"),
    h("h3", {}, "Rooms"),
    rooms instanceof Error ? notice("error", rooms.message) : table("Rooms on this host", rooms, [
      { key: "name", render: (r) => button(String(r.name), () => void showRoom(String(r.name)), { class: "link" }) },
      { key: "members" },
    ], "rooms-table"),
    members);
}
