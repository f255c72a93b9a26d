import Foundation
import PylonTestPorts
import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the harness could not start or talk to the host. The description carries the
/// host's log when there is one, so a failing test says what the host said.
struct HostProcessError: Error, CustomStringConvertible {
    var description: String
}

/// A real `pylon-host` process for black-box tests: the release binary from
/// `.build/release/pylon-host`, the plugins folder and store of a `TestStore` (by default the
/// real `plugins/` folder and SQLite), a fresh temp directory (manifest, database, log), a
/// free loopback port, and an HTTP client.
///
/// The binary is built by `make build` (the README's test command runs it before
/// `swift test`); the harness never builds anything itself.
final class HostProcess: @unchecked Sendable {
    /// The admin bearer token every host started by the harness accepts.
    static let adminToken = "test-admin"
    /// How long a started host (or fixture server) may take to answer, in seconds.
    static let startWait: TimeInterval = 120

    let directory: URL
    let manifestPath: String
    let dbPath: String
    let logPath: String
    let env: [String: String]
    let dev: Bool
    /// The store this host runs on, and what was started for it (kept until the host goes).
    let store: TestStore
    let pluginsDir: String
    private let backend: TestStoreBackend?
    /// The SQLite file that holds the data whatever the store (nil when not inspectable).
    var storeFile: String? { backend?.sqliteFile }
    /// The store's fixture server, if it has one (D1).
    var storeFixtureURL: String? { backend?.fixtureURL }
    /// The store's database URL (`plugins.store.url`: Postgres), if it has one.
    var storeURL: String? { backend?.storeConfig.first { $0.0 == "url" }?.1.stringValue }
    /// Whether the host also serves Pylon's WS (port+1) and SSE (port+2) listeners.
    let compatPorts: Bool
    /// A command the host binary is started through (e.g. `prlimit --nofile=…`), or empty.
    private var launcher: [String] = []
    private let ownsDirectory: Bool
    private let lock = NSLock()
    private var process: Process?
    private var _port = 0
    private let session: URLSession

