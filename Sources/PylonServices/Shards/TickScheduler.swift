import Foundation
import Logging
import PylonCore
#if canImport(Glibc)
import Glibc
#endif

/// Runs every shard's turns on a few threads (not one per shard): a min-heap of due times
/// on the monotonic clock, and worker threads that sleep until the earliest is due, run
/// that shard's turn and schedule its next one at `due + interval` (so ticks do not drift
/// with the time turns take). A shard that fell more than one interval behind is
/// rescheduled from now (`shard_ticks_late_total`) instead of bursting to catch up.
///
/// A watchdog stops a shard whose turn runs past the budget — the sim broke its [bounded]
/// promise — and starts a replacement thread, so the other shards keep their schedule while
/// the stuck call still holds its thread (which exits when the call returns).
final class TickScheduler: @unchecked Sendable {
    private struct Entry {
        let due: Int64
        let order: UInt64
        let shard: Shard
    }

    /// What a worker is doing, for the watchdog (under the scheduler's mutex).
    private final class Worker: @unchecked Sendable {
        var shard: Shard?
        var since: Int64 = 0
        var retired = false
    }

    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var heap: [Entry] = []
    private var order: UInt64 = 0
    private var workers: [Worker] = []
    private var stopping = false
    private let budgetNanos: Int64
    private let metrics: Metrics
    private let logger: Logger

    init(threads: Int, budgetMs: Int, metrics: Metrics, logger: Logger) {
        budgetNanos = Int64(budgetMs) * 1_000_000
        self.metrics = metrics
        self.logger = logger
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
        locked { for _ in 0..<max(1, threads) { startWorkerLocked() } }
        let watchdog = Thread { [self] in watch() }
        watchdog.name = "pylon-shard-watchdog"
        watchdog.start()
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Schedules `shard`'s first turn now.
    func add(_ shard: Shard) {
        locked { pushLocked(Entry(due: Self.now(), order: 0, shard: shard)) }
    }

    /// Stops the threads (after their current turn).
    func shutdown() {
        locked {
            stopping = true
            heap.removeAll()
            pthread_cond_broadcast(&cond)
        }
    }

    // MARK: Workers

    private func startWorkerLocked() {
        let w = Worker()
        workers.append(w)
        let t = Thread { [self] in work(w) }
        t.name = "pylon-shard-tick"
        t.stackSize = 1 << 20
        t.start()
    }

    private func work(_ me: Worker) {
        while let (entry, _) = nextDue(me) {
            let started = Self.now()
            metrics.shardTickLateness.recordNanoseconds(max(0, started - entry.due))
            let running = entry.shard.turn(now: started)
            let ended = Self.now()
            let goOn = locked { () -> Bool in
                me.shard = nil
                if running && !stopping {
                    let interval = entry.shard.settings.intervalNanos
                    var next = entry.due + interval
                    if ended - next > interval {
                        metrics.add("shard_ticks_late_total", 1)
                        next = ended
                    }
                    pushLocked(Entry(due: next, order: 0, shard: entry.shard))
                }
                if me.retired { workers.removeAll { $0 === me } }
                return !me.retired
            }
            if running && ended - started > budgetNanos {
                // The watchdog may have missed a turn just past the budget.
                entry.shard.stop("its turn took \((ended - started) / 1_000_000) ms, over the \(budgetNanos / 1_000_000) ms budget (PYLON_SHARD_TICK_BUDGET_MS)", failed: true)
            }
            if !goOn { return }
        }
    }

    /// Waits for the earliest due turn and claims it for `me`; nil when stopping.
    private func nextDue(_ me: Worker) -> (Entry, Int64)? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !stopping {
            let now = Self.now()
            if let top = heap.first {
                if top.due <= now {
                    let e = popLocked()
                    me.shard = e.shard
                    me.since = now
                    return (e, now)
                }
                var ts = timespec(tv_sec: Int(top.due / 1_000_000_000), tv_nsec: Int(top.due % 1_000_000_000))
                pthread_cond_timedwait(&cond, &mutex, &ts)
            } else {
                pthread_cond_wait(&cond, &mutex)
            }
        }
        return nil
    }

    /// Every quarter budget: a turn past the budget stops its shard and gets its thread
    /// replaced.
    private func watch() {
        let step = max(budgetNanos / 4, 5_000_000)
        while true {
            usleep(useconds_t(step / 1000))
            let stuck = locked { () -> [Shard] in
                if stopping { return [] }
                let now = Self.now()
                var found: [Shard] = []
                for w in workers where !w.retired {
                    if let s = w.shard, now - w.since > budgetNanos {
                        w.retired = true
                        found.append(s)
                        startWorkerLocked()
                    }
                }
                return found
            }
            if locked({ stopping }) { return }
            for s in stuck {
                metrics.add("shard_turns_stuck_total", 1)
                s.stop("its turn has run longer than the \(budgetNanos / 1_000_000) ms budget (PYLON_SHARD_TICK_BUDGET_MS); the sim broke its [bounded] promise", failed: true)
            }
        }
    }

    // MARK: The heap (earliest due first; equal dues in order of scheduling)

    private func less(_ a: Entry, _ b: Entry) -> Bool { a.due != b.due ? a.due < b.due : a.order < b.order }

    private func pushLocked(_ e: Entry) {
        order &+= 1
        heap.append(Entry(due: e.due, order: order, shard: e.shard))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
        pthread_cond_signal(&cond)
    }

    private func popLocked() -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && less(heap[l], heap[m]) { m = l }
                if r < heap.count && less(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
