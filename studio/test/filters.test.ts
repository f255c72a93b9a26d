import { describe, expect, test } from "bun:test";
import { buildQuery, nextSort, pageOf, splitList, type ListState } from "../src/filters.ts";
import type { FieldInfo } from "../src/schema.ts";

const fields: FieldInfo[] = [
  { name: "title", type: "string", optional: false, unique: false },
  { name: "done", type: "bool", optional: false, unique: false },
  { name: "priority", type: "int", optional: true, unique: false },
  { name: "estimate", type: "float", optional: true, unique: false },
  { name: "ownerId", type: "id(User)", optional: true, unique: false },
];
const base: ListState = { filters: [], sort: null, page: 0, pageSize: 25 };

describe("filters", () => {
  test("no filters: one row more than a page, from the page's offset", () => {
    expect(buildQuery(base, fields)).toEqual({ $limit: 26, $offset: 0 });
    expect(buildQuery({ ...base, page: 3, pageSize: 10 }, fields)).toEqual({ $limit: 11, $offset: 30 });
  });

  test("typed operands for each operator, several on one field", () => {
    const q = buildQuery({
      ...base,
      filters: [
        { field: "priority", op: "gte", value: "2" },
        { field: "priority", op: "lt", value: "9" },
        { field: "done", op: "eq", value: "false" },
        { field: "title", op: "like", value: "50% off" },
        { field: "estimate", op: "in", value: "1.5, 2,," },
        { field: "ownerId", op: "null", value: "" },
        { field: "id", op: "ne", value: "abc" },
      ],
      sort: { field: "priority", dir: "desc" },
    }, fields);
    expect(q).toEqual({
      priority: { $gte: 2, $lt: 9 },
      done: { $eq: false },
      title: { $like: "50% off" },
      estimate: { $in: [1.5, 2] },
      ownerId: { $eq: null },
      id: { $not: "abc" },
      $order: { priority: "desc" },
      $limit: 26,
      $offset: 0,
    });
    expect(buildQuery({ ...base, filters: [{ field: "ownerId", op: "notnull", value: "" }] }, fields).ownerId).toEqual({ $not: null });
  });

  test("bad filters are refused before anything is sent", () => {
    const bad = (f: ListState["filters"][number]) => () => buildQuery({ ...base, filters: [f] }, fields);
    expect(bad({ field: "priority", op: "eq", value: "1.5" })).toThrow(/whole number/);
    expect(bad({ field: "priority", op: "eq", value: "" })).toThrow(/required/);
    expect(bad({ field: "done", op: "eq", value: "yes" })).toThrow(/true or false/);
    expect(bad({ field: "priority", op: "like", value: "1" })).toThrow(/text fields/);
    expect(bad({ field: "nope", op: "eq", value: "1" })).toThrow(/unknown field/);
    expect(() => buildQuery({ ...base, filters: [{ field: "title", op: "eq", value: "a" }, { field: "title", op: "eq", value: "b" }] }, fields)).toThrow(/two/);
    expect(() => buildQuery({ ...base, sort: { field: "nope", dir: "asc" } }, fields)).toThrow(/sort/);
  });

  test("sort cycles ascending, descending, none; another column starts over", () => {
    expect(nextSort(null, "a")).toEqual({ field: "a", dir: "asc" });
    expect(nextSort({ field: "a", dir: "asc" }, "a")).toEqual({ field: "a", dir: "desc" });
    expect(nextSort({ field: "a", dir: "desc" }, "a")).toBeNull();
    expect(nextSort({ field: "a", dir: "desc" }, "b")).toEqual({ field: "b", dir: "asc" });
  });

  test("paging and lists", () => {
    expect(pageOf([1, 2, 3], 2)).toEqual({ rows: [1, 2], hasMore: true });
    expect(pageOf([1, 2], 2)).toEqual({ rows: [1, 2], hasMore: false });
    expect(splitList(" a, ,b ,c,")).toEqual(["a", "b", "c"]);
  });
});
