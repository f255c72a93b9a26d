import Foundation
import PylonPluginABI
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The Bun plugin under a host that offers no optional service (`BareFnHost`: its
/// `get_service` answers NULL, so there is no "pylon.host.loops/1"): the plugin reads each
/// worker's output with a thread of its own, the fallback the ABI requires of it. Under
/// `pylon-host`, which offers the loops, the same cases run in `FunctionsTests`.
@Suite("FnBun without the host's event loops: a thread per worker reads its output")
struct FnBunOwnReadersTests {
    /// The plugin with `workers` Bun children on `FunctionsTests`' functions; `close` it.
    static func start(workers: Int) throws -> (BareFnHost, URL) {
        let dir = try TestPaths.freshTempDir("fn-own-readers")
        for (name, source) in FunctionsTests.functions where name != "functions/broken.ts" {
            let url = dir.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try source.write(to: url, atomically: true, encoding: .utf8)
        }
        let config = #"{"dir":\#(TestJSON.quote(dir.appendingPathComponent("functions").path)),"workers":\#(workers)}"#
        return (try BareFnHost(path: TestPaths.pluginsDir + "/libPylonFnBun.so", config: config), dir)
    }

    static func json(_ s: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
    }

    @Test("200 concurrent calls over two workers all complete, each with its own answer")
    func concurrentCalls() async throws {
        let (host, dir) = try Self.start(workers: 2)
        defer { host.close(); TestPaths.removeTempDir(dir) }
        try await host.workersReady(2)
        #expect(host.log.contains("output read by a thread per worker"), "\(host.log)")
        let results = await withTaskGroup(of: (Int, BareFnHost.Outcome).self) { group in
            for n in 0..<200 {
                group.addTask { (n, await host.call("echo", #"{"n":\#(n)}"#)) }
            }
            var all: [(Int, BareFnHost.Outcome)] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(results.count == 200)
        for (n, r) in results {
            #expect(r.status == PYLON_OK && Self.json(r.json)["twice"] as? Int == n * 2, "call \(n): \(r)")
        }
    }

    /// The reading thread answers each `db` frame by writing to the worker's stdin while
    /// the worker may be writing to it: frames far larger than a pipe's buffer, both ways.
    @Test("a query reading rows far bigger than a pipe's buffer, many at once: every answer arrives whole")
    func bigRowsByGet() async throws {
        let (host, dir) = try Self.start(workers: 1)
        defer { host.close(); TestPaths.removeTempDir(dir) }
        let title = String(repeating: "0123456789abcdef", count: 12_800) // 200 KiB
        host.setRow("Todo", "t1", #"{"id":"t1","title":"\#(title)","done":false}"#)
        try await host.workersReady(1)
        let sizes = await withTaskGroup(of: BareFnHost.Outcome.self) { group in
            for _ in 0..<24 {
                group.addTask { await host.call("getTodo", #"{"id":"t1"}"#) }
            }
            var all: [BareFnHost.Outcome] = []
            for await r in group { all.append(r) }
            return all
        }
        for r in sizes {
            #expect(r.status == PYLON_OK && (Self.json(r.json)["title"] as? String)?.count == title.count,
                    "status \(r.status) \(r.code), \(r.json.count) bytes")
        }
    }

    @Test("kill -9 of a worker fails only its in-flight call with WORKER_CRASHED; the next calls succeed")
    func workerKilled() async throws {
        let (host, dir) = try Self.start(workers: 2)
        defer { host.close(); TestPaths.removeTempDir(dir) }
        try await host.workersReady(2)
        let marks = dir.appendingPathComponent("marks")
        try FileManager.default.createDirectory(at: marks, withIntermediateDirectories: true)
        let argsA = #"{"dir":\#(TestJSON.quote(marks.path)),"tag":"a"}"#
        let argsB = #"{"dir":\#(TestJSON.quote(marks.path)),"tag":"b"}"#
        async let first = host.call("hang", argsA)
        let pidA = try await eventually("hang a running") { Self.pid(marks, "a") }
        async let second = host.call("hang", argsB)
        let pidB = try await eventually("hang b running") { Self.pid(marks, "b") }
        #expect(pidA != pidB, "the second call goes to the idle worker")
        kill(pidA, SIGKILL)
        let a = await first
        #expect(a.status != PYLON_OK && a.code == "WORKER_CRASHED", "\(a)")
        _ = FileManager.default.createFile(atPath: marks.path + "/release", contents: nil)
        let b = await second
        #expect(b.status == PYLON_OK && Self.json(b.json)["tag"] as? String == "b", "the other worker's call is untouched: \(b)")
        for n in 0..<4 {
            let r = await host.call("echo", #"{"n":\#(n)}"#)
            #expect(r.status == PYLON_OK, "after the kill: \(r)")
        }
        #expect(host.log.contains("exited"), "the plugin logs the worker's exit: \(host.log)")
    }

    @Test("a worker that prints garbage on stdout or exits fails at most its own call; the worker is respawned")
    func garbageAndCrash() async throws {
        let (host, dir) = try Self.start(workers: 1)
        defer { host.close(); TestPaths.removeTempDir(dir) }
        try await host.workersReady(1)
        let g = await host.call("garbage", "{}")
        #expect(g.status == PYLON_OK && g.json == #""still fine""#, "\(g)")
        let d = await host.call("die", "{}")
        #expect(d.status != PYLON_OK && d.code == "WORKER_CRASHED", "\(d)")
        let e = await host.call("echo", #"{"n":21}"#)
        #expect(e.status == PYLON_OK && Self.json(e.json)["twice"] as? Int == 42, "the worker is respawned: \(e)")
        #expect(host.log.contains("not a protocol frame"), "\(host.log)")
    }

    /// The ABI lets a plugin use the host's tables until `destroy` returns, no longer: the
    /// pool's reader threads, its supervisor and the calls it holds must be done by then.
    @Test("destroy while a call runs: the call gets its one complete before destroy returns, then the plugin is silent")
    func destroyWithACallInFlight() async throws {
        let (host, dir) = try Self.start(workers: 1)
        defer { TestPaths.removeTempDir(dir) }
        try await host.workersReady(1)
        let marks = dir.appendingPathComponent("marks")
        try FileManager.default.createDirectory(at: marks, withIntermediateDirectories: true)
        let args = #"{"dir":\#(TestJSON.quote(marks.path)),"tag":"a"}"#
        async let running = host.call("hang", args)
        _ = try await eventually("hang running") { Self.pid(marks, "a") }
        host.close() // counts any host call after destroy returned
        let r = await running
        #expect(r.status != PYLON_OK && r.code == "WORKER_CRASHED", "\(r)")
    }

    /// The pid the `hang` call tagged `tag` wrote, once it is whole.
    static func pid(_ marks: URL, _ tag: String) -> Int32? {
        (try? String(contentsOfFile: marks.path + "/\(tag).pid", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}
