import Foundation
import Testing

/// Durable workflows end to end (`WorkflowService`): the release `pylon-host`, real Bun
/// workers replaying TypeScript workflows, SQLite and Postgres, host restarts between
/// steps. Nothing asserts how long anything took: tests wait for states with generous
/// timeouts.
@Suite("Workflows: durable steps, sleeps and events across restarts, retries, the admin API (black-box)")
struct WorkflowTests {
    static let manifest = """
    {"manifest_version": 1, "name": "workflows", "version": "1",
     "entities": [
       {"name": "Run", "fields": [
          {"name": "tag", "type": "string", "optional": false, "unique": false},
          {"name": "phase", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [{"name": "open", "entity": "Run", "allow": "true"}],
     "plugins": {"functions": {}}}
    """

    static let functions: [String: String] = [
        // A step, a sleep, an event wait and a second step; every step leaves a Run row, so
        // a step that ran twice shows.
        "functions/onboard.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow({ description: "step, sleep, event, step", handler: async (ctx, input) => {
          const a = await ctx.step("first", async () => {
            await ctx.db.insert("Run", { tag: input.tag + ":first", phase: "step" });
            return 41;
          });
          await ctx.sleep(input.sleepMs);
          const ev = await ctx.waitForEvent("approved");
          const b = await ctx.step("second", async () => {
            await ctx.db.insert("Run", { tag: input.tag + ":second", phase: "step" });
            return a + 1;
          });
          return { b, ev };
        } });
        """,
        // Fails on its first `failures` attempts (counted in Run rows), then succeeds.
        "functions/flakyFlow.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow({ maxRetries: 2, handler: async (ctx, input) => {
          const out = await ctx.step("try", async () => {
            await ctx.db.insert("Run", { tag: input.tag, phase: "attempt" });
            const n = (await ctx.db.query("Run", { tag: input.tag })).length;
            if (n <= input.failures) throw new Error("attempt " + n + " fails");
            return n;
          });
          return { attempts: out };
        } });
        """,
        "functions/twoEvents.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow(async (ctx) => {
          const one = await ctx.waitForEvent("first");
          const two = await ctx.waitForEvent("second");
          return [one, two];
        });
        """,
        "functions/napper.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow(async (ctx) => { await ctx.sleep("1h"); return "woke"; });
        """,
        // Asks for a different step on replay than it recorded: a nondeterministic workflow.
        "functions/fickle.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow({ maxRetries: 0, handler: async (ctx) => {
          const runs = (await ctx.db.query("Run", { tag: "fickle" })).length;
          await ctx.step(runs === 0 ? "a" : "b", async () => { await ctx.db.insert("Run", { tag: "fickle", phase: "x" }); });
          await ctx.step("c", async () => 1);
        } });
        """,
        "functions/plain.ts": """
        import { action } from "@pylon/functions";
        export default action(async () => "plain");
        """,
    ]

    static let env = ["PYLON_JOBS_POLL_MS": "50", "PYLON_JOBS_BACKOFF_MS": "100", "PYLON_JOBS_LEASE_MS": "5000",
                      "PYLON_FN_WORKERS": "2"]
    static let admin = HostProcess.adminToken
    static var stores: [TestStore] { TestStore.all.filter { $0.name == "sqlite" || $0.name == "postgres" } }

    static func start(_ store: TestStore) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, store: store, files: functions)
    }

    static func begin(_ host: HostProcess, _ name: String, _ input: String = "{}") async throws -> String {
        let r = try await host.request("POST", "/api/workflows/start", json: #"{"name":"\#(name)","input":\#(input)}"#, token: admin)
        guard r.status == 201, let id = r.json["id"].string else { throw TestSetupError(description: "start \(name): \(r.status) \(r.body)") }
        return id
    }

    static func instance(_ host: HostProcess, _ id: String) async throws -> Any? {
        try await host.request("GET", "/api/workflows/\(id)", token: admin).json
    }

    /// Waits (generously: the full parallel run loads the machine) until the instance is in
    /// one of `statuses`.
    @discardableResult
    static func waitFor(_ host: HostProcess, _ id: String, _ statuses: String..., timeout: TimeInterval = 180) async throws -> Any? {
        try await eventuallyAsync("workflow \(id) to be \(statuses.joined(separator: " or "))", timeout: timeout) {
            let w = try await instance(host, id)
            return statuses.contains(w["status"].string ?? "") ? w : nil
        }
    }

    static func runs(_ host: HostProcess, _ tag: String) async throws -> Int {
        try await host.request("GET", "/api/entities/Run?limit=1000", token: admin).json["data"].items.filter { $0["tag"].string == tag }.count
    }

    @Test("A step, a sleep and an event wait survive a host restart between each; no completed step runs again", arguments: stores)
    func survivesRestarts(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let id = try await Self.begin(host, "onboard", #"{"tag":"w1","sleepMs":6000}"#)
        #expect(id.hasPrefix("wf_") && id.count == 19, "\(id)")
        // The restart should fall inside the sleep; on a slow machine the sleep may be over
        // before the first look, and the restart then falls between the sleep and the wait.
        try await Self.waitFor(host, id, "Sleeping", "WaitingForEvent")
        try await host.restart()
        try await Self.waitFor(host, id, "WaitingForEvent")
        #expect(try await Self.instance(host, id)["waiting_for"].string == "approved")
        try await host.restart()
        let sent = try await host.request("POST", "/api/workflows/\(id)/event", json: #"{"event":"approved","data":{"by":"ann"}}"#, token: Self.admin)
        #expect(sent.status == 200 && sent.json["delivered"].bool == true, "\(sent.status) \(sent.body)")
        let done = try await Self.waitFor(host, id, "Completed")
        #expect(done["output"]["b"].int == 42 && done["output"]["ev"]["by"].string == "ann", "\(String(describing: done))")
        let steps = done["steps"].items
        #expect(steps.map { $0["name"].string ?? "" } == ["first", "sleep", "event:approved", "second"], "\(steps)")
        #expect(steps.allSatisfy { $0["status"].string == "Completed" })
        #expect(done["current_step"].int == 4 && done["completed_at"].string != nil && done["started_at"].string != nil)
        try await host.restart()
        #expect(try await Self.runs(host, "w1:first") == 1, "the first step ran once")
        #expect(try await Self.runs(host, "w1:second") == 1, "the second step ran once")
        #expect(try await Self.instance(host, id)["status"].string == "Completed", "a finished workflow stays finished after a restart")
    }

    @Test("A failing step is retried with back-off; past max_retries the workflow fails with every attempt recorded", arguments: stores)
    func retries(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let recovers = try await Self.begin(host, "flakyFlow", #"{"tag":"once","failures":1}"#)
        let ok = try await Self.waitFor(host, recovers, "Completed")
        #expect(ok["output"]["attempts"].int == 2, "\(String(describing: ok))")
        #expect(ok["steps"].items.map { $0["status"].string ?? "" } == ["Failed", "Completed"], "\(String(describing: ok))")
        #expect(ok["steps"].items.first?["error"].string?.contains("attempt 1 fails") == true)

        let gives = try await Self.begin(host, "flakyFlow", #"{"tag":"always","failures":99}"#)
        let failed = try await Self.waitFor(host, gives, "Failed")
        #expect(failed["steps"].items.map { $0["status"].string ?? "" } == ["Failed", "Failed", "Failed"], "\(String(describing: failed))")
        #expect(failed["error"].string?.contains("attempt 3 fails") == true, "\(String(describing: failed))")
        #expect(try await Self.runs(host, "always") == 3, "max_retries 2: three attempts in all")

        let fickle = try await Self.begin(host, "fickle")
        let broke = try await Self.waitFor(host, fickle, "Failed")
        #expect(broke["error"].string?.contains("WORKFLOW_NONDETERMINISTIC") == true, "\(String(describing: broke))")
    }

    @Test("Events: one sent before its wait is kept for it, a sleeping workflow keeps events, cancel ends it", arguments: stores)
    func events(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let id = try await Self.begin(host, "twoEvents")
        try await Self.waitFor(host, id, "WaitingForEvent")
        let early = try await host.request("POST", "/api/workflows/\(id)/event", json: #"{"event":"second","data":2}"#, token: Self.admin)
        #expect(early.json["delivered"].bool == false, "\(early.body)")
        #expect(try await Self.instance(host, id)["pending_events"].int == 1)
        let first = try await host.request("POST", "/api/workflows/\(id)/event", json: #"{"event":"first","data":1}"#, token: Self.admin)
        #expect(first.json["delivered"].bool == true, "\(first.body)")
        let done = try await Self.waitFor(host, id, "Completed")
        #expect(done["output"].items.compactMap { $0.int } == [1, 2], "\(String(describing: done))")
        #expect(done["pending_events"].int == 0)

        let nap = try await Self.begin(host, "napper")
        let asleep = try await Self.waitFor(host, nap, "Sleeping")
        #expect(asleep["wake_at"].string != nil)
        let advanced = try await host.request("POST", "/api/workflows/\(nap)/advance", token: Self.admin)
        #expect(advanced.json["status"].string == "Sleeping", "advance does not cut a sleep short: \(advanced.body)")
        let kept = try await host.request("POST", "/api/workflows/\(nap)/event", json: #"{"event":"later"}"#, token: Self.admin)
        #expect(kept.status == 200 && kept.json["delivered"].bool == false)
        let cancel = try await host.request("POST", "/api/workflows/\(nap)/cancel", token: Self.admin)
        #expect(cancel.status == 200 && cancel.json["cancelled"].bool == true, "\(cancel.body)")
        #expect(try await Self.instance(host, nap)["status"].string == "Cancelled")
        for (path, body) in [("event", #"{"event":"later"}"#), ("cancel", "{}"), ("advance", "{}")] {
            let r = try await host.request("POST", "/api/workflows/\(nap)/\(path)", json: body, token: Self.admin)
            #expect(r.status == 409 && r.json["error"]["code"].string == "WORKFLOW_FINISHED", "\(path) after cancel: \(r.status) \(r.body)")
        }
        let cancelled = try await host.request("GET", "/api/workflows?status=cancelled", token: Self.admin).json.items
        #expect(cancelled.map { $0["id"].string } == [nap], "\(cancelled)")
        let studio = try await host.request("GET", "/api/admin/ops/workflows", token: Self.admin).json.items
        #expect(Set(studio.compactMap { $0["id"].string }) == [id, nap], "the studio's listing: \(studio)")
    }

    @Test("The admin API: definitions, 403 for everyone else, stable codes for bad input; a workflow is not callable as a function or a job", arguments: stores)
    func adminAPI(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let user = try await host.mintSession("wf-user")
        let routes = [("GET", "/api/workflows/definitions"), ("POST", "/api/workflows/start"), ("GET", "/api/workflows"),
                      ("GET", "/api/workflows/wf_0"), ("POST", "/api/workflows/wf_0/advance"), ("POST", "/api/workflows/wf_0/event"),
                      ("POST", "/api/workflows/wf_0/cancel")]
        for (method, path) in routes {
            for token in [nil, user] {
                let r = try await host.request(method, path, json: method == "POST" ? #"{"name":"napper","event":"x"}"# : nil, token: token)
                #expect(r.status == 403, "\(method) \(path) as \(token == nil ? "anonymous" : "a user"): \(r.status) \(r.body)")
            }
        }
        let defs = try await host.request("GET", "/api/workflows/definitions", token: Self.admin).json.items
        #expect(Set(defs.compactMap { $0["name"].string }) == ["onboard", "flakyFlow", "twoEvents", "napper", "fickle"], "\(defs)")
        #expect(defs.first { $0["name"].string == "flakyFlow" }?["max_retries"].int == 2)
        #expect(defs.first { $0["name"].string == "onboard" }?["description"].string == "step, sleep, event, step")

        let bad: [(String, String, String, Int, String)] = [
            ("POST", "/api/workflows/start", #"{"name":"nope"}"#, 400, "WORKFLOW_START_FAILED"),
            ("POST", "/api/workflows/start", #"{"name":"plain"}"#, 400, "WORKFLOW_START_FAILED"),
            ("POST", "/api/workflows/start", #"{"input":{}}"#, 400, "MISSING_FIELD"),
            ("POST", "/api/workflows/start", "{oops", 400, "INVALID_JSON"),
            ("GET", "/api/workflows?status=asleep", "", 400, "INVALID_QUERY"),
            ("GET", "/api/workflows/wf_nothere", "", 404, "NOT_FOUND"),
            ("POST", "/api/workflows/wf_nothere/event", #"{"event":"x"}"#, 404, "NOT_FOUND"),
            ("POST", "/api/workflows/wf_nothere/cancel", "{}", 404, "NOT_FOUND"),
            ("POST", "/api/workflows/wf_nothere/advance", "{}", 404, "NOT_FOUND"),
            ("POST", "/api/fn/napper", "{}", 400, "FN_IS_WORKFLOW"),
            ("POST", "/api/jobs", #"{"name":"napper"}"#, 400, "FN_IS_WORKFLOW"),
        ]
        for (method, path, body, status, code) in bad {
            let r = try await host.request(method, path, json: method == "POST" ? body : nil, token: Self.admin)
            #expect(r.status == status && r.json["error"]["code"].string == code, "\(method) \(path) \(body): \(r.status) \(r.body)")
        }
        let id = try await Self.begin(host, "twoEvents")
        for body in [#"{"data":1}"#, #"{"event":""}"#, #"{"event":"\#(String(repeating: "e", count: 201))"}"#] {
            let r = try await host.request("POST", "/api/workflows/\(id)/event", json: body, token: Self.admin)
            #expect(r.status == 400 && r.json["error"]["code"].string == "MISSING_FIELD", "\(body): \(r.status) \(r.body)")
        }
        // The inbox is bounded.
        try await Self.waitFor(host, id, "WaitingForEvent")
        for i in 0..<100 {
            let r = try await host.request("POST", "/api/workflows/\(id)/event", json: #"{"event":"other\#(i)"}"#, token: Self.admin)
            #expect(r.status == 200, "\(r.status) \(r.body)")
        }
        let full = try await host.request("POST", "/api/workflows/\(id)/event", json: #"{"event":"one-more"}"#, token: Self.admin)
        #expect(full.status == 409 && full.json["error"]["code"].string == "WORKFLOW_INBOX_FULL", "\(full.status) \(full.body)")
        let fns = try await host.request("GET", "/api/fn", token: Self.admin).json.items
        #expect(fns.first { $0["name"].string == "napper" }?["fn_type"].string == "workflow", "\(fns)")
    }
}
