import Foundation
import Logging
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge
import PylonPluginABI
import Testing

/// The host service "pylon.host.loops/1" (`pylon_host_loops_v1`), found the way a plugin
/// finds it (`get_service` of its `pylon_host_v1`): `watch_fd` on real pipes, bytes in order on a loop thread, exactly one `on_close`
/// with the right status, ownership of the fd, `unwatch_fd` before and after the end.
@Suite("Host event loops for plugins: loop_count, current_loop, watch_fd, unwatch_fd")
struct HostLoopsTests {
    let services = HostServices(logger: Logger(label: "test"), metrics: Metrics())
    var table: pylon_host_loops_v1 {
        let host = services.table.pointee
        let raw = host.get_service(host.host_ctx, PYLON_SERVICE_LOOPS)!
        return raw.assumingMemoryBound(to: pylon_host_loops_v1.self).pointee
    }

    @Test("get_service hands out the loops by id (NULL for an unknown id); loop_count matches NIO's group; a test thread is on no loop")
    func slots() {
        let host = services.table.pointee
        #expect(host.get_service(host.host_ctx, PYLON_SERVICE_LOOPS) != nil)
        #expect(host.get_service(host.host_ctx, "pylon.host.loops/2") == nil)
        #expect(host.get_service(host.host_ctx, "") == nil)
        #expect(Int(table.struct_size) >= MemoryLayout<pylon_host_loops_v1>.size)
        #expect(table.loop_count(table.ctx) == Int32(HostLoops.loops.count))
        #expect(table.loop_count(table.ctx) >= 1)
        #expect(table.current_loop(table.ctx) == -1)
    }

    @Test("bytes arrive in order on the chosen loop's thread, then one on_close(OK) at end of file; the fd is the host's")
    func readsToEndOfFile() async throws {
        let (r, w) = try makePipe()
        let sink = Sink()
        let handle = try #require(watch(r, loop: 1, sink))
        var sent: [UInt8] = []
        for i in 0..<200 {
            let chunk = Array("line \(i) \(String(repeating: "x", count: i * 37))\n".utf8)
            sent += chunk
            #expect(writeAll(w, chunk))
        }
        close(w)
        let status = try await sink.closed()
        #expect(status == PYLON_OK)
        #expect(sink.bytes == sent, "\(sink.bytes.count) of \(sent.count) bytes")
        let expected = Int32(1 % HostLoops.loops.count)
        #expect(sink.loops == [expected], "callbacks ran on loops \(sink.loops)")
        #expect(sink.closes == 1)
        table.unwatch_fd(table.ctx, handle) // after on_close: allowed, exactly once
        // (Whether `r` was closed is not checked: tests run in parallel and reuse fd numbers.)
    }

    @Test("unwatch_fd before the end stops reading: on_close(ABORTED) once, later bytes are not delivered")
    func unwatchEarly() async throws {
        let (r, w) = try makePipe()
        defer { close(w) }
        let sink = Sink()
        let handle = try #require(watch(r, loop: -1, sink))
        #expect(writeAll(w, Array("first\n".utf8)))
        try await sink.waitFor(6)
        table.unwatch_fd(table.ctx, handle)
        let status = try await sink.closed()
        #expect(status == PYLON_ERR_ABORTED)
        _ = writeAll(w, Array("after\n".utf8))
        try await Task.sleep(for: .milliseconds(100))
        #expect(String(decoding: sink.bytes, as: UTF8.self) == "first\n")
        #expect(sink.closes == 1)
    }

    @Test("watch_fd refuses a regular file and a negative fd: NULL, the fd left to the caller")
    func refusals() throws {
        let path = NSTemporaryDirectory() + "/pylon-hostloops-\(getpid()).txt"
        FileManager.default.createFile(atPath: path, contents: Data("x".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        let sink = Sink()
        #expect(watch(fd, loop: 0, sink) == nil)
        #expect(fcntl(fd, F_GETFD) != -1, "a refused fd stays open, the caller's")
        close(fd)
        #expect(watch(-1, loop: 0, sink) == nil)
    }

    // MARK: Helpers

    private func watch(_ fd: Int32, loop: Int32, _ sink: Sink) -> UnsafeMutableRawPointer? {
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        return table.watch_fd(table.ctx, fd, loop, { ctx, bytes, len in
            let sink = Unmanaged<Sink>.fromOpaque(ctx!).takeUnretainedValue()
            sink.data(UnsafeBufferPointer(start: bytes, count: len), loop: HostLoops.current())
        }, { ctx, status in
            Unmanaged<Sink>.fromOpaque(ctx!).takeUnretainedValue().close(status, loop: HostLoops.current())
        }, ctx)
    }

    private func makePipe() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        return (fds[0], fds[1])
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { return false }
                off += n
            }
            return true
        }
    }
}

/// What the callbacks saw; read by the test thread.
private final class Sink: @unchecked Sendable {
    private let lock = NSLock()
    private var _bytes: [UInt8] = []
    private var _loops: Set<Int32> = []
    private var _closes = 0
    private var status: pylon_status?

    var bytes: [UInt8] { lock.withLock { _bytes } }
    var loops: Set<Int32> { lock.withLock { _loops } }
    var closes: Int { lock.withLock { _closes } }

    func data(_ b: UnsafeBufferPointer<UInt8>, loop: Int32) {
        lock.withLock {
            _bytes += b
            _loops.insert(loop)
        }
    }

    func close(_ s: pylon_status, loop: Int32) {
        lock.withLock {
            _closes += 1
            status = s
            _loops.insert(loop)
        }
    }

    func closed() async throws -> pylon_status {
        for _ in 0..<500 {
            if let s = lock.withLock({ status }) { return s }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no on_close within 5 s")
        return -1
    }

    func waitFor(_ count: Int) async throws {
        for _ in 0..<500 where bytes.count < count { try await Task.sleep(for: .milliseconds(10)) }
    }
}
