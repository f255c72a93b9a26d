import Foundation
import PylonPluginABI
import Testing

/// ABI evolution within major 2 (DESIGN.md §3 rules 2 and 5), from the outside: store
/// plugins built for another 2.x minor (a 2.1-style plugin on this host, and a table that ends
/// before slots this host has, as a 2.0 plugin on a 2.1-style host), unknown flags, NULL
/// optional slots, and a store whose calls break the contract, each compiled from
/// `Tests/Fixtures/plugins/evolving_store.c` (the C executor behind another descriptor) with
/// the system `cc`, alone in a plugins folder, served by the release host.
@Suite("ABI evolution: 2.x minors, NULL and unknown slots, misbehaving stores")
struct ABIEvolutionTests {
    static let manifest = """
    {"manifest_version": 1, "name": "abi-evolution", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Failing", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Silent", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Wide", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Garbage", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "NullNames", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Short", "fields": [{"name": "a", "type": "string", "optional": true, "unique": false},
                                    {"name": "b", "type": "int", "optional": true, "unique": false}], "indexes": []}
     ],
     "plugins": {"store": {"use": "USE"}}}
    """

    /// Builds the fixture with `define` into an empty plugins folder and returns a host on it
    /// (not yet launched).
    static func host(_ define: String, use: String) async throws -> ServedHost {
        let root = try TestPaths.freshTempDir("pylon-abi-evolution")
        let plugins = root.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        let executor = TestPaths.packageRoot.appendingPathComponent("examples/executor-c").path
        try await FixturePlugins.compile("evolving_store", to: plugins.appendingPathComponent("libevolving.so").path, defines: [define],
                                         extra: ["-I\(executor)", "-lsqlite3"])
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

    @Test("A plugin built for a newer minor (longer descriptor, store table and host table, an unknown store flag) is accepted; its extra slots are never called")
    func newerMinorAccepted() async throws {
        let host = try await Self.host("FIXTURE_NEWER_MINOR", use: "newer")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        try await Self.expectCRUD(host)
        let log = host.log
        #expect(log.contains("ABI \(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR + 1)"), "loaded with its own minor:\n\(log)")
        #expect(log.contains("newer than the host's"), "the newer minor is reported:\n\(log)")
        #expect(log.contains("at newer-minor fixture store"), "its describe slot is used:\n\(log)")
        #expect(log.contains("the host table ends before the future slot; falling back"),
                "the plugin probed the host table's struct_size:\n\(log)")
        #expect(!log.contains("refused"), "\(log)")
    }

    @Test("A store table that ends after its required slots (a plugin from before the host's later slots) is probed by struct_size and falls back")
    func shortTableFallsBack() async throws {
        let host = try await Self.host("FIXTURE_SHORT_TABLE", use: "short")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        try await Self.expectCRUD(host)
        let log = host.log
        #expect(log.contains("ABI \(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR)"), "\(log)")
        // The describe pointer sits in memory past struct_size and aborts if called; the
        // host logs the config's path instead.
        #expect(log.contains("store: test.store.short at \(host.dbPath)"), "falls back to the path:\n\(log)")
    }

    @Test("A store of this minor with its optional slots NULL serves; describe falls back to the path", arguments: ["FIXTURE_CURRENT"])
    func nullOptionalSlots(_ define: String) async throws {
        let host = try await Self.host(define, use: "current")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        try await Self.expectCRUD(host)
        #expect(host.log.contains("store: test.store.current at \(host.dbPath)"), "\(host.log)")
    }

    @Test("pylon-host backup / restore with a store whose backup slots are NULL or past its struct_size say the plugin does not support backup",
          arguments: [("FIXTURE_SHORT_TABLE", "short"), ("FIXTURE_CURRENT", "current")])
    func noBackupSlots(_ define: String, _ use: String) async throws {
        let host = try await Self.host(define, use: use)
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

    @Test("A [bounded] point read answered BUSY (a lock held elsewhere) is retried on a reader connection: the right row, never an error")
    func boundedReadFallsBack() async throws {
        let host = try await Self.host("FIXTURE_LOCAL_READS", use: "local")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        #expect(host.log.contains("local-reads fixture: opened a bounded read connection"),
                "a store with LOCAL_READS gets PYLON_STORE_OPEN_READ_BOUNDED connections:\n\(host.log)")
        let created = try await host.request("POST", "/api/entities/Note", body: #"{"title":"behind a lock"}"#)
        #expect(created.status == 201, "\(created.text)")
        let json: Any? = try? TestJSON.parse(created.text)
        let id = try #require(json["id"].string)
        // Every quick read answers BUSY; each GET is still answered, from a reader.
        for _ in 0..<20 {
            let got = try await host.request("GET", "/api/entities/Note/\(id)")
            #expect(got.status == 200 && got.text.contains("behind a lock"), "\(got.status) \(got.text)")
        }
        let missing = try await host.request("GET", "/api/entities/Note/no-such-id")
        #expect(missing.status == 404, "\(missing.text)")
        try await Self.expectCRUD(host)
    }

    @Test("A store table smaller than its required slots stops the host with a message naming the plugin")
    func tooSmallTableRefused() async throws {
        let host = try await Self.host("FIXTURE_TABLE_SIZE=8", use: "small")
        defer { TestPaths.removeTempDir(host.directory) }
        let r = try await host.launchExpectingExit()
        #expect(r.exited, "the host must not serve with a truncated store table:\n\(r.log)")
        #expect(r.status != 0)
        #expect(r.log.contains("PLUGIN_INTERFACE_TOO_SMALL") || r.log.contains("8 bytes"), "\(r.log)")
        #expect(r.log.contains("test.store.small"), "names the plugin:\n\(r.log)")
    }

    @Test("A store whose calls return huge or missing errors, wrong sizes or garbage rows gets error answers, and the host keeps serving")
    func misbehavingStore() async throws {
        let host = try await Self.host("FIXTURE_MISBEHAVE", use: "misbehave")
        defer { host.kill9(); TestPaths.removeTempDir(host.directory) }
        try await host.launch()
        for entity in ["Failing", "Silent", "Wide", "Garbage", "NullNames"] {
            let r = try await host.request("GET", "/api/entities/\(entity)")
            #expect(r.status == 500, "\(entity): \(r.status) \(r.text.prefix(300))")
            let body: Any? = try? TestJSON.parse(r.text)
            let code = body.errorCode
            #expect(code == "STORE_ERROR", "\(entity): \(r.text.prefix(300))")
            let message = body["error"]["message"].string ?? ""
            switch entity {
            case "Failing":
                // A 1 MiB code and message (len-based, no NUL): the host keeps a bounded part.
                #expect(message.hasPrefix("XXXX") && message.utf8.count <= 16 * 1024, "\(message.utf8.count) bytes")
            case "Silent":
                // A failure with no error reported: the host's own words, with the status.
                #expect(message.contains("status \(PYLON_ERR_IO)"), "\(r.text)")
            default:
                #expect(message.contains("fix the plugin"), "\(entity): the contract breach is named: \(r.text)")
            }
        }
        // Consistent rows with fewer columns than selected: read as nulls, never a crash.
        let short = try await host.request("GET", "/api/entities/Short")
        #expect(short.status == 200, "\(short.text)")

        // Still serving, every other path intact.
        #expect(try await host.request("GET", "/health").status == 200)
        try await Self.expectCRUD(host)
    }
}
