import Foundation
import Testing

/// Backups hold the uploaded files' bytes (`FILE.files` beside `FILE`), black-box through
/// the release binary with the real FilesLocal plugin, on SQLite and Postgres: random
/// binary files come back byte for byte after the files folder is wiped; a file deleted
/// after the backup comes back; uploads and deletes racing the backup leave no restored row
/// without its bytes; a corrupt, truncated, mismatched or hostile archive is refused with
/// FILES_ARCHIVE_INVALID / FILES_ARCHIVE_MISMATCH and changes nothing.
@Suite("Backups with file bytes: pylon-host backup and restore")
struct BackupFilesTests {
    static let admin = HostProcess.adminToken

    /// Every file id the change log says exists (inserts minus deletes), as the admin pulls it.
    static func liveFileIDs(_ host: HostProcess) async throws -> Set<String> {
        var live = Set<String>()
        for e in try await FilesTests.fileEvents(host) {
            if e.kind == "insert" { live.insert(e.id) } else if e.kind == "delete" { live.remove(e.id) }
        }
        return live
    }

    static func get(_ host: HostProcess, _ id: String) async throws -> FilesTests.Answer {
        try await FilesTests.send(host, "GET", "/api/files/\(id)", token: admin)
    }

    static func leftovers(_ host: HostProcess) throws -> [String] {
        let top = try FileManager.default.contentsOfDirectory(atPath: host.directory.path).filter { $0.contains(".partial-") }
        return top + FilesTests.storedFiles(host).filter { $0.hasPrefix("tmp/") }
    }

