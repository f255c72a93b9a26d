import Foundation
import Testing

/// Push op ids and `_pending_` ids belong to the caller who pushed them (issue 16 item 2):
/// the same `op_id` from two users is two writes, nobody learns another user's row ids
/// through `id_map`, and a pending id resolves only for the user who created it. The host
/// is not in dev mode, with an owner-only rule on `Note`.
@Suite("Push: op ids and pending ids are per caller (black-box, real pylon-host, every store)")
struct PushScopeTests {
    static let manifest = """
    {"manifest_version": 1, "name": "push-scope", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "own-notes", "entity": "Note",
        "allowRead": "auth.userId == data.ownerId", "allowInsert": "auth.userId == data.ownerId",
        "allowUpdate": "auth.userId == data.ownerId", "allowDelete": "auth.userId == data.ownerId"}]}
    """

    static let admin = HostProcess.adminToken

    static func push(_ host: HostProcess, _ token: String, _ changes: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/sync/push", json: #"{"client_id":"c","changes":[\#(changes)]}"#, token: token)
    }

    static func insert(_ owner: String, _ title: String, op: String) -> String {
        #"{"entity":"Note","row_id":"_pending_a2","kind":"insert","data":{"ownerId":"\#(owner)","title":"\#(title)"},"op_id":"\#(op)"}"#
    }

    static func update(_ title: String, op: String) -> String {
        #"{"entity":"Note","row_id":"_pending_a2","kind":"update","data":{"title":"\#(title)"},"op_id":"\#(op)"}"#
    }

    /// The titles of the notes `token` can list.
    static func titles(_ host: HostProcess, _ token: String) async throws -> [String] {
        try await host.request("GET", "/api/entities/Note", token: token).json["data"].items.compactMap { $0["title"].string }.sorted()
    }

    @Test("Colliding op ids from two users are two writes; id_map and _pending_ ids never cross users", arguments: TestStore.all)
    func collidingOpIDs(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")
        let carol = try await host.mintSession("carol")

        let b1 = try await Self.push(host, bob, Self.insert("bob", "bob's", op: "op-A2"))
        #expect(b1.status == 200 && b1.json["applied"].int == 1, "\(b1.body)")
        let bobID = try #require(b1.json["id_map"]["_pending_a2"].string, "\(b1.body)")

        // Alice's own change with bob's op id and pending id: applied, with her own row.
        let a1 = try await Self.push(host, alice, Self.insert("alice", "alice's", op: "op-A2"))
        #expect(a1.status == 200, "\(a1.body)")
        #expect(a1.json["applied"].int == 1 && a1.json["deduped"].int == 0, "alice's write must be stored, not deduped against bob's op: \(a1.body)")
        let aliceID = try #require(a1.json["id_map"]["_pending_a2"].string, "\(a1.body)")
        #expect(aliceID != bobID, "\(a1.body)")
        #expect(!a1.body.contains(bobID), "bob's row id must not reach alice: \(a1.body)")
        #expect(try await Self.titles(host, alice) == ["alice's"])
        #expect(try await Self.titles(host, bob) == ["bob's"])

        // Each one's retry dedupes against their own op, and maps to their own row.
        let a2 = try await Self.push(host, alice, Self.insert("alice", "alice's", op: "op-A2"))
        #expect(a2.json["applied"].int == 0 && a2.json["deduped"].int == 1, "\(a2.body)")
        #expect(a2.json["id_map"]["_pending_a2"].string == aliceID, "\(a2.body)")
        let b2 = try await Self.push(host, bob, Self.insert("bob", "bob's", op: "op-A2"))
        #expect(b2.json["deduped"].int == 1 && b2.json["id_map"]["_pending_a2"].string == bobID, "\(b2.body)")

        // A later push naming the pending id reaches the caller's own row only.
        let a3 = try await Self.push(host, alice, Self.update("alice edited", op: "op-A3"))
        #expect(a3.json["applied"].int == 1, "\(a3.body)")
        let b3 = try await Self.push(host, bob, Self.update("bob edited", op: "op-A3"))
        #expect(b3.json["applied"].int == 1, "the same op id again, from bob: his own write: \(b3.body)")
        #expect(try await Self.titles(host, alice) == ["alice edited"])
        #expect(try await Self.titles(host, bob) == ["bob edited"])

        // Carol never created _pending_a2: it resolves to nobody's row, and her op ids are hers.
        let c1 = try await Self.push(host, carol, Self.update("carol was here", op: "op-C1"))
        #expect(c1.json["applied"].int == 0 && c1.json["errors"].items.count == 1, "\(c1.body)")
        #expect(!c1.body.contains(aliceID) && !c1.body.contains(bobID), "\(c1.body)")
        let c2 = try await Self.push(host, carol, Self.insert("carol", "carol's", op: "op-A2"))
        #expect(c2.json["applied"].int == 1 && c2.json["deduped"].int == 0, "\(c2.body)")
        let carolID = try #require(c2.json["id_map"]["_pending_a2"].string, "\(c2.body)")
        #expect(![aliceID, bobID].contains(carolID), "\(c2.body)")
        #expect(try await Self.titles(host, alice) == ["alice edited"])
        #expect(try await Self.titles(host, bob) == ["bob edited"])

        // The admin token is a scope of its own.
        let adminPush = try await Self.push(host, Self.admin, Self.insert("dave", "admin's", op: "op-A2"))
        #expect(adminPush.json["applied"].int == 1 && adminPush.json["deduped"].int == 0, "\(adminPush.body)")
        #expect(try await host.request("GET", "/api/entities/Note", token: Self.admin).json["count"].int == 4)
    }

    /// A database made before op ids were scoped: `_pylon_push_ops` keyed by `op_id` alone.
    /// Its record is from now, inside the retention window (`PushRetentionTests` covers
    /// records past it).
    static func oldShape(intType: String) -> String {
        """
        CREATE TABLE _pylon_push_ops (op_id TEXT PRIMARY KEY NOT NULL, client_id TEXT, row_id TEXT, pending_id TEXT, created_at \(intType) NOT NULL);
        CREATE INDEX _pylon_push_ops_pending ON _pylon_push_ops (pending_id);
        INSERT INTO _pylon_push_ops VALUES ('op-old', 'c', 'row-old', '_pending_old', \(Int(Date().timeIntervalSince1970)));
        """
    }

    /// Runs `sql` with the sqlite3 tool on `file`; returns stdout.
    static func sqlite(_ file: String, _ sql: String) async throws -> String {
        let r = try await TestCommand.run("/usr/bin/sqlite3", [file, sql])
        guard r.status == 0 else { throw TestSetupError(description: "sqlite3 \(sql): \(r.stderr)") }
        return r.stdout
    }

    @Test("Hostile: a push of more than 1,000 changes is 413 PUSH_TOO_LARGE, and a client_id, op_id or row_id over 256 bytes is 400 INVALID_DATA, before anything is written; at the limits a push applies", arguments: [TestStore.sqlite])
    func pushSizeLimits(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { host.stop() }
        let bob = try await host.mintSession("bob")
        // A delete of a missing row is a no-op that would still record its op: the cheapest
        // change to amplify (each recorded op stored the client id again).
        func deletes(_ n: Int, op: String = "d") -> String {
            (0..<n).map { #"{"entity":"Note","row_id":"nope\#($0)","kind":"delete","op_id":"\#(op)\#($0)"}"# }.joined(separator: ",")
        }
        let long = String(repeating: "x", count: 257)
        let tooMany = try await Self.push(host, bob, deletes(1001))
        #expect(tooMany.status == 413 && tooMany.json.errorCode == "PUSH_TOO_LARGE", "\(tooMany.body)")
        let longClient = try await host.request("POST", "/api/sync/push", json: #"{"client_id":"\#(long)","changes":[\#(deletes(1))]}"#, token: bob)
        #expect(longClient.status == 400 && longClient.json.errorCode == "INVALID_DATA", "\(longClient.body)")
        let longOp = try await Self.push(host, bob, deletes(1, op: long))
        #expect(longOp.status == 400 && longOp.json.errorCode == "INVALID_DATA", "\(longOp.body)")
        let longRow = try await Self.push(host, bob, #"{"entity":"Note","row_id":"\#(long)","kind":"delete","op_id":"r"}"#)
        #expect(longRow.status == 400 && longRow.json.errorCode == "INVALID_DATA", "\(longRow.body)")
        // Nothing of the refused pushes was recorded: their op ids apply now.
        let atLimit = try await host.request("POST", "/api/sync/push", json: #"{"client_id":"\#(long.dropLast())","changes":[\#(deletes(1000))]}"#, token: bob)
        #expect(atLimit.status == 200 && atLimit.json["applied"].int == 1000 && atLimit.json["deduped"].int == 0, "\(atLimit.body.prefix(300))")
        let opAtLimit = try await Self.push(host, bob, Self.insert("bob", "t", op: String(long.dropLast())))
        #expect(opAtLimit.status == 200 && opAtLimit.json["applied"].int == 1, "\(opAtLimit.body)")
    }

    @Test("An unscoped _pylon_push_ops upgrades in place: old records kept in the legacy scope, which no caller matches", arguments: ["sqlite", "d1", "postgres"])
    func upgradeUnscopedTable(storeName: String) async throws {
        let dir = try TestPaths.freshTempDir("pylon-push-upgrade")
        defer { TestPaths.removeTempDir(dir) }
        let select = "SELECT scope || '|' || op_id || '|' || row_id || '|' || pending_id FROM _pylon_push_ops ORDER BY scope, op_id"
        let query: @Sendable (String) async throws -> String
        let store: TestStore
        var dbPath: String?
        switch storeName {
        case "postgres":
            let pg = try await TestPostgres.shared()
            let url = try await pg.freshDatabase()
            _ = try await pg.psql(Self.oldShape(intType: "BIGINT"), url: url)
            store = TestStore(name: "postgres", pluginsDir: { TestPaths.pluginsDir }, provision: { _, _ in
                TestStoreBackend(storeConfig: [("use", .string("postgres")), ("url", .string(url)), ("readers", .int(1))], sqliteFile: nil)
            })
            query = { sql in try await pg.psql(sql, url: url) }
        case "d1":
            // The fixture server's SQLite file, made before it starts (D1FixtureServer's name).
            let file = LockedPath()
            store = TestStore(name: "d1", pluginsDir: { TestPaths.pluginsDir }, provision: { hostDir, _ in
                let path = hostDir.appendingPathComponent("d1.sqlite").path
                _ = try await Self.sqlite(path, Self.oldShape(intType: "INTEGER"))
                file.set(path)
                return try await D1FixtureServer.start(in: hostDir).backend
            })
            query = { sql in try await Self.sqlite(file.get(), sql) }
        default:
            let file = dir.appendingPathComponent("old.db").path
            _ = try await Self.sqlite(file, Self.oldShape(intType: "INTEGER"))
            store = .sqlite
            dbPath = file
            query = { sql in try await Self.sqlite(file, sql) }
        }
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, dbPath: dbPath, store: store)
        defer { host.stop() }
        #expect(try await query(select).trimmingCharacters(in: .whitespacesAndNewlines) == "legacy|op-old|row-old|_pending_old", "\(host.log)")

        // Nobody dedupes against the old record or resolves its pending id.
        let alice = try await host.mintSession("alice")
        let r = try await Self.push(host, alice, #"{"entity":"Note","row_id":"_pending_old","kind":"insert","data":{"ownerId":"alice","title":"new"},"op_id":"op-old"}"#)
        #expect(r.json["applied"].int == 1 && r.json["deduped"].int == 0, "\(r.body)")
        let aliceID = try #require(r.json["id_map"]["_pending_old"].string, "\(r.body)")
        #expect(aliceID != "row-old")

        // Upgraded once: a restart keeps both records and alice's dedupe.
        try await host.restart()
        let rows = try await query(select).split(separator: "\n").map(String.init)
        #expect(rows == ["legacy|op-old|row-old|_pending_old", "user:alice|op-old|\(aliceID)|_pending_old"], "\(rows)")
        let again = try await Self.push(host, alice, #"{"entity":"Note","row_id":"_pending_old","kind":"insert","data":{"ownerId":"alice","title":"new"},"op_id":"op-old"}"#)
        #expect(again.json["deduped"].int == 1 && again.json["id_map"]["_pending_old"].string == aliceID, "\(again.body)")
    }
}

/// A path set once from a store's `provision` and read by the test afterwards.
final class LockedPath: @unchecked Sendable {
    private let lock = NSLock()
    private var path = ""
    func set(_ p: String) { lock.withLock { path = p } }
    func get() -> String { lock.withLock { path } }
}
