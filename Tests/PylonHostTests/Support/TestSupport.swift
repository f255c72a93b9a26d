import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PylonTestPorts

// Helpers shared by the black-box tests (`HostProcess`, `DurabilityTests`, `PluginABITests`):
// where the release build is, temp folders, running a command, a free loopback port, and a
// bare `pylon-host serve` process.

/// Why a test could not set itself up (missing build, a command that would not run, a host
/// that would not start).
struct TestSetupError: Error, CustomStringConvertible {
    var description: String
}

// MARK: - Paths and temp folders

enum TestPaths {
    /// The package root: this file is `Tests/PylonHostTests/Support/TestSupport.swift`.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // Support
        .deletingLastPathComponent()   // PylonHostTests
        .deletingLastPathComponent()   // Tests
        .deletingLastPathComponent()   // root

    /// The release host built by `make build`.
    static var hostBinary: String { packageRoot.appendingPathComponent(".build/release/pylon-host").path }
    /// The real plugin folder `make build` fills.
    static var pluginsDir: String { packageRoot.appendingPathComponent("plugins").path }
    /// The real SQLite store plugin in `pluginsDir`.
    static var sqlitePlugin: String { pluginsDir + "/libPylonStoreSQLite.so" }

    /// Throws unless `make build` has produced the release host and the SQLite plugin.
    static func requireBuild() throws {
        let fm = FileManager.default
        guard fm.isExecutableFile(atPath: hostBinary) else {
            throw TestSetupError(description: "\(hostBinary) is missing: run `make build` first (it builds the host and copies the plugins)")
        }
        guard fm.fileExists(atPath: sqlitePlugin) else {
            throw TestSetupError(description: "\(sqlitePlugin) is missing: run `make build` first (it copies the plugins)")
        }
    }

