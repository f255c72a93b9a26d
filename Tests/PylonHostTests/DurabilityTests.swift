import Foundation
import Testing

/// Black-box durability of the release host (DESIGN.md §4): concurrent writers against the
/// change log, `kill -9` in the middle of a write load, manifest validation through
/// `pylon-host check`, and the refusal of destructive schema changes at startup.
///
/// Needs `make build` (the release host and `plugins/libPylonStoreSQLite.so`). Every test
/// has its own temp dir, database and port, so they run in parallel.
@Suite("Durability: concurrent writes, crash safety, manifest and schema errors")
struct DurabilityTests {
    static let itemManifest = """
    {"manifest_version": 1, "name": "durability", "version": "0.1.0",
     "entities": [{"name": "Item", "fields": [
        {"name": "title", "type": "string", "optional": false, "unique": false},
        {"name": "writer", "type": "int", "optional": false, "unique": false},
        {"name": "n", "type": "int", "optional": true, "unique": false}], "indexes": []}]}
    """

    // MARK: (a) concurrent writers

    @Test func concurrentWritersProduceAGaplessChangeLogMatchingTheRows() async throws {
        let host = try DurHost.make(manifest: Self.itemManifest)
        defer { host.dispose() }
        try await host.launch()

        let writers = 8, perWriter = 50
        let results = await withTaskGroup(of: [DurPost].self) { group in
            for w in 0..<writers {
                group.addTask {
                    var out: [DurPost] = []
                    for i in 0..<perWriter {
                        out.append(await host.post(#"{"title":"w\#(w)-\#(i)","writer":\#(w),"n":\#(i)}"#))
                    }
                    return out
                }
            }
            var all: [DurPost] = []
            for await r in group { all += r }
            return all
        }
        let ids = results.compactMap(\.id)
        let failures = results.filter { $0.id == nil }
        #expect(failures.isEmpty, "\(failures.count) of \(results.count) concurrent POSTs failed, e.g. \(failures.prefix(3).map(\.summary))")
        #expect(ids.count == writers * perWriter)
        #expect(Set(ids).count == ids.count, "the host returned the same id for two inserts")

        let log = try await host.pullAll(since: 0)
        let seqs = log.changes.map(\.seq)
        #expect(seqs == (0..<seqs.count).map { Int64($0 + 1) },
                "change-log seqs are not exactly 1...\(seqs.count): \(DurCheck.describeGaps(seqs))")
        #expect(seqs.count == ids.count, "\(ids.count) committed inserts but \(seqs.count) change-log entries")
        DurCheck.expectOneInsertPerID(log.changes, ids: ids, entity: "Item")

        let rows = try await host.listIDs("Item")
        #expect(rows.count == ids.count, "GET /api/entities/Item has \(rows.count) rows, \(ids.count) POSTs answered 201")
        #expect(Set(rows) == Set(ids), "row ids differ from the 201 ids")
    }

    // MARK: (b) crash safety

    @Test func killDashNineMidLoadLosesNoCommittedWrite() async throws {
        let host = try DurHost.make(manifest: Self.itemManifest)
        defer { host.dispose() }
        try await host.launch()

        let tally = DurTally()
        let writers = 6
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        var i = 0
                        while !(await tally.stopped) {
                            let r = await host.post(#"{"title":"crash-\#(w)-\#(i)","writer":\#(w),"n":\#(i)}"#, timeout: 10)
                            i += 1
                            if let id = r.id {
                                await tally.committed(id)
                            } else if await tally.killed {
                                return // the host is gone: this writer is done
                            } else {
                                await tally.failed(r.summary)
                                if await tally.failureCount > 20 { return }
                            }
                        }
                    }
                }
            }
        }

        // Let some writes land, take a cursor, let more land, then crash the host mid-load.
        try await tally.waitFor(committed: 200, orAllFailedAfter: 20)
        let cursorPage = try await host.pull(since: 0, limit: 1000)
        let cursor = cursorPage.cursor.last_seq
        let epoch = cursorPage.cursor.epoch
        #expect(cursor > 0, "a cursor taken under load should be past 0")
        try await tally.waitFor(committed: 600, orAllFailedAfter: 20)
        await tally.markKilled()
        host.kill9()
        await tally.stop()
        await load.value

        let acknowledged = await tally.ids
        let preKillFailures = await tally.failures
        #expect(preKillFailures.isEmpty, "POSTs failed before the kill: \(preKillFailures.prefix(3))")
        #expect(acknowledged.count >= 600)

        try await host.launch() // same database file, new port
        let health = try await host.request("GET", "/health")
        #expect(health.status == 200)

        // Every write that was acknowledged with 201 survived.
        var missing: [String] = []
        for id in acknowledged {
            let r = try await host.request("GET", "/api/entities/Item/\(id)")
            if r.status != 200 { missing.append("\(id): \(r.status) \(r.text)") }
        }
        #expect(missing.isEmpty, "\(missing.count) acknowledged writes are gone after kill -9: \(missing.prefix(5))")

        // The change log matches the rows: gapless, one insert per row, nothing else.
        let log = try await host.pullAll(since: 0)
        let seqs = log.changes.map(\.seq)
        #expect(seqs == (0..<seqs.count).map { Int64($0 + 1) },
                "change-log seqs after the crash are not exactly 1...\(seqs.count): \(DurCheck.describeGaps(seqs))")
        let rows = try await host.listIDs("Item")
        #expect(Set(rows).isSuperset(of: Set(acknowledged)))
        #expect(seqs.count == rows.count, "\(rows.count) rows but \(seqs.count) change-log entries after the crash")
        DurCheck.expectOneInsertPerID(log.changes, ids: rows, entity: "Item")
        #expect(log.epoch == epoch, "the database epoch changed across a crash: \(epoch) -> \(log.epoch)")

        // A cursor taken before the crash continues right after itself, with no 410.
        let resumed = try await host.request("GET", "/api/sync/pull?since=\(cursor)&limit=1000&epoch=\(epoch)")
        #expect(resumed.status == 200, "pull from a pre-crash cursor: \(resumed.status) \(resumed.text)")
        let tail = try await host.pullAll(since: cursor, epoch: epoch)
        #expect(tail.changes.first?.seq == cursor + 1 || (tail.changes.isEmpty && seqs.last == cursor),
                "pull since=\(cursor) should start at \(cursor + 1), got \(tail.changes.first.map { "\($0.seq)" } ?? "nothing")")
        #expect(tail.changes.map(\.seq) == seqs.filter { $0 > cursor },
                "pull since=\(cursor) does not return exactly the entries after it")
    }

    // MARK: (c) manifest errors

    struct BadManifest: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String
        var code: String
        var mentions: [String]
        var testDescription: String { name }
    }

    static let badManifests: [BadManifest] = [
        BadManifest(name: "unknown field type", text: """
            {"manifest_version": 1, "name": "bad", "version": "0.1.0",
             "entities": [{"name": "Post", "fields": [
                {"name": "title", "type": "string", "optional": false, "unique": false},
                {"name": "score", "type": "decimal128", "optional": false, "unique": false}], "indexes": []}]}
            """, code: "FIELD_TYPE_UNKNOWN", mentions: ["Post", "score", "decimal128"]),
        BadManifest(name: "duplicate field", text: """
            {"manifest_version": 1, "name": "bad", "version": "0.1.0",
             "entities": [{"name": "Post", "fields": [
                {"name": "title", "type": "string", "optional": false, "unique": false},
                {"name": "body", "type": "string", "optional": true, "unique": false},
                {"name": "title", "type": "string", "optional": true, "unique": false}], "indexes": []}]}
            """, code: "FIELD_DUPLICATE", mentions: ["Post", "title"]),
        BadManifest(name: "index on a missing field", text: """
            {"manifest_version": 1, "name": "bad", "version": "0.1.0",
             "entities": [{"name": "Post", "fields": [
                {"name": "title", "type": "string", "optional": false, "unique": false}],
              "indexes": [{"name": "post_by_author", "fields": ["authorId"], "unique": false}]}]}
            """, code: "INDEX_FIELD_NOT_FOUND", mentions: ["Post", "authorId"]),
        BadManifest(name: "bad JSON", text: """
            {"manifest_version": 1, "name": "bad", "version": "0.1.0",
             "entities": [{"name": "Post", "fields": [ {"name": "title", "type": "string",, }]
            """, code: "MANIFEST_INVALID_JSON", mentions: []),
    ]

    @Test(arguments: DurabilityTests.badManifests)
    func checkRejectsABadManifestWithItsCode(_ bad: BadManifest) async throws {
        let dir = try TestPaths.freshTempDir("pylon-dur-check")
        defer { TestPaths.removeTempDir(dir) }
        let path = dir.appendingPathComponent("pylon.manifest.json").path
        try Data(bad.text.utf8).write(to: URL(fileURLWithPath: path))
        let r = try await TestCommand.run(TestPaths.hostBinary, ["check", "--manifest", path])
        #expect(r.status != 0, "pylon-host check accepted a manifest with \(bad.name); stdout: \(r.stdout)")
        #expect(r.stderr.contains(bad.code), "stderr should carry \(bad.code):\n\(r.stderr)")
        for word in bad.mentions {
            #expect(r.stderr.contains(word), "stderr should name \(word):\n\(r.stderr)")
        }
    }

    @Test func checkAcceptsAGoodManifest() async throws {
        let dir = try TestPaths.freshTempDir("pylon-dur-check")
        defer { TestPaths.removeTempDir(dir) }
        let path = dir.appendingPathComponent("pylon.manifest.json").path
        try Data(Self.itemManifest.utf8).write(to: URL(fileURLWithPath: path))
        let r = try await TestCommand.run(TestPaths.hostBinary, ["check", "--manifest", path])
        #expect(r.status == 0, "pylon-host check refused a good manifest: \(r.stderr)")
    }

    // MARK: (d) destructive vs additive schema changes

    static func schemaManifest(fields: String, indexes: String = "", extraEntities: String = "") -> String {
        """
        {"manifest_version": 1, "name": "schema", "version": "0.1.0",
         "entities": [{"name": "Task", "fields": [\(fields)], "indexes": [\(indexes)]}\(extraEntities)]}
        """
    }

    static let baseFields = """
        {"name": "title", "type": "string", "optional": false, "unique": false},
        {"name": "priority", "type": "int", "optional": true, "unique": false},
        {"name": "notes", "type": "string", "optional": true, "unique": false}
        """

    @Test func destructiveChangesAreRefusedAndAdditiveOnesApplied() async throws {
        let host = try DurHost.make(manifest: Self.schemaManifest(fields: Self.baseFields))
        defer { host.dispose() }
        try await host.launch()
        var ids: [String] = []
        for i in 0..<3 {
            let r = await host.post(#"{"title":"task \#(i)","priority":\#(i),"notes":"note \#(i)"}"#, entity: "Task")
            #expect(r.id != nil, "POST /api/entities/Task: \(r.summary)")
            if let id = r.id { ids.append(id) }
        }
        await host.stop()

        // Changing a field's type destroys data: refused, naming the field.
        let retyped = Self.baseFields.replacingOccurrences(
            of: #"{"name": "priority", "type": "int""#, with: #"{"name": "priority", "type": "string""#)
        try host.writeManifest(Self.schemaManifest(fields: retyped))
        let typeChange = try await host.launchExpectingExit()
        #expect(typeChange.exited, "the host started serving after a field's type changed from int to string; log:\n\(typeChange.log)")
        #expect(typeChange.status != 0, "exit status \(typeChange.status)")
        #expect(typeChange.log.contains("SCHEMA_DESTRUCTIVE_CHANGE"), "log:\n\(typeChange.log)")
        #expect(typeChange.log.contains("priority"), "the refusal should name the field:\n\(typeChange.log)")

        // Dropping a field destroys data: refused, naming the field.
        let dropped = """
            {"name": "title", "type": "string", "optional": false, "unique": false},
            {"name": "priority", "type": "int", "optional": true, "unique": false}
            """
        try host.writeManifest(Self.schemaManifest(fields: dropped))
        let drop = try await host.launchExpectingExit()
        #expect(drop.exited, "the host started serving after a field was dropped; log:\n\(drop.log)")
        #expect(drop.status != 0, "exit status \(drop.status)")
        #expect(drop.log.contains("SCHEMA_DESTRUCTIVE_CHANGE"), "log:\n\(drop.log)")
        #expect(drop.log.contains("notes"), "the refusal should name the dropped field:\n\(drop.log)")

        // Additive: a new entity, a new optional field, a new required field, a new index.
        let additiveFields = Self.baseFields + """
            ,
            {"name": "color", "type": "string", "optional": true, "unique": false},
            {"name": "rank", "type": "int", "optional": false, "unique": false}
            """
        let additive = Self.schemaManifest(
            fields: additiveFields,
            indexes: #"{"name": "task_by_title", "fields": ["title", "rank"], "unique": false}"#,
            extraEntities: #", {"name": "Tag", "fields": [{"name": "label", "type": "string", "optional": false, "unique": false}], "indexes": []}"#)
        try host.writeManifest(additive)
        try await host.launch()
        for (i, id) in ids.enumerated() {
            let r = try await host.request("GET", "/api/entities/Task/\(id)")
            #expect(r.status == 200, "old row \(id) after an additive change: \(r.status) \(r.text)")
            let row = durObject(r.data)
            #expect(row?["title"] as? String == "task \(i)", "old row \(id): \(r.text)")
            #expect(row?["priority"] as? Int == i, "old row \(id): \(r.text)")
            #expect(row?["notes"] as? String == "note \(i)", "old row \(id): \(r.text)")
            // New columns exist on old rows: the optional one is null, the required one has a value.
            #expect(row?["color"] is NSNull, "new optional field on an old row should be null: \(r.text)")
            #expect(row?["rank"] is Int, "new required int field on an old row should be a number: \(r.text)")
        }
        let count = try await host.listIDs("Task")
        #expect(count.count == 3)
        let newTask = await host.post(#"{"title":"new","priority":1,"color":"red","rank":7}"#, entity: "Task")
        #expect(newTask.id != nil, "POST Task with the new fields: \(newTask.summary)")
        if let id = newTask.id {
            let r = try await host.request("GET", "/api/entities/Task/\(id)")
            let row = durObject(r.data)
            #expect(row?["color"] as? String == "red", "new field not stored: \(r.text)")
            #expect(row?["rank"] as? Int == 7, "new field not stored: \(r.text)")
        }
        let tag = await host.post(#"{"label":"urgent"}"#, entity: "Tag")
        #expect(tag.id != nil, "POST to the new entity Tag: \(tag.summary)")
        #expect(host.log.contains("task_by_title"), "the startup log should report the new index:\n\(host.log)")

        // The additive schema is now the recorded one: a restart with it is a no-op.
        await host.stop()
        try await host.launch()
        #expect(try await host.listIDs("Task").count == 4)
    }
}

extension DurabilityTests {
    /// The refusal tells the user to drop a column themselves; after they do, the host
    /// must accept the manifest without it (the recorded schema is reconciled).
    @Test func columnDroppedByHandIsAcceptedAfterARefusal() async throws {
        let host = try DurHost.make(manifest: Self.schemaManifest(fields: Self.baseFields))
        defer { host.dispose() }
        try await host.launch()
        let r = await host.post(#"{"title":"keep","priority":1,"notes":"gone soon"}"#, entity: "Task")
        #expect(r.id != nil, "POST: \(r.summary)")
        await host.stop()
        let withoutNotes = """
            {"name": "title", "type": "string", "optional": false, "unique": false},
            {"name": "priority", "type": "int", "optional": true, "unique": false}
            """
        try host.writeManifest(Self.schemaManifest(fields: withoutNotes))
        let refused = try await host.launchExpectingExit()
        #expect(refused.exited && refused.status != 0, "dropping a field must be refused first:\n\(refused.log)")
        let sqlite = try await TestCommand.run("/usr/bin/sqlite3", [host.dbPath, "ALTER TABLE Task DROP COLUMN notes"])
        #expect(sqlite.status == 0, "sqlite3: \(sqlite.stderr)")
        try await host.launch()
        let ids = try await host.listIDs("Task")
        #expect(ids.count == 1, "the row survives the hand-made drop")
    }
}

// MARK: - Helpers (paths, commands, the served host itself: Support/TestSupport.swift)

/// The outcome of one POST: the new id on 201, else what went wrong.
fileprivate struct DurPost: Sendable {
    var id: String?
    var summary: String
}

fileprivate struct DurCreated: Decodable { var id: String }

/// A JSON object body as a dictionary (values as JSONSerialization gives them).
fileprivate func durObject(_ data: Data) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
}

fileprivate struct DurPull: Decodable {
    struct Change: Decodable {
        var seq: Int64
        var entity: String
        var row_id: String
        var kind: String
    }

    struct Cursor: Decodable {
        var last_seq: Int64
        var epoch: String
    }

    var changes: [Change]
    var cursor: Cursor
    var has_more: Bool
}

fileprivate struct DurList: Decodable {
    struct Row: Decodable { var id: String }
    var data: [Row]
}

fileprivate enum DurCheck {
    /// Every id has exactly one `insert` event for `entity`, and no event is about another row.
    static func expectOneInsertPerID(_ changes: [DurPull.Change], ids: [String], entity: String,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        var inserts: [String: Int] = [:]
        for c in changes {
            #expect(c.entity == entity && c.kind == "insert",
                    "unexpected change-log entry seq \(c.seq): \(c.kind) \(c.entity) \(c.row_id)", sourceLocation: sourceLocation)
            if c.kind == "insert" { inserts[c.row_id, default: 0] += 1 }
        }
        let wanted = Set(ids)
        let noInsert = ids.filter { inserts[$0] == nil }
        let repeated = inserts.filter { $0.value > 1 }.map(\.key)
        let strangers = inserts.keys.filter { !wanted.contains($0) }
        #expect(noInsert.isEmpty, "\(noInsert.count) committed rows have no insert event, e.g. \(noInsert.prefix(3))",
                sourceLocation: sourceLocation)
        #expect(repeated.isEmpty, "\(repeated.count) rows have more than one insert event, e.g. \(repeated.prefix(3))",
                sourceLocation: sourceLocation)
        #expect(strangers.isEmpty, "\(strangers.count) insert events are for rows that do not exist, e.g. \(strangers.prefix(3))",
                sourceLocation: sourceLocation)
    }

    static func describeGaps(_ seqs: [Int64]) -> String {
        var problems: [String] = []
        var expected: Int64 = 1
        for s in seqs {
            if s != expected { problems.append("expected \(expected), got \(s)") }
            expected = s + 1
            if problems.count >= 5 { break }
        }
        return problems.isEmpty ? "none" : problems.joined(separator: "; ")
    }
}

