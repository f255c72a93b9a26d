import Foundation
import PylonPluginABI
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// Reads one child's stdout — on a host event loop (`childData` / `childClosed`) or on a
/// thread of its own (`readLoop`) — and hands each NDJSON line to the pool. Lives for one
/// spawn (one `generation`).
final class ChildReader: @unchecked Sendable {
    let pool: WorkerPool
    let worker: Worker
    let generation: Int
    let pid: pid_t
    /// A line not ended yet (the reading thread's, or the loop's, only).
    private var partial: [UInt8] = []
    private var killed = false
    /// The `watch_fd` handle, until the stream ends (`lock`).
    private let lock = NSLock()
    private var handle: UnsafeMutableRawPointer?
    private var ended = false
    static let maxLine = 256 << 20

    init(pool: WorkerPool, worker: Worker, generation: Int, pid: pid_t) {
        self.pool = pool
        self.worker = worker
        self.generation = generation
        self.pid = pid
    }

    /// Handles every complete line in `bytes` (after what `partial` holds); the frames
    /// this sends to the child meanwhile leave in one write.
    func consume(_ bytes: UnsafeRawBufferPointer) {
        guard !killed else { return }
        worker.holdWrites()
        defer { worker.releaseWrites() }
        var start = 0
        if !partial.isEmpty {
            guard let nl = bytes.firstIndex(of: 0x0A) else {
                keep(bytes[...])
                return
            }
            partial.append(contentsOf: bytes[..<nl])
            let line = partial
            partial = []
            if !line.isEmpty { pool.handleLine(worker, generation, line) }
            start = nl + 1
        }
        while let nl = bytes[start...].firstIndex(of: 0x0A) {
            if nl > start { pool.handleLine(worker, generation, Array(bytes[start..<nl])) }
            start = nl + 1
        }
        if start < bytes.count { keep(bytes[start...]) }
    }

    private func keep(_ rest: Slice<UnsafeRawBufferPointer>) {
        partial.append(contentsOf: rest)
        if partial.count > Self.maxLine {
            pool.log(PYLON_LOG_ERROR, "fnbun: worker \(worker.index) wrote a line over 256 MiB; killing it")
            killed = true
            partial = []
            kill(pid, SIGKILL) // its end of file follows
        }
    }

    /// Without host loops: blocking reads until end of file.
    func readLoop(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            chunk.withUnsafeBytes { consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    /// `watch_fd` returned `handle`; given back at the end of the stream (maybe already).
    func adopt(_ handle: UnsafeMutableRawPointer) {
        lock.lock()
        if ended {
            lock.unlock()
            pool.loops?.unwatch(handle)
            return
        }
        self.handle = handle
        lock.unlock()
    }

    /// The stream ended (`on_close`, on the loop): the rest runs on a thread, since reaping
    /// the child may wait.
    func finishOnThread() {
        let t = Thread { [self] in
            lock.lock()
            ended = true
            let h = handle
            handle = nil
            lock.unlock()
            if let h { pool.loops?.unwatch(h) }
            pool.childExited(self)
        }
        t.name = "pylon-fnbun-reap-\(worker.index)"
        t.start()
    }
}

let childData: HostEventLoops.OnData = { ctx, bytes, len in
    guard let ctx else { return }
    Unmanaged<ChildReader>.fromOpaque(ctx).takeUnretainedValue().consume(UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : len))
}

let childClosed: HostEventLoops.OnClose = { ctx, _ in
    guard let ctx else { return }
    Unmanaged<ChildReader>.fromOpaque(ctx).takeRetainedValue().finishOnThread()
}
