import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The Postgres store against a real PostgreSQL 15 started by the tests
/// (`scripts/pg-server.sh`): the drop-in of the plugin file, type round-trips, several
/// hosts sharing one database (change log, fan-out, seq order), and a database crash
/// under load. The data-plane suite itself also runs on Postgres (`TestStore`).
@Suite("Postgres store (black-box, real PostgreSQL and pylon-host)")
struct PostgresTests {
    static let admin = HostProcess.adminToken

    static func manifest(url: String, extraEntities: String = "") -> String {
        """
        {"manifest_version": 1, "name": "pg-test", "version": "1",
         "entities": [
           {"name": "User", "fields": [{"name": "email", "type": "string", "unique": true}]},
           {"name": "Item", "fields": [
              {"name": "title", "type": "string"},
              {"name": "n", "type": "int", "optional": true},
              {"name": "host", "type": "string", "optional": true}]},
           {"name": "Kinds", "fields": [
              {"name": "s", "type": "string", "optional": true},
              {"name": "i", "type": "int", "optional": true},
              {"name": "f", "type": "float", "optional": true},
              {"name": "b", "type": "bool", "optional": true},
              {"name": "d", "type": "datetime", "optional": true},
              {"name": "r", "type": "richtext", "optional": true},
              {"name": "u", "type": "id(User)", "optional": true}]}\(extraEntities)
         ],
         "routes": [], "queries": [], "actions": [], "policies": [],
         "plugins": {"store": {"use": "postgres", "url": "\(url)"}}}
        """
    }

