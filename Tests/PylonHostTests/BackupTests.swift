import Foundation
import Testing

/// `pylon-host backup --to FILE` and `pylon-host restore --from FILE`, black-box through the
/// release binary: a backup taken while a host serves and writes, restored into the stopped
/// host, gives the data as it was at the backup and a new change-log epoch (an old cursor
/// gets 410); a restore refuses while a host serves; a missing, truncated, corrupt or
/// foreign file fails with a clear error and leaves the database as it was.
@Suite("Backups: pylon-host backup and restore")
struct BackupTests {
    static let manifest = """
    {"manifest_version": 1, "name": "backups", "version": "0.1.0",
     "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}]}
    """

    /// The stores with a backup: SQLite (online backup API) and Postgres (pg_dump).
    static let stores: [TestStore] = TestStore.all.filter { $0.name == "sqlite" || $0.name == "postgres" }

    /// Runs `pylon-host VERB --to/--from FILE` on `host`'s manifest, plugins and database.
    static func cli(_ host: HostProcess, _ verb: String, _ file: String, environment: [String: String] = [:])
        async throws -> (status: Int32, stdout: String, stderr: String)
    {
        let option = verb == "backup" ? "--to" : "--from"
        return try await TestCommand.run(TestPaths.hostBinary,
                                         [verb, "--plugins", host.pluginsDir, "--manifest", host.manifestPath, "--db", host.dbPath, option, file],
                                         timeout: 300, environment: host.env.merging(environment) { _, given in given })
    }

    /// The titles of every Note, sorted.
    static func titles(_ host: HostProcess) async throws -> [String] {
        let r = try await host.request("GET", "/api/entities/Note")
        #expect(r.status == 200, "\(r.body)")
        return r.json["data"].items.compactMap { $0["title"].string }.sorted()
    }

