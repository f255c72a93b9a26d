/**
 * Jobs, dead letters, cron and workflows (`/api/jobs*`, `/api/scheduler*`,
 * `/api/workflows*`): counts, the newest jobs by status, retrying a dead job, triggering,
 * enabling and disabling a cron task, and cancelling a workflow. Each action reports its
 * outcome in a live region and reloads the view.
 */
import { attempt, seg } from "../api.ts";
import { button, field, h, notice, page, select, table } from "../dom.ts";
import { cellText, formatTime, statusTone } from "../format.ts";
import type { ViewContext } from "../view.ts";

type Row = Record<string, unknown>;

const statuses = ["", "pending", "running", "completed", "retrying", "dead", "cancelled"];

export async function jobsView(ctx: ViewContext): Promise<HTMLElement> {
  const status = new URLSearchParams(location.search).get("status") ?? "";
  const [stats, jobs, dead, cron, workflows] = await Promise.all([
    attempt(ctx.api.get<Row>("/api/jobs/stats")),
    attempt(ctx.api.get<Row[]>(`/api/jobs?limit=100${statuses.includes(status) && status ? "&status=" + status : ""}`)),
    attempt(ctx.api.get<Row[]>("/api/jobs/dead")),
    attempt(ctx.api.get<Row[]>("/api/scheduler")),
    attempt(ctx.api.get<Row[]>("/api/workflows?limit=100")),
  ]);
  const out = h("div", { "aria-live": "polite", "data-testid": "jobs-status" });
  const act = (label: string, method: string, path: string) => button(label, async () => {
    try {
      await ctx.api.call(method, path, {});
      ctx.navigate(location.pathname + location.search);
    } catch (e) {
      out.replaceChildren(notice("error", (e as Error).message));
    }
  });
  const section = <T>(title: string, data: T | Error, render: (d: T) => HTMLElement) =>
    h("section", { "aria-label": title }, h("h3", {}, title), data instanceof Error ? notice("error", data.message) : render(data));
  const tone = (k: string) => (r: Row) => h("span", { class: `tone-${statusTone(r[k])}` }, cellText(r[k]));
  const filter = select(statuses.map((s) => ({ value: s, label: s || "any status" })), status, { "data-testid": "jobs-status-filter" });
  filter.addEventListener("change", () => ctx.navigate(`/studio/jobs${filter.value ? "?status=" + filter.value : ""}`));

  return page("view-jobs", "Jobs & workflows", out,
    section("Counts", stats, (s) => h("dl", { class: "stats", "data-testid": "jobs-stats" },
      ...["pending", "running", "retrying", "completed", "dead", "cancelled", "failed"].map((k) => h("div", {}, h("dt", {}, k), h("dd", {}, cellText(s[k] ?? 0)))))),
    section("Jobs (newest 100)", jobs, (rows) => h("div", {}, field("Status", filter), table("Jobs", rows, [
      { key: "id" }, { key: "name" }, { key: "queue" }, { key: "status", render: tone("status") }, { key: "attempts" },
      { key: "run_at", label: "Runs at", render: (r) => formatTime(r.run_at) }, { key: "error" },
      { key: "cancel", label: "Action", render: (r) => ["pending", "retrying"].includes(String(r.status)) ? act("Cancel", "POST", `/api/jobs/${seg(String(r.id))}/cancel`) : "" },
    ], "jobs-table"))),
    section("Dead letters", dead, (rows) => table("Dead jobs", rows, [
      { key: "id" }, { key: "name" }, { key: "attempts" }, { key: "error" },
      { key: "retry", label: "Action", render: (r) => act("Retry", "POST", `/api/jobs/dead/${seg(String(r.id))}/retry`) },
    ], "dead-table")),
    section("Cron", cron, (rows) => table("Scheduled tasks", rows, [
      { key: "name" }, { key: "expr", label: "Schedule" }, { key: "function" }, { key: "enabled", render: tone("enabled") },
      { key: "last_run", label: "Last run", render: (r) => formatTime(r.last_run) }, { key: "next_run", label: "Next run", render: (r) => formatTime(r.next_run) },
      { key: "actions", label: "Actions", render: (r) => h("span", { class: "actions" },
        act("Run now", "POST", `/api/scheduler/trigger/${seg(String(r.name))}`),
        r.enabled ? act("Disable", "POST", `/api/scheduler/${seg(String(r.name))}/disable`) : act("Enable", "POST", `/api/scheduler/${seg(String(r.name))}/enable`)) },
    ], "cron-table")),
    section("Workflows", workflows, (rows) => table("Workflows (newest 100)", rows, [
      { key: "id" }, { key: "name" }, { key: "status", render: tone("status") }, { key: "current_step", label: "Step" },
      { key: "created_at", label: "Started", render: (r) => formatTime(r.created_at) },
      { key: "cancel", label: "Action", render: (r) => ["Completed", "Failed", "Cancelled"].includes(String(r.status)) ? "" : act("Cancel", "POST", `/api/workflows/${seg(String(r.id))}/cancel`) },
    ], "workflows-table")));
}