    @Test("Drop-in: a SQLite-only plugins folder gets libPylonStorePostgres.so copied in; the manifest switches to Postgres; nothing is rebuilt")
    func dropIn() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        let dir = try TestPaths.freshTempDir("pylon-dropin")
        defer { TestPaths.removeTempDir(dir) }
        let plugins = dir.appendingPathComponent("plugins").path
        let fm = FileManager.default
        try fm.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        try fm.copyItem(atPath: TestPaths.sqlitePlugin, toPath: plugins + "/libPylonStoreSQLite.so")
        let manifestPath = dir.appendingPathComponent("pylon.manifest.json").path
        let sqliteManifest = Self.manifest(url: url).replacingOccurrences(of: #""use": "postgres", "url": "\#(url)""#, with: #""use": "sqlite""#)
        try Data(sqliteManifest.utf8).write(to: URL(fileURLWithPath: manifestPath))
        let host = ServedHost(directory: dir, pluginsDir: plugins, manifestPath: manifestPath,
                              dbPath: dir.appendingPathComponent("app.db").path, logPerLaunch: true)
        try await host.launch()
        let onSQLite = try await host.request("POST", "/api/entities/Item", body: #"{"title": "on sqlite"}"#)
        #expect(onSQLite.status == 201, "\(onSQLite.text)")
        await host.stop()

        // The manifest asks for Postgres while the folder has no such plugin: a clear refusal.
        try Data(Self.manifest(url: url).utf8).write(to: URL(fileURLWithPath: manifestPath))
        let refused = try await host.launchExpectingExit()
        #expect(refused.exited, "the host served without a Postgres plugin")
        #expect(refused.log.contains("postgres"), "\(refused.log)")

        // Drop the file in and restart: the same host binary now serves from Postgres.
        try fm.copyItem(atPath: TestPaths.pluginsDir + "/libPylonStorePostgres.so", toPath: plugins + "/libPylonStorePostgres.so")
        try await host.launch()
        #expect(host.log.contains("pylon.store.postgres"), "\(host.log)")
        let created = try await host.request("POST", "/api/entities/Item", body: #"{"title": "on postgres", "n": 7}"#)
        #expect(created.status == 201, "\(created.text)")
        let list = try await host.request("GET", "/api/entities/Item")
        #expect(list.text.contains("on postgres") && !list.text.contains("on sqlite"), "\(list.text)")
        let rows = try await pg.psql("SELECT title, n FROM \"Item\"", url: url)
        #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "on postgres|7", "\(rows)")
        await host.stop()
    }

    @Test("Every manifest field type round-trips through Postgres: CRUD, query, pull")
    func typeRoundTrips() async throws {
        let pg = try await TestPostgres.shared()
        let host = try await HostProcess.start(manifest: Self.manifest(url: try await pg.freshDatabase()))
        defer { host.stop() }
        let user = try await host.create("User", #"{"email": "a@example.com"}"#)
        let text = #"quotes ' \" back\\slash, tab\t, newline\n, emoji 🚀, accents éü, CJK 漢字"#
        let body = #"{"s": "\#(text)", "i": 9007199254740993, "f": -1234.5678e-3, "b": true, "d": "2026-11-23T14:05:06.789Z", "r": "<p>\#(text)</p>", "u": "\#(user)"}"#
        let id = try await host.create("Kinds", body)
        let row = try await host.request("GET", "/api/entities/Kinds/\(id)", token: Self.admin)
        #expect(row.status == 200, "\(row.body)")
        let expectedText = "quotes ' \" back\\slash, tab\t, newline\n, emoji 🚀, accents éü, CJK 漢字"
        #expect(row.json["s"].string == expectedText)
        #expect(row.json["i"].int == 9_007_199_254_740_993)
        #expect(row.json["f"].double == -1.2345678)
        #expect(row.json["b"].bool == true)
        #expect(row.json["d"].string == "2026-11-23T14:05:06.789Z")
        #expect(row.json["r"].string == "<p>\(expectedText)</p>")
        #expect(row.json["u"].string == user)

        let empty = try await host.create("Kinds", #"{"b": false}"#)
        let nulls = try await host.request("GET", "/api/entities/Kinds/\(empty)", token: Self.admin)
        for f in ["s", "i", "f", "d", "r", "u"] { #expect(nulls.json[f].isNull, "\(f): \(nulls.body)") }
        #expect(nulls.json["b"].bool == false)

        // Filters on each type, including booleans, nulls and a float compared with an int.
        for (filter, expected) in [(#"{"b": true}"#, [id]), (#"{"b": false}"#, [empty]), (#"{"i": {"$gt": 9007199254740992}}"#, [id]),
                                   (#"{"f": {"$lt": 0}}"#, [id]), (#"{"s": null}"#, [empty]), (#"{"d": {"$gte": "2026-01-01"}}"#, [id]),
                                   (#"{"s": {"$like": "EMOJI 🚀"}}"#, [id]), (#"{"u": {"$in": ["\#(user)", "x"]}}"#, [id])] {
            let r = try await host.request("POST", "/api/query/Kinds", json: filter, token: Self.admin)
            #expect(r.json.items.compactMap { $0["id"].string } == expected, "\(filter): \(r.body)")
        }
        // The change log carries the same typed row.
        let events = try await host.pullAll(token: Self.admin)
        let insert = events.first { $0["row_id"].string == id }
        #expect(insert?["data"]["i"].int == 9_007_199_254_740_993 && insert?["data"]["b"].bool == true, "\(String(describing: insert))")
        // Update every type, then read it back.
        let patch = try await host.request("PATCH", "/api/entities/Kinds/\(id)", json: #"{"i": -5, "f": 2, "b": false, "s": null}"#, token: Self.admin)
        #expect(patch.status == 200, "\(patch.body)")
        let after = try await host.request("GET", "/api/entities/Kinds/\(id)", token: Self.admin)
        #expect(after.json["i"].int == -5 && after.json["f"].double == 2.0 && after.json["b"].bool == false && after.json["s"].isNull, "\(after.body)")
        // Unique violations map to 409 as on SQLite.
        let dup = try await host.request("POST", "/api/entities/User", json: #"{"email": "a@example.com"}"#, token: Self.admin)
        #expect(dup.status == 409 && dup.json.errorCode == "UNIQUE_VIOLATION", "\(dup.body)")
    }

    @Test("Three hosts on one database, writers on each: every subscriber on every host gets all 3,000 events once, in seq order, gapless")
    func threeHostsShareTheLog() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        var hosts: [HostProcess] = []
        for _ in 0..<3 { hosts.append(try await HostProcess.start(manifest: Self.manifest(url: url))) }
        defer { for h in hosts { h.stop() } }
        var subscribers: [TestWebSocket] = []
        for (i, h) in hosts.enumerated() {
            for k in 0..<2 {
                subscribers.append(try await TestWebSocket.connect(port: h.port, token: Self.admin, label: "host \(i) subscriber \(k)"))
            }
        }
        let perHost = 1000
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, h) in hosts.enumerated() {
                for w in 0..<4 {
                    group.addTask {
                        for n in stride(from: w, to: perHost, by: 4) {
                            _ = try await h.create("Item", #"{"title": "h\#(i)-\#(n)", "n": \#(n), "host": "h\#(i)"}"#)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let total = perHost * hosts.count
        for s in subscribers {
            let events = try await s.waitForChangeEvents(total, timeout: 120)
            let got = seqs(events)
            #expect(got == Array(1...total), "\(s.summary): \(got.count) events, first gap at \(String(describing: zip(got, 1...).first { $0 != $1 }))")
            #expect(Set(rowIDs(events)).count == total)
        }
        // The log itself: gapless, one entry per write, and the same on every host.
        for h in hosts {
            let log = try await h.pullAll(token: Self.admin)
            #expect(seqs(log) == Array(1...total))
        }
        let count = try await pg.psql("SELECT COUNT(*), MIN(seq), MAX(seq), COUNT(DISTINCT seq) FROM _pylon_changes", url: url)
        #expect(count.trimmingCharacters(in: .whitespacesAndNewlines) == "\(total)|1|\(total)|\(total)", "\(count)")
    }

    @Test("A write on host A reaches a subscriber on host B, which resumes from its cursor after B restarts")
    func crossHostDeliveryAndResume() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        let a = try await HostProcess.start(manifest: Self.manifest(url: url))
        let b = try await HostProcess.start(manifest: Self.manifest(url: url))
        defer { a.stop(); b.stop() }
        let sub = try await TestWebSocket.connect(port: b.port, token: Self.admin, label: "subscriber on B")
        let first = try await a.create("Item", #"{"title": "from A"}"#)
        let event = try await sub.waitForEvent(rowID: first, kind: "insert")
        #expect(event["data"]["title"].string == "from A")
        // B learned of A's commit through LISTEN/NOTIFY (polling is only the fallback).
        #expect(b.log.contains("change tailer: woken by database signals"), "\(b.log)")
        sub.disconnect()
        try await b.restart()
        let second = try await a.create("Item", #"{"title": "while B was down"}"#)
        let back = try await TestWebSocket.connect(port: b.port, path: "/api/sync/ws?since=\(event["seq"].int ?? 0)",
                                                  token: Self.admin, label: "subscriber on B, resumed")
        let resumed = try await back.waitForEvent(rowID: second, kind: "insert")
        #expect(resumed["seq"].int == (event["seq"].int ?? 0) + 1)
        let third = try await a.create("Item", #"{"title": "live again"}"#)
        try await back.waitForEvent(rowID: third, kind: "insert")
        #expect(seqs(back.changeEvents) == [2, 3])
    }

    @Test("A host's own commits reach its subscribers without waking its tailer; another host's commits wake it")
    func ownCommitsSkipTheTailer() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        let a = try await HostProcess.start(manifest: Self.manifest(url: url))
        let b = try await HostProcess.start(manifest: Self.manifest(url: url))
        defer { a.stop(); b.stop() }
        let onA = try await TestWebSocket.connect(port: a.port, token: Self.admin, label: "subscriber on A")
        let onB = try await TestWebSocket.connect(port: b.port, token: Self.admin, label: "subscriber on B")
        func tailReads(_ h: HostProcess) async throws -> Int {
            try await h.request("GET", "/metrics").json["counters"]["change_tail_reads_total"].int ?? -1
        }
        let before = try await tailReads(a)
        let started = Date()
        // One write transaction each: a NOTIFY each, which only B's tailer may act on.
        let writes = 60
        for i in 0..<writes { _ = try await a.create("Item", #"{"title": "w\#(i)"}"#) }
        try await onA.waitForChangeEvents(writes)
        try await onB.waitForChangeEvents(writes)
        let elapsed = Date().timeIntervalSince(started)
        let readsOnA = try await tailReads(a) - before
        // A's tailer reads only at its once-a-second safety poll (one read per period, and
        // one more at either end); before, it read the log back after each of the 60 commits.
        #expect(readsOnA >= 0 && readsOnA <= Int(elapsed.rounded(.up)) + 2,
                "A read the log \(readsOnA) times in \(elapsed) s for its own \(writes) commits")
        #expect(try await tailReads(b) > 0, "B's subscriber got A's writes from the log")
        #expect(seqs(onA.changeEvents) == Array(1...writes) && seqs(onB.changeEvents) == Array(1...writes))
    }

    @Test("PostgreSQL killed mid-load and restarted: no acknowledged write is lost, the host recovers without a restart")
    func databaseCrash() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let url = try await pg.freshDatabase()
        let host = try await HostProcess.start(manifest: Self.manifest(url: url))
        defer { host.stop() }
        // A second host on the same database: its subscriber sees every write of the first
        // through the shared log, across the crash.
        let other = try await HostProcess.start(manifest: Self.manifest(url: url))
        defer { other.stop() }
        let watcher = try await TestWebSocket.connect(port: other.port, token: Self.admin, label: "subscriber on the other host")
        let acknowledged = Acknowledged()
        let load = Task {
            for n in 0..<100_000 {
                if acknowledged.stopped { break }
                if let r = try? await host.request("POST", "/api/entities/Item", json: #"{"title": "load-\#(n)", "n": \#(n)}"#, token: Self.admin, timeout: 10),
                   r.status == 201, let id = r.json["id"].string {
                    acknowledged.add(id)
                }
            }
        }
        try await eventually("100 writes before the crash", timeout: 240) { acknowledged.count >= 100 ? true : nil }
        try await pg.kill9()
        // While the database is down, requests fail with a clear error instead of hanging.
        let down = try await host.request("POST", "/api/entities/Item", json: #"{"title": "down"}"#, token: Self.admin)
        #expect(down.status >= 500, "\(down.body)")
        #expect(!down.body.isEmpty && down.json.errorCode != nil, "\(down.body)")
        try await pg.restart()
        try await eventuallyAsync("writes succeeding again after the restart", timeout: 60) { () async -> Bool? in
            guard let r = try? await host.request("POST", "/api/entities/Item", json: #"{"title": "probe"}"#, token: Self.admin),
                  r.status == 201, let id = r.json["id"].string else { return nil }
            acknowledged.add(id)
            return true
        }
        let before = acknowledged.count
        try await eventually("more writes after recovery", timeout: 60) { acknowledged.count > before + 50 ? true : nil }
        // Stopped by a flag, not `load.cancel()`: cancelling a task inside URLSession's async
        // `data(for:)` can deadlock swift-corelibs-foundation (the cancel handler syncs onto the
        // session queue while the queue resumes the task), which hung a whole test run.
        acknowledged.stop()
        _ = await load.result
        let ids = Set(try await pg.psql("SELECT id FROM \"Item\"", url: url).split(separator: "\n").map(String.init))
        let missing = acknowledged.all.filter { !ids.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged writes are missing")
        // The log matches the rows: one insert per stored row, gapless.
        let log = try await pg.psql("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM _pylon_changes", url: url)
        #expect(log.trimmingCharacters(in: .whitespacesAndNewlines) == "\(ids.count)|\(ids.count)", "\(log)")
        // The other host's tailer reconnected by itself: its subscriber got every entry once, in order.
        let events = try await watcher.waitForChangeEvents(ids.count, timeout: 60)
        #expect(seqs(events) == Array(1...ids.count), "\(events.count) events for \(ids.count) rows")
    }
}

/// Ids of writes the host acknowledged (2xx), from concurrent tasks.
final class Acknowledged: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [String] = []
    func add(_ id: String) { lock.withLock { ids.append(id) } }
    var count: Int { lock.withLock { ids.count } }
    var all: [String] { lock.withLock { ids } }
    private var _stopped = false
    var stopped: Bool { lock.withLock { _stopped } }
    func stop() { lock.withLock { _stopped = true } }
}
