import Atomics
import Foundation
import PylonCore

/// The threads password hashes run on: Argon2 takes tens of milliseconds of CPU and 19 MiB
/// of memory per call, which must not hold an event loop or a thread of Swift's
/// cooperative pool. At most `threads` hashes run at once and at most `maxWaiting` wait;
/// beyond that a request gets 503 `AUTH_BUSY` at once, so a flood of logins costs bounded
/// memory and leaves the rest of the host its CPU.
package final class PasswordWorkers: Sendable {
    private let queue = JobQueue<@Sendable () -> Void>()
    private let waiting = ManagedAtomic<Int>(0)
    private let maxWaiting: Int

    package init(threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount / 2), maxWaiting: Int = 64) {
        self.maxWaiting = maxWaiting
        for i in 0..<max(1, threads) {
            let t = Thread { [queue] in
                while let job = queue.take() { job() }
            }
            t.name = "pylon-passwords-\(i)"
            t.start()
        }
    }

    /// Runs `work` on a password thread and returns its result.
    package func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard waiting.wrappingIncrementThenLoad(ordering: .relaxed) <= maxWaiting else {
            waiting.wrappingDecrement(ordering: .relaxed)
            throw HostError(status: 503, code: "AUTH_BUSY", message: "too many sign-ins are being checked right now; try again in a moment")
        }
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let queued = queue.put { [waiting] in
                waiting.wrappingDecrement(ordering: .relaxed)
                cont.resume(with: Result { try work() })
            }
            if !queued {
                waiting.wrappingDecrement(ordering: .relaxed)
                cont.resume(throwing: HostError.unavailable("the host is shutting down"))
            }
        }
    }

    /// Stops the threads once the queued hashes are done.
    package func shutdown() { queue.close() }
}