    /// The current cursor (last seq and epoch) from a pull.
    static func cursor(_ host: HostProcess) async throws -> (seq: Int, epoch: String) {
        let r = try await host.request("GET", "/api/sync/pull?since=0&limit=1000")
        #expect(r.status == 200, "\(r.body)")
        return (try #require(r.json["cursor"]["last_seq"].int, "\(r.body)"), try #require(r.json["cursor"]["epoch"].string, "\(r.body)"))
    }

    @Test("A backup taken while the host serves and writes restores into the stopped host: the data as at the backup, a new epoch, old cursors get 410",
          arguments: stores)
    func backupWhileServingThenRestore(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let file = host.directory.appendingPathComponent("backup.bin").path
        for i in 1...3 { _ = try await host.insert("Note", #"{"title":"before-\#(i)"}"#) }

        // A writer keeps writing (one request at a time, in order) while the backup runs.
        let progress = WriterProgress()
        let writer = Task { () -> [String] in
            var written: [String] = []
            for i in 1...2000 where !progress.stopped {
                let title = "during-\(i)"
                let r = try await host.request("POST", "/api/entities/Note", json: #"{"title":"\#(title)"}"#)
                if r.status == 201 {
                    written.append(title)
                    progress.wrote()
                }
            }
            return written
        }
        while progress.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let made = try await Self.cli(host, "backup", file)
        progress.stop()
        let during = try await writer.value
        #expect(made.status == 0, "backup failed:\n\(made.stderr)\n\(host.log)")
        #expect(made.stdout.contains("written to \(file)"), "\(made.stdout)")
        #expect(FileManager.default.fileExists(atPath: file))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: host.directory.path).filter { $0.contains(".partial-") }
        #expect(leftovers.isEmpty, "no partial files left: \(leftovers)")
        // They hold session, API-key and password hashes: owner-only, whatever the umask
        // (outside probes found the SQLite files and then the pg_dump backup 0644).
        for path in store.name == "sqlite" ? [host.dbPath, host.dbPath + "-wal", file] : [file] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? 0
            #expect(mode & 0o777 == 0o600, "\(path) is \(String(mode & 0o777, radix: 8))")
        }

        _ = try await host.insert("Note", #"{"title":"after-backup"}"#)
        let old = try await Self.cursor(host)

        // Refused while the host serves; the database is unchanged.
        let refused = try await Self.cli(host, "restore", file)
        #expect(refused.status == 2, "restore must refuse while a host serves:\n\(refused.stdout)\n\(refused.stderr)")
        #expect(refused.stderr.contains("DATABASE_IN_USE"), "\(refused.stderr)")
        #expect(try await Self.titles(host).contains("after-backup"))

        await host.stopAndWait()
        let restored = try await Self.cli(host, "restore", file)
        #expect(restored.status == 0, "restore failed:\n\(restored.stderr)")
        #expect(restored.stdout.contains("new change-log epoch"), "\(restored.stdout)")
        try await host.restart()

        let titles = try await Self.titles(host)
        #expect(titles.filter { $0.hasPrefix("before-") } == ["before-1", "before-2", "before-3"], "\(titles)")
        #expect(!titles.contains("after-backup"), "a write after the backup is not in it: \(titles)")
        let snapshot = Set(titles.filter { $0.hasPrefix("during-") })
        #expect(snapshot.isSubset(of: Set(during)), "\(snapshot.subtracting(during))")
        #expect(!snapshot.isEmpty, "the backup ran while the writer wrote")
        // One point in time: the writes it holds are a prefix of the writer's.
        #expect(snapshot == Set(during.prefix(snapshot.count)), "not a prefix: \(snapshot.sorted()) of \(during)")

        let new = try await Self.cursor(host)
        #expect(new.epoch != old.epoch, "restore gives the database a new epoch")
        let stale = try await host.request("GET", "/api/sync/pull?since=\(old.seq)&epoch=\(old.epoch)")
        #expect(stale.status == 410, "a cursor from before the restore must resync: \(stale.body)")
        #expect(stale.json.errorCode == "RESYNC_REQUIRED", "\(stale.body)")
        // The restored database keeps serving writes and its log.
        _ = try await host.insert("Note", #"{"title":"after-restore"}"#)
        #expect(try await Self.titles(host).contains("after-restore"))
    }

    @Test("A missing, truncated, corrupt or foreign backup fails with a clear error and leaves the database and its epoch as they were",
          arguments: stores)
    func hostileFiles(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        for i in 1...20 { _ = try await host.insert("Note", #"{"title":"kept-\#(i) \#(String(repeating: "x", count: 400))"}"#) }
        let good = host.directory.appendingPathComponent("good.bin").path
        let made = try await Self.cli(host, "backup", good)
        #expect(made.status == 0, "\(made.stderr)")
        let before = try await Self.titles(host)
        let cursor = try await Self.cursor(host)
        await host.stopAndWait()

        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        func write(_ name: String, _ data: Data) throws -> String {
            let path = host.directory.appendingPathComponent(name).path
            try data.write(to: URL(fileURLWithPath: path))
            return path
        }
        var corrupt = bytes
        let middle = corrupt.count / 3
        corrupt.replaceSubrange(middle..<min(corrupt.count, middle + 4096), with: Data(repeating: 0xA5, count: min(4096, corrupt.count - middle)))
        let sqliteHeader = Data("SQLite format 3\0".utf8) + Data(repeating: 0, count: 4080)
        let pgHeader = Data("PGDMP".utf8) + Data(repeating: 1, count: 4091)
        var cases: [(name: String, path: String, codes: [String])] = [
            ("missing", host.directory.appendingPathComponent("nope.bin").path, ["BACKUP_NOT_FOUND"]),
            ("empty", try write("empty.bin", Data()), ["BACKUP_INVALID"]),
            ("truncated", try write("truncated.bin", bytes.prefix(bytes.count / 2)), ["BACKUP_INVALID", "RESTORE_FAILED"]),
            ("corrupt", try write("corrupt.bin", corrupt), ["BACKUP_INVALID", "RESTORE_FAILED"]),
            ("other store's kind", try write("other.bin", store.name == "sqlite" ? pgHeader : sqliteHeader), ["BACKUP_INVALID"]),
            ("not a backup at all", try write("text.bin", Data("hello, I am not a database\n".utf8)), ["BACKUP_INVALID"]),
        ]
        if store.name == "sqlite" {
            // A valid SQLite database of some other application.
            let foreign = host.directory.appendingPathComponent("foreign.db").path
            let py = try await TestCommand.run("/usr/bin/env", ["python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()", foreign])
            #expect(py.status == 0, "\(py.stderr)")
            cases.append(("another app's database", foreign, ["BACKUP_INVALID"]))
        }
        for c in cases {
            let r = try await Self.cli(host, "restore", c.path)
            #expect(r.status == 2, "\(c.name): restore must fail:\n\(r.stdout)\n\(r.stderr)")
            let line = r.stderr.split(separator: "\n").last { $0.contains("pylon-host: error:") }.map(String.init) ?? r.stderr
            #expect(c.codes.contains { line.contains("error: \($0):") }, "\(c.name): expected one of \(c.codes): \(line)")
            #expect(line.contains(c.name == "missing" ? "--from" : "unchanged"), "\(c.name): says what happened: \(line)")
        }
        if store.name == "sqlite" {
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: host.directory.path).filter { $0.contains(".partial-") }
            #expect(leftovers.isEmpty, "no temporary files left: \(leftovers)")
        }
        try await host.restart()
        #expect(try await Self.titles(host) == before, "the database is untouched")
        let after = try await Self.cursor(host)
        #expect(after.epoch == cursor.epoch && after.seq == cursor.seq, "no new epoch after a failed restore")

        // The good file still restores after all that.
        await host.stopAndWait()
        let ok = try await Self.cli(host, "restore", good)
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test("Backing up over the live database is refused; Postgres without pg_dump on PATH says what to install")
    func refusedTargets() async throws {
        let sqlite = try await HostProcess.start(manifest: Self.manifest)
        defer { sqlite.stop() }
        _ = try await sqlite.insert("Note", #"{"title":"live"}"#)
        let overLive = try await Self.cli(sqlite, "backup", sqlite.dbPath)
        #expect(overLive.status == 2 && overLive.stderr.contains("BACKUP_TARGET_IS_DATABASE"), "\(overLive.stderr)")
        #expect(try await Self.titles(sqlite) == ["live"])

        guard Self.stores.contains(where: { $0.name == "postgres" }) else { return }
        let pg = try await HostProcess.start(manifest: Self.manifest, store: .postgres)
        defer { pg.stop() }
        let file = pg.directory.appendingPathComponent("pg.bin").path
        let noTools = try await Self.cli(pg, "backup", file, environment: ["PATH": pg.directory.path])
        #expect(noTools.status == 2, "\(noTools.stderr)")
        #expect(noTools.stderr.contains("BACKUP_TOOL_MISSING") && noTools.stderr.contains("pg_dump") && noTools.stderr.contains("postgresql-client"),
                "\(noTools.stderr)")
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test("The D1 store has no backup: a clear error naming wrangler d1 export")
    func d1Unsupported() async throws {
        guard TestStore.all.contains(where: { $0.name == "d1" }) else { return }
        let host = try await HostProcess.start(manifest: Self.manifest, store: .d1)
        defer { host.stop() }
        for verb in ["backup", "restore"] {
            let file = host.directory.appendingPathComponent("d1.bin").path
            if verb == "restore" { try Data("x".utf8).write(to: URL(fileURLWithPath: file)) }
            let r = try await Self.cli(host, verb, file)
            #expect(r.status == 2, "\(verb): \(r.stderr)")
            #expect(r.stderr.contains("STORE_BACKUP_UNSUPPORTED") && r.stderr.contains("wrangler d1 export"), "\(verb): \(r.stderr)")
        }
    }
}

/// The backup test's writer: how far it got, and when to stop.
final class WriterProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var written = 0
    private var stopRequested = false

    var count: Int { lock.withLock { written } }
    var stopped: Bool { lock.withLock { stopRequested } }
    func wrote() { lock.withLock { written += 1 } }
    func stop() { lock.withLock { stopRequested = true } }
}
