import Foundation
import Testing

/// `ctx.workflows.start` and `ctx.workflows.sendEvent` from functions, end to end: the
/// release `pylon-host`, Bun workers, SQLite and Postgres. In a mutation both commit with
/// its writes and not without them; queries cannot use them; bad input has stable codes.
@Suite("Workflows from functions: ctx.workflows.start and sendEvent (black-box)")
struct WorkflowCtxTests {
    static let functions: [String: String] = WorkflowTests.functions.merging([
        // Starts a workflow beside a write; `fail` rolls both back.
        "functions/startFlow.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { name: v.string(), tag: v.string(), fail: v.optional(v.boolean()) },
          handler: async (ctx, { name, tag, fail }) => {
            await ctx.db.insert("Run", { tag, phase: "started" });
            const id = await ctx.workflows.start(name, { tag, sleepMs: 1 });
            if (fail) ctx.error("ROLLED_BACK", "as asked");
            return id;
          } });
        """,
        // Sends an event beside a write; `fail` rolls both back.
        "functions/sendFlow.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { id: v.string(), event: v.string(), data: v.optional(v.any()), fail: v.optional(v.boolean()) },
          handler: async (ctx, { id, event, data, fail }) => {
            await ctx.db.insert("Run", { tag: "send:" + event, phase: "sent" });
            const delivered = await ctx.workflows.sendEvent(id, event, data);
            if (fail) ctx.error("ROLLED_BACK", "as asked");
            return delivered;
          } });
        """,
        "functions/startFromAction.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, { name }) => ctx.workflows.start(name, {}));
        """,
        "functions/sendFromAction.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, { id, event, data }) => ctx.workflows.sendEvent(id, event, data));
        """,
        "functions/startFromQuery.ts": """
        import { query } from "@pylon/functions";
        export default query(async (ctx) => ctx.workflows.start("napper", {}));
        """,
    ]) { a, _ in a }

    static func start(_ store: TestStore) async throws -> HostProcess {
        try await HostProcess.start(manifest: WorkflowTests.manifest, env: WorkflowTests.env, store: store, files: functions)
    }

    static func call(_ host: HostProcess, _ fn: String, _ body: String) async throws -> (status: Int, json: Any?, body: String) {
        let r = try await host.request("POST", "/api/fn/\(fn)", json: body)
        return (r.status, r.json, r.body)
    }

    static func instanceCount(_ host: HostProcess) async throws -> Int {
        try await host.request("GET", "/api/workflows?limit=200", token: WorkflowTests.admin).json.items.count
    }

    @Test("A mutation starts a workflow and delivers its events in its own transaction; a rolled-back one does neither", arguments: WorkflowTests.stores)
    func fromMutation(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let started = try await Self.call(host, "startFlow", #"{"name":"twoEvents","tag":"m1"}"#)
        let id = try #require(started.json.string, "\(started.status) \(started.body)")
        #expect(id.hasPrefix("wf_"))
        try await WorkflowTests.waitFor(host, id, "WaitingForEvent")

        let rolledBack = try await Self.call(host, "startFlow", #"{"name":"twoEvents","tag":"ghost","fail":true}"#)
        #expect(rolledBack.json.errorCode == "ROLLED_BACK", "\(rolledBack.body)")
        #expect(try await Self.instanceCount(host) == 1, "the rolled-back mutation started nothing")
        #expect(try await WorkflowTests.runs(host, "ghost") == 0)

        let lost = try await Self.call(host, "sendFlow", #"{"id":"\#(id)","event":"first","data":1,"fail":true}"#)
        #expect(lost.json.errorCode == "ROLLED_BACK", "\(lost.body)")
        let still = try await WorkflowTests.instance(host, id)
        #expect(still["status"].string == "WaitingForEvent" && still["pending_events"].int == 0, "the rolled-back event is not kept: \(String(describing: still))")

        let early = try await Self.call(host, "sendFlow", #"{"id":"\#(id)","event":"second","data":2}"#)
        #expect(early.status == 200 && early.json.bool == false, "an event sent before its wait is kept: \(early.body)")
        let woke = try await Self.call(host, "sendFlow", #"{"id":"\#(id)","event":"first","data":1}"#)
        #expect(woke.status == 200 && woke.json.bool == true, "\(woke.body)")
        let done = try await WorkflowTests.waitFor(host, id, "Completed")
        #expect(done["output"].items.compactMap { $0.int } == [1, 2], "\(String(describing: done))")

        // A whole workflow started from a mutation: step, sleep, event, step.
        let onboard = try await Self.call(host, "startFlow", #"{"name":"onboard","tag":"m2"}"#)
        let oid = try #require(onboard.json.string, "\(onboard.body)")
        try await WorkflowTests.waitFor(host, oid, "WaitingForEvent")
        #expect(try await Self.call(host, "sendFlow", #"{"id":"\#(oid)","event":"approved","data":"yes"}"#).json.bool == true)
        let finished = try await WorkflowTests.waitFor(host, oid, "Completed")
        #expect(finished["output"]["b"].int == 42 && finished["output"]["ev"].string == "yes", "\(String(describing: finished))")
    }

    @Test("An action starts workflows and sends events; a query cannot; stable codes for unknown, finished and bad input", arguments: WorkflowTests.stores)
    func fromActionAndHostile(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let started = try await Self.call(host, "startFromAction", #"{"name":"twoEvents"}"#)
        let id = try #require(started.json.string, "\(started.status) \(started.body)")
        try await WorkflowTests.waitFor(host, id, "WaitingForEvent")
        #expect(try await Self.call(host, "sendFromAction", #"{"id":"\#(id)","event":"first","data":"a"}"#).json.bool == true)
        #expect(try await Self.call(host, "sendFromAction", #"{"id":"\#(id)","event":"second","data":"b"}"#).status == 200)
        let done = try await WorkflowTests.waitFor(host, id, "Completed")
        #expect(done["output"].items.compactMap { $0.string } == ["a", "b"], "\(String(describing: done))")

        let query = try await Self.call(host, "startFromQuery", "{}")
        #expect(query.status == 400 && query.json.errorCode == "READ_ONLY", "\(query.status) \(query.body)")

        let long = String(repeating: "e", count: 201)
        let bad: [(String, String, String)] = [
            ("startFromAction", #"{"name":"nope"}"#, "WORKFLOW_START_FAILED"),
            ("startFromAction", #"{"name":"plain"}"#, "WORKFLOW_START_FAILED"),
            ("startFromAction", #"{"name":""}"#, "INVALID_OP"),
            ("startFromAction", #"{"name":"../../etc\u0000"}"#, "WORKFLOW_START_FAILED"),
            ("startFlow", #"{"name":"nope","tag":"unknown"}"#, "WORKFLOW_START_FAILED"),
            ("sendFromAction", #"{"id":"wf_nothere","event":"first"}"#, "NOT_FOUND"),
            ("sendFromAction", #"{"id":"","event":"first"}"#, "INVALID_OP"),
            ("sendFromAction", #"{"id":"\#(id)","event":""}"#, "INVALID_OP"),
            ("sendFromAction", #"{"id":"\#(id)","event":"\#(long)"}"#, "INVALID_OP"),
            ("sendFromAction", #"{"id":"\#(id)","event":"first"}"#, "WORKFLOW_FINISHED"),
            ("sendFlow", #"{"id":"wf_nothere","event":"first"}"#, "NOT_FOUND"),
        ]
        for (fn, body, code) in bad {
            let r = try await Self.call(host, fn, body)
            #expect(r.status >= 400 && r.status < 500 && r.json.errorCode == code, "\(fn) \(body): \(r.status) \(r.body)")
        }
        #expect(try await WorkflowTests.runs(host, "unknown") == 0, "the failed start rolled its mutation back")
        #expect(try await Self.instanceCount(host) == 1, "no bad call started anything")
    }
}
