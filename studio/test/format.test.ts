import { describe, expect, test } from "bun:test";
import { cellText, changeSummary, columnsOf, formatBytes, formatDuration, formatNumber, formatTime, statusTone } from "../src/format.ts";

describe("format", () => {
  test("cells are text, null is a dash, objects are JSON, long text is cut", () => {
    expect(cellText(null)).toBe("—");
    expect(cellText(undefined)).toBe("—");
    expect(cellText(false)).toBe("false");
    expect(cellText({ a: [1, 2] })).toBe('{"a":[1,2]}');
    expect(cellText("<b>x</b>")).toBe("<b>x</b>");
    const cut = cellText("x".repeat(300), 10);
    expect(cut.length).toBe(10);
    expect(cut.endsWith("…")).toBe(true);
  });

  test("bytes, durations and numbers", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MiB");
    expect(formatBytes(Number.NaN)).toBe("—");
    expect(formatDuration(0.25)).toBe("250 µs");
    expect(formatDuration(3.456)).toBe("3.5 ms");
    expect(formatDuration(250)).toBe("250 ms");
    expect(formatDuration(2500)).toBe("2.50 s");
    expect(formatDuration(125_000)).toBe("2 min 5 s");
    expect(formatDuration(3 * 3600_000 + 60_000)).toBe("3 h 1 min");
    expect(formatNumber(1234567)).toBe("1,234,567");
    expect(formatNumber(-1234.5)).toBe("-1,234.5");
    expect(formatNumber(0.125, 2)).toBe("0.13");
    expect(formatNumber(2.0)).toBe("2");
    expect(formatNumber(Infinity)).toBe("—");
  });

  test("times from seconds, milliseconds and ISO strings, in UTC", () => {
    expect(formatTime(0)).toBe("1970-01-01 00:00:00");
    expect(formatTime(1_700_000_000)).toBe("2023-11-14 22:13:20");
    expect(formatTime(1_700_000_000_123)).toBe("2023-11-14 22:13:20");
    expect(formatTime("2024-02-03T04:05:06.789Z")).toBe("2024-02-03 04:05:06");
    expect(formatTime("not a date")).toBe("not a date");
    expect(formatTime(null)).toBe("—");
  });

  test("columns: id first, then first-seen order", () => {
    expect(columnsOf([{ b: 1, id: "x" }, { a: 2, b: 3 }])).toEqual(["id", "b", "a"]);
    expect(columnsOf([{ b: 1 }], ["z"])).toEqual(["z", "b"]);
  });

  test("status tones", () => {
    expect(statusTone("Completed")).toBe("ok");
    expect(statusTone("dead")).toBe("bad");
    expect(statusTone("WaitingForEvent")).toBe("wait");
    expect(statusTone(undefined)).toBe("idle");
    expect(statusTone(true)).toBe("ok");
  });

  test("a change event as one tail line", () => {
    const line = changeSummary({ seq: 7, entity: "Todo", row_id: "abc", kind: "insert", data: { title: "x" }, timestamp: "2024-01-01T00:00:00Z" });
    expect(line).toBe('2024-01-01 00:00:00 · #7 · insert · Todo abc · {"title":"x"}');
    expect(changeSummary({ seq: 8, entity: "Todo", row_id: "abc", kind: "delete" })).toBe("#8 · delete · Todo abc");
  });
});

test("the change log's timestamps (Unix seconds + Z)", () => {
  expect(formatTime("1796540867Z")).toBe("2026-12-06 07:07:47");
});
