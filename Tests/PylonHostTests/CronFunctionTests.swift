import Foundation
import Testing

/// `ctx.cron.register` and `ctx.cron.unregister` from functions, end to end: the release
/// `pylon-host`, Bun workers, SQLite and Postgres. A registered task is stored with the
/// mutation's writes (or not at all), fires through the same claim as the manifest's tasks,
/// is listed, triggered, disabled and enabled by the scheduler routes, and survives a
/// restart; bad input has stable codes.
@Suite("Cron from functions: ctx.cron.register and unregister (black-box)")
struct CronFunctionTests {
    static let manifest = """
    {"manifest_version": 1, "name": "cronfn", "version": "1",
     "entities": [
       {"name": "Run", "fields": [
          {"name": "tag", "type": "string", "optional": false, "unique": false},
          {"name": "phase", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [{"name": "open", "entity": "Run", "allow": "true"}],
     "cron": [{"name": "nightly", "schedule": "0 3 * * *", "function": "cronRecord"}],
     "plugins": {"functions": {}}}
    """

    static let functions: [String: String] = [
        // Records an occurrence: the payload's tag, else the scheduled time.
        "functions/cronRecord.ts": """
        import { mutation } from "@pylon/functions";
        export default mutation({ handler: async (ctx, args) =>
          ctx.db.insert("Run", { tag: String(args.tag ?? args.timestamp), phase: args.tag ? "payload" : args.manual_trigger ? "manual" : "cron" }) });
        """,
        // Registers a task beside a write; `fail` rolls both back.
        "functions/registerTask.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { name: v.string(), schedule: v.any(), fn: v.optional(v.any()), timezone: v.optional(v.any()),
                                          payload: v.optional(v.any()), fail: v.optional(v.boolean()) },
          handler: async (ctx, { name, schedule, fn, timezone, payload, fail }) => {
            await ctx.db.insert("Run", { tag: "reg:" + name, phase: "registered" });
            const changed = await ctx.cron.register(name, schedule, { function: fn ?? "cronRecord", timezone, payload });
            if (fail) ctx.error("ROLLED_BACK", "as asked");
            return changed;
          } });
        """,
        "functions/unregisterTask.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { name: v.string(), fail: v.optional(v.boolean()) }, handler: async (ctx, { name, fail }) => {
          const removed = await ctx.cron.unregister(name);
          if (fail) ctx.error("ROLLED_BACK", "as asked");
          return removed;
        } });
        """,
        // Registers `n` daily tasks one by one; how many went in and the first error's code.
        "functions/registerMany.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, { n, prefix }) => {
          let count = 0;
          for (let i = 0; i < n; i++) {
            try { await ctx.cron.register(prefix + i, "@daily", { function: "cronRecord" }); count++; }
            catch (e) { return { count, code: e.code ?? String(e) }; }
          }
          return { count, code: null };
        });
        """,
        "functions/unregisterFromAction.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, { name }) => ctx.cron.unregister(name));
        """,
        "functions/registerFromQuery.ts": """
        import { query } from "@pylon/functions";
        export default query(async (ctx) => ctx.cron.register("q", "@daily", { function: "cronRecord" }));
        """,
    ]

    static let env = ["PYLON_JOBS_POLL_MS": "50", "PYLON_FN_WORKERS": "2", "PYLON_FN_CALL_TIMEOUT": "300"]
    static var stores: [TestStore] { TestStore.all.filter { $0.name == "sqlite" || $0.name == "postgres" } }
    static let admin = HostProcess.adminToken

    static func call(_ host: HostProcess, _ fn: String, _ body: String) async throws -> (status: Int, json: Any?, body: String) {
        let r = try await host.request("POST", "/api/fn/\(fn)", json: body)
        return (r.status, r.json, r.body)
    }

    static func tasks(_ host: HostProcess) async throws -> [String: Any] {
        let r = try await host.request("GET", "/api/scheduler", token: admin)
        #expect(r.status == 200, "\(r.body)")
        var out: [String: Any] = [:]
        for t in r.json.items { if let n = t["name"].string { out[n] = t } }
        return out
    }

    static func runs(_ host: HostProcess, phase: String) async throws -> [String] {
        let all = try await host.request("GET", "/api/entities/Run?limit=1000", token: admin).json["data"].items
        return all.compactMap { $0["phase"].string == phase ? $0["tag"].string : nil }
    }

    @Test("A mutation registers a task in its transaction; it fires, is listed, triggered, toggled, survives a restart and is unregistered", arguments: stores)
    func lifecycle(_ store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env, store: store, files: Self.functions)
        defer { host.stop() }
        let reg = try await Self.call(host, "registerTask", #"{"name":"ticker","schedule":"* * * * *"}"#)
        #expect(reg.status == 200 && reg.json.bool == true, "\(reg.status) \(reg.body)")
        let again = try await Self.call(host, "registerTask", #"{"name":"ticker","schedule":"* * * * *"}"#)
        #expect(again.status == 200 && again.json.bool == false, "the same definition again changes nothing: \(again.body)")

        let ghost = try await Self.call(host, "registerTask", #"{"name":"ghost","schedule":"* * * * *","fail":true}"#)
        #expect(ghost.json.errorCode == "ROLLED_BACK", "\(ghost.body)")
        let listed = try await Self.tasks(host)
        #expect(listed["ghost"] == nil, "the rolled-back mutation registered nothing: \(listed.keys)")
        #expect(listed["nightly"]["origin"].string == "manifest", "\(listed)")
        let ticker = listed["ticker"]
        #expect(ticker["origin"].string == "function" && ticker["expr"].string == "* * * * *" && ticker["function"].string == "cronRecord"
                && ticker["timezone"].string == "UTC" && ticker["enabled"].bool == true && ticker["next_run"].string != nil, "\(listed)")

        // It fires through the ticker's claim: tracking set back five minutes (as if the
        // host had been down) makes the newest missed occurrence due now, once.
        let back = Int64(Date().timeIntervalSince1970 * 1000) - 5 * 60_000
        try await host.sql("UPDATE _pylon_cron SET since = \(back), last_fired = NULL WHERE name = 'ticker'")
        let fired = try await eventuallyAsync("the registered task's run", timeout: 90) {
            let r = try await Self.runs(host, phase: "cron")
            return r.isEmpty ? nil : r
        }
        #expect(Set(fired).count == fired.count, "each occurrence once: \(fired)")
        #expect(try await Self.tasks(host)["ticker"]["last_run"].string != nil)

        // The admin routes work on it as on a manifest task.
        let trig = try await host.request("POST", "/api/scheduler/trigger/ticker", token: Self.admin)
        #expect(trig.status == 200 && trig.json["job_id"].string != nil, "\(trig.body)")
        _ = try await eventuallyAsync("the triggered run") { try await Self.runs(host, phase: "manual").isEmpty ? nil : true }
        let withPayload = try await Self.call(host, "registerTask", #"{"name":"tagged","schedule":"@hourly","payload":{"tag":"from-fn"},"timezone":"Europe/Berlin"}"#)
        #expect(withPayload.json.bool == true, "\(withPayload.body)")
        #expect(try await host.request("POST", "/api/scheduler/trigger/tagged", token: Self.admin).status == 200)
        _ = try await eventuallyAsync("the payload's run") { try await Self.runs(host, phase: "payload").contains("from-fn") ? true : nil }
        #expect(try await host.request("POST", "/api/scheduler/ticker/disable", token: Self.admin).status == 200)

        // Kept in the store: after a restart it is still there, still disabled.
        try await host.restart()
        let after = try await Self.tasks(host)
        #expect(after["ticker"]["origin"].string == "function" && after["ticker"]["enabled"].bool == false, "\(after)")
        #expect(after["tagged"]["timezone"].string == "Europe/Berlin", "\(after)")
        #expect(try await host.request("POST", "/api/scheduler/ticker/enable", token: Self.admin).status == 200)
        #expect(try await Self.tasks(host)["ticker"]["enabled"].bool == true)

        // A rolled-back unregister removes nothing; a committed one removes it everywhere.
        #expect(try await Self.call(host, "unregisterTask", #"{"name":"ticker","fail":true}"#).json.errorCode == "ROLLED_BACK")
        #expect(try await Self.tasks(host)["ticker"] != nil)
        let removed = try await Self.call(host, "unregisterTask", #"{"name":"ticker"}"#)
        #expect(removed.status == 200 && removed.json.bool == true, "\(removed.body)")
        #expect(try await Self.call(host, "unregisterFromAction", #"{"name":"ticker"}"#).json.bool == false)
        #expect(try await Self.tasks(host)["ticker"] == nil)
        #expect(try await host.request("POST", "/api/scheduler/trigger/ticker", token: Self.admin).status == 404)
        #expect(try await host.request("POST", "/api/scheduler/ticker/disable", token: Self.admin).status == 404)
    }

    @Test("Bad expressions, zones, names and functions have stable codes; manifest names and queries are refused; at most 100 tasks", arguments: stores)
    func hostile(_ store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env, store: store, files: Self.functions)
        defer { host.stop() }
        let big = String(repeating: "x", count: 9000)
        let bad: [(String, String, String)] = [
            ("registerTask", #"{"name":"a","schedule":"61 * * * *"}"#, "CRON_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"every minute"}"#, "CRON_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"0 0 30 2 *"}"#, "CRON_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"@sometimes"}"#, "CRON_INVALID"),
            ("registerTask", #"{"name":"a","schedule":5}"#, "CRON_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"@daily","timezone":"Mars/Olympus"}"#, "CRON_TIMEZONE_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"@daily","timezone":"../../../etc/passwd"}"#, "CRON_TIMEZONE_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"@daily","timezone":""}"#, "CRON_TIMEZONE_INVALID"),
            ("registerTask", #"{"name":"a","schedule":"@daily","timezone":3}"#, "CRON_TIMEZONE_INVALID"),
            ("registerTask", #"{"name":"nightly","schedule":"@daily"}"#, "CRON_NAME_TAKEN"),
            ("unregisterTask", #"{"name":"nightly"}"#, "CRON_NAME_TAKEN"),
            ("registerTask", #"{"name":"a","schedule":"@daily","fn":"nope"}"#, "FN_NOT_FOUND"),
            ("registerTask", #"{"name":"a","schedule":"@daily","fn":"registerFromQuery"}"#, "FN_IS_QUERY"),
            ("registerTask", #"{"name":"","schedule":"@daily"}"#, "INVALID_OP"),
            ("registerTask", #"{"name":"a\u0007b","schedule":"@daily"}"#, "INVALID_OP"),
            ("registerTask", #"{"name":"a","schedule":"@daily","payload":{"x":"\#(big)"}}"#, "PAYLOAD_TOO_LARGE"),
            ("registerFromQuery", "{}", "READ_ONLY"),
        ]
        for (fn, body, code) in bad {
            let r = try await Self.call(host, fn, body)
            #expect(r.status >= 400 && r.status < 500 && r.json.errorCode == code, "\(fn) \(body.prefix(120)): \(r.status) \(r.body.prefix(300))")
        }
        let listed = try await Self.tasks(host)
        #expect(listed.keys.sorted() == ["nightly"], "no bad call registered anything: \(listed.keys)")
        #expect(try await Self.runs(host, phase: "registered").isEmpty, "each failed registration rolled its mutation back")

        let many = try await Self.call(host, "registerMany", #"{"n":105,"prefix":"bulk"}"#)
        #expect(many.json["count"].int == 100 && many.json["code"].string == "CRON_LIMIT", "\(many.body)")
        let full = try await Self.tasks(host)
        #expect(full.count == 101, "100 registered and the manifest's: \(full.count)")
        // At the limit a task may still be replaced, and a removed one frees a place.
        #expect(try await Self.call(host, "registerTask", #"{"name":"bulk7","schedule":"@hourly"}"#).json.bool == true)
        #expect(try await Self.call(host, "registerTask", #"{"name":"extra","schedule":"@hourly"}"#).json.errorCode == "CRON_LIMIT")
        #expect(try await Self.call(host, "unregisterTask", #"{"name":"bulk0"}"#).json.bool == true)
        #expect(try await Self.call(host, "registerTask", #"{"name":"extra","schedule":"@hourly"}"#).json.bool == true)
        #expect(try await Self.tasks(host)["bulk7"]["expr"].string == "@hourly")
    }

    @Test("Two hosts on one Postgres database registering at once never pass the limit of 100 together")
    func limitAcrossHosts() async throws {
        guard Self.stores.contains(where: { $0.name == "postgres" }) else { return }
        let url = try await TestPostgres.shared().freshDatabase()
        let shared = TestStore(name: "postgres-shared", pluginsDir: { TestPaths.pluginsDir }, provision: { _, _ in
            TestStoreBackend(storeConfig: [("use", .string("postgres")), ("url", .string(url)), ("readers", .int(1))], sqliteFile: nil)
        })
        let a = try await HostProcess.start(manifest: Self.manifest, env: Self.env, store: shared, files: Self.functions)
        defer { a.stop() }
        let b = try await HostProcess.start(manifest: Self.manifest, env: Self.env, store: shared, files: Self.functions)
        defer { b.stop() }
        // Six callers, three per host, each asking for 40 tasks of its own: 240 asked, 100 fit.
        let counts = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<6 {
                let host = i % 2 == 0 ? a : b
                group.addTask {
                    let r = try await Self.call(host, "registerMany", #"{"n":40,"prefix":"c\#(i)-"}"#)
                    return (r.json["count"].int ?? -1, r.json["code"].string)
                }
            }
            var out: [(Int, String?)] = []
            for try await c in group { out.append(c) }
            return out
        }
        #expect(counts.map(\.0).reduce(0, +) == 100, "exactly the limit went in across both hosts: \(counts)")
        #expect(counts.allSatisfy { $0.0 == 40 || $0.1 == "CRON_LIMIT" }, "a caller stops only at CRON_LIMIT: \(counts)")
        for host in [a, b] {
            let listed = try await Self.tasks(host)
            #expect(listed.count == 101, "100 registered and the manifest's, as each host sees them: \(listed.count)")
        }
    }
}
