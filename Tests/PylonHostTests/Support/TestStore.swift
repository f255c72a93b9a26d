import Foundation
import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A store the black-box suites run against: which plugins folder the host gets, the
/// manifest's `plugins.store` object, and whatever must run beside the host (a fixture
/// server, a database process) together with the environment the host needs for it.
///
/// Suites take it as a Swift Testing argument, `@Test(arguments: TestStore.all)`, and pass
/// it to `HostProcess.start(manifest:store:)`. A new store (Postgres) is one more static
/// value with its own `provision`.
struct TestStore: Sendable, CustomStringConvertible, CustomTestStringConvertible {
    /// Short name shown in test results ("sqlite", "d1", "executor-c", "postgres").
    let name: String
    /// The plugins folder the host is started with (may build something the first time).
    let pluginsDir: @Sendable () async throws -> String
    /// Starts what one host needs, in that host's temp `directory`; `dbPath` is the host's
    /// `--db`. Called once per `HostProcess`, which stops the result when it goes away.
    let provision: @Sendable (_ directory: URL, _ dbPath: String) async throws -> TestStoreBackend

    var description: String { name }
    var testDescription: String { name }

    /// The stores every data-plane test runs on: all of them, or those named in
    /// `PYLON_TEST_STORES` (comma-separated, e.g. `sqlite,postgres`).
    static let all: [TestStore] = {
        let known: [TestStore] = [.sqlite, .d1, .executorC, .postgres]
        guard let wanted = ProcessInfo.processInfo.environment["PYLON_TEST_STORES"]?.split(separator: ",").map(String.init),
              !wanted.isEmpty else { return known }
        return known.filter { wanted.contains($0.name) }
    }()

    /// The store of hosts started without a store argument: SQLite, or the store named by
    /// `PYLON_TEST_DEFAULT_STORE` (the README's test command runs the policy and realtime
    /// suites a second time with `postgres`).
    static let defaultStore: TestStore = {
        guard let name = ProcessInfo.processInfo.environment["PYLON_TEST_DEFAULT_STORE"], !name.isEmpty else { return .sqlite }
        guard let s = ([.sqlite, .d1, .executorC, .postgres] as [TestStore]).first(where: { $0.name == name }) else {
            fatalError("PYLON_TEST_DEFAULT_STORE=\(name) names no store; use sqlite, d1, executor-c or postgres")
        }
        return s
    }()

    /// The real SQLite plugin from `plugins/` (the default store).
    static let sqlite = TestStore(
        name: "sqlite", pluginsDir: { TestPaths.pluginsDir },
        provision: { _, db in TestStoreBackend(storeConfig: [("use", .string("sqlite"))], sqliteFile: db) })

    /// `libPylonStoreD1.so` from `plugins/`, talking HTTP to the D1-compatible fixture server
    /// (`Tests/Fixtures/d1/d1_server.py`, real SQLite underneath) on loopback.
    static let d1 = TestStore(
        name: "d1", pluginsDir: { TestPaths.pluginsDir },
        provision: { dir, _ in try await D1FixtureServer.start(in: dir).backend })

    /// `libPylonStorePostgres.so` from `plugins/` on a fresh database of the test process's
    /// shared PostgreSQL server (`TestPostgres`, started by scripts/pg-server.sh).
    static let postgres = TestStore(
        name: "postgres", pluginsDir: { TestPaths.pluginsDir },
        provision: { _, _ in
            let url = try await TestPostgres.shared().freshDatabase()
            // One reader: every suite runs its hosts in parallel on the one shared server, and
            // each host also holds a writer and its change-log listener (max_connections).
            return TestStoreBackend(storeConfig: [("use", .string("postgres")), ("url", .string(url)), ("readers", .int(1))],
                                    sqliteFile: nil)
        })

    /// `examples/executor-c`, compiled with the system `cc` by its own Makefile and dropped
    /// into an otherwise empty plugins folder.
    static let executorC = TestStore(
        name: "executor-c", pluginsDir: { try await ExecutorCBuild.shared.pluginsDir() },
        provision: { _, db in TestStoreBackend(storeConfig: [("use", .string("executor_c"))], sqliteFile: db) })
}

/// What a provisioned store hands the host harness. Stops what it started when released.
final class TestStoreBackend: @unchecked Sendable {
    /// The manifest's `plugins.store` object.
    let storeConfig: [(String, JSONValue)]
    /// Extra environment for the host (e.g. the variable an `api_token_env` names).
    let env: [String: String]
    /// The SQLite file that ends up holding the data, for tests that look inside it; nil
    /// when the store keeps its data elsewhere.
    let sqliteFile: String?
    /// Base URL of a fixture server the store talks to (for tests that inject faults).
    let fixtureURL: String?
    private let onStop: @Sendable () -> Void

    init(storeConfig: [(String, JSONValue)], env: [String: String] = [:], sqliteFile: String?,
         fixtureURL: String? = nil, onStop: @escaping @Sendable () -> Void = {}) {
        self.storeConfig = storeConfig
        self.env = env
        self.sqliteFile = sqliteFile
        self.fixtureURL = fixtureURL
        self.onStop = onStop
    }

    deinit { onStop() }

