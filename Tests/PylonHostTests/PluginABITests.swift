import Foundation
import PylonPluginABI
import Testing

/// The plugin ABI from the outside (DESIGN.md §3): a plugins folder with the real SQLite
/// store, a valid C99 fixture and one broken file per refusal reason, inspected with
/// `pylon-host plugins` and served with `pylon-host serve`; plus the header hash.
///
/// Needs the release host and plugins from `make build`; builds the C fixtures itself
/// (`Tests/Fixtures/plugins/*.c`) with `cc` into a fresh temp folder per test.
@Suite("Plugin ABI: handshake, refusals, header hash")
struct PluginABITests {
    @Test func pluginsJSONListsLoadedPluginsAndEveryRefusalWithItsReason() async throws {
        let folder = try await ABIFixtureFolder.make()
        defer { folder.remove() }
        let r = try await ABIRun.run(TestPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path, "--json"])
        #expect(r.status == 0, "pylon-host plugins --json exited \(r.status); stderr:\n\(r.stderr)")
        let report = try JSONDecoder().decode(ABIPluginsReport.self, from: Data(r.stdout.utf8))

        // Loaded: the real store and exactly one of the two same-id fixtures (the first by name).
        #expect(Set(report.plugins.map(\.file)) == [ABIFixtureFolder.sqliteFile, ABIFixtureFolder.fixtureFirst],
                "loaded: \(report.plugins.map(\.file)); output:\n\(r.stdout)")
        let store = report.plugins.first { $0.file == ABIFixtureFolder.sqliteFile }
        #expect(store?.id == "pylon.store.sqlite")
        #expect(store?.capabilities.contains("pylon.store/1") == true)
        #expect(store?.abi.hasPrefix("\(PYLON_ABI_MAJOR).") == true)
        let fixture = report.plugins.first { $0.file == ABIFixtureFolder.fixtureFirst }
        #expect(fixture?.id == ABIFixtureFolder.fixtureID)
        #expect(fixture?.version == "0.0.1")
        #expect(fixture?.abi == "\(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR)")
        #expect(fixture?.capabilities == ["test.dummy/1"])
        #expect(fixture?.warnings?.isEmpty ?? true, "a fixture built from this header should load without warnings: \(fixture?.warnings ?? [])")

        // Refused: one entry per bad file, each with its specific reason.
        #expect(Set(report.refused.map(\.file)) == Set(ABIFixtureFolder.badFiles),
                "refused: \(report.refused.map(\.file)); output:\n\(r.stdout)")
        #expect(report.refused.count == ABIFixtureFolder.badFiles.count)
        func reason(_ file: String) -> String { report.refused.first { $0.file == file }?.reason ?? "(not refused)" }
        for refusal in report.refused {
            #expect(refusal.path?.hasSuffix("/" + refusal.file) ?? true, "path of \(refusal.file): \(refusal.path ?? "")")
        }

        // A plugin built against ABI 1.8 (a 1.x-shaped descriptor): its ABI, the host's, and
        // what to do.
        let abi1 = reason(ABIFixtureFolder.abi1File)
        #expect(abi1.contains("built for plugin ABI 1.8"), "the 1.x plugin's ABI: \(abi1)")
        #expect(abi1.contains("\(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR)"), "the host's ABI: \(abi1)")
        #expect(abi1.contains("rebuild the plugin against the ABI \(PYLON_ABI_MAJOR) pylon_plugin.h"), "what to do: \(abi1)")

        let abi3 = reason(ABIFixtureFolder.abi3File)
        #expect(abi3.contains("3.\(PYLON_ABI_MINOR)"), "wrong-major reason must name the plugin's ABI: \(abi3)")
        #expect(abi3.contains("\(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR)"), "wrong-major reason must name the host's ABI: \(abi3)")

        let small = reason(ABIFixtureFolder.smallStructFile)
        #expect(small.contains("struct_size"), "too-small descriptor: \(small)")
        #expect(small.contains("16"), "too-small descriptor reason must give the size: \(small)")
        #expect(small.contains("\(MemoryLayout<pylon_plugin_descriptor>.size)"), "and the size required: \(small)")

        let noEntry = reason(ABIFixtureFolder.noEntryFile)
        #expect(noEntry.contains(PYLON_PLUGIN_ENTRY_SYMBOL), "missing entry symbol: \(noEntry)")

        let text = reason(ABIFixtureFolder.textFile)
        #expect(text.contains("not a shared library"), "text file named .so: \(text)")

        let dup = reason(ABIFixtureFolder.fixtureSecond)
        #expect(dup.contains(ABIFixtureFolder.fixtureID), "duplicate id reason must name the id: \(dup)")
        #expect(dup.contains(ABIFixtureFolder.fixtureFirst), "duplicate id reason must name the first file: \(dup)")
    }

    @Test func pluginsTextOutputShowsTheSameVerdicts() async throws {
        let folder = try await ABIFixtureFolder.make()
        defer { folder.remove() }
        let json = try await ABIRun.run(TestPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path, "--json"])
        let report = try JSONDecoder().decode(ABIPluginsReport.self, from: Data(json.stdout.utf8))
        let r = try await ABIRun.run(TestPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path])
        #expect(r.status == 0, "pylon-host plugins exited \(r.status); stderr:\n\(r.stderr)")
        #expect(!r.stdout.hasPrefix("{"), "text mode printed JSON:\n\(r.stdout)")
        for p in report.plugins {
            #expect(r.stdout.contains(p.file), "text output lacks loaded \(p.file):\n\(r.stdout)")
            #expect(r.stdout.contains(p.id), "text output lacks id \(p.id):\n\(r.stdout)")
            for c in p.capabilities { #expect(r.stdout.contains(c), "text output lacks capability \(c)") }
        }
        for f in ABIFixtureFolder.badFiles {
            let reason = report.refused.first { $0.file == f }?.reason ?? "(missing from JSON)"
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.contains("refused") && $0.contains(reason) },
                    "text output lacks the refusal of \(f) (\(reason)):\n\(r.stdout)")
            #expect(ABILog.lineCount(r.stdout, mentioning: f) >= 1, "text output never names \(f)")
        }
        #expect(r.stdout.split(separator: "\n").filter { $0.contains("refused") }.count == ABIFixtureFolder.badFiles.count,
                "one refusal per bad file:\n\(r.stdout)")
    }

    @Test func serveLoadsGoodPluginsRefusesBadOnesAndStillServes() async throws {
        let folder = try await ABIFixtureFolder.make()
        defer { folder.remove() }
        let manifest = """
        {"manifest_version": 1, "name": "abi-test", "version": "0.1.0",
         "entities": [{"name": "Note", "fields": [
            {"name": "title", "type": "string", "optional": false, "unique": false},
            {"name": "stars", "type": "int", "optional": true, "unique": false}], "indexes": []}]}
        """
        let manifestPath = folder.root.appendingPathComponent("pylon.manifest.json").path
        try Data(manifest.utf8).write(to: URL(fileURLWithPath: manifestPath))
        let host = ServedHost(directory: folder.root, pluginsDir: folder.plugins.path, manifestPath: manifestPath,
                              dbPath: folder.root.appendingPathComponent("app.db").path)
        defer { host.kill9() }
        try await host.launch()

        let health = try await host.request("GET", "/health")
        #expect(health.status == 200, "GET /health: \(health.status) \(health.text)")

        let created = try await host.request("POST", "/api/entities/Note", body: #"{"title":"from the ABI test","stars":5}"#)
        #expect(created.status == 201, "POST /api/entities/Note: \(created.status) \(created.text)")
        let id = try JSONDecoder().decode(ABICreated.self, from: created.data).id
        let got = try await host.request("GET", "/api/entities/Note/\(id)")
        #expect(got.status == 200, "GET /api/entities/Note/\(id): \(got.status) \(got.text)")
        let row = try JSONDecoder().decode(ABINote.self, from: got.data)
        #expect(row.id == id)
        #expect(row.title == "from the ABI test")
        #expect(row.stars == 5)

        // The startup log: exactly one refusal line per bad file, none for the good ones.
        let log = host.log
        for f in ABIFixtureFolder.badFiles {
            #expect(ABILog.refusalLines(log, file: f) == 1, "expected one refusal line for \(f) in the startup log:\n\(log)")
        }
        for f in [ABIFixtureFolder.sqliteFile, ABIFixtureFolder.fixtureFirst] {
            #expect(ABILog.refusalLines(log, file: f) == 0, "\(f) should load, log:\n\(log)")
        }
        #expect(log.split(separator: "\n").filter { $0.contains("refused") }.count == ABIFixtureFolder.badFiles.count,
                "one refusal line per bad file, no more:\n\(log)")
        #expect(log.contains(ABIFixtureFolder.fixtureID), "the loaded fixture is not mentioned in the log:\n\(log)")
    }

    @Test func headerHashMatchesTheHeader() throws {
        let path = TestPaths.packageRoot.appendingPathComponent("Sources/PylonPluginABI/include/pylon_plugin.h").path
        guard let data = FileManager.default.contents(atPath: path) else {
            Issue.record("cannot read \(path)")
            return
        }
        // Same as scripts/abi-hash.py: every line (with its newline) except the one that
        // carries the hash, FNV-1a 32 over the bytes.
        let bytes = [UInt8](data)
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0x0A {
            lines.append(bytes[start...i])
            start = i + 1
        }
        if start < bytes.count { lines.append(bytes[start...]) }
        let marker = Array("/* abi_header_hash */".utf8)
        var markerLines = 0
        var hash: UInt32 = 0x811C_9DC5
        for line in lines {
            if Self.contains(line, marker) {
                markerLines += 1
                continue
            }
            for b in line {
                hash ^= UInt32(b)
                hash = hash &* 0x0100_0193
            }
        }
        #expect(markerLines == 1, "pylon_plugin.h should have exactly one line with /* abi_header_hash */")
        #expect(hash == PYLON_ABI_HEADER_HASH,
                "PYLON_ABI_HEADER_HASH is \(String(PYLON_ABI_HEADER_HASH, radix: 16)) but the header hashes to \(String(hash, radix: 16)); run scripts/abi-hash.py --write")
    }

    private static func contains(_ hay: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        let h = Array(hay)
        for i in 0...(h.count - needle.count) where h[i] == needle[0] {
            if Array(h[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }
}

// MARK: - Fixture folder

/// A temp dir with `plugins/` holding the real store, good and bad fixtures.
fileprivate struct ABIFixtureFolder {
    static let fixtureID = "test.fixture"
    static let sqliteFile = "libPylonStoreSQLite.so"
    /// Same id twice: the first by file name loads, the second is refused.
    static let fixtureFirst = "libfixture_a.so"
    static let fixtureSecond = "libfixture_b.so"
    static let abi1File = "libfixture_abi1.so"
    static let abi3File = "libfixture_abi3.so"
    static let smallStructFile = "libfixture_small.so"
    static let noEntryFile = "libno_entry.so"
    static let textFile = "x.so"
    static let badFiles = [fixtureSecond, abi1File, abi3File, smallStructFile, noEntryFile, textFile]

    let root: URL
    let plugins: URL

    static func make() async throws -> ABIFixtureFolder {
        let fm = FileManager.default
        let root = try TestPaths.freshTempDir("pylon-abi")
        let plugins = root.appendingPathComponent("plugins")
        let folder = ABIFixtureFolder(root: root, plugins: plugins)
        do {
            try fm.createDirectory(at: plugins, withIntermediateDirectories: true)
            try fm.copyItem(atPath: TestPaths.sqlitePlugin, toPath: plugins.appendingPathComponent(sqliteFile).path)
            let fixture = "fixture_plugin"
            try await FixturePlugins.compile(fixture, to: plugins.appendingPathComponent(fixtureFirst).path,
                              defines: ["FIXTURE_ID=\"\(fixtureID)\""])
            try await FixturePlugins.compile(fixture, to: plugins.appendingPathComponent(fixtureSecond).path,
                              defines: ["FIXTURE_ID=\"\(fixtureID)\""])
            try await FixturePlugins.compile(fixture, to: plugins.appendingPathComponent(abi1File).path,
                              defines: ["FIXTURE_ID=\"test.fixture.abi1\"", "FIXTURE_ABI_1"])
            try await FixturePlugins.compile(fixture, to: plugins.appendingPathComponent(abi3File).path,
                              defines: ["FIXTURE_ID=\"test.fixture.abi3\"", "FIXTURE_ABI_MAJOR=3"])
            try await FixturePlugins.compile(fixture, to: plugins.appendingPathComponent(smallStructFile).path,
                              defines: ["FIXTURE_ID=\"test.fixture.small\"", "FIXTURE_STRUCT_SIZE=16"])
            try await FixturePlugins.compile("no_entry", to: plugins.appendingPathComponent(noEntryFile).path)
            try Data("this is a text file that happens to be named x.so, not a shared library\n".utf8)
                .write(to: plugins.appendingPathComponent(textFile))
        } catch {
            folder.remove()
            throw error
        }
        return folder
    }

    func remove() { TestPaths.removeTempDir(root) }
}

// MARK: - Running commands

fileprivate enum ABIRun {
    /// `TestCommand.run` with this file's 120 s limit (a `cc` run can be slow).
    static func run(_ executable: String, _ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await TestCommand.run(executable, args, timeout: 120)
    }
}

fileprivate enum ABILog {
    /// Lines that mention `file` as a whole word (file names are not substrings of each other
    /// by accident: "x.so" must not match "libx.so").
    static func lineCount(_ text: String, mentioning file: String) -> Int {
        text.split(separator: "\n").filter { mentions(String($0), file) }.count
    }

    /// Lines that refuse `file`: the file is named before the word "refused" (a duplicate-id
    /// refusal of another file also names the first file, after "refused").
    static func refusalLines(_ text: String, file: String) -> Int {
        text.split(separator: "\n").filter { line in
            guard let r = line.range(of: "refused") else { return false }
            return mentions(String(line[..<r.lowerBound]), file)
        }.count
    }

    static func mentions(_ line: String, _ file: String) -> Bool {
        let separators = CharacterSet.whitespaces.union(CharacterSet(charactersIn: ":,;()\"'[]/"))
        return line.components(separatedBy: separators).contains(file)
    }
}

// MARK: - JSON shapes

fileprivate struct ABIPluginsReport: Decodable {
    struct Loaded: Decodable {
        var file: String
        var id: String
        var version: String
        var abi: String
        var capabilities: [String]
        var warnings: [String]?
    }

    struct Refused: Decodable {
        var file: String
        var path: String?
        var reason: String
    }

    var plugins: [Loaded]
    var refused: [Refused]
}

fileprivate struct ABICreated: Decodable { var id: String }

fileprivate struct ABINote: Decodable {
    var id: String
    var title: String
    var stars: Int?
}
