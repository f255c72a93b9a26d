import Foundation
import Testing

/// Push records (`_pylon_push_ops`) have a retention window (`PYLON_PUSH_OPS_RETENTION_HOURS`):
/// the host's minute sweep (also run at start) deletes the older ones in small batches, so
/// the table no longer grows with every op ever pushed, while a resend inside the window is
/// still applied once. Time is moved by the setting and by dating records back with SQL,
/// never by waiting.
@Suite("Push records: retention window, swept in batches (black-box, real pylon-host, every store)")
struct PushRetentionTests {
    static let manifest = """
    {"manifest_version": 1, "name": "push-retention", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "policies": []}
    """

    static let admin = HostProcess.adminToken

    /// Inserts named `op`, each with its own pending id.
    static func inserts(_ ops: [String]) -> String {
        ops.map { #"{"entity":"Note","row_id":"_pending_\#($0)","kind":"insert","data":{"title":"\#($0)"},"op_id":"\#($0)"}"# }
            .joined(separator: ",")
    }

    static func push(_ host: HostProcess, _ ops: [String]) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/sync/push", json: #"{"client_id":"c","changes":[\#(inserts(ops))]}"#, token: admin)
    }

    /// How many records there are of ops whose id starts with `prefix`.
    static func records(_ host: HostProcess, _ prefix: String) async throws -> Int {
        Int(try await host.sql("SELECT COUNT(*) FROM _pylon_push_ops WHERE op_id LIKE '\(prefix)%'")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @Test("Records past the window are deleted by the sweep (more than one batch of them); recent ones still dedupe a resend", arguments: TestStore.all)
    func sweepsPastTheWindow(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_PUSH_OPS_RETENTION_HOURS": "1"], store: store)
        defer { host.stop() }
        // 1,300 old ops (the sweep deletes 500 per transaction, so it takes three): 10 pushed,
        // the rest recorded as a push would (pushing them all takes minutes on D1), and 2 recent.
        let pushed = try await Self.push(host, (0..<10).map { "old-\($0)" })
        #expect(pushed.status == 200 && pushed.json["applied"].int == 10, "\(pushed.body.prefix(300))")
        try await host.sql("""
            WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM n WHERE i < 1299) \
            INSERT INTO _pylon_push_ops (scope, op_id, client_id, row_id, pending_id, created_at) \
            SELECT 'admin', 'old-' || i, 'c', 'row-' || i, '_pending_old-' || i, \(Int(Date().timeIntervalSince1970)) FROM n
            """)
        let recent = try await Self.push(host, ["recent-1", "recent-2"])
        #expect(recent.json["applied"].int == 2, "\(recent.body)")
        let recentID = try #require(recent.json["id_map"]["_pending_recent-1"].string, "\(recent.body)")
        // The old ones were pushed two hours ago, past the one-hour window; the recent ones a
        // few minutes ago, inside it.
        try await host.sql("UPDATE _pylon_push_ops SET created_at = created_at - 7200 WHERE op_id LIKE 'old-%'")
        try await host.sql("UPDATE _pylon_push_ops SET created_at = created_at - 600 WHERE op_id LIKE 'recent-%'")
        #expect(try await Self.records(host, "old-") == 1300)

        // The sweep runs at start (beside serving) and every minute: a restart runs it now.
        try await host.restart()
        try await RelayBacklogTests.waitUntil("the start-up sweep") { host.log.contains("push records: deleted") }
        #expect(try await Self.records(host, "old-") == 0, "\(host.log.suffix(2000))")
        #expect(try await Self.records(host, "recent-") == 2)
        #expect(host.log.contains("push records: deleted 1300"), "\(host.log.suffix(2000))")

        // Inside the window a resend is applied once, and maps to the row it made.
        let resent = try await Self.push(host, ["recent-1"])
        #expect(resent.json["applied"].int == 0 && resent.json["deduped"].int == 1, "\(resent.body)")
        #expect(resent.json["id_map"]["_pending_recent-1"].string == recentID, "\(resent.body)")
        // Past it, the documented trade-off: the op is applied again, as a new row.
        let late = try await Self.push(host, ["old-7"])
        #expect(late.json["applied"].int == 1 && late.json["deduped"].int == 0, "\(late.body)")
        let notes = try await host.sql(#"SELECT COUNT(*) FROM "Note""#).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(notes == "\(10 + 2 + 1)")
    }

    @Test("The sweep finds its rows through an index on created_at (SQLite's plan names it; both stores have it)", arguments: [TestStore.sqlite, TestStore.postgres])
    func sweepUsesAnIndex(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let indexes = host.storeURL != nil
            ? try await host.sql("SELECT indexdef FROM pg_indexes WHERE tablename = '_pylon_push_ops'")
            : try await host.sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = '_pylon_push_ops'")
        #expect(indexes.contains("_pylon_push_ops_created") && indexes.contains("created_at"), "\(indexes)")
        if host.storeURL == nil {
            let plan = try await host.sql("EXPLAIN QUERY PLAN SELECT scope, op_id FROM _pylon_push_ops WHERE created_at < 5 LIMIT 500")
            #expect(plan.contains("_pylon_push_ops_created"), "the sweep must not scan the table: \(plan)")
        }
    }

    @Test("PYLON_PUSH_OPS_RETENTION_HOURS=0 keeps every record, however old", arguments: [TestStore.sqlite])
    func settingEdges(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_PUSH_OPS_RETENTION_HOURS": "0"], store: store)
        defer { host.stop() }
        let r = try await Self.push(host, ["ancient-1"])
        #expect(r.json["applied"].int == 1, "\(r.body)")
        try await host.sql("UPDATE _pylon_push_ops SET created_at = 1")
        try await host.restart()
        #expect(host.log.contains("push records: kept for good"), "\(host.log.suffix(2000))")
        #expect(try await Self.records(host, "ancient-") == 1)
        let again = try await Self.push(host, ["ancient-1"])
        #expect(again.json["deduped"].int == 1, "\(again.body)")
    }
}
