import Foundation
import Testing

/// What a claim reads besides the due jobs. Each queue's count of running jobs
/// (`_pylon_job_queues`), read instead of the running jobs themselves: it must match the
/// jobs through every way a job stops running, and a count that is wrong (or an older
/// table's indexes) is put right when a host starts. And where each priority's read
/// starts (the floors, a hint): a job due before it is still found.
extension JobsTests {
    /// The counts' sum and the running jobs, e.g. "1 1".
    static func counts(_ host: HostProcess) async throws -> String {
        try await host.sql("SELECT (SELECT COALESCE(SUM(running), 0) FROM _pylon_job_queues) || ' ' || (SELECT COUNT(*) FROM _pylon_jobs WHERE status = 'running')")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func indexExists(_ host: HostProcess, _ name: String) async throws -> Bool {
        let q = host.storeURL != nil ? "SELECT COUNT(*) FROM pg_indexes WHERE indexname = '\(name)'"
            : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = '\(name)'"
        return try await host.sql(q).trimmingCharacters(in: .whitespacesAndNewlines) != "0"
    }

    @Test("Running counts match the jobs through completions in batches, failures, a cancelled running job and a lapsed lease; a wrong count and older indexes are put right at start-up",
          arguments: stores)
    func runningCounts(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        // Completions (many at once, so they are written in batches) in two queues, and a
        // failure that goes to the dead letter.
        let flag = try await host.request("POST", "/api/entities/Flag", json: #"{"on":true}"#, token: Self.admin)
        #expect(flag.status == 201, "\(flag.body)")
        let dead = try await Self.enqueue(host, #"{"name":"flaky","payload":{"tag":"f"},"max_retries":0}"#)
        var ids: [String] = []
        for i in 0..<40 {
            ids.append(try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"c\#(i)"},"queue":"\#(i % 2 == 0 ? "default" : "second")"}"#))
        }
        for id in ids { try await Self.waitFor(host, id, status: "completed") }
        try await Self.waitFor(host, dead, status: "dead")
        #expect(try await Self.counts(host) == "0 0")

        // A running job counts until it is cancelled.
        let slow = try await Self.enqueue(host, #"{"name":"slowOnce","payload":{"tag":"cancelled"}}"#)
        _ = try await eventuallyAsync("the job to start") { try await Self.runs(host, tag: "cancelled").isEmpty ? nil : true }
        #expect(try await Self.counts(host) == "1 1")
        #expect(try await host.request("POST", "/api/jobs/\(slow)/cancel", token: Self.admin).status == 200)
        #expect(try await Self.counts(host) == "0 0")

        // A host killed mid-job leaves the job counted; with the count made wrong (far past
        // the queue's limit, which would keep the queue from ever running a job) and an
        // index of an older host added while it is down, a restart recounts, drops the
        // index, and the job's lapsed lease lets it run again.
        let lapsing = try await Self.enqueue(host, #"{"name":"slowOnce","payload":{"tag":"lapsing"}}"#)
        _ = try await eventuallyAsync("the job to start") { try await Self.runs(host, tag: "lapsing").isEmpty ? nil : true }
        host.kill9()
        try await host.sql("UPDATE _pylon_job_queues SET running = 1000")
        try await host.sql("CREATE INDEX _pylon_jobs_queue ON _pylon_jobs (queue, status)")
        try await host.restart()
        let done = try await Self.waitFor(host, lapsing, status: "completed")
        #expect(done["attempts"].items.first?["error"].string?.hasPrefix("LEASE_EXPIRED") == true, "\(String(describing: done))")
        #expect(try await Self.counts(host) == "0 0")
        #expect(try await !Self.indexExists(host, "_pylon_jobs_queue"), "an older host's index is dropped")
        #expect(try await Self.indexExists(host, "_pylon_jobs_due"))
        #expect(try await Self.runs(host, tag: "lapsing").filter { $0.phase == "end" }.count == 1)
    }

    @Test("A job due before where the claims read from (written straight into the table, due long ago) still runs", arguments: stores)
    func jobBelowTheFloors(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        // Claims of every priority move each priority's floor to their time.
        var ids: [String] = []
        for (i, priority) in ["low", "normal", "high", "critical"].enumerated() {
            ids.append(try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"p\#(i)"},"priority":"\#(priority)"}"#))
        }
        for id in ids { try await Self.waitFor(host, id, status: "completed") }
        for priority in 0..<4 {
            try await host.sql("""
                INSERT INTO _pylon_jobs (id, name, payload, priority, queue, status, max_retries, retry_count, run_at, lease_until, claim, \
                idempotency_key, error, attempts, origin, created_at, started_at, completed_at, delay_ms) VALUES ('job_old\(priority)', 'record', \
                '{"tag":"old\(priority)"}', \(priority), 'default', 'pending', 0, 0, 1, NULL, 0, NULL, NULL, '[]', 'test', 1, NULL, NULL, 0)
                """)
        }
        for priority in 0..<4 { try await Self.waitFor(host, "job_old\(priority)", status: "completed") }
        #expect(try await Self.runs(host).filter { $0.tag.hasPrefix("old") }.count == 4)
    }

    @Test("A full queue holds back only its own jobs: others behind it in the same priority and below run, and its own run one at a time once it frees",
          arguments: stores)
    func fullQueuePassedOver(_ store: TestStore) async throws {
        let host = try await Self.start(store, env: ["PYLON_JOBS_WORKERS": "3", "PYLON_JOBS_QUEUES": "slow=1"])
        defer { host.stop() }
        let flag = try await host.request("POST", "/api/entities/Flag", json: #"{"on":true}"#, token: Self.admin)
        let flagID = try #require(flag.json["id"].string, "\(flag.body)")
        let gate = try await Self.enqueue(host, #"{"name":"gate","priority":"critical","queue":"slow"}"#)
        _ = try await eventuallyAsync("the gate job to start") { try await Self.runs(host, tag: "gate").isEmpty ? nil : true }
        // In the index's order: the slow queue's jobs first, then the others' of the same
        // priority, then lower ones. Each read of critical jobs meets the full queue first.
        var slow: [String] = []
        for i in 0..<4 {
            slow.append(try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"slow\#(i)"},"priority":"critical","queue":"slow"}"#))
        }
        var others: [String] = []
        for (i, priority) in ["critical", "critical", "critical", "low", "low"].enumerated() {
            others.append(try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"other\#(i)"},"priority":"\#(priority)"}"#))
        }
        for id in others { try await Self.waitFor(host, id, status: "completed") }
        for id in slow { #expect(try await Self.job(host, id)["status"].string == "pending", "the slow queue is full: \(id) waits") }
        #expect(try await Self.counts(host) == "1 1")
        _ = try await host.request("PATCH", "/api/entities/Flag/\(flagID)", json: #"{"on":false}"#, token: Self.admin)
        for id in [gate] + slow { try await Self.waitFor(host, id, status: "completed") }
        // One at a time, oldest first: each started after the one before it completed.
        var jobs: [Any?] = []
        for id in slow { jobs.append(try await Self.job(host, id)) }
        for (a, b) in zip(jobs, jobs.dropFirst()) {
            let ended = try #require(ISO8601DateFormatter.withFractions.date(from: a["completed_at"].string ?? ""), "\(String(describing: a))")
            let started = try #require(ISO8601DateFormatter.withFractions.date(from: b["started_at"].string ?? ""), "\(String(describing: b))")
            #expect(ended <= started, "\(String(describing: a)) then \(String(describing: b))")
        }
        #expect(try await Self.counts(host) == "0 0")
    }
}
