/**
 * Cache keys through `POST /api/cache`: KEYS with a pattern (the first 500 shown), then a
 * key's type, time to live and value (read with the command for its type), and DEL.
 */
import { button, field, h, notice, page, table } from "../dom.ts";
import type { ViewContext } from "../view.ts";

const SHOWN = 500;
const readFor: Record<string, string> = { string: "GET", hash: "HGETALL", list: "LRANGE", set: "SMEMBERS", zset: "ZRANGE" };

export async function cacheView(ctx: ViewContext): Promise<HTMLElement> {
  const pattern = new URLSearchParams(location.search).get("pattern") || "*";
  const cmd = <T>(body: Record<string, unknown>) => ctx.api.post<{ ok: boolean; result: T }>("/api/cache", body).then((r) => r.result);
  let keys: string[];
  try {
    keys = (await cmd<string[]>({ cmd: "KEYS", pattern })) ?? [];
  } catch (e) {
    return page("view-cache", "Cache", notice("error", (e as Error).message));
  }
  keys.sort();
  const detail = h("div", { "aria-live": "polite", "data-testid": "cache-detail" });
  const show = async (key: string) => {
    try {
      const type = String(await cmd({ cmd: "TYPE", key }));
      const ttl = await cmd<number>({ cmd: "TTL", key });
      const read = readFor[type];
      const value = read ? await cmd({ cmd: read, key, start: 0, stop: 99 }) : null;
      detail.replaceChildren(h("h3", { tabindex: -1 }, key),
        h("p", {}, `type ${type}, ${ttl === -1 ? "no expiry" : ttl === -2 ? "gone" : `expires in ${ttl} s`}`),
        h("pre", {}, JSON.stringify(value, null, 2)),
        button("Delete this key", async () => {
          if (!confirm(`Delete ${key}?`)) return;
          await cmd({ cmd: "DEL", key });
          ctx.navigate(location.pathname + location.search);
        }, { class: "danger" }));
      detail.querySelector("h3")?.focus();
    } catch (e) {
      detail.replaceChildren(notice("error", (e as Error).message));
    }
  };
  const input = h("input", { type: "text", name: "pattern", value: pattern });
  const form = h("form", { role: "search", "aria-label": "Cache keys" }, field("Key pattern", input, "Redis KEYS pattern: * any run, ? one character"), h("button", { type: "submit" }, "List keys"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate(`/studio/cache?pattern=${encodeURIComponent(input.value || "*")}`);
  });
  const rows = keys.slice(0, SHOWN).map((k) => ({ key: k }));
  return page("view-cache", "Cache", form,
    h("p", { role: "status" }, keys.length > SHOWN ? `${keys.length} keys; the first ${SHOWN} are shown.` : `${keys.length} keys.`),
    table("Keys", rows, [{ key: "key", render: (r) => button(r.key, () => void show(r.key), { class: "link" }) }], "cache-keys"),
    detail);
}
