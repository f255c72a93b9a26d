/**
 * Functions and their recent calls: `GET /api/fn` (each function's kind and policies) and
 * `GET /api/fn/traces` (the host's ring of recent calls with their operations). Without a
 * functions plugin the host answers 501 and the view says so.
 */
import { ApiError } from "../api.ts";
import { button, h, notice, page, table } from "../dom.ts";
import { cellText, formatDuration, formatTime, statusTone } from "../format.ts";
import type { ViewContext } from "../view.ts";

type Row = Record<string, unknown>;

export async function functionsView(ctx: ViewContext): Promise<HTMLElement> {
  let fns: Row[], traces: Row[];
  try {
    [fns, traces] = await Promise.all([ctx.api.get<Row[]>("/api/fn"), ctx.api.get<Row[]>("/api/fn/traces?limit=100")]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 501) return page("view-functions", "Functions", notice("error", e.message));
    throw e;
  }
  const detail = h("div", { "aria-live": "polite", "data-testid": "trace-detail" });
  const showTrace = (t: Row) => {
    const ops = Array.isArray(t.ops) ? (t.ops as Row[]) : [];
    detail.replaceChildren(
      h("h3", { tabindex: -1 }, `Call ${cellText(t.call_id)} of ${cellText(t.fn_name)}`),
      h("pre", {}, JSON.stringify(t.outcome ?? null, null, 2)),
      table("Operations of this call", ops, [
        { key: "op" }, { key: "entity" }, { key: "id" }, { key: "row_count", label: "Rows" },
        { key: "duration_ms", label: "Time", render: (o) => formatDuration(Number(o.duration_ms)) }, { key: "ok" },
      ]));
    detail.querySelector("h3")?.focus();
  };
  return page("view-functions", "Functions",
    table("Functions", fns, [
      { key: "name" }, { key: "fn_type", label: "Kind" }, { key: "privileged" }, { key: "enforce_policies", label: "Policies enforced" },
    ], "functions-table"),
    table("Recent calls (newest first)", traces, [
      { key: "started_at", label: "Started", render: (t) => formatTime(t.started_at) },
      { key: "fn_name", label: "Function" }, { key: "user_id", label: "User" },
      { key: "duration_ms", label: "Time", render: (t) => formatDuration(Number(t.duration_ms)) },
      { key: "outcome", label: "Outcome", render: (t) => {
        const s = String((t.outcome as Row | undefined)?.status ?? "?");
        return h("span", { class: `tone-${statusTone(s)}` }, s);
      } },
      { key: "details", label: "Details", render: (t) => button("Show", () => showTrace(t)) },
    ], "traces-table"),
    detail);
}
