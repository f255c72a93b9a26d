import Foundation
import Testing

/// What `PYLON_WORKFLOWS_RETENTION_HOURS` deletes: finished instances (completed, failed,
/// cancelled) once they ended that long ago; never one still sleeping or waiting, however
/// old. The rows' ages are moved back through the store and the host restarted, as a host
/// trims at start-up (then every minute): no waiting for a week.
extension WorkflowTests {
    @Test("Past the retention, completed, failed and cancelled instances are deleted; a recent finished one, and sleeping and waiting ones however old, are kept", arguments: stores)
    func retention(_ store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let completed = try await Self.begin(host, "flakyFlow", #"{"tag":"keep-ok","failures":0}"#)
        let failed = try await Self.begin(host, "flakyFlow", #"{"tag":"keep-fail","failures":99}"#)
        let cancelled = try await Self.begin(host, "napper")
        let recent = try await Self.begin(host, "flakyFlow", #"{"tag":"keep-new","failures":0}"#)
        let sleeping = try await Self.begin(host, "napper")
        let waiting = try await Self.begin(host, "twoEvents")
        try await Self.waitFor(host, cancelled, "Sleeping")
        #expect(try await host.request("POST", "/api/workflows/\(cancelled)/cancel", token: Self.admin).status == 200)
        try await Self.waitFor(host, completed, "Completed")
        try await Self.waitFor(host, failed, "Failed")
        try await Self.waitFor(host, recent, "Completed")
        try await Self.waitFor(host, sleeping, "Sleeping")
        try await Self.waitFor(host, waiting, "WaitingForEvent")

        // Eight days ago, past the default 168 h. The waiting instance is given an end time
        // too (it has none): only its status keeps it.
        let week = 8 * 24 * 3_600_000
        let old = [completed, failed, cancelled, sleeping, waiting].map { "'\($0)'" }.joined(separator: ", ")
        _ = try await host.sql("UPDATE _pylon_workflows SET created_at = created_at - \(week), updated_at = updated_at - \(week), completed_at = completed_at - \(week) WHERE id IN (\(old))")
        _ = try await host.sql("UPDATE _pylon_workflows SET completed_at = created_at WHERE id = '\(waiting)'")
        try await host.restart()
        for id in [completed, failed, cancelled] {
            try await eventuallyAsync("workflow \(id) to be trimmed", timeout: 60) {
                try await host.request("GET", "/api/workflows/\(id)", token: Self.admin).status == 404 ? true : nil
            }
        }
        // One statement deleted them: what it kept is kept.
        #expect(try await Self.instance(host, recent)["status"].string == "Completed")
        #expect(try await Self.instance(host, sleeping)["status"].string == "Sleeping")
        #expect(try await Self.instance(host, waiting)["status"].string == "WaitingForEvent")
        let listed = try await host.request("GET", "/api/workflows?limit=200", token: Self.admin).json.items.compactMap { $0["id"].string }
        #expect(Set(listed) == [recent, sleeping, waiting], "\(listed)")
        // The waiting one still goes on.
        let sent = try await host.request("POST", "/api/workflows/\(waiting)/event", json: #"{"event":"first","data":1}"#, token: Self.admin)
        #expect(sent.status == 200 && sent.json["delivered"].bool == true, "\(sent.body)")
    }
}
