import Foundation
import Testing

/// Durable jobs and cron end to end (`JobService`, `CronService`): the release
/// `pylon-host`, real Bun workers running the jobs' functions, SQLite and Postgres. Short
/// leases, polls and back-offs come from `PYLON_JOBS_*`; nothing asserts how long anything
/// took — tests wait for states with generous timeouts.
@Suite("Jobs and cron: durable queue, retries, dead letter, leases, idempotency, cron occurrences (black-box)")
struct JobsTests {
    static let manifest = """
    {"manifest_version": 1, "name": "jobs", "version": "1",
     "entities": [
       {"name": "Run", "fields": [
          {"name": "tag", "type": "string", "optional": false, "unique": false},
          {"name": "phase", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Flag", "fields": [
          {"name": "on", "type": "bool", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [{"name": "open", "entity": "Run", "allow": "true"}, {"name": "flags", "entity": "Flag", "allow": "true"}],
     "cron": [
       {"name": "everyMinute", "schedule": "* * * * *", "function": "cronRecord"},
       {"name": "nightly", "schedule": "0 3 * * MON-FRI", "function": "record", "args": {"tag": "nightly"}, "timezone": "Europe/Berlin"}],
     "plugins": {"functions": {}}}
    """

    static let functions: [String: String] = [
        "functions/record.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { tag: v.string() }, handler: async (ctx, { tag }) => ctx.db.insert("Run", { tag, phase: "done" }) });
        """,
        "functions/cronRecord.ts": """
        import { mutation } from "@pylon/functions";
        export default mutation({ handler: async (ctx, args) =>
          ctx.db.insert("Run", { tag: String(args.timestamp), phase: args.manual_trigger ? "manual" : "cron" }) });
        """,
        "functions/flaky.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { tag: v.string() }, handler: async (ctx, { tag }) => {
          const flags = await ctx.db.query("Flag", {});
          if (flags.some((f) => f.on)) ctx.error("FLAKY", "the flag is on");
          return ctx.db.insert("Run", { tag, phase: "done" });
        } });
        """,
        "functions/slowOnce.ts": """
        import { action, v } from "@pylon/functions";
        export default action({ args: { tag: v.string() }, handler: async (ctx, { tag }) => {
          await ctx.db.insert("Run", { tag, phase: "start" });
          const starts = (await ctx.db.query("Run", { tag })).filter((r) => r.phase === "start").length;
          if (starts === 1) await new Promise((r) => setTimeout(r, 120000));
          await ctx.db.insert("Run", { tag, phase: "end" });
        } });
        """,
        "functions/tracked.ts": """
        import { action, v } from "@pylon/functions";
        export default action({ args: { tag: v.string() }, handler: async (ctx, { tag }) => {
          await ctx.db.insert("Run", { tag, phase: "start" });
          await new Promise((r) => setTimeout(r, 20));
          await ctx.db.insert("Run", { tag, phase: "end" });
        } });
        """,
        "functions/gate.ts": """
        import { action } from "@pylon/functions";
        export default action({ handler: async (ctx) => {
          await ctx.db.insert("Run", { tag: "gate", phase: "start" });
          for (let i = 0; i < 4000; i++) {
            if (!(await ctx.db.query("Flag", {})).some((f) => f.on)) break;
            await new Promise((r) => setTimeout(r, 25));
          }
        } });
        """,
        "functions/enqueueIt.ts": """
        import { mutation, v } from "@pylon/functions";
        export default mutation({ args: { tag: v.string(), key: v.optional(v.string()), fail: v.optional(v.boolean()) },
          handler: async (ctx, { tag, key, fail }) => {
            const id = await ctx.jobs.enqueue("record", { tag }, key ? { idempotencyKey: key, priority: "high" } : {});
            if (fail) ctx.error("ROLLED_BACK", "as asked");
            return id;
          } });
        """,
    ]

    static let fastEnv = ["PYLON_JOBS_POLL_MS": "50", "PYLON_JOBS_BACKOFF_MS": "100", "PYLON_JOBS_LEASE_MS": "2000",
                          "PYLON_FN_WORKERS": "2", "PYLON_FN_CALL_TIMEOUT": "300"]

    static var stores: [TestStore] { TestStore.all.filter { $0.name == "sqlite" || $0.name == "postgres" } }

