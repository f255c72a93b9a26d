import { expect, test } from "bun:test";
import { runQuery, type Row } from "../src";

const rows: Row[] = [
  { id: "a", title: "Buy milk", priority: 3, tag: "home" },
  { id: "b", title: "Write docs", priority: 1, tag: "work" },
  { id: "c", title: "buy bread", priority: 2 },
  { id: "d", title: "Ship it", priority: 3, tag: "work" },
];
const ids = (r: Row[]) => r.map((x) => x.id);

test("where: values, null for a missing field, and operators", () => {
  expect(ids(runQuery(rows, { where: { tag: "work" } }))).toEqual(["b", "d"]);
  expect(ids(runQuery(rows, { where: { tag: null } }))).toEqual(["c"]);
  expect(ids(runQuery(rows, { where: { priority: { $gt: 1, $lte: 3 }, tag: { $ne: "home" } } }))).toEqual(["c", "d"]);
  expect(ids(runQuery(rows, { where: { tag: { $in: ["home", "x"] } } }))).toEqual(["a"]);
  expect(ids(runQuery(rows, { where: { title: { $like: "buy%" } } }))).toEqual(["a", "c"]);
  expect(ids(runQuery(rows, { where: { title: { $like: "%.*%" } } }))).toEqual([]);
});

test("orderBy with ties broken by id, and limit", () => {
  expect(ids(runQuery(rows, { orderBy: { priority: "desc" } }))).toEqual(["a", "d", "c", "b"]);
  expect(ids(runQuery(rows, { orderBy: [["tag", "asc"], ["priority", "asc"]], limit: 3 }))).toEqual(["c", "a", "b"]);
  expect(runQuery(rows, { limit: 0 })).toEqual([]);
});
