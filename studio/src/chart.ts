/**
 * Small hand-written line charts: the scaling is pure (tested in test/chart.test.ts), the
 * drawing makes an SVG element with a text alternative for screen readers.
 */
export interface Point {
  t: number;
  v: number;
}

/** A "nice" axis for values in [min, max]: round bounds and a step of 1, 2, 2.5 or 5 × 10^k. */
export function niceScale(min: number, max: number, ticks = 4): { min: number; max: number; step: number } {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return { min: 0, max: 1, step: 0.25 };
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    if (min === 0) return { min: 0, max: 1, step: 0.25 };
    const pad = Math.abs(min) * 0.5;
    min -= pad;
    max += pad;
  }
  if (min > 0 && min < max * 0.5) min = 0; // counts and rates read better from zero
  const raw = (max - min) / Math.max(1, ticks);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return { min: Math.floor(min / step) * step, max: Math.ceil(max / step) * step, step };
}

/** Maps points into a `width`×`height` box (y grows downwards), time across the box. */
export function project(points: readonly Point[], width: number, height: number, scale = niceScale(Math.min(...points.map((p) => p.v)), Math.max(...points.map((p) => p.v)))): { x: number; y: number }[] {
  if (points.length === 0) return [];
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const span = t1 - t0 || 1;
  const range = scale.max - scale.min || 1;
  return points.map((p) => ({
    x: round2(points.length === 1 ? width : ((p.t - t0) / span) * width),
    y: round2(height - ((p.v - scale.min) / range) * height),
  }));
}

/** An SVG path (`M x y L x y …`) through the projected points. */
export function pathData(xy: readonly { x: number; y: number }[]): string {
  return xy.map((p, i) => `${i === 0 ? "M" : "L"}${p.x} ${p.y}`).join(" ");
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

const SVG = "http://www.w3.org/2000/svg";

/**
 * Draws `points` into a fresh `<svg role="img">` labelled with `title` and the latest
 * value (via `describe`), so a screen reader hears the figure rather than a picture.
 */
export function lineChart(title: string, points: readonly Point[], describe: (v: number) => string): SVGSVGElement {
  const w = 320, h = 120, left = 44, top = 8, bottom = 16;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "chart");
  const last = points.length ? describe(points[points.length - 1].v) : "no data yet";
  svg.setAttribute("aria-label", `${title}: ${last}`);
  if (points.length === 0) {
    const wait = document.createElementNS(SVG, "text");
    wait.setAttribute("x", String(w / 2));
    wait.setAttribute("y", String(h / 2));
    wait.setAttribute("text-anchor", "middle");
    wait.textContent = "waiting for the next sample…";
    svg.append(wait);
    return svg;
  }
  const values = points.map((p) => p.v);
  const scale = niceScale(Math.min(...values), Math.max(...values));
  const plotW = w - left - 4, plotH = h - top - bottom;
  for (let v = scale.min; v <= scale.max + scale.step / 2; v += scale.step) {
    const y = top + plotH - ((v - scale.min) / (scale.max - scale.min || 1)) * plotH;
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", String(left));
    line.setAttribute("x2", String(w - 4));
    line.setAttribute("y1", String(y));
    line.setAttribute("y2", String(y));
    line.setAttribute("class", "grid");
    svg.append(line);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(left - 4));
    label.setAttribute("y", String(y + 3));
    label.setAttribute("text-anchor", "end");
    label.textContent = describe(v);
    svg.append(label);
  }
  const path = document.createElementNS(SVG, "path");
  const xy = project(points, plotW, plotH, scale).map((p) => ({ x: round2(p.x + left), y: round2(p.y + top) }));
  path.setAttribute("d", pathData(xy));
  path.setAttribute("class", "series");
  svg.append(path);
  // The latest value as a dot, so a single sample shows too.
  const end = xy[xy.length - 1];
  const dot = document.createElementNS(SVG, "circle");
  dot.setAttribute("cx", String(end.x));
  dot.setAttribute("cy", String(end.y));
  dot.setAttribute("r", "3");
  dot.setAttribute("class", "latest");
  svg.append(dot);
  return svg;
}