    var port: Int { lock.withLock { _port } }
    /// Pylon's WebSocket listener (only with `compatPorts`).
    var wsCompatPort: Int { port + 1 }
    /// Pylon's SSE listener (only with `compatPorts`).
    var sseCompatPort: Int { port + 2 }
    /// The process id of the running host (nil before the first launch).
    var pid: Int32? { lock.withLock { process?.processIdentifier } }
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Everything the host wrote to stdout and stderr, across restarts.
    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log at \(logPath))"
    }

    private init(directory: URL, manifestPath: String, dbPath: String, env: [String: String], dev: Bool,
                 compatPorts: Bool, store: TestStore, pluginsDir: String, backend: TestStoreBackend?) {
        self.store = store
        self.pluginsDir = pluginsDir
        self.backend = backend
        self.directory = directory
        self.manifestPath = manifestPath
        self.dbPath = dbPath
        self.logPath = directory.appendingPathComponent("host.log").path
        self.env = env
        self.dev = dev
        self.compatPorts = compatPorts
        self.ownsDirectory = true
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = 30
        cfg.requestCachePolicy = .reloadIgnoringLocalCacheData
        cfg.urlCache = nil
        cfg.httpCookieStorage = nil
        cfg.httpShouldSetCookies = false
        self.session = URLSession(configuration: cfg)
    }

    deinit {
        if let p = process, p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitForExit()
        }
        session.invalidateAndCancel()
        if ownsDirectory { TestPaths.removeTempDir(directory) }
    }

    /// Writes `manifest` to a fresh temp directory and starts the host on a free port;
    /// returns once `GET /health` answers 200. With `compatPorts` the host keeps Pylon's
    /// WS (port+1) and SSE (port+2) listeners, and the harness also waits for those;
    /// otherwise it runs with `--no-compat-ports`.
    ///
    /// `store` picks the plugins folder and `plugins.store` (the manifest's other keys are
    /// kept); with the default, SQLite, the manifest is used unchanged. `files` (path
    /// relative to the manifest's folder → contents) are written first, e.g.
    /// `functions/hello.ts`.
    static func start(manifest: String, env: [String: String] = [:], dev: Bool = true,
                      dbPath: String? = nil, compatPorts: Bool = false,
                      store: TestStore = .sqlite, files: [String: String] = [:],
                      launcher: [String] = []) async throws -> HostProcess {
        let fm = FileManager.default
        let dir = try TestPaths.freshTempDir("pylon-test")
        for (path, contents) in files {
            let url = dir.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: url)
        }
        let manifestPath = dir.appendingPathComponent("pylon.manifest.json").path
        let db = dbPath ?? dir.appendingPathComponent("app.db").path
        // PYLON_TEST_DEFAULT_STORE=postgres (or d1, executor-c): suites that do not take a
        // store argument (policies, realtime) run on that store instead of SQLite.
        let store = store.name == TestStore.sqlite.name ? TestStore.defaultStore : store
        let pluginsDir: String
        let backend: TestStoreBackend
        do {
            pluginsDir = try await store.pluginsDir()
            backend = try await store.provision(dir, db)
        } catch {
            TestPaths.removeTempDir(dir)
            throw error
        }
        let text = store.name == TestStore.sqlite.name ? manifest : try backend.manifest(manifest)
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifestPath))
        _ = fm.createFile(atPath: dir.appendingPathComponent("host.log").path, contents: nil)
        let host = HostProcess(directory: dir, manifestPath: manifestPath, dbPath: db,
                               env: backend.env.merging(env) { _, given in given }, dev: dev,
                               compatPorts: compatPorts, store: store, pluginsDir: pluginsDir, backend: backend)
        host.launcher = launcher
        try await host.launch()
        return host
    }

    private func appendLog(_ line: String) {
        guard let h = FileHandle(forWritingAtPath: logPath) else { return }
        h.seekToEndOfFile()
        h.write(Data(line.utf8))
        try? h.close()
    }

    /// Starts the process (on a new free port) and waits for `/health`. A port taken in
    /// the gap between picking and binding is retried on another port.
    private func launch() async throws {
        var lastError: Error?
        for attempt in 0..<3 {
            let port = compatPorts ? try freeLoopbackPortRun(count: 3) : try freeLoopbackPort()
            do {
                try await launchOnce(port: port)
                return
            } catch let e as HostProcessError {
                lastError = e
                let addressInUse = log.lowercased().contains("address already in use")
                if !addressInUse || attempt == 2 { throw e }
            }
        }
        throw lastError ?? HostProcessError(description: "could not start pylon-host")
    }

    private func launchOnce(port: Int) async throws {
        appendLog("=== harness: starting pylon-host on port \(port) ===\n")
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }
        environment["PYLON_ADMIN_TOKEN"] = Self.adminToken
        for (k, v) in TestPaths.relaxedLimits { environment[k] = v }
        for (k, v) in env { environment[k] = v }
        var args = ["serve", "--plugins", pluginsDir, "--manifest", manifestPath, "--db", dbPath,
                    "--port", String(port)]
        if !compatPorts { args.append("--no-compat-ports") }
        if dev { args.append("--dev") }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: launcher.first ?? TestPaths.hostBinary)
        p.arguments = launcher.isEmpty ? args : Array(launcher.dropFirst()) + [TestPaths.hostBinary] + args
        p.environment = environment
        p.currentDirectoryURL = directory
        guard let out = FileHandle(forWritingAtPath: logPath) else {
            throw HostProcessError(description: "cannot open log file \(logPath)")
        }
        out.seekToEndOfFile()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        do {
            try p.run()
        } catch {
            throw HostProcessError(description: "cannot launch \(TestPaths.hostBinary): \(error)")
        }
        try? out.close()
        lock.withLock {
            process = p
            _port = port
        }

        // Start-up takes a second on a quiet machine; the full parallel run has been seen to
        // stall a host for over 30 s on these 2 cores, so the wait is generous.
        let deadline = Date().addingTimeInterval(Self.startWait)
        while Date() < deadline {
            if !p.isRunning {
                throw HostProcessError(description: "pylon-host exited with status \(p.terminationStatus) before answering /health. Log:\n\(log)")
            }
            // Only our own child counts: if another test's host won this port, its /health
            // would answer too — keep waiting until ours exits (address in use → retry).
            if let r = try? await request("GET", "/health", timeout: 2), r.status == 200,
               processListens(pid: p.processIdentifier, port: port),
               !compatPorts || (loopbackPortAccepts(port + 1) && loopbackPortAccepts(port + 2)
                                && processListens(pid: p.processIdentifier, port: port + 1)
                                && processListens(pid: p.processIdentifier, port: port + 2)) {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitForExit()
        throw HostProcessError(description: "pylon-host did not answer GET /health on port \(port) within \(Int(Self.startWait)) s. Log:\n\(log)")
    }

    /// One HTTP request. `json` is sent as the body with `Content-Type: application/json`;
    /// `token` as `Authorization: Bearer`. `json` in the result is the parsed body
    /// (see `TestJSON` for the Swift types), nil if the body is not JSON.
    func request(_ method: String, _ path: String, json: String? = nil, token: String? = nil,
                 headers: [String: String] = [:], timeout: TimeInterval = 30)
        async throws -> (status: Int, body: String, json: Any?)
    {
        let r = try await rawRequest(method, path, body: json.map { Data($0.utf8) }, token: token,
                                     headers: headers, timeout: timeout)
        return (r.status, r.body, r.json)
    }

    /// Like `request`, plus the response headers (names lowercased).
    func rawRequest(_ method: String, _ path: String, body: Data? = nil, token: String? = nil,
                    headers: [String: String] = [:], timeout: TimeInterval = 30)
        async throws -> (status: Int, body: String, json: Any?, headers: [String: String])
    {
        guard let url = URL(string: baseURL + path) else {
            throw HostProcessError(description: "bad URL \(baseURL + path)")
        }
        var req = URLRequest(url: url)
        req.httpMethod = method
        req.timeoutInterval = timeout
        if let body {
            req.httpBody = body
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        let (data, response) = try await session.data(for: req)
        guard let http = response as? HTTPURLResponse else {
            throw HostProcessError(description: "\(method) \(path): not an HTTP response")
        }
        let text = String(decoding: data, as: UTF8.self)
        var hs: [String: String] = [:]
        for (k, v) in http.allHeaderFields {
            if let k = k as? String, let v = v as? String { hs[k.lowercased()] = v }
        }
        return (http.statusCode, text, try? TestJSON.parse(text), hs)
    }

    /// SIGTERM, and return at once: a thread of its own (not one of Swift concurrency's
    /// threads, of which a 2-core machine has two — a test blocking one stalls half the suite)
    /// waits for the exit and sends SIGKILL after 15 s. For a test's end (`defer`); a test
    /// that needs the process gone before it goes on awaits `stopAndWait`.
    func stop() {
        guard let p = lock.withLock({ process }), p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        Thread.detachNewThread {
            let deadline = Date().addingTimeInterval(15)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitForExit()
        }
    }

    /// SIGTERM, then wait without holding a thread (SIGKILL after 15 s).
    func stopAndWait() async {
        await lock.withLock({ process })?.terminateAndWait()
    }

    /// Sends SIGTERM and returns at once (see `hasExited`).
    func terminate() {
        guard let p = lock.withLock({ process }), p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
    }

    /// Whether the host process has exited (true before the first launch).
    var hasExited: Bool { lock.withLock { process.map { !$0.isRunning } ?? true } }

    /// SIGKILL (a crash: no shutdown code runs), then wait.
    func kill9() {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitForExit()
    }

    /// Stops the host if it runs and starts it again on the same database (and manifest,
    /// environment and mode), on a new free port.
    func restart() async throws {
        await stopAndWait()
        try await launch()
    }

    /// Replaces the manifest file (for the next `restart`), keeping this host's store
    /// selection (`plugins.store`) whatever `manifest` says.
    func writeManifest(_ manifest: String) throws {
        let text = store.name == TestStore.sqlite.name || backend == nil ? manifest : try backend!.manifest(manifest)
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifestPath))
    }
}