    static func start(_ store: TestStore, env: [String: String] = [:]) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: fastEnv.merging(env) { _, given in given }, store: store, files: functions)
    }

    static let admin = HostProcess.adminToken

    static func job(_ host: HostProcess, _ id: String) async throws -> Any? {
        try await host.request("GET", "/api/jobs/\(id)", token: admin).json
    }

    @discardableResult
    static func waitFor(_ host: HostProcess, _ id: String, status: String, timeout: TimeInterval = 60) async throws -> Any? {
        try await eventuallyAsync("job \(id) to be \(status)", timeout: timeout) {
            let j = try await job(host, id)
            return j["status"].string == status ? j : nil
        }
    }

    static func runs(_ host: HostProcess, tag: String? = nil) async throws -> [(tag: String, phase: String)] {
        let all = try await host.request("GET", "/api/entities/Run?limit=1000", token: admin).json["data"].items
        return all.compactMap { r in
            guard let t = r["tag"].string, let p = r["phase"].string, tag == nil || t == tag else { return nil }
            return (t, p)
        }
    }

    static func enqueue(_ host: HostProcess, _ body: String) async throws -> String {
        let r = try await host.request("POST", "/api/jobs", json: body, token: admin)
        guard r.status == 201, let id = r.json["id"].string else { throw TestSetupError(description: "enqueue \(body): \(r.status) \(r.body)") }
        return id
    }

    @Test("The admin API: shapes, ISO times, 403 for everyone else, bounded lists, stable error codes for bad input", arguments: stores)
    func adminAPI(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let user = try await host.mintSession("jobs-user")
        for (method, path) in [("POST", "/api/jobs"), ("GET", "/api/jobs"), ("GET", "/api/jobs/stats"), ("GET", "/api/jobs/dead"),
                               ("GET", "/api/jobs/x"), ("POST", "/api/jobs/dead/x/retry"), ("POST", "/api/jobs/x/cancel"),
                               ("GET", "/api/scheduler"), ("POST", "/api/scheduler/trigger/nightly"), ("POST", "/api/scheduler/nightly/disable")] {
            for token in [nil, user] {
                let r = try await host.request(method, path, json: method == "POST" ? #"{"name":"record"}"# : nil, token: token)
                #expect(r.status == 403, "\(method) \(path) as \(token == nil ? "anonymous" : "a user"): \(r.status) \(r.body)")
            }
        }
        let bad: [(String, Int, String)] = [
            ("{not json", 400, "INVALID_JSON"), ("[]", 400, "INVALID_JOB"), (#"{"payload":{}}"#, 400, "MISSING_FIELD"),
            (#"{"name":"nope"}"#, 400, "UNKNOWN_JOB_HANDLER"), (#"{"name":"record","priority":"urgent"}"#, 400, "INVALID_PRIORITY"),
            (#"{"name":"record","max_retries":1000}"#, 400, "INVALID_RETRIES"), (#"{"name":"record","delay_secs":-1}"#, 400, "INVALID_DELAY"),
            (#"{"name":"record","delay_secs":1e300}"#, 400, "INVALID_DELAY"), (#"{"name":"record","queue":"a'b"}"#, 400, "INVALID_QUEUE"),
            (#"{"name":"record","idempotency_key":""}"#, 400, "INVALID_JOB"),
        ]
        for (body, status, code) in bad {
            let r = try await host.request("POST", "/api/jobs", json: body, token: Self.admin)
            #expect(r.status == status && r.json.errorCode == code, "\(body): \(r.status) \(r.body)")
        }
        let id = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"api"},"priority":"critical","queue":"mail"}"#)
        let done = try await Self.waitFor(host, id, status: "completed")
        #expect(done["name"].string == "record" && done["priority"].string == "critical" && done["queue"].string == "mail", "\(String(describing: done))")
        for key in ["created_at", "started_at", "completed_at"] {
            let t = done[key].string ?? ""
            #expect(ISO8601DateFormatter.withFractions.date(from: t) != nil, "\(key) is ISO 8601: \(t)")
        }
        #expect(try await Self.runs(host, tag: "api").count == 1)
        let list = try await host.request("GET", "/api/jobs?status=completed&queue=mail&limit=100000", token: Self.admin)
        #expect(list.status == 200 && list.json.items.count == 1, "\(list.body)")
        #expect(try await host.request("GET", "/api/jobs?status=bogus", token: Self.admin).json.errorCode == "INVALID_QUERY")
        #expect(try await host.request("GET", "/api/jobs?limit=-1", token: Self.admin).json.errorCode == "INVALID_QUERY")
        #expect(try await host.request("GET", "/api/jobs/job_missing", token: Self.admin).status == 404)
        let stats = try await host.request("GET", "/api/jobs/stats", token: Self.admin).json
        // The every-minute cron task's jobs may have completed too, in the default queue.
        #expect((stats["completed"].int ?? 0) >= 1 && stats["queues"]["mail"]["completed"].int == 1, "\(String(describing: stats))")
        #expect(stats["handlers"].items.contains { $0.string == "record" })

        // Cancellation: a job due in an hour; cancelling twice, or an unknown job, is refused.
        let later = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"never"},"delay_secs":3600}"#)
        #expect(try await Self.job(host, later)["status"].string == "pending")
        let c = try await host.request("POST", "/api/jobs/\(later)/cancel", token: Self.admin)
        #expect(c.status == 200 && c.json["cancelled"] as? Bool == true, "\(c.body)")
        #expect(try await host.request("POST", "/api/jobs/\(later)/cancel", token: Self.admin).json.errorCode == "JOB_FINISHED")
        #expect(try await host.request("POST", "/api/jobs/nope/cancel", token: Self.admin).status == 404)
        #expect(try await host.request("POST", "/api/jobs/dead/\(later)/retry", token: Self.admin).json.errorCode == "JOB_NOT_DEAD")
        #expect(try await Self.job(host, later)["status"].string == "cancelled")

        // The scheduler lists the manifest's tasks with their next run; disable/enable persists.
        let tasks = try await host.request("GET", "/api/scheduler", token: Self.admin).json.items
        let nightly = tasks.first { $0["name"].string == "nightly" }
        #expect(nightly?["expr"].string == "0 3 * * MON-FRI" && nightly?["enabled"] as? Bool == true && nightly?["next_run"].string != nil,
                "\(tasks)")
        _ = try await host.request("POST", "/api/scheduler/nightly/disable", token: Self.admin)
        try await host.restart()
        let after = try await host.request("GET", "/api/scheduler", token: Self.admin).json.items.first { $0["name"].string == "nightly" }
        #expect(after?["enabled"] as? Bool == false && after?["next_run"] is NSNull, "\(String(describing: after))")
        #expect(try await host.request("POST", "/api/scheduler/trigger/nope", token: Self.admin).status == 404)
        let trig = try await host.request("POST", "/api/scheduler/trigger/nightly", token: Self.admin)
        #expect(trig.json["triggered"] as? Bool == true, "\(trig.body)")
        try await Self.waitFor(host, trig.json["job_id"].string ?? "", status: "completed")
        #expect(try await Self.runs(host, tag: "nightly").count == 1)
    }

    @Test("A failing job retries with growing back-offs, lands in the dead letter (kept across a restart), and runs again when retried from it", arguments: stores)
    func retriesAndDeadLetter(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let flag = try await host.request("POST", "/api/entities/Flag", json: #"{"on":true}"#, token: Self.admin)
        let flagID = try #require(flag.json["id"].string, "\(flag.body)")
        let id = try await Self.enqueue(host, #"{"name":"flaky","payload":{"tag":"flaky"},"max_retries":3}"#)
        let dead = try await Self.waitFor(host, id, status: "dead")
        #expect(dead["retry_count"].int == 3 && dead["error"].string?.contains("FLAKY") == true, "\(String(describing: dead))")
        let attempts = dead["attempts"].items
        #expect(attempts.count == 4, "\(attempts)")
        let delays = attempts.compactMap { $0["retry_in_ms"].int }
        #expect(delays.count == 3 && attempts.last?["retry_in_ms"] is NSNull, "the last failure schedules nothing: \(attempts)")
        for (k, d) in delays.enumerated() {
            let nominal = 100 << k
            #expect(d >= nominal / 2 && d <= nominal, "back-off \(k) is \(d) ms, within [\(nominal / 2), \(nominal)]")
        }
        #expect(delays == delays.sorted(), "back-offs grow: \(delays)")
        try await host.restart()
        let deadList = try await host.request("GET", "/api/jobs/dead", token: Self.admin).json.items
        #expect(deadList.contains { $0["id"].string == id }, "the dead letter survives a restart")
        #expect(try await host.request("GET", "/api/jobs?status=dead", token: Self.admin).json.items.count == 1)
        #expect(try await host.request("GET", "/api/jobs", token: Self.admin).json.items.contains { $0["id"].string == id }, "dead jobs are listed")
        #expect(try await Self.runs(host, tag: "flaky").isEmpty)

        _ = try await host.request("PATCH", "/api/entities/Flag/\(flagID)", json: #"{"on":false}"#, token: Self.admin)
        let retried = try await host.request("POST", "/api/jobs/dead/\(id)/retry", token: Self.admin)
        #expect(retried.status == 200 && retried.json["retried"] as? Bool == true, "\(retried.body)")
        let done = try await Self.waitFor(host, id, status: "completed")
        #expect(done["attempts"].items.count == 4, "the history is kept")
        #expect(try await Self.runs(host, tag: "flaky").count == 1)
    }

    @Test("A host killed while running a job: after restart the job's lease lapses and it runs again, once", arguments: stores)
    func leaseAfterKill(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let id = try await Self.enqueue(host, #"{"name":"slowOnce","payload":{"tag":"slow"}}"#)
        _ = try await eventuallyAsync("the job to start") { try await Self.runs(host, tag: "slow").isEmpty ? nil : true }
        #expect(try await Self.job(host, id)["status"].string == "running")
        host.kill9()
        try await host.restart()
        let done = try await Self.waitFor(host, id, status: "completed")
        #expect(done["retry_count"].int == 1 && done["attempts"].items.first?["error"].string?.hasPrefix("LEASE_EXPIRED") == true,
                "\(String(describing: done))")
        let phases = try await Self.runs(host, tag: "slow").map(\.phase)
        #expect(phases.filter { $0 == "start" }.count == 2 && phases.filter { $0 == "end" }.count == 1, "\(phases)")
    }

    @Test("Idempotency keys; ctx.jobs.enqueue commits with its mutation and not without it", arguments: stores)
    func idempotencyAndTransactions(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let first = try await host.request("POST", "/api/jobs", json: #"{"name":"record","payload":{"tag":"once"},"idempotency_key":"k1"}"#, token: Self.admin)
        let second = try await host.request("POST", "/api/jobs", json: #"{"name":"record","payload":{"tag":"once"},"idempotency_key":"k1"}"#, token: Self.admin)
        #expect(first.status == 201 && second.status == 200 && second.json["duplicate"] as? Bool == true, "\(first.body) \(second.body)")
        #expect(first.json["id"].string == second.json["id"].string)
        try await Self.waitFor(host, first.json["id"].string ?? "", status: "completed")

        let a = try await host.request("POST", "/api/fn/enqueueIt", json: #"{"tag":"fn","key":"k2"}"#)
        let b = try await host.request("POST", "/api/fn/enqueueIt", json: #"{"tag":"fn","key":"k2"}"#)
        #expect(a.status == 200 && a.json.string != nil && a.json.string == b.json.string, "\(a.body) \(b.body)")
        let fnJob = try await Self.waitFor(host, a.json.string ?? "", status: "completed")
        #expect(fnJob["origin"].string == "function" && fnJob["priority"].string == "high", "\(String(describing: fnJob))")
        let failed = try await host.request("POST", "/api/fn/enqueueIt", json: #"{"tag":"ghost","key":"k3","fail":true}"#)
        #expect(failed.json.errorCode == "ROLLED_BACK", "\(failed.body)")
        let probe = try await host.request("POST", "/api/jobs", json: #"{"name":"record","payload":{"tag":"probe"},"idempotency_key":"k3"}"#, token: Self.admin)
        #expect(probe.status == 201, "the rolled-back mutation enqueued nothing: \(probe.body)")
        try await Self.waitFor(host, probe.json["id"].string ?? "", status: "completed")
        let tags = try await Self.runs(host).map(\.tag)
        #expect(tags.filter { $0 == "once" }.count == 1 && tags.filter { $0 == "fn" }.count == 1 && !tags.contains("ghost"), "\(tags)")
    }

    @Test("Without a functions plugin (no handlers), /api/jobs and /api/scheduler answer 501 CAPABILITY_UNAVAILABLE")
    func withoutFunctions() async throws {
        let plugins = try TestPaths.freshTempDir("pylon-jobs-plugins")
        defer { TestPaths.removeTempDir(plugins) }
        try FileManager.default.copyItem(atPath: TestPaths.sqlitePlugin, toPath: plugins.appendingPathComponent("libPylonStoreSQLite.so").path)
        let bare = TestStore(name: "sqlite-without-functions", pluginsDir: { plugins.path }, provision: { _, db in
            TestStoreBackend(storeConfig: [("use", .string("sqlite"))], sqliteFile: db)
        })
        let host = try await HostProcess.start(manifest: Self.manifest, store: bare)
        defer { host.stop() }
        for (method, path) in [("POST", "/api/jobs"), ("GET", "/api/jobs/stats"), ("GET", "/api/scheduler"), ("POST", "/api/scheduler/trigger/nightly")] {
            let r = try await host.request(method, path, json: method == "POST" ? #"{"name":"record"}"# : nil, token: Self.admin)
            #expect(r.status == 501 && r.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(method) \(path): \(r.status) \(r.body)")
        }
        #expect(host.log.contains("no plugin serves functions"), "the cron tasks' warning")
    }

    @Test("Higher priorities run first: with one worker held by a gate job, the waiting jobs run critical, high, normal, low", arguments: stores)
    func priorities(_ store: TestStore) async throws {
        let host = try await Self.start(store, env: ["PYLON_JOBS_WORKERS": "1"])
        defer { host.stop() }
        let flag = try await host.request("POST", "/api/entities/Flag", json: #"{"on":true}"#, token: Self.admin)
        let flagID = try #require(flag.json["id"].string, "\(flag.body)")
        let gate = try await Self.enqueue(host, #"{"name":"gate"}"#)
        _ = try await eventuallyAsync("the gate job to start") { try await Self.runs(host, tag: "gate").isEmpty ? nil : true }
        var ids: [String] = []
        for p in ["low", "normal", "high", "critical"] {
            ids.append(try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"\#(p)"},"priority":"\#(p)"}"#))
        }
        for id in ids { #expect(try await Self.job(host, id)["status"].string == "pending") }
        _ = try await host.request("PATCH", "/api/entities/Flag/\(flagID)", json: #"{"on":false}"#, token: Self.admin)
        for id in [gate] + ids { try await Self.waitFor(host, id, status: "completed") }
        // Only the queued jobs' rows: the every-minute cron task may run in between.
        let order = try await Self.runs(host).filter { $0.phase == "done" }.map(\.tag).filter { $0 != "gate" }
        #expect(order == ["critical", "high", "normal", "low"], "\(order)")
    }

    @Test("Two hosts on one Postgres database run every job exactly once, and a queue's limit holds across them")
    func twoHostsOnePostgres() async throws {
        guard Self.stores.contains(where: { $0.name == "postgres" }) else { return }
        let url = try await TestPostgres.shared().freshDatabase()
        let shared = TestStore(name: "postgres-shared", pluginsDir: { TestPaths.pluginsDir }, provision: { _, _ in
            TestStoreBackend(storeConfig: [("use", .string("postgres")), ("url", .string(url)), ("readers", .int(1))], sqliteFile: nil)
        })
        let env = ["PYLON_JOBS_WORKERS": "4", "PYLON_JOBS_QUEUES": "serial=1"]
        let a = try await Self.start(shared, env: env)
        defer { a.stop() }
        let b = try await Self.start(shared, env: env)
        defer { b.stop() }
        var ids: [String] = []
        for i in 0..<24 {
            ids.append(try await Self.enqueue(i % 2 == 0 ? a : b, #"{"name":"tracked","payload":{"tag":"t\#(i)"}}"#))
        }
        var serial: [String] = []
        for i in 0..<6 {
            serial.append(try await Self.enqueue(a, #"{"name":"tracked","payload":{"tag":"s\#(i)"},"queue":"serial"}"#))
        }
        for id in ids + serial { try await Self.waitFor(a, id, status: "completed", timeout: 120) }
        let runs = try await Self.runs(a)
        for i in 0..<24 {
            let mine = runs.filter { $0.tag == "t\(i)" }.map(\.phase)
            #expect(mine.sorted() == ["end", "start"], "job t\(i) ran once: \(mine)")
        }
        // Rows come back in id (time) order: with a limit of 1, no job of the queue started
        // before the previous one ended.
        let serialPhases = runs.filter { $0.tag.hasPrefix("s") }
        for k in stride(from: 0, to: serialPhases.count, by: 2) where k + 1 < serialPhases.count {
            #expect(serialPhases[k].phase == "start" && serialPhases[k + 1].phase == "end" && serialPhases[k].tag == serialPhases[k + 1].tag,
                    "\(serialPhases)")
        }
        #expect(serialPhases.count == 12)

        // Both hosts tick cron: a missed occurrence (the tasks' state rewound under them)
        // runs once, whichever host claims it.
        try await Self.rewindCron(a, minutes: 5, stop: false)
        _ = try await eventuallyAsync("a cron run") { try await Self.runs(a).contains { $0.phase == "cron" } ? true : nil }
        let marker = try await Self.enqueue(b, #"{"name":"record","payload":{"tag":"marker"}}"#)
        try await Self.waitFor(b, marker, status: "completed")
        let cron = try await Self.runs(a).filter { $0.phase == "cron" }.map(\.tag)
        #expect(!cron.isEmpty && Set(cron).count == cron.count, "each occurrence once across two hosts: \(cron)")
    }

    /// Stops the host and sets every cron task's tracking start back `minutes` minutes in the
    /// store, as if the host had been down since.
    static func rewindCron(_ host: HostProcess, minutes: Int, stop: Bool = true) async throws {
        // The host writes the tasks' rows as its cron ticker starts (a task has a next run
        // once its row exists): rewinding before that would change nothing.
        try await eventuallyAsync("the cron tasks' rows") {
            let tasks = try await host.request("GET", "/api/scheduler", token: admin).json.items
            return tasks.allSatisfy { $0["next_run"].string != nil } && tasks.count == 2 ? true : nil
        }
        if stop { await host.stopAndWait() }
        let back = Int64(Date().timeIntervalSince1970 * 1000) - Int64(minutes) * 60_000
        var sql = "UPDATE _pylon_cron SET since = \(back), last_fired = NULL;"
        // A minute boundary may pass while the first host runs: what it fired then (a run,
        // or a job still queued that the next host would run) is not part of the window
        // under test, so a stopped host's cron jobs and runs are cleared with the rewind.
        if stop { sql += " DELETE FROM _pylon_jobs WHERE origin LIKE 'cron:%'; DELETE FROM \"Run\" WHERE phase = 'cron';" }
        if let url = host.storeURL {
            try await TestPostgres.shared().psql(sql, url: url)
        } else {
            let r = try await TestCommand.run("/usr/bin/sqlite3", [host.dbPath, sql])
            #expect(r.status == 0, "\(r.stderr)")
        }
    }

    static func date(_ tag: String) -> Date { ISO8601DateFormatter.withFractions.date(from: tag) ?? .distantFuture }

    @Test("Cron: occurrences missed while down fire once at start-up; a restart neither repeats nor skips one", arguments: stores)
    func cronAcrossRestart(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        try await Self.rewindCron(host, minutes: 10)
        let restarted = Date()
        try await host.restart()
        // Ten minutes missed: one catch-up run, for the newest of them. (When the start-up
        // crosses a minute boundary, that newest one is the new minute's: still one run.)
        let first = try await eventuallyAsync("the catch-up run") {
            let cron = try await Self.runs(host).filter { $0.phase == "cron" }
            return cron.isEmpty ? nil : cron
        }
        #expect(first.filter { Self.date($0.tag) < restarted }.count <= 1, "\(first)")
        #expect(first.allSatisfy { Self.date($0.tag) > restarted.addingTimeInterval(-61) }, "only the newest missed occurrence: \(first)")
        let tasks = try await host.request("GET", "/api/scheduler", token: Self.admin).json.items
        let every = tasks.first { $0["name"].string == "everyMinute" }
        #expect(every?["last_run"].string != nil && every?["next_run"].string != nil, "\(tasks)")
        try await host.restart()
        try await host.restart()
        // Each occurrence at most once, whatever minutes passed meanwhile; none before the
        // first restart but the caught-up one.
        let marker = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"marker"}}"#)
        try await Self.waitFor(host, marker, status: "completed")
        let all = try await Self.runs(host).filter { $0.phase == "cron" }.map(\.tag)
        #expect(Set(all).count == all.count, "no occurrence ran twice: \(all)")
        #expect(all.filter { Self.date($0) < restarted }.count <= 1 && all.allSatisfy { Self.date($0) > restarted.addingTimeInterval(-61) }, "\(all)")
    }

    @Test("Cron with catch-up off: missed occurrences are skipped", arguments: stores.prefix(1))
    func cronWithoutCatchUp(_ store: TestStore) async throws {
        let host = try await Self.start(store, env: ["PYLON_CRON_CATCH_UP": "0"])
        defer { host.stop() }
        try await Self.rewindCron(host, minutes: 10)
        let restarted = Date()
        try await host.restart()
        // The cron ticker starts with the host; a marker job gives it time to act first.
        try await Task.sleep(for: .seconds(2))
        let marker = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"marker"}}"#)
        try await Self.waitFor(host, marker, status: "completed")
        let cron = try await Self.runs(host).filter { $0.phase == "cron" }
        #expect(cron.allSatisfy { Self.date($0.tag) >= restarted }, "only occurrences after the restart fire: \(cron)")
    }
}

extension ISO8601DateFormatter {
    static var withFractions: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }
}