    @Test("Random binary files round-trip byte for byte through backup, wipe and restore; a file deleted after the backup comes back; a later upload does not",
          arguments: BackupTests.stores)
    func roundTrip(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: BackupTests.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        var kept: [String: [UInt8]] = [:]
        for size in [1_500_000, 700_000, 1, 0] {
            let bytes = size == 0 ? [] : FilesTests.randomBytes(max(size, 300))
            let up = try await FilesTests.upload(host, bytes, token: alice)
            #expect(up.status == 201, "\(up.text)")
            kept[try #require(up.json["id"].string)] = bytes
        }

        // Uploads and deletes race the backup.
        let racing = Task { () -> Set<String> in
            var deleted = Set<String>()
            for n in 0..<400 where !Task.isCancelled {
                let up = try await FilesTests.upload(host, FilesTests.randomBytes(5_000 + n), token: alice)
                if n % 2 == 0, let id = up.json["id"].string {
                    deleted.insert(id)
                    _ = try await FilesTests.send(host, "DELETE", "/api/files/\(id)", token: alice)
                }
            }
            return deleted
        }
        let file = host.directory.appendingPathComponent("with-files.bin").path
        let made = try await BackupTests.cli(host, "backup", file)
        racing.cancel()
        let deletedWhileRacing = (try? await racing.value) ?? []
        #expect(made.status == 0, "backup failed:\n\(made.stderr)")
        #expect(made.stdout.contains("written to \(file).files"), "\(made.stdout)")
        #expect(FileManager.default.fileExists(atPath: file + ".files"))
        let partial = try Self.leftovers(host)
        #expect(partial.isEmpty, "no partial files: \(partial)")

        // After the backup: one file deleted (its bytes go), one uploaded.
        let deleted = try #require(kept.keys.sorted().first)
        #expect(try await FilesTests.send(host, "DELETE", "/api/files/\(deleted)", token: alice).status == 200)
        let later = try #require(try await FilesTests.upload(host, [9, 0, 9], token: alice).json["id"].string)
        await host.stopAndWait()

        for wipe in [false, true] {
            if wipe {
                // Every stored byte lost: the archive alone brings them back.
                try FileManager.default.removeItem(at: host.directory.appendingPathComponent("files"))
            }
            let restored = try await BackupTests.cli(host, "restore", file)
            #expect(restored.status == 0, "restore (wipe: \(wipe)) failed:\n\(restored.stderr)")
            #expect(restored.stdout.contains("file(s) in place"), "\(restored.stdout)")
            try await host.restart()
            for (id, bytes) in kept {
                let got = try await Self.get(host, id)
                #expect(got.status == 200 && got.body == bytes, "wipe \(wipe): \(id) came back \(got.status), \(got.body.count) of \(bytes.count) bytes")
            }
            #expect(try await Self.get(host, later).status == 404, "an upload after the backup is not in it")
            // Every file the restored change log says exists has its bytes (racing uploads
            // included): a file deleted while the backup ran is either whole or gone, with a
            // delete entry in the log.
            let live = try await Self.liveFileIDs(host)
            for id in live {
                let status = try await Self.get(host, id).status
                #expect(status == 200, "wipe \(wipe): the restored row \(id) has its bytes: \(status), racing delete: \(deletedWhileRacing.contains(id))")
            }
            #expect(Set(kept.keys).isSubset(of: live), "the change log lists the kept files")
            let partial = try Self.leftovers(host)
        #expect(partial.isEmpty, "no partial files: \(partial)")
            await host.stopAndWait()
        }
    }

    @Test("A corrupt, truncated, mismatched or hostile files archive is refused with a stable code; the database and the stored files stay as they were",
          arguments: BackupTests.stores)
    func hostileArchives(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: BackupTests.manifest, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bytes = FilesTests.randomBytes(200_000)
        let id = try #require(try await FilesTests.upload(host, bytes, token: alice).json["id"].string)
        let good = host.directory.appendingPathComponent("good.bin").path
        #expect(try await BackupTests.cli(host, "backup", good).status == 0)
        _ = try await host.insert("Note", #"{"title":"after"}"#)
        let other = host.directory.appendingPathComponent("other.bin").path
        #expect(try await BackupTests.cli(host, "backup", other).status == 0)
        // Deleted after the backups: a refused restore must not bring it back.
        #expect(try await FilesTests.send(host, "DELETE", "/api/files/\(id)", token: alice).status == 200)
        await host.stopAndWait()
        let stored = FilesTests.storedFiles(host)

        let archive = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good + ".files")))
        let head = Array(archive.prefix(12 + 8 + 32))
        func entry(_ key: [UInt8], size: UInt64, body: [UInt8]) -> [UInt8] {
            [UInt8(ascii: "F"), UInt8(key.count)] + key + (0..<8).reversed().map { UInt8(truncatingIfNeeded: size >> (UInt64($0) * 8)) }
                + [UInt8](repeating: 7, count: 32) + body
        }
        let end = [UInt8(ascii: "E")] + [UInt8](repeating: 0, count: 40)
        var flipped = archive
        flipped[archive.count / 2] ^= 0xFF
        let cases: [(name: String, bytes: [UInt8], code: String)] = [
            ("truncated", Array(archive.prefix(archive.count / 2)), "FILES_ARCHIVE_INVALID"),
            ("a flipped byte", flipped, "FILES_ARCHIVE_INVALID"),
            ("empty", [], "FILES_ARCHIVE_INVALID"),
            ("not an archive", Array("hello\n".utf8), "FILES_ARCHIVE_INVALID"),
            ("path traversal key", head + entry(Array("../../../../tmp/pwned".utf8), size: 3, body: [1, 2, 3]) + end, "FILES_ARCHIVE_INVALID"),
            ("absolute path key", head + entry(Array("/etc/passwd".utf8), size: 3, body: [1, 2, 3]) + end, "FILES_ARCHIVE_INVALID"),
            ("empty key", head + entry([], size: 3, body: [1, 2, 3]) + end, "FILES_ARCHIVE_INVALID"),
            ("oversized size", head + entry(Array("a1b2".utf8), size: 1 << 62, body: [1, 2, 3]) + end, "FILES_ARCHIVE_INVALID"),
            ("bytes after the end", archive + [0], "FILES_ARCHIVE_INVALID"),
        ]
        for c in cases {
            let path = host.directory.appendingPathComponent("case.bin").path
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.copyItem(atPath: good, toPath: path)
            try Data(c.bytes).write(to: URL(fileURLWithPath: path + ".files"))
            let r = try await BackupTests.cli(host, "restore", path)
            #expect(r.status == 2, "\(c.name): restore must fail:\n\(r.stdout)\n\(r.stderr)")
            #expect(r.stderr.contains("error: \(c.code):") && r.stderr.contains("unchanged"), "\(c.name): \(r.stderr)")
        }
        // An archive beside another backup's database.
        let mixed = host.directory.appendingPathComponent("mixed.bin").path
        try FileManager.default.copyItem(atPath: other, toPath: mixed)
        try FileManager.default.copyItem(atPath: good + ".files", toPath: mixed + ".files")
        let r = try await BackupTests.cli(host, "restore", mixed)
        #expect(r.status == 2 && r.stderr.contains("error: FILES_ARCHIVE_MISMATCH:"), "\(r.stderr)")

