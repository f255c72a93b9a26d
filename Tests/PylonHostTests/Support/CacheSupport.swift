import Foundation
import PylonTestPorts
#if canImport(Glibc)
import Glibc
#endif

// Helpers for the CacheRESP black-box tests: a host whose cache plugin listens on a
// free port, the Python fixtures under Tests/Fixtures/cache, redis-cli, and a real
// redis-server for the differential test.

enum CacheFixtures {
    static var directory: String { TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/cache").path }

    /// Runs `python3 Tests/Fixtures/cache/<script> args...`; throws with its output unless
    /// it exits 0.
    @discardableResult
    static func python(_ script: String, _ args: [String], timeout: TimeInterval = 600) async throws -> String {
        let r = try await TestCommand.run("/usr/bin/env", ["python3", directory + "/" + script] + args, timeout: timeout)
        guard r.status == 0 else {
            throw TestSetupError(description: "\(script) \(args.joined(separator: " ")) exited \(r.status):\n\(r.stdout)\n\(r.stderr)")
        }
        return r.stdout
    }

    /// `redis-cli -p port args...` (raw output: one line per value).
    static func cli(_ port: Int, _ args: [String]) async throws -> String {
        let r = try await TestCommand.run("/usr/bin/env", ["redis-cli", "-p", String(port)] + args, timeout: 60)
        guard r.status == 0 else {
            throw TestSetupError(description: "redis-cli \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)")
        }
        return r.stdout.trimmingCharacters(in: .newlines)
    }
}

extension HostProcess {
    /// A host whose cache plugin serves RESP on a free port, configured with
    /// `cacheConfig` (extra keys of `plugins.cache`, JSON without braces).
    static func startWithCache(cacheConfig: String = "", env: [String: String] = [:], launcher: [String] = []) async throws -> (HostProcess, Int) {
        let port = try freeLoopbackPort()
        let extra = cacheConfig.isEmpty ? "" : ", " + cacheConfig
        let manifest = """
        {"manifest_version": 1, "name": "cache-test", "version": "0.1.0",
         "entities": [{"name": "Item", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
         "routes": [], "policies": [],
         "plugins": {"cache": {"use": "resp", "port": \(port)\(extra)}}}
        """
        let host = try await HostProcess.start(manifest: manifest, env: env, dev: true, launcher: launcher)
        return (host, port)
    }
}

/// A real redis-server on a free loopback port, without persistence. Stopped with
/// SIGKILL: children of the test process may inherit a blocked SIGTERM, and there is
/// nothing to save.
final class RedisServer: @unchecked Sendable {
    let port: Int
    let process: Process

    /// `bind`: the addresses it listens on (keep loopback among them, for the start check).
    init(bind: [String] = ["127.0.0.1"]) async throws {
        port = try freeLoopbackPort()
        process = try await startLoopbackServer(["redis-server", "--port", String(port), "--bind"] + bind + ["--save", "", "--appendonly", "no",
                                                 "--daemonize", "no", "--dir", FileManager.default.temporaryDirectory.path],
                                                port: port, what: "redis-server (make test installs it with apt-get)")
    }

    func stop() { stopServer(process) }
}

/// Starts `command` (looked up on PATH), output discarded, and waits up to a minute until
/// it accepts connections on loopback `port`.
func startLoopbackServer(_ command: [String], port: Int, what: String) async throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    do {
        try process.run()
    } catch {
        throw TestSetupError(description: "cannot start \(what): \(error)")
    }
    let deadline = Date().addingTimeInterval(60)
    while !loopbackPortAccepts(port) {
        guard process.isRunning, Date() < deadline else {
            stopServer(process)
            throw TestSetupError(description: "\(what) did not start on port \(port)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    return process
}

/// SIGKILL, then wait for the exit.
func stopServer(_ process: Process) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGKILL)
    process.waitForExit()
}

/// Sends raw RESP on a blocking test socket and reads until `done` says the reply is
/// complete (or the peer closes).
func respExchange(_ port: Int, address: String = "127.0.0.1", _ payload: String,
                  until done: @escaping @Sendable (String) -> Bool) async throws -> String {
    try await onThread {
        let s = try TestSocket.connect(port: port, address: address)
        defer { s.close() }
        try s.send(payload)
        var got = [UInt8]()
        while !done(String(decoding: got, as: UTF8.self)) {
            switch s.receive() {
            case let .bytes(b): got += b
            case .end, .failed: return String(decoding: got, as: UTF8.self)
            }
        }
        return String(decoding: got, as: UTF8.self)
    }
}


/// One of this machine's own IPv4 addresses that is not loopback (an interface that is up),
/// nil when it has none: the tests of protected mode connect from it as a client that is
/// not on loopback.
func nonLoopbackIPv4Address() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return nil }
    defer { freeifaddrs(list) }
    for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
        let flags = Int32(entry.pointee.ifa_flags)
        guard let sa = entry.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET),
              flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0 else { continue }
        var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let shown = text.withUnsafeMutableBufferPointer { buf in
            inet_ntop(AF_INET, &addr, buf.baseAddress, socklen_t(buf.count)).map { String(cString: $0) }
        }
        if let shown { return shown }
    }
    return nil
}
