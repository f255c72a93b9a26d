import Foundation
@testable import PylonClient
import PylonTestPorts
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct TestHostError: Error, CustomStringConvertible {
    var description: String
}

/// A real `pylon-host` (the release build `make build` leaves in `.build/release`, with the
/// plugins in `plugins/`) on a free loopback port, in `--dev`, with its own temp folder,
/// manifest, functions and SQLite file. `restart()` keeps the database and the port, so a
/// client's base URL stays valid across it.
///
/// Small and separate from PylonHostTests' HostProcess on purpose: the client's tests link
/// only the client, and need nothing of the host's internals.
final class TestHost: @unchecked Sendable {
    static let adminToken = "swift-client-test-admin"
    let dir: URL
    let port: Int
    /// The plugins folder: the real `plugins/`, or one with extra plugins (`withShardArena`).
    var pluginsDir = TestHost.packageRoot.appendingPathComponent("plugins").path
    /// More host settings, given at `start`.
    var extraEnv: [String: String] = [:]
    private var process: Process?
    private let adminHTTP: HTTP

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }
    var logPath: String { dir.appendingPathComponent("host.log").path }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    private init(dir: URL, port: Int) {
        self.dir = dir
        self.port = port
        adminHTTP = HTTP(baseURL: URL(string: "http://127.0.0.1:\(port)")!, tokens: MemoryTokenStorage(Self.adminToken), timeout: 30)
    }

    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `env`: more host settings (PYLON_...).
    static func start(extraPlugins: [String] = [], env: [String: String] = [:]) async throws -> TestHost {
        let binary = packageRoot.appendingPathComponent(".build/release/pylon-host").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestHostError(description: "\(binary) is missing: run `make build` first")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-swiftclient-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("functions"), withIntermediateDirectories: true)
        try Data(TestManifest.json.utf8).write(to: dir.appendingPathComponent("pylon.manifest.json"))
        for (path, text) in TestManifest.functions {
            try Data(text.utf8).write(to: dir.appendingPathComponent(path))
        }
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("host.log").path, contents: nil)
        // A port taken between picking and binding: try another.
        var lastError: Error?
        for _ in 0..<3 {
            let host = TestHost(dir: dir, port: try freeLoopbackPort())
            host.extraEnv = env
            if !extraPlugins.isEmpty { host.pluginsDir = try pluginsFolder(in: dir, adding: extraPlugins) }
            do {
                try await host.launch()
                return host
            } catch {
                lastError = error
                host.forceKill()
                if !host.log.lowercased().contains("address already in use") { break }
            }
        }
        throw lastError ?? TestHostError(description: "could not start pylon-host")
    }

    /// A plugins folder in `dir`: links to the real plugins plus `extra` (paths of .so files).
    private static func pluginsFolder(in dir: URL, adding extra: [String]) throws -> String {
        let fm = FileManager.default
        let folder = dir.appendingPathComponent("plugins")
        if fm.fileExists(atPath: folder.path) { return folder.path }
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        let real = packageRoot.appendingPathComponent("plugins")
        for name in try fm.contentsOfDirectory(atPath: real.path) where name.hasSuffix(".so") {
            try fm.createSymbolicLink(atPath: folder.appendingPathComponent(name).path,
                                      withDestinationPath: real.appendingPathComponent(name).path)
        }
        for path in extra {
            try fm.createSymbolicLink(atPath: folder.appendingPathComponent((path as NSString).lastPathComponent).path,
                                      withDestinationPath: path)
        }
        return folder.path
    }

    /// Builds `examples/shard-arena` (plain C, its own Makefile) into `dir`; answers the .so.
    static func buildShardArena(into dir: URL) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["make", "-s", "-C", packageRoot.appendingPathComponent("examples/shard-arena").path,
                       "BUILD_DIR=\(dir.path)"]
        try p.run()
        p.waitUntilExit()
        let so = dir.appendingPathComponent("libpylon_shard_arena.so").path
        guard p.terminationStatus == 0, FileManager.default.fileExists(atPath: so) else {
            throw TestHostError(description: "make -C examples/shard-arena failed (\(p.terminationStatus))")
        }
        return so
    }

    private func launch() async throws {
        let p = Process()
        p.executableURL = Self.packageRoot.appendingPathComponent(".build/release/pylon-host")
        p.arguments = ["serve", "--plugins", pluginsDir,
                       "--manifest", dir.appendingPathComponent("pylon.manifest.json").path,
                       "--db", dir.appendingPathComponent("app.db").path,
                       "--port", String(port), "--no-compat-ports", "--dev"]
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PYLON_") }
        env["PYLON_ADMIN_TOKEN"] = Self.adminToken
        env["PYLON_FN_WORKERS"] = "1"
        // Every test signs up fresh users from one address: the per-address buckets are off.
        env["PYLON_AUTH_RATE_LIMIT_SEND"] = "0"
        env["PYLON_AUTH_RATE_LIMIT_LOGIN"] = "0"
        env["PYLON_AUTH_RATE_LIMIT_VERIFY"] = "0"
        env["PYLON_RATE_LIMIT_MAX"] = "1000000000"
        env.merge(extraEnv) { _, mine in mine }
        p.environment = env
        p.currentDirectoryURL = dir
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        out.seekToEndOfFile()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? out.close()
        process = p
        // Generous: a loaded 2-core machine has been seen to take half a minute.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if !p.isRunning { throw TestHostError(description: "pylon-host exited (\(p.terminationStatus)):\n\(log)") }
            if let r = try? await adminHTTP.send("GET", "/health"), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestHostError(description: "pylon-host did not answer /health:\n\(log)")
    }

    /// SIGTERM, waiting for the exit (SIGKILL after 15 s).
    func stop() async {
        guard let p = process else { return }
        process = nil
        guard p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while p.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        while p.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
    }

    private func forceKill() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// SIGSTOP: the host keeps its sockets open but answers nothing (a hung host, a dead
    /// route); `resume()` sends SIGCONT. Returns once every thread of the host has stopped:
    /// `kill` only starts a group stop, and on a loaded machine another thread of the host
    /// can still answer a request for some milliseconds.
    func pause() async {
        guard let p = process else { return }
        let pid = p.processIdentifier
        kill(pid, SIGSTOP)
        let deadline = ContinuousClock.now + .seconds(30)
        while !Self.allThreadsStopped(pid), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Whether every thread of `pid` is in state T (stopped) in /proc.
    private static func allThreadsStopped(_ pid: pid_t) -> Bool {
        let dir = "/proc/\(pid)/task"
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: dir), !tids.isEmpty else { return false }
        return tids.allSatisfy { tid in
            // The state follows the command name, which is in parentheses and may hold spaces.
            guard let stat = try? String(contentsOfFile: "\(dir)/\(tid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return true }  // the thread has exited
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("T")
        }
    }

    func resume() {
        if let p = process { kill(p.processIdentifier, SIGCONT) }
    }

    func restart() async throws {
        await stop()
        try await launch()
    }

    func dispose() async {
        await stop()
        try? FileManager.default.removeItem(at: dir)
    }

    /// An admin request (checking what the host holds, writing as someone else).
    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSON? = nil) async throws -> JSON {
        try await adminHTTP.request(path, method: method, body: body)
    }

    /// The Todo rows on the host whose title starts with `prefix`.
    func todos(_ prefix: String) async throws -> [JSON] {
        let all = try await admin("GET", "/api/entities/Todo?limit=1000")
        return (all["data"]?.arrayValue ?? []).filter { $0["title"]?.stringValue?.hasPrefix(prefix) == true }
    }

    /// A client of this host with fast reconnects (tests wait for outcomes, never for time).
    func client(store: ReplicaStore = MemoryStore(), tokens: TokenStorage = MemoryTokenStorage(),
                options base: SyncOptions = SyncOptions()) -> PylonClient {
        var options = base
        options.reconnectBase = .milliseconds(100)
        options.reconnectMax = .milliseconds(500)
        return PylonClient(baseURL: url, store: store, tokens: tokens, options: options)
    }

    private static let counter = Counter()

    /// A fresh password account, signed in and live.
    func signedInClient(store: ReplicaStore = MemoryStore(), tokens: TokenStorage = MemoryTokenStorage(),
                        options: SyncOptions = SyncOptions()) async throws -> PylonClient {
        let c = client(store: store, tokens: tokens, options: options)
        _ = try await c.auth.register(email: "user\(Self.counter.next())-\(UUID().uuidString.prefix(8))@example.com",
                                      password: "correct horse battery", displayName: "Tester")
        try await c.start()
        try await eventually("sync live") { await c.sync.status == .live }
        return c
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int { lock.withLock { n += 1; return n } }
}

/// Waits until `check` holds (polling), failing with `what` after a generous two minutes.
func eventually(_ what: String, timeout: Duration = .seconds(120), _ check: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await check() { return }
        if ContinuousClock.now > deadline { throw TestHostError(description: "timed out waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(25))
    }
}

/// Collects what an async sequence yields, for assertions while it runs.
final class Collected<Element: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []
    private var task: Task<Void, Never>?

    init<S: AsyncSequence & Sendable>(_ sequence: S) where S.Element == Element {
        task = Task { [weak self] in
            do { for try await x in sequence { self?.append(x) } } catch {}
        }
    }

    private func append(_ x: Element) { lock.withLock { items.append(x) } }
    var all: [Element] { lock.withLock { items } }
    var last: Element? { all.last }
    func cancel() { task?.cancel() }
    deinit { task?.cancel() }
}