        #expect(FilesTests.storedFiles(host) == stored, "no file was added or removed")
        #expect(try Self.leftovers(host).isEmpty)
        try await host.restart()
        #expect(try await Self.get(host, id).status == 404, "the database is as it was")
        #expect(try await BackupTests.titles(host) == ["after"])
        await host.stopAndWait()

        // The good pair still restores.
        let ok = try await BackupTests.cli(host, "restore", good)
        #expect(ok.status == 0, "\(ok.stderr)")
        try await host.restart()
        let got = try await Self.get(host, id)
        #expect(got.status == 200 && got.body == bytes)
    }

    @Test("A file whose bytes were already lost is named by the backup and left out on restore, with a delete in the change log; the others come back")
    func lostBytes() async throws {
        let host = try await HostProcess.start(manifest: BackupTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let keep = FilesTests.randomBytes(50_000)
        let kept = try #require(try await FilesTests.upload(host, keep, token: alice).json["id"].string)
        let lost = try #require(try await FilesTests.upload(host, [1, 2, 3], token: alice).json["id"].string)
        // The test alone reaches into the folder: the 3-byte file's bytes vanish behind the host's back.
        let lostKey = try #require(FilesTests.storedFiles(host).first { path in
            !path.hasPrefix("tmp/")
                && (try? FileManager.default.attributesOfItem(atPath: host.directory.appendingPathComponent("files/" + path).path)[.size] as? Int) == 3
        })
        try FileManager.default.removeItem(at: host.directory.appendingPathComponent("files/" + lostKey))
        let file = host.directory.appendingPathComponent("lost.bin").path
        let made = try await BackupTests.cli(host, "backup", file)
        #expect(made.status == 0 && made.stdout.contains("1 file(s), 50000 bytes") && made.stdout.contains("does not have") && made.stdout.contains(lost),
                "\(made.stdout)\n\(made.stderr)")
        await host.stopAndWait()
        let restored = try await BackupTests.cli(host, "restore", file)
        #expect(restored.status == 0, "\(restored.stderr)")
        try await host.restart()
        #expect(try await Self.get(host, kept).body == keep)
        #expect(try await Self.get(host, lost).status == 404)
        #expect(try await Self.liveFileIDs(host) == [kept], "the dropped row has a delete entry in the change log")
    }

    @Test("An upload in progress on the serving host survives a backup starting beside it (the files plugin's start-up clean-up leaves live uploads alone)")
    func uploadDuringBackup() async throws {
        let host = try await HostProcess.start(manifest: BackupTests.manifest)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        // A stale temp file of a crashed run (not empty, not locked) is cleaned up by the backup's start.
        let tmp = host.directory.appendingPathComponent("files/tmp")
        let stale = tmp.appendingPathComponent("fedcba9876543210fedcba9876543210.part")
        try Data("half an upload".utf8).write(to: stale)
        // Over two of the host's 256 KiB pieces, so the first half starts the upload.
        let bytes = FilesTests.randomBytes(2_000_000)
        let head = FilesTests.request("POST", "/api/files/upload",
                                      headers: [("Authorization", "Bearer \(alice)"), ("X-Filename", "slow.bin"), ("Content-Type", "application/octet-stream")],
                                      body: bytes)
        let split = head.count - bytes.count + bytes.count / 2
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.release() }
        // Listed before the first half goes out: a quick host has its temp file by the time
        // a listing after the send is made, which then never sees a new one.
        let before = try FileManager.default.contentsOfDirectory(atPath: tmp.path)
        try socket.send(Array(head[..<split]))
        _ = try await eventually("the upload's temp file", timeout: 20) {
            let now = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []
            return now.count > before.count ? true : nil
        }
        let made = try await BackupTests.cli(host, "backup", host.directory.appendingPathComponent("mid-upload.bin").path)
        #expect(made.status == 0, "\(made.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale.path), "the stale temp file was removed")
        try socket.send(Array(head[split...]))
        let answer = try await onThread { try FilesTests.readAnswer(socket) }
        #expect(answer.status == 201, "the upload in progress was not disturbed: \(answer.status) \(answer.text)")
        let id = try #require(answer.json["id"].string)
        let got = try await Self.get(host, id)
        #expect(got.status == 200 && got.body == bytes)
    }

    @Test("Without a files plugin the backup holds the database alone and says so")
    func noFilesPlugin() async throws {
        let manifest = BackupTests.manifest.replacingOccurrences(of: #""indexes": []}]"#, with: #""indexes": []}], "plugins": {"files": {"use": "none"}}"#)
        let host = try await HostProcess.start(manifest: manifest)
        defer { host.stop() }
        _ = try await host.insert("Note", #"{"title":"only"}"#)
        let file = host.directory.appendingPathComponent("db-only.bin").path
        let made = try await BackupTests.cli(host, "backup", file)
        #expect(made.status == 0 && made.stdout.contains("no files plugin"), "\(made.stdout)\n\(made.stderr)")
        #expect(!FileManager.default.fileExists(atPath: file + ".files"))
        await host.stopAndWait()
        let restored = try await BackupTests.cli(host, "restore", file)
        #expect(restored.status == 0 && restored.stdout.contains("no file bytes were restored"), "\(restored.stdout)\n\(restored.stderr)")
    }

    @Test("A files plugin that leaves its slots NULL: serve refuses it with PLUGIN_INTERFACE_INCOMPLETE; backup keeps the database and says the bytes were NOT included")
    func brokenFilesPlugin() async throws {
        let root = try TestPaths.freshTempDir("pylon-backup-broken-files")
        defer { TestPaths.removeTempDir(root) }
        let plugins = root.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestPaths.sqlitePlugin, toPath: plugins.appendingPathComponent("libPylonStoreSQLite.so").path)
        try await FixturePlugins.compile("fixture_plugin", to: plugins.appendingPathComponent("libbrokenfiles.so").path,
                                         defines: ["FIXTURE_FILES", "FIXTURE_ID=\"test.files.broken\""])
        let manifest = root.appendingPathComponent("pylon.manifest.json").path
        try Data(BackupTests.manifest.replacingOccurrences(of: #""indexes": []}]"#, with: #""indexes": []}], "plugins": {"files": {"use": "test.files.broken"}}"#).utf8)
            .write(to: URL(fileURLWithPath: manifest))
        let common = ["--plugins", plugins.path, "--manifest", manifest, "--db", root.appendingPathComponent("app.db").path]

        let serve = try await TestCommand.run(TestPaths.hostBinary, ["serve"] + common + ["--port", "0"], timeout: 60)
        #expect(serve.status == 2 && serve.stderr.contains("PLUGIN_INTERFACE_INCOMPLETE") && serve.stderr.contains("read"), "\(serve.stderr)")

        let file = root.appendingPathComponent("broken.bin").path
        let made = try await TestCommand.run(TestPaths.hostBinary, ["backup"] + common + ["--to", file], timeout: 120)
        #expect(made.status == 0 && made.stdout.contains("file bytes NOT included") && made.stdout.contains("test.files.broken"),
                "\(made.stdout)\n\(made.stderr)")
        #expect(FileManager.default.fileExists(atPath: file) && !FileManager.default.fileExists(atPath: file + ".files"))
    }
}
