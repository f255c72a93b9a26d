import { describe, expect, test } from "bun:test";
import { niceScale, pathData, project } from "../src/chart.ts";
import { chartSpecs, pushSample, series, type Sample } from "../src/metrics.ts";

describe("chart scaling", () => {
  test("nice bounds and steps", () => {
    expect(niceScale(0, 97)).toEqual({ min: 0, max: 100, step: 25 });
    expect(niceScale(3, 7)).toEqual({ min: 0, max: 8, step: 2 });
    expect(niceScale(0, 0)).toEqual({ min: 0, max: 1, step: 0.25 });
    expect(niceScale(10, 10)).toEqual({ min: 0, max: 15, step: 5 });
    expect(niceScale(-5, 5)).toEqual({ min: -5, max: 5, step: 2.5 });
    expect(niceScale(Number.NaN, 1)).toEqual({ min: 0, max: 1, step: 0.25 });
    const s = niceScale(100, 101);
    expect(s.min).toBeLessThanOrEqual(100);
    expect(s.max).toBeGreaterThanOrEqual(101);
  });

  test("points fill the box, time across, value up", () => {
    const xy = project([{ t: 0, v: 0 }, { t: 5, v: 50 }, { t: 10, v: 100 }], 200, 100, { min: 0, max: 100, step: 25 });
    expect(xy).toEqual([{ x: 0, y: 100 }, { x: 100, y: 50 }, { x: 200, y: 0 }]);
    expect(project([], 10, 10)).toEqual([]);
    expect(project([{ t: 1, v: 3 }], 10, 10, { min: 0, max: 6, step: 2 })).toEqual([{ x: 10, y: 5 }]);
    expect(pathData([{ x: 0, y: 1 }, { x: 2, y: 3 }])).toBe("M0 1 L2 3");
  });
});

describe("metrics series", () => {
  const spec = (id: string) => chartSpecs.find((s) => s.id === id)!;
  const at = (sec: number, m: Sample["m"]): Sample => ({ at: sec * 1000, m });

  test("counters become per-second rates; a restart is skipped", () => {
    const samples = [at(0, { requests: { total: 10 } }), at(2, { requests: { total: 30 } }), at(4, { requests: { total: 5 } }), at(6, { requests: { total: 11 } })];
    expect(series(spec("requests"), samples)).toEqual([{ t: 2000, v: 10 }, { t: 6000, v: 3 }]);
  });

  test("gauges as they are; the mean of a histogram in ms", () => {
    expect(series(spec("connections"), [at(1, { gauges: { realtime_connections: 4 } }), at(2, {})])).toEqual([{ t: 1000, v: 4 }]);
    const h = (count: number, sum: number) => ({ histograms: { http_request_duration_seconds: { count, sum } } });
    expect(series(spec("latency"), [at(0, h(10, 1)), at(1, h(20, 1.5)), at(2, h(20, 1.5))])).toEqual([{ t: 1000, v: 50 }, { t: 2000, v: 0 }]);
  });

  test("history is bounded", () => {
    let s: Sample[] = [];
    for (let i = 0; i < 10; i++) s = pushSample(s, at(i, {}), 3);
    expect(s.map((x) => x.at)).toEqual([7000, 8000, 9000]);
  });
});