// MARK: - JSON for tests

/// JSON for assertions, parsed with the host's own strict parser because it keeps JSON's
/// types apart, which `JSONSerialization` does not (it turns `true`, `1` and `1.0` into
/// the same NSNumber on Linux):
/// object → `[String: Any]`, array → `[Any]`, string → `String`, integer → `Int`,
/// number with a fraction or exponent → `Double`, `true`/`false` → `Bool`, `null` → `NSNull`.
enum TestJSON {
    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ text: String) throws -> Any {
        do {
            return plain(try JSONParser.parse(text))
        } catch {
            throw ParseError(description: error.description)
        }
    }

    /// A JSON string literal for `s` (for building request bodies).
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// The host's own JSON value as plain Swift values for assertions.
    static func plain(_ v: JSONValue) -> Any {
        switch v {
        case .null: return NSNull()
        case let .bool(b): return b
        case let .int(i): return Int(i)
        case let .double(d): return d
        case let .string(s): return s
        case let .array(a): return a.map(plain)
        case let .object(o): return Dictionary(o.map { ($0.0, plain($0.1)) }, uniquingKeysWith: { _, last in last })
        }
    }
}

// MARK: - Reading parsed JSON in assertions

extension Optional where Wrapped == Any {
    /// `json["key"]` on a parsed object (nil when this is not an object).
    subscript(key: String) -> Any? {
        guard let o = self as? [String: Any] else { return nil }
        return o[key]
    }

    /// `json[0]` on a parsed array (nil when out of range or not an array).
    subscript(index: Int) -> Any? {
        guard let a = self as? [Any], index >= 0, index < a.count else { return nil }
        return a[index]
    }

    var string: String? { self as? String }
    var int: Int? { self as? Int }
    var double: Double? { self as? Double }
    var bool: Bool? { self as? Bool }
    var array: [Any]? { self as? [Any] }
    var object: [String: Any]? { self as? [String: Any] }
    /// True for JSON `null` (and false for a missing key).
    var isNull: Bool { self is NSNull }
    /// `error.code` of an error body.
    var errorCode: String? { self["error"]["code"].string }
}

extension Optional where Wrapped == Any {
    /// The elements of a parsed array, each as `Any?` so they can be subscripted again
    /// (empty when this is not an array).
    var items: [Any?] { (self as? [Any])?.map { Optional($0) } ?? [] }
}
