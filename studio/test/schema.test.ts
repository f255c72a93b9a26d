import { describe, expect, test } from "bun:test";
import { errorFrom, seg, unavailableFor, unavailableOf } from "../src/api.ts";
import { entitiesOf, inputText, parseValue, rowFromForm } from "../src/schema.ts";
import { parseRoute } from "../src/view.ts";

describe("schema", () => {
  test("entities from the manifest document; junk gives nothing", () => {
    const m = { entities: [{ name: "Todo", fields: [{ name: "done", type: "bool", optional: false }, { type: "int" }] }, { fields: [] }] };
    expect(entitiesOf(m)).toEqual([{ name: "Todo", fields: [{ name: "done", type: "bool", optional: false, unique: false }] }]);
    expect(entitiesOf(null)).toEqual([]);
    expect(entitiesOf({ entities: "x" })).toEqual([]);
  });

  test("typed values from inputs", () => {
    const f = (type: string, optional = false) => ({ name: "f", type, optional });
    expect(parseValue(f("int"), " 42 ")).toEqual({ ok: true, value: 42 });
    expect(parseValue(f("int"), "9007199254740993").ok).toBe(false);
    expect(parseValue(f("float"), "1e3")).toEqual({ ok: true, value: 1000 });
    expect(parseValue(f("float"), "NaN").ok).toBe(false);
    expect(parseValue(f("bool", true), "")).toEqual({ ok: true, value: null });
    expect(parseValue(f("string"), "")).toEqual({ ok: true, value: "" });
    expect(parseValue(f("string", true), "")).toEqual({ ok: true, value: null });
    expect(parseValue(f("datetime"), " 2024-01-01 ")).toEqual({ ok: true, value: " 2024-01-01 " });
    expect(inputText(null)).toBe("");
    expect(inputText(3)).toBe("3");
    expect(inputText(false)).toBe("false");
  });

  test("a form's texts as a row: only the given fields, the first error", () => {
    const fields = [{ name: "title", type: "string", optional: false, unique: false }, { name: "n", type: "int", optional: true, unique: false }];
    expect(rowFromForm(fields, { n: "3" })).toEqual({ ok: true, row: { n: 3 } });
    expect(rowFromForm(fields, { title: "a", n: "x" })).toEqual({ ok: false, message: "n needs a whole number" });
  });
});

describe("api and routes", () => {
  test("the host's error envelope, or the status", () => {
    const e = errorFrom(403, { error: { code: "FORBIDDEN", message: "admin only" } });
    expect([e.status, e.code, e.message]).toEqual([403, "FORBIDDEN", "admin only"]);
    expect(errorFrom(502, "<html>bad gateway</html>").code).toBe("HTTP_502");
    expect(errorFrom(500, null).message).toBe("the host answered 500");
  });

  test("routes of a capability the host lacks are known before any request", () => {
    const list = unavailableOf({ "x-pylon-unavailable": [{ capability: "pylon.shard.sim/1", routePrefixes: ["/api/shards", 3] }, { nope: 1 }] });
    expect(list).toEqual([{ capability: "pylon.shard.sim/1", routePrefixes: ["/api/shards"] }]);
    expect(unavailableFor("/api/shards", list)).toBe("pylon.shard.sim/1");
    expect(unavailableFor("/api/shards/x?y=1", list)).toBe("pylon.shard.sim/1");
    expect(unavailableFor("/api/shardsx", list)).toBeNull();
    expect(unavailableFor("/api/rooms", list)).toBeNull();
    expect(unavailableOf(null)).toEqual([]);
  });

  test("path segments stay one segment", () => {
    expect(seg("a/../b?c#d")).toBe("a%2F..%2Fb%3Fc%23d");
  });

  test("routes under /studio", () => {
    expect(parseRoute("/studio")).toEqual({ view: "", rest: [] });
    expect(parseRoute("/studio/")).toEqual({ view: "", rest: [] });
    expect(parseRoute("/studio/entities/Todo/a%20b")).toEqual({ view: "entities", rest: ["Todo", "a b"] });
    expect(parseRoute("/studio/entities/%E0%A4%A")).toEqual({ view: "entities", rest: ["%E0%A4%A"] });
  });
});