    /// `manifest` with `plugins.store` replaced by this store's config (other keys kept,
    /// and the test's own store settings this config does not set, `use` aside, such as
    /// `read_timeout_ms`).
    func manifest(_ manifest: String) throws -> String {
        guard case var .object(top) = try JSONParser.parse(manifest) else {
            throw TestSetupError(description: "the test manifest is not a JSON object")
        }
        var plugins = top.first { $0.0 == "plugins" }?.1.objectValue ?? []
        let given = plugins.first { $0.0 == "store" }?.1.objectValue ?? []
        let settings = given.filter { key, _ in key != "use" && !storeConfig.contains { $0.0 == key } }
        plugins.removeAll { $0.0 == "store" }
        plugins.append(("store", .object(storeConfig + settings)))
        top.removeAll { $0.0 == "plugins" }
        top.append(("plugins", .object(plugins)))
        return JSONWriter.string(.object(top))
    }
}

// MARK: - D1 fixture server

/// One `d1_server.py` process with its own SQLite file, on a free loopback port it picks
/// itself (written to a port file, so there is no race between choosing and binding).
enum D1FixtureServer {
    static let account = "test-account"
    static let database = "test-db"
    static let tokenVariable = "D1_TEST_API_TOKEN"

    struct Started {
        let backend: TestStoreBackend
        let port: Int
    }

    static var script: String { TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/d1/d1_server.py").path }

    /// With `tls`, the server speaks HTTPS with a fresh self-signed certificate for
    /// 127.0.0.1 (made with `openssl`), and the store config trusts it through `ca_file`.
    static func start(in dir: URL, tls: Bool = false) async throws -> Started {
        let token = "t" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        var tlsArgs: [String] = []
        let cert = dir.appendingPathComponent("d1-cert.pem").path
        if tls {
            let key = dir.appendingPathComponent("d1-key.pem").path
            let r = try await TestCommand.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                                               "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                                                               "-addext", "subjectAltName=IP:127.0.0.1"])
            guard r.status == 0 else { throw TestSetupError(description: "openssl could not make a certificate:\n\(r.stderr)") }
            tlsArgs = ["--tls-cert", cert, "--tls-key", key]
        }
        let portFile = dir.appendingPathComponent("d1.port").path
        let dbFile = dir.appendingPathComponent("d1.sqlite").path
        let logPath = dir.appendingPathComponent("d1-server.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else {
            throw TestSetupError(description: "cannot write \(logPath)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, "--db", dbFile, "--port-file", portFile, "--account", account,
                       "--database", database, "--token", token] + tlsArgs
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw TestSetupError(description: "cannot start the D1 fixture server (python3 \(script)): \(error)")
        }
        try? log.close()
        let deadline = Date().addingTimeInterval(HostProcess.startWait)
        var port = 0
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(text) {
                port = n
                break
            }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard port > 0 else {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitForExit()
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw TestSetupError(description: "the D1 fixture server did not start within \(Int(HostProcess.startWait)) s; its log:\n\(text)")
        }
        let base = "\(tls ? "https" : "http")://127.0.0.1:\(port)"
        var config: [(String, JSONValue)] = [
            ("use", .string("d1")), ("account_id", .string(account)), ("database_id", .string(database)),
            ("api_token_env", .string(tokenVariable)), ("base_url", .string(base + "/client/v4")),
        ]
        if tls { config.append(("ca_file", .string(cert))) }
        let backend = TestStoreBackend(storeConfig: config, env: [tokenVariable: token], sqliteFile: dbFile,
                                       fixtureURL: base) {
            // A test server: nothing to shut down gracefully.
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        return Started(backend: backend, port: port)
    }
}

// MARK: - The C executor, built once per test run

/// Runs `make` once, on first use, and gives every caller its result (or its error),
/// without blocking a Swift concurrency thread while it runs.
actor OnceBuild {
    private let make: @Sendable () async throws -> String
    private var task: Task<String, Error>?

    init(_ make: @escaping @Sendable () async throws -> String) { self.make = make }

    func value() async throws -> String {
        if let task { return try await task.value }
        let t = Task { try await make() }
        task = t
        return try await t.value
    }
}

/// Builds examples/executor-c once per test process, on first use, without blocking a
/// Swift concurrency thread (every executor-c test case waits for the same build).
actor ExecutorCBuild {
    static let shared = ExecutorCBuild()
    static var sourceDir: String { TestPaths.packageRoot.appendingPathComponent("examples/executor-c").path }
    static let fileName = "libpylon_executor_c.so"
    private let once = OnceBuild { try await ExecutorCBuild.make() }

    /// `make` in examples/executor-c (system `cc`) into a fresh build folder, then the .so
    /// alone in a new, otherwise empty plugins folder; returns that folder.
    func pluginsDir() async throws -> String {
        try await once.value()
    }

    private static func make() async throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-executor-c-\(UUID().uuidString)")
        let build = root.appendingPathComponent("build").path
        let plugins = root.appendingPathComponent("plugins").path
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        let r = try await TestCommand.run("/usr/bin/env", ["make", "-C", sourceDir, "BUILD_DIR=\(build)", "CC=cc"], timeout: 120)
        guard r.status == 0 else {
            throw TestSetupError(description: "make in \(sourceDir) failed (\(r.status)):\n\(r.stdout)\n\(r.stderr)")
        }
        try FileManager.default.copyItem(atPath: build + "/" + fileName, toPath: plugins + "/" + fileName)
        return plugins
    }
}
