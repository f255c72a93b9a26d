import Foundation
import PylonTestPorts
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server for the tests, started by `scripts/pg-server.sh` (initdb +
/// pg_ctl in a temp folder, as a non-root user, on a free loopback port) and stopped when
/// the test process exits. `shared` is one server for every test that only needs a
/// database (each gets its own with `freshDatabase`); tests that kill or restart the
/// server start their own with `start()`.
final class TestPostgres: @unchecked Sendable {
    let directory: URL
    let port: Int
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    let adminURL: String
    private let lock = NSLock()
    private var databases = 0

    private init(directory: URL, port: Int, adminURL: String) {
        self.directory = directory
        self.port = port
        self.adminURL = adminURL
    }

    static var script: String { TestPaths.packageRoot.appendingPathComponent("scripts/pg-server.sh").path }

    /// The server shared by the test process (started once, on first use).
    static func shared() async throws -> TestPostgres {
        let task = sharedLock.withLock { () -> Task<TestPostgres, Error> in
            if let t = sharedStart { return t }
            let t = Task { try await start() }
            sharedStart = t
            return t
        }
        return try await task.value
    }

    private static let sharedLock = NSLock()
    nonisolated(unsafe) private static var sharedStart: Task<TestPostgres, Error>?

    /// A new server of its own (stopped at exit, or by `stop`).
    static func start() async throws -> TestPostgres {
        let fm = FileManager.default
        // Short path: the Unix socket lives in it, and socket paths are limited to ~100 bytes.
        let dir = URL(fileURLWithPath: "/tmp/pylon-pg-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        var lastError = ""
        for _ in 0..<3 {
            let port = try freeLoopbackPort()
            let r = try await TestCommand.run("/bin/bash", [script, "start", dir.path, String(port), "fast"], timeout: 120)
            if r.status == 0 {
                let server = TestPostgres(directory: dir, port: port, adminURL: r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                TestPostgresRegistry.add(dir.path)
                return server
            }
            lastError = r.stderr
        }
        throw TestSetupError(description: "could not start PostgreSQL with \(script): \(lastError)")
    }

    /// A new empty database on this server; returns its URL.
    func freshDatabase() async throws -> String {
        let n = lock.withLock { () -> Int in
            databases += 1
            return databases
        }
        let name = "t\(getpid())_\(n)_\(UUID().uuidString.prefix(6).lowercased())"
        try await psql("CREATE DATABASE \(name)")
        return "postgres://postgres@127.0.0.1:\(port)/\(name)"
    }

    /// Runs SQL with psql against `url` (default: the admin database); returns stdout.
    @discardableResult
    func psql(_ sql: String, url: String? = nil) async throws -> String {
        // Generous: in the full parallel run a CREATE DATABASE has waited over a minute.
        let r = try await TestCommand.run("/usr/bin/psql", [url ?? adminURL, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], timeout: 240)
        guard r.status == 0 else { throw TestSetupError(description: "psql \(sql): \(r.stderr)") }
        return r.stdout
    }

    /// SIGKILL the server (a crash).
    func kill9() async throws {
        _ = try await TestCommand.run("/bin/bash", [Self.script, "kill", directory.path])
    }

    /// Start it again after `kill9` or `stop`, on the same port and data.
    func restart() async throws {
        let r = try await TestCommand.run("/bin/bash", [Self.script, "start", directory.path, String(port), "fast"], timeout: 120)
        guard r.status == 0 else { throw TestSetupError(description: "could not restart PostgreSQL: \(r.stderr)") }
    }

    func stop() {
        TestPostgresRegistry.stop(directory.path)
    }
}

/// Servers to stop when the test process exits (Swift Testing has no global teardown).
enum TestPostgresRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var dirs: Set<String> = []
    nonisolated(unsafe) private static var installed = false

    static func add(_ dir: String) {
        lock.withLock {
            dirs.insert(dir)
            if !installed {
                installed = true
                atexit { TestPostgresRegistry.stopAll() }
            }
        }
    }

    static func stop(_ dir: String) {
        let known = lock.withLock { dirs.remove(dir) != nil }
        if known { stopNow(dir) }
    }

    static func stopAll() {
        let all = lock.withLock { () -> Set<String> in
            let d = dirs
            dirs.removeAll()
            return d
        }
        for d in all { stopNow(d) }
    }

    /// Plain `system(3)`: this also runs from `atexit`, where Foundation's `Process`
    /// would wait forever for its run loop.
    private static func stopNow(_ dir: String) {
        func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        var command = "/bin/bash \(shellQuote(TestPostgres.script)) stop \(shellQuote(dir)) >/dev/null 2>&1"
        if getenv("PYLON_TEST_KEEP") == nil { command += "; rm -rf \(shellQuote(dir))" }
        _ = system(command)
    }
}
