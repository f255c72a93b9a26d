import Foundation
import PylonPluginABI
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        let r = try await ABIRun.run(ABIPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path, "--json"])
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

        let abi2 = reason(ABIFixtureFolder.abi2File)
        #expect(abi2.contains("2.\(PYLON_ABI_MINOR)"), "wrong-major reason must name the plugin's ABI: \(abi2)")
        #expect(abi2.contains("\(PYLON_ABI_MAJOR).\(PYLON_ABI_MINOR)"), "wrong-major reason must name the host's ABI: \(abi2)")

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
        let json = try await ABIRun.run(ABIPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path, "--json"])
        let report = try JSONDecoder().decode(ABIPluginsReport.self, from: Data(json.stdout.utf8))
        let r = try await ABIRun.run(ABIPaths.hostBinary, ["plugins", "--plugins", folder.plugins.path])
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
        let host = ABIServedHost(directory: folder.root, pluginsDir: folder.plugins.path, manifestPath: manifestPath,
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
        let path = ABIPaths.root.appendingPathComponent("Sources/PylonPluginABI/include/pylon_plugin.h").path
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

fileprivate struct ABISetupError: Error, CustomStringConvertible {
    var description: String
}

fileprivate enum ABIPaths {
    /// `Tests/PylonHostTests/PluginABITests.swift` → the package root.
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var hostBinary: String { root.appendingPathComponent(".build/release/pylon-host").path }
    static var sqlitePlugin: String { root.appendingPathComponent("plugins/libPylonStoreSQLite.so").path }
    static var fixtures: URL { root.appendingPathComponent("Tests/Fixtures/plugins") }
    static var abiInclude: String { root.appendingPathComponent("Sources/PylonPluginABI/include").path }

    static func requireBuild() throws {
        let fm = FileManager.default
        guard fm.isExecutableFile(atPath: hostBinary) else {
            throw ABISetupError(description: "\(hostBinary) is missing: run `make build` first")
        }
        guard fm.fileExists(atPath: sqlitePlugin) else {
            throw ABISetupError(description: "\(sqlitePlugin) is missing: run `make build` first")
        }
    }
}

/// A temp dir with `plugins/` holding the real store, good and bad fixtures.
fileprivate struct ABIFixtureFolder {
    static let fixtureID = "test.fixture"
    static let sqliteFile = "libPylonStoreSQLite.so"
    /// Same id twice: the first by file name loads, the second is refused.
    static let fixtureFirst = "libfixture_a.so"
    static let fixtureSecond = "libfixture_b.so"
    static let abi2File = "libfixture_abi2.so"
    static let smallStructFile = "libfixture_small.so"
    static let noEntryFile = "libno_entry.so"
    static let textFile = "x.so"
    static let badFiles = [fixtureSecond, abi2File, smallStructFile, noEntryFile, textFile]

    let root: URL
    let plugins: URL

    static func make() async throws -> ABIFixtureFolder {
        try ABIPaths.requireBuild()
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("pylon-abi-\(UUID().uuidString)")
        let plugins = root.appendingPathComponent("plugins")
        try fm.createDirectory(at: plugins, withIntermediateDirectories: true)
        let folder = ABIFixtureFolder(root: root, plugins: plugins)
        do {
            try fm.copyItem(atPath: ABIPaths.sqlitePlugin, toPath: plugins.appendingPathComponent(sqliteFile).path)
            let fixture = ABIPaths.fixtures.appendingPathComponent("fixture_plugin.c").path
            let noEntry = ABIPaths.fixtures.appendingPathComponent("no_entry.c").path
            try await compile(fixture, to: plugins.appendingPathComponent(fixtureFirst).path,
                              defines: ["FIXTURE_ID=\"\(fixtureID)\""])
            try await compile(fixture, to: plugins.appendingPathComponent(fixtureSecond).path,
                              defines: ["FIXTURE_ID=\"\(fixtureID)\""])
            try await compile(fixture, to: plugins.appendingPathComponent(abi2File).path,
                              defines: ["FIXTURE_ID=\"test.fixture.abi2\"", "FIXTURE_ABI_MAJOR=2"])
            try await compile(fixture, to: plugins.appendingPathComponent(smallStructFile).path,
                              defines: ["FIXTURE_ID=\"test.fixture.small\"", "FIXTURE_STRUCT_SIZE=16"])
            try await compile(noEntry, to: plugins.appendingPathComponent(noEntryFile).path, defines: [])
            try Data("this is a text file that happens to be named x.so, not a shared library\n".utf8)
                .write(to: plugins.appendingPathComponent(textFile))
        } catch {
            folder.remove()
            throw error
        }
        return folder
    }

    static func compile(_ source: String, to output: String, defines: [String]) async throws {
        let args = ["cc", "-std=c99", "-shared", "-fPIC", "-I\(ABIPaths.abiInclude)"] + defines.map { "-D\($0)" }
            + ["-o", output, source]
        let r = try await ABIRun.run("/usr/bin/env", args)
        guard r.status == 0 else {
            throw ABISetupError(description: "cc failed (\(r.status)): \(args.joined(separator: " "))\n\(r.stderr)")
        }
    }

    func remove() {
        if ProcessInfo.processInfo.environment["PYLON_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: root)
        }
    }
}

// MARK: - Running commands

fileprivate enum ABIRun {
    /// Runs a command to completion with stdout and stderr captured in temp files.
    static func run(_ executable: String, _ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let fm = FileManager.default
        let base = fm.temporaryDirectory.appendingPathComponent("pylon-abi-run-\(UUID().uuidString)")
        let outPath = base.path + ".out", errPath = base.path + ".err"
        _ = fm.createFile(atPath: outPath, contents: nil)
        _ = fm.createFile(atPath: errPath, contents: nil)
        defer {
            try? fm.removeItem(atPath: outPath)
            try? fm.removeItem(atPath: errPath)
        }
        guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
            throw ABISetupError(description: "cannot create output files in \(fm.temporaryDirectory.path)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? out.close()
        try? err.close()
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw ABISetupError(description: "\(executable) \(args.joined(separator: " ")) did not finish within 120 s")
        }
        p.waitUntilExit()
        let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (p.terminationStatus, stdout, stderr)
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

// MARK: - A served host with a custom plugins folder

fileprivate final class ABIServedHost: @unchecked Sendable {
    let directory: URL
    let pluginsDir: String
    let manifestPath: String
    let dbPath: String
    let logPath: String
    private let lock = NSLock()
    private var process: Process?
    private var port = 0
    private let session: URLSession

    init(directory: URL, pluginsDir: String, manifestPath: String, dbPath: String) {
        self.directory = directory
        self.pluginsDir = pluginsDir
        self.manifestPath = manifestPath
        self.dbPath = dbPath
        self.logPath = directory.appendingPathComponent("host.log").path
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = 30
        cfg.urlCache = nil
        cfg.httpCookieStorage = nil
        session = URLSession(configuration: cfg)
    }

    deinit { session.invalidateAndCancel() }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func launch() async throws {
        for attempt in 0..<3 {
            let port = try abiFreePort()
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            guard let out = FileHandle(forWritingAtPath: logPath) else {
                throw ABISetupError(description: "cannot write \(logPath)")
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ABIPaths.hostBinary)
            p.arguments = ["serve", "--plugins", pluginsDir, "--manifest", manifestPath, "--db", dbPath,
                           "--port", String(port), "--dev", "--no-compat-ports"]
            p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }
            p.currentDirectoryURL = directory
            p.standardOutput = out
            p.standardError = out
            p.standardInput = FileHandle.nullDevice
            try p.run()
            try? out.close()
            lock.withLock {
                process = p
                self.port = port
            }
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if !p.isRunning { break }
                if let r = try? await request("GET", "/health", timeout: 2), r.status == 200 { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            if p.isRunning {
                kill9()
                throw ABISetupError(description: "pylon-host did not answer /health within 60 s; log:\n\(log)")
            }
            p.waitUntilExit()
            if !log.lowercased().contains("address already in use") || attempt == 2 {
                throw ABISetupError(description: "pylon-host exited with status \(p.terminationStatus) before serving; log:\n\(log)")
            }
        }
    }

    func kill9() {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func request(_ method: String, _ path: String, body: String? = nil, timeout: TimeInterval = 30)
        async throws -> (status: Int, data: Data, text: String)
    {
        let port = lock.withLock { self.port }
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else {
            throw ABISetupError(description: "bad path \(path)")
        }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.timeoutInterval = timeout
        if let body {
            req.httpBody = Data(body.utf8)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: req)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        return (status, data, String(decoding: data, as: UTF8.self))
    }
}

/// A free loopback port: bind 127.0.0.1:0 and read back what the kernel chose.
fileprivate func abiFreePort() throws -> Int {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw ABISetupError(description: "socket() failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw ABISetupError(description: "bind(127.0.0.1:0) failed: errno \(errno)") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard named == 0 else { throw ABISetupError(description: "getsockname() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
