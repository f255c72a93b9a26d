/**
 * Metrics as charts that update: `GET /metrics` (JSON) every few seconds while the view is
 * open, the last 120 samples kept, drawn as small SVG line charts (see metrics.ts for the
 * series and chart.ts for the drawing), with the raw counters below.
 */
import { lineChart } from "../chart.ts";
import { h, notice, page, table } from "../dom.ts";
import { formatDuration, formatNumber } from "../format.ts";
import { chartSpecs, pushSample, series, type MetricsSnapshot, type Sample } from "../metrics.ts";
import type { ViewContext } from "../view.ts";

const EVERY_MS = 3000;

export async function metricsView(ctx: ViewContext): Promise<HTMLElement> {
  let samples: Sample[] = [];
  const charts = h("div", { class: "charts", "data-testid": "metrics-charts" });
  const counters = h("div", {});
  const state = h("p", { role: "status" }, "");
  const draw = () => {
    charts.replaceChildren(...chartSpecs.map((spec) => h("figure", { "data-chart": spec.id },
      lineChart(spec.title, series(spec, samples), (v) => spec.id === "latency" ? formatDuration(v) : formatNumber(v)),
      h("figcaption", {}, spec.title))));
    const m = samples[samples.length - 1]?.m;
    const rows = Object.entries({ ...(m?.counters ?? {}), ...(m?.gauges ?? {}) }).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) => ({ name, value: formatNumber(value) }));
    counters.replaceChildren(table("Counters and gauges (latest)", rows, [{ key: "name" }, { key: "value" }], "metrics-table"));
  };
  const poll = async () => {
    try {
      const m = await ctx.api.get<MetricsSnapshot>("/metrics");
      samples = pushSample(samples, { at: Date.now(), m });
      state.textContent = `Up ${formatDuration((m.uptime_secs ?? 0) * 1000)}; updated every ${EVERY_MS / 1000} s.`;
      draw();
    } catch (e) {
      state.replaceChildren(notice("error", (e as Error).message));
    }
  };
  await poll();
  const timer = setInterval(() => void poll(), EVERY_MS);
  ctx.onLeave(() => clearInterval(timer));
  return page("view-metrics", "Metrics", state, charts, counters);
}