    /// Checks the build is there (`requireBuild`), then creates a fresh
    /// `<tmp>/<prefix>-<UUID>` folder. Remove it with `removeTempDir`.
    static func freshTempDir(_ prefix: String) throws -> URL {
        try requireBuild()
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Environment every harness-started host gets unless the test sets these itself: tests
    /// (and their loops) send from 127.0.0.1 far faster than any one real client, so the
    /// per-address request limit and the auth buckets are set out of reach. The suites that
    /// test the limits (AbuseLimitTests) set small ones.
    static let relaxedLimits: [String: String] = [
        "PYLON_RATE_LIMIT_MAX": "1000000000",
        "PYLON_AUTH_RATE_LIMIT_LOGIN": "1000000,1000000",
        "PYLON_AUTH_RATE_LIMIT_SEND": "1000000,1000000",
        "PYLON_AUTH_RATE_LIMIT_VERIFY": "1000000,1000000",
    ]

    /// Removes a temp folder, unless `PYLON_TEST_KEEP` is set (to look at it after a failure).
    static func removeTempDir(_ dir: URL) {
        if ProcessInfo.processInfo.environment["PYLON_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: dir)
        }
    }
}

// MARK: - Running a command

enum TestCommand {
    /// Runs a command to completion (the environment without `PYLON_*`, plus `environment`; stdin empty), with
    /// stdout and stderr captured through temp files. Kills it and throws after `timeout`.
    static func run(_ executable: String, _ args: [String], timeout: TimeInterval = 60, environment: [String: String] = [:])
        async throws -> (status: Int32, stdout: String, stderr: String)
    {
        let fm = FileManager.default
        let base = fm.temporaryDirectory.appendingPathComponent("pylon-test-run-\(UUID().uuidString)").path
        let outPath = base + ".out", errPath = base + ".err"
        _ = fm.createFile(atPath: outPath, contents: nil)
        _ = fm.createFile(atPath: errPath, contents: nil)
        defer {
            try? fm.removeItem(atPath: outPath)
            try? fm.removeItem(atPath: errPath)
        }
        guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
            throw TestSetupError(description: "cannot create output files in \(fm.temporaryDirectory.path)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }.merging(environment) { _, given in given }
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? out.close()
        try? err.close()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitForExit()
            throw TestSetupError(description: "\(executable) \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s")
        }
        p.waitUntilExit()
        return (p.terminationStatus,
                (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }
}

// MARK: - Waiting for a child

extension Process {
    /// Waits until the process has ended, for at most `seconds`. Used instead of
    /// `waitUntilExit` after a kill: on Linux, Foundation can miss the exit of a child when
    /// many end at once (seen with a hundred hosts and fixture servers in one test run), and
    /// `waitUntilExit` then parks a Swift concurrency thread for good — with two cores, two
    /// such waits stall every test in the process.
    func waitForExit(seconds: Double = 10) {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && Date() < deadline { usleep(10_000) }
    }

    /// SIGTERM, then wait without holding a thread; SIGKILL after `seconds`, and wait for
    /// that too (at most 10 s more).
    func terminateAndWait(seconds: Double = 15) async {
        for (signal, wait) in [(SIGTERM, seconds), (SIGKILL, 10)] where isRunning {
            kill(processIdentifier, signal)
            let deadline = Date().addingTimeInterval(wait)
            while isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }
}

// MARK: - A free port

// `freeLoopbackPort()` and `handedOutPorts` come from `PylonTestPorts`, shared with the
// Swift client's tests.

// MARK: - A bare served host

/// One `pylon-host serve --dev --no-compat-ports` child on a free loopback port, with a plain
/// HTTP client: for tests that need their own plugins folder, a crash and restart on the same
/// database, or a launch that must fail. (`HostProcess` is the richer data-plane harness.)
///
/// Each launch writes stdout and stderr to a log in `directory`: `host.log`, truncated per
/// launch, or with `logPerLaunch` a new `host-<n>.log` each time. The creator owns `directory`.
class ServedHost: @unchecked Sendable {
    let directory: URL
    let pluginsDir: String
    let manifestPath: String
    let dbPath: String
    private let session: URLSession
    private let logPerLaunch: Bool
    private let lock = NSLock()
    private var process: Process?
    private var port = 0
    private var launches = 0
    private var logPath: String

    /// The host binary (the release build unless a test runs another copy, e.g. the edge build).
    let hostBinary: String
    /// Extra environment for the host.
    let environment: [String: String]

    init(directory: URL, pluginsDir: String = TestPaths.pluginsDir, manifestPath: String, dbPath: String,
         logPerLaunch: Bool = false, maxConnectionsPerHost: Int? = nil, hostBinary: String = TestPaths.hostBinary,
         environment: [String: String] = [:]) {
        self.hostBinary = hostBinary
        self.environment = environment
        self.directory = directory
        self.pluginsDir = pluginsDir
        self.manifestPath = manifestPath
        self.dbPath = dbPath
        self.logPerLaunch = logPerLaunch
        self.logPath = directory.appendingPathComponent(logPerLaunch ? "host-0.log" : "host.log").path
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = 30
        if let maxConnectionsPerHost { cfg.httpMaximumConnectionsPerHost = maxConnectionsPerHost }
        cfg.urlCache = nil
        cfg.httpCookieStorage = nil
        session = URLSession(configuration: cfg)
    }

    deinit { session.invalidateAndCancel() }

    /// The log of the latest launch ("" before the first).
    var log: String {
        let path = lock.withLock { logPath }
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Starts the process on a new free port, output to a fresh log; does not wait.
    func spawn() throws -> Process {
        let port = try freeLoopbackPort()
        let path = lock.withLock { () -> String in
            launches += 1
            if logPerLaunch { logPath = directory.appendingPathComponent("host-\(launches).log").path }
            return logPath
        }
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let out = FileHandle(forWritingAtPath: path) else { throw TestSetupError(description: "cannot write \(path)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: hostBinary)
        p.arguments = ["serve", "--plugins", pluginsDir, "--manifest", manifestPath, "--db", dbPath,
                       "--port", String(port), "--dev", "--no-compat-ports"]
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }
            .merging(TestPaths.relaxedLimits) { _, given in given }
            .merging(environment) { _, given in given }
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
        return p
    }

    /// Polls `GET /health` every 50 ms while `p` runs, for up to 60 s: true once it answers
    /// 200 and `p` itself listens on the port (not another test's host that won the port).
    private func answersHealth(_ p: Process) async throws -> Bool {
        let deadline = Date().addingTimeInterval(60)
        let port = lock.withLock { self.port }
        while Date() < deadline && p.isRunning {
            if let r = try? await request("GET", "/health", timeout: 2), r.status == 200,
               processListens(pid: p.processIdentifier, port: port) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Starts the host and waits for `GET /health` → 200 (retrying on a port race).
    func launch() async throws {
        for attempt in 0..<3 {
            let p = try spawn()
            if try await answersHealth(p) { return }
            if p.isRunning {
                kill9()
                throw TestSetupError(description: "pylon-host did not answer /health within 60 s; log:\n\(log)")
            }
            p.waitUntilExit()
            if !log.lowercased().contains("address already in use") || attempt == 2 {
                throw TestSetupError(description: "pylon-host exited with status \(p.terminationStatus) before serving; log:\n\(log)")
            }
        }
    }

    /// Starts the host expecting it to refuse to start. `exited` is false when it served
    /// instead (then it is killed).
    func launchExpectingExit() async throws -> (exited: Bool, status: Int32, log: String) {
        let p = try spawn()
        if try await answersHealth(p) || p.isRunning {
            kill9()
            return (false, 0, log)
        }
        p.waitUntilExit()
        return (true, p.terminationStatus, log)
    }

    /// SIGKILL: a crash, no shutdown code runs.
    func kill9() {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitForExit()
    }

    /// SIGTERM and wait (SIGKILL after 15 s).
    func stop() async {
        await lock.withLock({ process })?.terminateAndWait()
    }

    func request(_ method: String, _ path: String, body: String? = nil, timeout: TimeInterval = 30)
        async throws -> (status: Int, data: Data, text: String)
    {
        let port = lock.withLock { self.port }
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else {
            throw TestSetupError(description: "bad path \(path)")
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
