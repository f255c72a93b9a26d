import NIOCore

/// Runs jobs on one event loop: the preferred executor of a request's Task (`HTTPFront`), so
/// its steps stay on its connection's loop thread. A job enqueued from that thread runs
/// after the current one (no wake-up); from another thread, it wakes the loop.
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
