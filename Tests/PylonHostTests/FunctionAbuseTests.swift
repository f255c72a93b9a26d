import Foundation
import Testing

/// Server functions against hostile callers and careless function code (an outside probe,
/// session 22): numbers from a caller that reach the scheduler or a workflow's sleep,
/// recursion and fan-out of nested calls, a polluted prototype, the host's secrets in
/// `ctx.env`, and streamed output (line breaks, a client that does not read). Real host,
/// real Bun workers.
@Suite("Functions: hostile input and careless code (black-box, real pylon-host and Bun)")
struct FunctionAbuseTests {
    static let manifest = """
    {"manifest_version": 1, "name": "abuse", "version": "1",
     "entities": [{"name": "Mark", "fields": [{"name": "tag", "type": "string", "optional": false, "unique": false}], "indexes": []},
                  {"name": "Item", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "policies": [{"name": "open", "entity": "Mark", "allow": "true"}, {"name": "items", "entity": "Item", "allow": "true"}],
     "plugins": {"functions": {}}}
    """

    static let functions: [String: String] = [
        "functions/noop.ts": #"import { mutation } from "@pylon/functions"; export default mutation({ handler: async () => null });"#,
        "functions/sched.ts": """
        import { mutation } from "@pylon/functions";
        export default mutation({ handler: async (ctx, args) =>
          args.at !== undefined ? ctx.scheduler.runAt(args.at, "noop", {}) : ctx.scheduler.runAfter(args.ms, "noop", {}) });
        """,
        "functions/envkeys.ts": """
        import { query } from "@pylon/functions";
        export default query({ handler: async (ctx) => ({
          host: Object.keys(ctx.env).filter((k) => k.startsWith("PYLON_") || k === "DATABASE_URL"), app: ctx.env.APP_SETTING ?? null }) });
        """,
        // What an npm package a function imports can read: the environment of the worker's
        // parent and of each process above it, up to the host (`args.host`, its pid).
        "functions/ancestors.ts": """
        import { query } from "@pylon/functions";
        import { readFileSync } from "node:fs";
        export default query({ handler: async (_ctx, args) => {
          const chain = [];
          let pid = process.ppid;
          for (let i = 0; i < 8 && pid > 1; i++) {
            let environ = null, error = null;
            try { environ = readFileSync(`/proc/${pid}/environ`, "latin1").split("\\0").join("\\n"); } catch (e) { error = String(e); }
            chain.push({ pid, environ, error });
            if (pid === args.host) break;
            pid = Number(/PPid:\\s+(\\d+)/.exec(readFileSync(`/proc/${pid}/status`, "latin1"))?.[1] ?? 0);
          }
          return chain;
        } });
        """,
        // An app's careless deep merge: `{"__proto__": {...}}` in its input pollutes Object.prototype.
        "functions/merge.ts": """
        import { action } from "@pylon/functions";
        function merge(into: any, from: any) {
          for (const k of Object.keys(from)) {
            if (typeof from[k] === "object" && from[k] !== null) { into[k] = into[k] ?? {}; merge(into[k], from[k]); }
            else into[k] = from[k];
          }
          return into;
        }
        export default action({ handler: async (_ctx, args) => { merge({}, args); return true; } });
        """,
        "functions/typed.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { title: v.string(), extra: v.object({ n: v.int() }) },
          handler: async (ctx, args) => ctx.db.insert("Item", { title: args.title }) });
        """,
        "functions/recurse.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx, args) => ctx.runAction("recurse", { d: (args.d ?? 0) + 1 }) });
        """,
        "functions/nap.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (_ctx, args) => { await new Promise((r) => setTimeout(r, args.ms ?? 2000)); return 1; } });
        """,
        "functions/spin.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (_ctx, args) => { await Bun.write(args.marker, "spinning"); for (;;) {} } });
        """,
        "functions/fan.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx, args) => {
          const all = await Promise.allSettled(Array.from({ length: args.n }, () => ctx.runAction("nap", { ms: args.ms })));
          return all.filter((r) => r.status === "rejected" && String(r.reason?.code ?? r.reason).includes("TOO_MANY_NESTED_CALLS")).length;
        } });
        """,
        // A fan-out at every level: 20 calls, each starting 20 more (420 waiting at once).
        "functions/tree.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx, args) => {
          if (args.d === 0) { await new Promise((r) => setTimeout(r, args.ms)); return 0; }
          const all = await Promise.allSettled(Array.from({ length: args.w }, () => ctx.runAction("tree", { w: args.w, d: args.d - 1, ms: args.ms })));
          return all.reduce((n, r) => n + (r.status === "fulfilled" ? r.value
            : String(r.reason?.code ?? r.reason).includes("TOO_MANY_NESTED_CALLS") ? 1 : 0), 0);
        } });
        """,
        "functions/streamy.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx) => {
          ctx.stream.write("hello\\revent: result\\rdata: {\\"forged\\":true}\\r\\rtail\\r\\nmore");
          return "real";
        } });
        """,
        "functions/cut.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx) => { ctx.stream.write("ab\u{1F600}cd".slice(0, 3)); return "x"; } });
        """,
        "functions/lone.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async () => "ab\u{1F600}cd".slice(0, 3) });
        """,
        "functions/whoami.ts": #"import { query } from "@pylon/functions"; export default query({ handler: async (ctx) => ctx.auth.userId });"#,
        "functions/enq.ts": """
        import { mutation } from "@pylon/functions";
        export default mutation({ handler: async (ctx, args) => ctx.jobs.enqueue(args.name, {}) });
        """,
        "functions/flood.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx, args) => {
          const chunk = "x".repeat(65536);
          for (let i = 0; i < args.chunks; i++) ctx.stream.write(chunk);
          await ctx.db.insert("Mark", { tag: "flooded" });
          return "done";
        } });
        """,
        // Floods, then waits (at most 50 s) for a Mark "open" before it ends.
        "functions/floodgate.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx, args) => {
          const chunk = "x".repeat(65536);
          for (let i = 0; i < args.chunks; i++) ctx.stream.write(chunk);
          await ctx.db.insert("Mark", { tag: "gated" });
          for (let i = 0; i < 500; i++) {
            if ((await ctx.db.query("Mark", { tag: "open" })).length > 0) { await ctx.db.insert("Mark", { tag: "through" }); return "done"; }
            await new Promise((r) => setTimeout(r, 100));
          }
          return "closed";
        } });
        """,
        "functions/big.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (_ctx, args) => "x".repeat(args.n) });
        """,
        "functions/sleeper.ts": """
        import { workflow } from "@pylon/functions";
        export default workflow(async (ctx, input) => { await ctx.sleep(input.d); return "woke"; });
        """,
    ]

    static func start(_ env: [String: String] = [:]) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: ["PYLON_FN_WORKERS": "1", "APP_SETTING": "visible"].merging(env) { $1 },
                                    dev: false, files: functions)
    }

    static func call(_ host: HostProcess, _ name: String, _ args: String, token: String? = nil) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/fn/\(name)", json: args, token: token)
    }

    @Test("Out-of-range numbers for the scheduler are 400 INVALID_OP (they used to crash the host); in range they schedule")
    func schedulerNumbers() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        for args in [#"{"ms":1e300}"#, #"{"ms":9223372036854000000}"#, #"{"ms":"soon"}"#, #"{"at":-1e300}"#,
                     #"{"at":1e300}"#, #"{"at":9223372036854775807}"#] {
            let r = try await Self.call(host, "sched", args)
            #expect(r.status == 400 && r.json.errorCode == "INVALID_OP", "\(args) gave \(r.status) \(r.body)")
            #expect(try await host.request("GET", "/health").status == 200, "\(args): the host is still up")
        }
        let ok = try await Self.call(host, "sched", #"{"ms":60000}"#)
        #expect(ok.status == 200, "\(ok.body)")
        let at = try await Self.call(host, "sched", #"{"at":\#(Int64(Date().timeIntervalSince1970 * 1000) + 60_000)}"#)
        #expect(at.status == 200, "\(at.body)")
    }

    @Test("ctx.env holds the app's environment but none of the host's settings (the admin token among them)")
    func environment() async throws {
        let host = try await Self.start(["PYLON_JWT_SECRET": "a-jwt-secret-for-the-tests-0123456789", "DATABASE_URL": "postgres://secret@nowhere/db"])
        defer { host.stop() }
        let r = try await Self.call(host, "envkeys", "{}")
        #expect(r.status == 200 && r.json["host"].items.isEmpty && r.json["app"].string == "visible", "\(r.body)")
        #expect(!r.body.contains(HostProcess.adminToken))
    }

    @Test("A function cannot read the host's secrets from /proc/<pid>/environ of its worker's parent or any process up to the host; the host still uses them")
    func secretsOutOfProcfs() async throws {
        let secrets = ["PYLON_ADMIN_TOKEN": "admin-\(UUID().uuidString)", "PYLON_FILES_SECRET": "files-\(UUID().uuidString)",
                       "PYLON_JWT_SECRET": "jwt-\(UUID().uuidString)", "DATABASE_URL": "postgres://app:pw-\(UUID().uuidString)@127.0.0.1:1/app"]
        let host = try await Self.start(secrets)
        defer { host.stop() }
        let hostPID = try #require(host.pid)
        let r = try await Self.call(host, "ancestors", #"{"host":\#(hostPID)}"#)
        #expect(r.status == 200, "\(r.body)")
        let chain = r.json.items
        let last: Any? = chain.last ?? nil
        // The walk reached the host and read its environment, which still shows the app's settings.
        #expect(last["pid"].int == Int(hostPID), "the walk ends at the host (pid \(hostPID)): \(r.body)")
        #expect(chain.allSatisfy { $0["environ"].string != nil }, "every environ was readable (as the same user): \(r.body)")
        #expect(last["environ"].string?.contains("APP_SETTING=visible") == true, "\(r.body)")
        for (name, value) in secrets {
            #expect(!r.body.contains(value), "\(name)'s value is readable in /proc/<pid>/environ: \(r.body)")
        }
        #expect(!r.body.contains("pw-"), "the database password is readable: \(r.body)")

        // The host still reads them: its admin token is the one given (not the harness's) ...
        #expect(try await host.request("GET", "/api/fn/traces", token: secrets["PYLON_ADMIN_TOKEN"]).status == 200)
        #expect(try await host.request("GET", "/api/fn/traces", token: HostProcess.adminToken).status == 403)
        // ... and ctx.env still holds the app's variable and none of the host's.
        let env = try await Self.call(host, "envkeys", "{}")
        #expect(env.status == 200 && env.json["host"].items.isEmpty && env.json["app"].string == "visible", "\(env.body)")
    }

    @Test("A prototype polluted by one call does not fill in another caller's missing arguments")
    func pollutedPrototype() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let polluted = try await Self.call(host, "merge", #"{"__proto__":{"title":"pwned","extra":{"n":7},"n":7}}"#)
        #expect(polluted.status == 200, "\(polluted.body)")
        let typed = try await Self.call(host, "typed", "{}")
        #expect(typed.status == 400 && typed.json.errorCode == "INVALID_ARGS", "\(typed.body)")
        let nested = try await Self.call(host, "typed", #"{"title":"mine","extra":{}}"#)
        #expect(nested.status == 400 && nested.json.errorCode == "INVALID_ARGS", "\(nested.body)")
        let fine = try await Self.call(host, "typed", #"{"title":"mine","extra":{"n":1}}"#)
        #expect(fine.status == 200, "\(fine.body)")
    }

    @Test("Nested calls are bounded: recursion stops at a depth, a fan-out past the limit is refused, and the workers keep serving")
    func nestedCalls() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let deep = try await Self.call(host, "recurse", "{}")
        #expect(deep.status == 400 && deep.body.contains("CALL_DEPTH_EXCEEDED"), "\(deep.status) \(deep.body)")
        let fan = try await Self.call(host, "fan", #"{"n":300,"ms":3000}"#)
        #expect(fan.status == 200 && (fan.json.int ?? 0) > 0, "some of 300 nested calls at once are refused: \(fan.body)")
        // The bound is the request's, not each call's: 20 calls that start 20 each pass it too.
        let tree = try await Self.call(host, "tree", #"{"w":20,"d":2,"ms":5000}"#)
        #expect(tree.status == 200 && (tree.json.int ?? 0) > 0, "some of 420 nested calls of one request are refused: \(tree.body)")
        #expect(try await Self.call(host, "noop", "{}").status == 200)
    }

    @Test("Calls that time out together in their thousands: the workers come back")
    func workersComeBack() async throws {
        let host = try await Self.start(["PYLON_FN_CALL_TIMEOUT": "2", "PYLON_FN_WORKERS": "2"])
        defer { host.stop() }
        // 30 callers × 200 nested naps of a minute: 6,000 calls in flight, all past their
        // deadline at about the same moment.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<30 {
                group.addTask { _ = try await Self.call(host, "fan", #"{"n":200,"ms":60000}"#) }
            }
            try await group.waitForAll()
        }
        _ = try await eventuallyAsync("a call to succeed after the timeouts", timeout: 60) {
            try await Self.call(host, "noop", "{}").status == 200 ? true : nil
        }
    }

    /// An outside probe (session 24): a child stuck in a handler that never yields had one
    /// call in flight, so it looked least busy and took about half of the calls that came
    /// next; they waited behind the handler and failed with it when its timeout killed it.
    @Test("A handler that never yields: the calls that come after it go to the other worker and succeed; it fails at its timeout")
    func stuckWorkerGetsNoCalls() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_FN_WORKERS": "2", "PYLON_FN_CALL_TIMEOUT": "5"],
                                               dev: true, files: Self.functions)
        defer { host.stop() }
        try await FunctionsTests.workersReady(host, 2)
        let marker = host.directory.appendingPathComponent("spinning").path
        let spinning = Task { () -> (status: Int, body: String) in
            let r = try await Self.call(host, "spin", #"{"marker":\#(TestJSON.quote(marker))}"#)
            return (r.status, r.body)
        }
        _ = try await eventuallyAsync("the spinning handler starts") { FileManager.default.fileExists(atPath: marker) ? true : nil }
        // The spinning child has been quiet past WorkerPool.stuckAfter (1 s) by then.
        try await Task.sleep(for: .milliseconds(1500))
        var statuses: [(Int, String)] = []
        for _ in 0..<4 {
            statuses += try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        let r = try await Self.call(host, "nap", #"{"ms":50}"#)
                        return (r.status, r.body)
                    }
                }
                return try await group.reduce(into: [(Int, String)]()) { $0.append($1) }
            }
        }
        let failed = statuses.filter { $0.0 != 200 }
        #expect(failed.isEmpty, "\(failed.count) of 20 calls failed: \(failed.prefix(3))")
        let spun = try await spinning.value
        #expect(spun.status >= 500, "the spinning call ends at its timeout: \(spun.status) \(spun.body)")
    }

    @Test("Streamed output: every line break (CR, LF, CRLF) starts a data: line, so a chunk cannot forge an event")
    func streamLineBreaks() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/streamy", json: "{}", headers: ["Accept": "text/event-stream"])
        #expect(r.status == 200)
        let lines = r.body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n").split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("event:") } == ["event: result"], "\(r.body.debugDescription)")
        #expect(lines.allSatisfy { $0.hasPrefix("data: ") || $0.hasPrefix("event: ") }, "\(r.body.debugDescription)")
        #expect(lines.last == #"data: "real""#, "\(r.body.debugDescription)")
    }

    @Test("A streamed chunk cut in the middle of an emoji arrives with U+FFFD instead of being dropped")
    func streamLoneSurrogate() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/cut", json: "{}", headers: ["Accept": "text/event-stream"])
        #expect(r.status == 200 && r.body.contains("data: ab\u{FFFD}\n"), "\(r.body.debugDescription)")
        // A returned value is not mended: 502 INVALID_RESULT, which the OpenAPI document lists.
        let lone = try await Self.call(host, "lone", "{}")
        #expect(lone.status == 502 && lone.json.errorCode == "INVALID_RESULT", "\(lone.status) \(lone.body)")
        let doc = try await host.request("GET", "/api/openapi.json").json
        #expect(doc["paths"]["/api/fn/{name}"]["post"]["responses"]["502"]["$ref"].string == "#/components/responses/Error502")
        #expect(doc["components"]["responses"]["Error502"]["description"].string?.contains("INVALID_RESULT") == true)
    }

    @Test("ctx.jobs.enqueue checks its handler as POST /api/jobs does: no function, a query or a workflow is refused at once")
    func jobHandlers() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        for (name, code) in [("nope", "UNKNOWN_JOB_HANDLER"), ("whoami", "FN_IS_QUERY"), ("sleeper", "FN_IS_WORKFLOW"), ("pylon.workflow.advance", "UNKNOWN_JOB_HANDLER")] {
            let r = try await Self.call(host, "enq", #"{"name":"\#(name)"}"#)
            #expect(r.status == 400 && r.json.errorCode == code, "\(name): \(r.body)")
            let admin = try await host.request("POST", "/api/jobs", json: #"{"name":"\#(name)"}"#, token: HostProcess.adminToken)
            #expect(admin.status == 400 && admin.json.errorCode == code, "\(name): \(admin.body)")
        }
        #expect(try await Self.call(host, "enq", #"{"name":"noop"}"#).status == 200)
    }

    @Test("Streamed output to a client that does not read is bounded: past PYLON_SYNC_QUEUE_BYTES the stream ends with STREAM_BACKLOG")
    func streamBacklog() async throws {
        let host = try await Self.start(["PYLON_SYNC_QUEUE_BYTES": "262144"])
        defer { host.stop() }
        let socket = try TestSocket.connect(port: host.port, receiveBuffer: 4096)
        defer { socket.close() }
        let body = #"{"chunks":512}"#
        try socket.send("POST /api/fn/flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        // 32 MiB written while the client reads nothing: far more than the socket buffers hold.
        _ = try await eventuallyAsync("the function to finish", timeout: 60) {
            try await host.request("GET", "/api/entities/Mark", token: HostProcess.adminToken).json["data"].items.isEmpty ? nil : true
        }
        var received: [UInt8] = []
        while received.count < 64 * 1024 * 1024, case let .bytes(b) = socket.receive() { received += b }
        let tail = String(decoding: received.suffix(4096), as: UTF8.self)
        #expect(tail.contains("event: error") && tail.contains("STREAM_BACKLOG"), "\(tail.suffix(400))")
        #expect(received.count < 24 * 1024 * 1024, "the backlog was bounded: \(received.count) bytes")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("A stream ended by STREAM_BACKLOG ends its answer at once, while the function runs on")
    func streamBacklogEndsTheAnswer() async throws {
        let host = try await Self.start(["PYLON_SYNC_QUEUE_BYTES": "262144", "PYLON_FN_CALL_TIMEOUT": "120"])
        defer { host.stop() }
        func marks(_ tag: String) async throws -> Bool {
            try await !host.request("POST", "/api/query/Mark", json: #"{"tag":"\#(tag)"}"#, token: HostProcess.adminToken).json.items.isEmpty
        }
        let socket = try TestSocket.connect(port: host.port, receiveBuffer: 4096)
        defer { socket.close() }
        let body = #"{"chunks":512}"#
        try socket.send("POST /api/fn/floodgate HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        _ = try await eventuallyAsync("the function to flood", timeout: 60) { try await marks("gated") ? true : nil }
        // The answer ends (the host closes the connection) with the function still waiting.
        var received: [UInt8] = []
        while received.count < 64 * 1024 * 1024, case let .bytes(b) = socket.receive() { received += b }
        let tail = String(decoding: received.suffix(4096), as: UTF8.self)
        #expect(tail.contains("STREAM_BACKLOG"), "\(tail.suffix(400))")
        #expect(try await host.request("POST", "/api/entities/Mark", json: #"{"tag":"open"}"#, token: HostProcess.adminToken).status < 300)
        _ = try await eventuallyAsync("the function to pass its gate", timeout: 60) { try await marks("through") ? true : nil }
    }

    @Test("A streamed call whose result alone is larger than PYLON_SYNC_QUEUE_BYTES still reaches a client that reads")
    func streamLargeResult() async throws {
        let host = try await Self.start(["PYLON_SYNC_QUEUE_BYTES": "65536"])
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/big", json: #"{"n":300000}"#, headers: ["Accept": "text/event-stream"])
        #expect(r.status == 200)
        #expect(!r.body.contains("STREAM_BACKLOG"), "\(r.body.prefix(400))")
        #expect(r.body.contains("event: result\ndata: \"" + String(repeating: "x", count: 300_000) + "\"\n"), "\(r.body.prefix(400))")
    }

    @Test("A workflow sleep given as a huge double sleeps (at most 366 days) instead of ending at once")
    func workflowSleepDouble() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let r = try await host.request("POST", "/api/workflows/start", json: #"{"name":"sleeper","input":{"d":1e300}}"#, token: HostProcess.adminToken)
        let id = try #require(r.json["id"].string, "\(r.body)")
        let state = try await eventuallyAsync("the workflow to sleep", timeout: 60) { () -> Any?? in
            let w = try await host.request("GET", "/api/workflows/\(id)", token: HostProcess.adminToken).json
            let status = w["status"].string ?? ""
            return status.lowercased() == "running" || status.lowercased() == "pending" ? nil : .some(w)
        }
        #expect(state["status"].string?.lowercased() == "sleeping", "\(String(describing: state))")
    }
}
