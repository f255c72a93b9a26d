import Foundation
import Testing

/// What `PYLON_JOBS_RETENTION_HOURS` deletes (outside probe jobsfiles, F8): completed and
/// cancelled jobs once they ended that long ago, their idempotency keys with them; never a
/// dead job, which stays listed, and holding its key, until an admin retries it. The rows'
/// ages are moved back through the store and the host restarted, as a host trims at
/// start-up (then every minute): no waiting for a week, or a minute.
extension JobsTests {
    @Test("Past the retention, completed and cancelled jobs are trimmed (a key dedupes while its job is kept, so the completed job's key enqueues anew), dead jobs are kept, listed and still dedupe their key, and can be retried", arguments: stores)
    func retentionKeepsDeadJobs(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let flag = try await host.request("POST", "/api/entities/Flag", json: #"{"on":true}"#, token: Self.admin)
        let flagID = try #require(flag.json["id"].string, "\(flag.body)")
        let dead = try await Self.enqueue(host, #"{"name":"flaky","payload":{"tag":"late"},"max_retries":0,"idempotency_key":"k-dead"}"#)
        let done = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"done"},"idempotency_key":"k-done"}"#)
        let cancelled = try await Self.enqueue(host, #"{"name":"record","payload":{"tag":"never"},"delay_secs":3600,"idempotency_key":"k-cancelled"}"#)
        #expect(try await host.request("POST", "/api/jobs/\(cancelled)/cancel", token: Self.admin).status == 200)
        try await Self.waitFor(host, dead, status: "dead")
        try await Self.waitFor(host, done, status: "completed")

        // Eight days ago, past the default 168 h; the restarted host trims at once.
        let ids = [dead, done, cancelled].map { "'\($0)'" }.joined(separator: ", ")
        _ = try await host.sql("UPDATE _pylon_jobs SET completed_at = completed_at - \(8 * 24 * 3_600_000) WHERE id IN (\(ids))")
        try await host.restart()
        for id in [done, cancelled] {
            try await eventuallyAsync("job \(id) to be trimmed", timeout: 60) {
                try await host.request("GET", "/api/jobs/\(id)", token: Self.admin).status == 404 ? true : nil
            }
        }

        // The dead letter is kept, listed, and its key still answers with it.
        #expect(try await Self.job(host, dead)["status"].string == "dead")
        let letters = try await host.request("GET", "/api/jobs/dead", token: Self.admin).json.items
        #expect(letters.contains { $0["id"].string == dead }, "\(letters)")
        let again = try await host.request("POST", "/api/jobs", json: #"{"name":"flaky","payload":{"tag":"late"},"idempotency_key":"k-dead"}"#, token: Self.admin)
        #expect(again.status == 200 && again.json["duplicate"] as? Bool == true && again.json["id"].string == dead, "\(again.body)")

        // A key dedupes for as long as its job is kept: the trimmed job's key is free again.
        let fresh = try await host.request("POST", "/api/jobs", json: #"{"name":"record","payload":{"tag":"done"},"idempotency_key":"k-done"}"#, token: Self.admin)
        #expect(fresh.status == 201 && fresh.json["id"].string != done, "\(fresh.body)")

        // The admin retries the old dead letter, and it runs.
        _ = try await host.request("PATCH", "/api/entities/Flag/\(flagID)", json: #"{"on":false}"#, token: Self.admin)
        #expect(try await host.request("POST", "/api/jobs/dead/\(dead)/retry", token: Self.admin).status == 200)
        try await Self.waitFor(host, dead, status: "completed")
        #expect(try await Self.runs(host, tag: "late").count == 1)
    }
}
