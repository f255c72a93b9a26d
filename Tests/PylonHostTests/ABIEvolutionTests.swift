import Foundation
import PylonPluginABI
import Testing

/// ABI evolution (DESIGN.md §3 rules 2 and 5), from the outside: store plugins built for
/// another minor, and a store whose calls break the contract, each compiled from
/// `Tests/Fixtures/plugins/evolving_store.c` (the C executor behind another descriptor) with
/// the system `cc`, alone in a plugins folder, served by the release host.
@Suite("ABI evolution: newer and older minors, misbehaving stores")
struct ABIEvolutionTests {
    static let manifest = """
    {"manifest_version": 1, "name": "abi-evolution", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Failing", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Wide", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Garbage", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "NullNames", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Short", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false},
                                    {"name": "b", "type": "int", "optional": true, "unique": false}], "indexes": []},
       {"name": "NoResult", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []}
     ],
     "plugins": {"store": {"use": "USE"}}}
    """

    /// Builds the fixture with `define` into an empty plugins folder and returns a host on it
    /// (not yet launched).
    static func host(_ define: String, use: String) async throws -> ServedHost {
        let root = try TestPaths.freshTempDir("pylon-abi-evolution")
        let plugins = root.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        let include = TestPaths.packageRoot.appendingPathComponent("Sources/PylonPluginABI/include").path
        let executor = TestPaths.packageRoot.appendingPathComponent("examples/executor-c").path
        let source = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/plugins/evolving_store.c").path
        let out = plugins.appendingPathComponent("libevolving.so").path
        let cc = try await TestCommand.run("/usr/bin/env", ["cc", "-std=c99", "-shared", "-fPIC", "-I\(include)", "-I\(executor)",
                                                            "-D\(define)", "-o", out, source, "-lsqlite3"], timeout: 120)
        guard cc.status == 0 else { throw TestSetupError(description: "cc -D\(define) failed:\n\(cc.stderr)") }
        let manifestPath = root.appendingPathComponent("pylon.manifest.json").path
        try Data(manifest.replacingOccurrences(of: "USE", with: use).utf8).write(to: URL(fileURLWithPath: manifestPath))
        return ServedHost(directory: root, pluginsDir: plugins.path, manifestPath: manifestPath,
                          dbPath: root.appendingPathComponent("app.db").path)
    }

    /// Insert, read back, list: the store really serves.
    static func expectCRUD(_ host: ServedHost, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let created = try await host.request("POST", "/api/entities/Note", body: #"{"title":"evolves"}"#)
        #expect(created.status == 201, "\(created.text)\n\(host.log)", sourceLocation: sourceLocation)
        let json: Any? = try? TestJSON.parse(created.text)
        let id = try #require(json["id"].string, sourceLocation: sourceLocation)
        let got = try await host.request("GET", "/api/entities/Note/\(id)")
        #expect(got.status == 200 && got.text.contains("evolves"), "\(got.text)", sourceLocation: sourceLocation)
        let pull = try await host.request("GET", "/api/sync/pull?since=0")
        #expect(pull.text.contains(id), "\(pull.text)", sourceLocation: sourceLocation)
    }

    @Test("A plugin built for a newer minor (longer descriptor and store table) is accepted; its extra slots are never called")
    func newerMinorAccepted() async throws {
        let host = try await Self.host("FIXTURE_NEWER_MINOR", use: "newer")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        try await Self.expectCRUD(host)
        let log = host.log
        #expect(log.contains("ABI \(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR + 1)"), "loaded with its own minor:\n\(log)")
        #expect(log.contains("newer than the host's"), "the newer minor is reported:\n\(log)")
        #expect(log.contains("at newer-minor fixture store"), "the 1.1 describe slot it has is used:\n\(log)")
        #expect(!log.contains("refused"), "\(log)")
    }

    @Test("A plugin built against ABI 1.0 (store table ends before describe) is probed by struct_size and falls back")
    func olderMinorFallsBack() async throws {
        let host = try await Self.host("FIXTURE_MINOR0", use: "minor0")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        try await Self.expectCRUD(host)
        let log = host.log
        #expect(log.contains("ABI \(PYLON_ABI_MAJOR).0"), "\(log)")
        // The describe pointer sits in memory past struct_size and aborts if called; the
        // host logs the config's path instead.
        #expect(log.contains("store: test.store.minor0 at \(host.dbPath)"), "falls back to the path:\n\(log)")
    }

    @Test("pylon-host backup / restore with a store built before ABI 1.8 (no backup slots within struct_size) say the plugin does not support backup")
    func olderMinorHasNoBackup() async throws {
        let host = try await Self.host("FIXTURE_MINOR0", use: "minor0")
        defer { TestPaths.removeTempDir(host.directory) }
        let file = host.directory.appendingPathComponent("backup.db").path
        for (verb, option) in [("backup", "--to"), ("restore", "--from")] {
            let r = try await TestCommand.run(TestPaths.hostBinary, [verb, "--plugins", host.pluginsDir, "--manifest", host.manifestPath,
                                                                     "--db", host.dbPath, option, file])
            #expect(r.status == 2, "\(verb): \(r.stderr)")
            #expect(r.stderr.contains("STORE_BACKUP_UNSUPPORTED") && r.stderr.contains("this store plugin does not support backup"),
                    "\(verb): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test("A store table smaller than ABI 1.0 stops the host with a message naming the plugin")
    func tooSmallTableRefused() async throws {
        let host = try await Self.host("FIXTURE_TABLE_SIZE=8", use: "small")
        defer { TestPaths.removeTempDir(host.directory) }
        let r = try await host.launchExpectingExit()
        #expect(r.exited, "the host must not serve with a truncated store table:\n\(r.log)")
        #expect(r.status != 0)
        #expect(r.log.contains("PLUGIN_INTERFACE_TOO_SMALL") || r.log.contains("8 bytes"), "\(r.log)")
        #expect(r.log.contains("test.store.small"), "names the plugin:\n\(r.log)")
    }

    @Test("A store whose calls return errors, wrong sizes or garbage rows gets error answers, and the host keeps serving")
    func misbehavingStore() async throws {
        let host = try await Self.host("FIXTURE_MISBEHAVE", use: "misbehave")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        for entity in ["Failing", "Wide", "Garbage", "NullNames"] {
            let r = try await host.request("GET", "/api/entities/\(entity)")
            #expect(r.status == 500, "\(entity): \(r.status) \(r.text)")
            let body: Any? = try? TestJSON.parse(r.text)
            let code = body.errorCode
            #expect(code == "STORE_ERROR", "\(entity): \(r.text)")
            let message = body["error"]["message"].string ?? ""
            if entity == "Failing" {
                // Code and message had no NUL: read to the end of their buffers, no further.
                #expect(message.count <= PYLON_ERROR_MESSAGE_CAPACITY, "\(message.count) characters")
            } else {
                #expect(message.contains("fix the plugin"), "\(entity): the contract breach is named: \(r.text)")
            }
        }
        // Consistent rows with fewer columns than selected: read as nulls, never a crash.
        let short = try await host.request("GET", "/api/entities/Short")
        #expect(short.status == 200, "\(short.text)")
        // Success without a result: an empty answer, not a crash.
        let none = try await host.request("GET", "/api/entities/NoResult")
        #expect(none.status == 200, "\(none.text)")

        // Still serving, every other path intact.
        #expect(try await host.request("GET", "/health").status == 200)
        try await Self.expectCRUD(host)
    }
}
