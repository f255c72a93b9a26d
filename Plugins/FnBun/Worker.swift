import Foundation
import PylonPluginABI
import PylonPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// One Bun child. Fields are guarded by the pool lock, except `stdinFD` writes (writeLock).
final class Worker: @unchecked Sendable {
    enum State { case waiting(respawnAt: Double), starting(deadline: Double), ready, stopped }
    let index: Int
    var pid: pid_t = 0
    var stdinFD: Int32 = -1
    var state: State = .waiting(respawnAt: 0)
    /// Wire ids of the calls dispatched to this child and not finished.
    var inflight: Set<String> = []
    /// Bumped at every spawn, so replies meant for a dead child never reach its successor.
    var generation = 0
    var readyAt: Double = 0
    var failures = 0
    /// Why the pool killed this child (its in-flight calls fail with this code).
    var killReason: (code: String, message: String)?
    /// Being replaced after a code change: takes no calls; stdin is closed once idle.
    var draining = false
    /// The host event loop that reads this child's stdout (`HostEventLoops`), -1 when a
    /// thread of the pool does. Calls arriving on that loop prefer this child. Fixed.
    var loop = -1
    /// When the child last finished a call (monotonic seconds): a child with calls in
    /// flight that has been silent longer than `WorkerPool.stallAfter` may be stuck in a
    /// long handler, and gets no calls for the sake of affinity.
    var lastReturn: Double = 0
    /// When the child last finished a call or, idle, was given one (monotonic seconds). A
    /// child with calls in flight that has been quiet longer than `WorkerPool.stuckAfter`
    /// is probably running a handler that does not yield (a Bun child runs one piece of
    /// JavaScript at a time): it gets calls only while every ready child is so, or the
    /// calls it is given wait behind that handler and fail with it when its timeout kills
    /// the child.
    var quietSince: Double = 0

    /// Takes the call `key` (pool lock held).
    func take(_ key: String) {
        if inflight.isEmpty { quietSince = monotonicSeconds() }
        inflight.insert(key)
    }
    let writeLock = NSLock()

    init(index: Int) { self.index = index }

    var isReady: Bool { if case .ready = state { return true } else { return false } }

    /// Frames waiting for the thread that is writing (writeLock).
    private var outbox: [UInt8] = []
    /// A thread is writing `outbox` to the pipe, outside the lock (writeLock).
    private var writing = false
    /// The fd that write goes to (writeLock).
    private var inFlightFD: Int32 = -1
    /// The pipe was given up while a write was in progress: the writer closes this fd when
    /// it is done (writeLock).
    private var closeAfterWrite: Int32 = -1

    /// The reader thread is handling a batch of the child's frames: frames sent
    /// meanwhile (its answers, and calls other threads start) wait in `outbox` and leave
    /// together at `releaseWrites` (writeLock).
    private var holding = false

    /// Queues one frame for the child; a dead pipe is ignored (the reader notices the exit).
    /// Frames sent while another thread is writing leave with its next write, and frames sent
    /// while the reader handles a batch leave when the batch is done, so a busy pool writes
    /// several frames per syscall. Returns false when `generation` is no longer the
    /// current child.
    @discardableResult
    func send(_ bytes: [UInt8], generation gen: Int? = nil) -> Bool {
        writeLock.lock()
        if let gen, gen != generation {
            writeLock.unlock()
            return false
        }
        guard stdinFD >= 0 else {
            writeLock.unlock()
            return false
        }
        outbox += bytes
        // The reader handling a batch writes everything queued when it is done with it.
        if writing || holding {
            writeLock.unlock()
            return true
        }
        return drainAndUnlock()
    }

    /// The reader is handling a batch: sends wait in `outbox` until `releaseWrites`.
    func holdWrites() {
        writeLock.lock()
        holding = true
        writeLock.unlock()
    }

    /// Sends what the reader held back, in one write.
    func releaseWrites() {
        writeLock.lock()
        holding = false
        if writing || outbox.isEmpty || stdinFD < 0 {
            writeLock.unlock()
            return
        }
        _ = drainAndUnlock()
    }

    /// Writes `outbox` until it stays empty, outside the lock. writeLock held on entry,
    /// released on return. The pipe is non-blocking (callers include the host's event
    /// loops): when it is full, the rest stays first in `outbox`, `writing` stays set and a
    /// thread of its own waits for room and goes on (`flushWhenWritable`).
    private func drainAndUnlock() -> Bool {
        writing = true
        var ok = true
        while !outbox.isEmpty && stdinFD >= 0 {
            let fd = stdinFD
            inFlightFD = fd
            let batch = outbox
            outbox.removeAll(keepingCapacity: true)
            writeLock.unlock()
            let written = Self.writeSome(fd, batch)
            writeLock.lock()
            if written < 0 {
                // The child is gone: its reader fails what it had in flight.
                ok = false
                outbox.removeAll()
                break
            }
            if written < batch.count {
                outbox = Array(batch[written...]) + outbox
                let t = Thread { [self] in flushWhenWritable(fd) }
                t.name = "pylon-fnbun-flush-\(index)"
                t.start()
                writeLock.unlock()
                return true
            }
        }
        writing = false
        inFlightFD = -1
        outbox.removeAll()
        if closeAfterWrite >= 0 {
            close(closeAfterWrite)
            closeAfterWrite = -1
        }
        writeLock.unlock()
        return ok
    }

    /// Gives up the pipe to the child (it sees EOF). writeLock held. A write in progress
    /// keeps the fd open until it ends, so the number is never reused under it.
    func closeStdin() {
        guard stdinFD >= 0 else { return }
        if writing && stdinFD == inFlightFD { closeAfterWrite = stdinFD } else { close(stdinFD) }
        stdinFD = -1
        outbox.removeAll()
    }

    /// A full pipe (a child busy in a long handler while calls pile up) waits here, off
    /// the caller's thread; `writing` is set throughout, so other senders only queue.
    private func flushWhenWritable(_ fd: Int32) {
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, 1000) != 0 { break } // room, an error, or EINTR: try again
            writeLock.lock()
            let gone = stdinFD != fd
            writeLock.unlock()
            if gone { break }
        }
        writeLock.lock()
        _ = drainAndUnlock()
    }

    /// Writes what fits: the byte count written (short when the pipe is full), -1 when the
    /// pipe is broken.
    private static func writeSome(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        var off = 0
        return bytes.withUnsafeBytes { raw in
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { return off }
                    return -1
                }
                off += n
            }
            return off
        }
    }
}
