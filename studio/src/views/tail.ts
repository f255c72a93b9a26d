/**
 * The live tail of the change log: `GET /api/sync/events` read with fetch (so the admin
 * token goes as a header, never in a URL), newest on top, at most 200 lines kept. The list
 * is an ARIA log: screen readers announce new lines politely.
 */
import { readEventStream } from "../../../clients/typescript/src/event-stream.ts";
import { button, clear, field, h, page, select } from "../dom.ts";
import { changeSummary } from "../format.ts";
import type { ViewContext } from "../view.ts";

const KEEP = 200;

export function tailView(ctx: ViewContext): HTMLElement {
  const list = h("ol", { role: "log", "aria-live": "polite", "aria-relevant": "additions", "data-testid": "tail-log", reversed: true });
  const state = h("p", { role: "status", "data-testid": "tail-state" }, "Connecting…");
  const only = select([{ value: "", label: "every entity" }, ...ctx.entities.map((e) => ({ value: e.name, label: e.name }))], "");
  let paused = false;
  const pause = button("Pause", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
  }, { "aria-pressed": "false" });
  const abort = new AbortController();
  ctx.onLeave(() => abort.abort());

  const show = (data: string) => {
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (paused || typeof ev.entity !== "string" || (only.value && ev.entity !== only.value)) return;
    list.prepend(h("li", { "data-entity": ev.entity }, changeSummary(ev)));
    while (list.children.length > KEEP) list.lastElementChild!.remove();
  };

  const connect = async (attempt: number): Promise<void> => {
    if (abort.signal.aborted) return;
    try {
      const res = await fetch("/api/sync/events", { headers: ctx.api.headers({ Accept: "text/event-stream" }), credentials: "same-origin", signal: abort.signal });
      if (!res.ok || !res.body) throw new Error(`the host answered ${res.status}`);
      state.textContent = "Live: new changes appear at the top.";
      attempt = 0;
      await readEventStream(res.body, (e) => show(e.data));
      state.textContent = "The stream ended; reconnecting…";
    } catch (e) {
      if (abort.signal.aborted) return;
      state.textContent = `Not connected (${(e as Error).message}); retrying…`;
    }
    const wait = Math.min(30_000, 1000 * 2 ** attempt);
    await new Promise((r) => setTimeout(r, wait));
    return connect(attempt + 1);
  };
  void connect(0);

  return page("view-tail", "Change log",
    h("div", { class: "toolbar" }, field("Show", only), pause, button("Clear", () => clear(list))),
    state, list);
}
