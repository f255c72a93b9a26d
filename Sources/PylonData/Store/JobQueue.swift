import Foundation

/// A blocking multi-producer queue for store threads. `take` blocks; `close` wakes everyone.
final class JobQueue<Job>: @unchecked Sendable {
    private var items: [Job] = []
    private var head = 0
    private var closed = false
    private let cond = NSCondition()

    func put(_ job: Job) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if closed { return false }
        items.append(job)
        cond.signal()
        return true
    }

    func take() -> Job? {
        cond.lock()
        defer { cond.unlock() }
        while head == items.count && !closed { cond.wait() }
        if head == items.count { return nil }
        return pop()
    }

    /// Up to `max` already-queued jobs, without waiting.
    func takeAvailable(max: Int) -> [Job] {
        cond.lock()
        defer { cond.unlock() }
        var out: [Job] = []
        while head < items.count && out.count < max { out.append(pop()) }
        return out
    }

    private func pop() -> Job {
        let j = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return j
    }

    func close() {
        cond.lock()
        closed = true
        cond.broadcast()
        cond.unlock()
    }
}
