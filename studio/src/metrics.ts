/**
 * Series for the metrics charts from successive `GET /metrics` JSON snapshots: counters
 * become per-second rates between two snapshots (a restart, when a counter drops, starts
 * over), gauges are taken as they are. Tested in test/metrics.test.ts.
 */
import type { Point } from "./chart.ts";

export interface MetricsSnapshot {
  uptime_secs?: number;
  requests?: { total?: number; ok?: number; error?: number };
  counters?: Record<string, number>;
  gauges?: Record<string, number>;
  histograms?: Record<string, { count?: number; sum?: number }>;
}

export interface Sample {
  at: number; // ms since the epoch, when the snapshot was read
  m: MetricsSnapshot;
}

export interface SeriesSpec {
  id: string;
  title: string;
  /** "rate": per second between samples; "gauge": the value; "mean": Δsum/Δcount of a histogram, in ms. */
  kind: "rate" | "gauge" | "mean";
  pick: (m: MetricsSnapshot) => number | undefined;
  /** A histogram's count, for "mean". */
  count?: (m: MetricsSnapshot) => number | undefined;
}

export const chartSpecs: SeriesSpec[] = [
  { id: "requests", title: "Requests per second", kind: "rate", pick: (m) => m.requests?.total },
  { id: "errors", title: "Error answers per second", kind: "rate", pick: (m) => m.requests?.error },
  {
    id: "latency", title: "Mean request time (ms)", kind: "mean",
    pick: (m) => m.histograms?.http_request_duration_seconds?.sum,
    count: (m) => m.histograms?.http_request_duration_seconds?.count,
  },
  { id: "connections", title: "Realtime connections", kind: "gauge", pick: (m) => m.gauges?.realtime_connections },
  { id: "changes", title: "Changes committed per second", kind: "rate", pick: (m) => m.counters?.changes_committed_total },
  { id: "fn", title: "Function calls per second", kind: "rate", pick: (m) => m.counters?.fn_calls_total },
];

/** The points of `spec` over `samples` (oldest first). */
export function series(spec: SeriesSpec, samples: readonly Sample[]): Point[] {
  const out: Point[] = [];
  if (spec.kind === "gauge") {
    for (const s of samples) {
      const v = spec.pick(s.m);
      if (typeof v === "number" && Number.isFinite(v)) out.push({ t: s.at, v });
    }
    return out;
  }
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.at - a.at) / 1000;
    const va = spec.pick(a.m) ?? 0, vb = spec.pick(b.m) ?? 0;
    if (dt <= 0 || vb < va) continue; // a clock step or a restarted host
    if (spec.kind === "rate") {
      out.push({ t: b.at, v: (vb - va) / dt });
    } else {
      const ca = spec.count?.(a.m) ?? 0, cb = spec.count?.(b.m) ?? 0;
      if (cb < ca) continue;
      out.push({ t: b.at, v: cb === ca ? 0 : ((vb - va) / (cb - ca)) * 1000 });
    }
  }
  return out;
}

/** Keeps the newest `max` samples (a bounded history: the page can stay open for days). */
export function pushSample(samples: Sample[], s: Sample, max = 120): Sample[] {
  const next = samples.concat([s]);
  return next.length > max ? next.slice(next.length - max) : next;
}