/// Shared state of the crash test's writers.
fileprivate actor DurTally {
    private(set) var ids: [String] = []
    private(set) var failures: [String] = []
    private(set) var killed = false
    private(set) var stopped = false
    var failureCount: Int { failures.count }

    func committed(_ id: String) { ids.append(id) }
    func failed(_ what: String) { failures.append(what) }
    func markKilled() { killed = true }
    func stop() { stopped = true }

    /// Waits until `committed` writes were acknowledged. Gives up (throws) when writers only
    /// fail, so a broken host fails the test instead of hanging it.
    nonisolated func waitFor(committed target: Int, orAllFailedAfter maxFailures: Int) async throws {
        while true {
            let (n, f) = await (ids.count, failures.count)
            if n >= target { return }
            if f > maxFailures {
                let some = await failures.prefix(3)
                throw TestSetupError(description: "writers keep failing (\(n) acknowledged): \(some)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// One `pylon-host serve` on a temp dir of its own: manifest, database, a log per launch.
fileprivate final class DurHost: ServedHost, @unchecked Sendable {
    static func make(manifest: String) throws -> DurHost {
        let dir = try TestPaths.freshTempDir("pylon-dur-host")
        let host = DurHost(directory: dir, manifestPath: dir.appendingPathComponent("pylon.manifest.json").path,
                           dbPath: dir.appendingPathComponent("app.db").path,
                           logPerLaunch: true, maxConnectionsPerHost: 16)
        try host.writeManifest(manifest)
        return host
    }

    func writeManifest(_ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifestPath))
    }

    /// Kills the host if it runs and removes the temp dir.
    func dispose() {
        kill9()
        TestPaths.removeTempDir(directory)
    }

    /// POST a row; never throws (a transport error is a failed post).
    func post(_ json: String, entity: String = "Item", timeout: TimeInterval = 30) async -> DurPost {
        do {
            let r = try await request("POST", "/api/entities/\(entity)", body: json, timeout: timeout)
            guard r.status == 201 else { return DurPost(id: nil, summary: "\(r.status) \(r.text)") }
            guard let id = try? JSONDecoder().decode(DurCreated.self, from: r.data).id else {
                return DurPost(id: nil, summary: "201 without an id: \(r.text)")
            }
            return DurPost(id: id, summary: "201 \(id)")
        } catch {
            return DurPost(id: nil, summary: "transport error: \(error)")
        }
    }

    func pull(since: Int64, limit: Int, epoch: String? = nil) async throws -> DurPull {
        let e = epoch.map { "&epoch=\($0)" } ?? ""
        let r = try await request("GET", "/api/sync/pull?since=\(since)&limit=\(limit)\(e)")
        guard r.status == 200 else {
            throw TestSetupError(description: "GET /api/sync/pull?since=\(since)&limit=\(limit)\(e): \(r.status) \(r.text)")
        }
        return try JSONDecoder().decode(DurPull.self, from: r.data)
    }

    /// The whole change log after `since`, following the cursor page by page.
    func pullAll(since: Int64, epoch: String? = nil) async throws -> (changes: [DurPull.Change], epoch: String) {
        var all: [DurPull.Change] = []
        var cursor = since
        var lastEpoch = ""
        for _ in 0..<10_000 {
            let page = try await pull(since: cursor, limit: 1000, epoch: epoch)
            all += page.changes
            lastEpoch = page.cursor.epoch
            if let last = page.changes.last {
                #expect(page.cursor.last_seq == last.seq, "cursor.last_seq \(page.cursor.last_seq) != last event seq \(last.seq)")
            }
            guard page.has_more else { return (all, lastEpoch) }
            guard !page.changes.isEmpty, page.cursor.last_seq > cursor else {
                throw TestSetupError(description: "pull since=\(cursor) says has_more but does not advance")
            }
            cursor = page.cursor.last_seq
        }
        throw TestSetupError(description: "pull did not finish after 10000 pages")
    }

    func listIDs(_ entity: String) async throws -> [String] {
        let r = try await request("GET", "/api/entities/\(entity)")
        guard r.status == 200 else { throw TestSetupError(description: "GET /api/entities/\(entity): \(r.status) \(r.text)") }
        return try JSONDecoder().decode(DurList.self, from: r.data).data.map(\.id)
    }
}
