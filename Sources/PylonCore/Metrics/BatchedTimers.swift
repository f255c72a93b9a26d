import CoreMetrics
import NIOConcurrencyHelpers
import NIOPosix
import Prometheus

/// The host's `MetricsFactory`: swift-prometheus' factory, except that every timer records
/// through `TimerBatches` instead of straight into its histogram.
///
/// Why: a swift-prometheus histogram takes a lock per series on every observation, and the
/// request-duration series of a hot route is written by every event loop at once. On a
/// 2-core machine that lock cost about 5 µs per request under load (bench/RESULTS.md,
/// session 10: insert 6.1× → 4.9× PocketBase with it). Here each thread appends its
/// observations to its own batch (a lock nobody else takes, except a scrape), and a full
/// batch, or a scrape (`Metrics.prometheusText`), moves them into the histograms in one
/// go. The histograms, their buckets and the exposition stay swift-prometheus'; a scrape
/// sees every observation recorded before it started.
package struct HostMetricsFactory: MetricsFactory {
    let prometheus: PrometheusMetricsFactory
    let batches: TimerBatches

    package func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
        prometheus.makeCounter(label: label, dimensions: dimensions)
    }

    package func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> FloatingPointCounterHandler {
        prometheus.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    package func makeMeter(label: String, dimensions: [(String, String)]) -> MeterHandler {
        prometheus.makeMeter(label: label, dimensions: dimensions)
    }

    package func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
        prometheus.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }

    package func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler {
        batches.timer(prometheus.makeTimer(label: label, dimensions: dimensions))
    }

    package func destroyCounter(_ handler: CounterHandler) { prometheus.destroyCounter(handler) }
    package func destroyFloatingPointCounter(_ handler: FloatingPointCounterHandler) { prometheus.destroyFloatingPointCounter(handler) }
    package func destroyMeter(_ handler: MeterHandler) { prometheus.destroyMeter(handler) }
    package func destroyRecorder(_ handler: RecorderHandler) { prometheus.destroyRecorder(handler) }
    // The host never destroys a timer (its series live as long as the host), so a batch
    // can never hold an observation for a destroyed one.
    package func destroyTimer(_ handler: TimerHandler) {}
}

/// Per-thread batches of timer observations for one `Metrics` (see `HostMetricsFactory`).
final class TimerBatches: Sendable {
    /// Observations a thread keeps before it moves them into the histograms itself.
    static let capacity = 256
    private let mine = ThreadSpecificVariable<Batch>()
    /// Every thread's batch, for a scrape to drain; and every timer, which keeps each
    /// alive for as long as a batch may name it (`Batch` holds them unretained).
    private let all = NIOLockedValueBox<(batches: [Batch], timers: [BatchedTimer])>(([], []))

    func timer(_ histogram: TimerHandler) -> TimerHandler {
        let t = BatchedTimer(histogram, batches: self)
        all.withLockedValue { $0.timers.append(t) }
        return t
    }

    /// Records on the calling thread's batch (made on the thread's first observation).
    fileprivate func record(_ timer: BatchedTimer, _ nanoseconds: Int64) {
        if let b = mine.currentValue {
            b.append(timer, nanoseconds)
            return
        }
        let b = Batch()
        mine.currentValue = b
        all.withLockedValue { $0.batches.append(b) }
        b.append(timer, nanoseconds)
    }

    /// Moves every thread's observations into the histograms: before a scrape reads them.
    func drain() {
        for b in all.withLockedValue({ $0.batches }) { b.drain() }
    }
}

/// A timer whose observations go through `TimerBatches`.
final class BatchedTimer: TimerHandler {
    let histogram: TimerHandler
    private let batches: TimerBatches

    init(_ histogram: TimerHandler, batches: TimerBatches) {
        self.histogram = histogram
        self.batches = batches
    }

    func recordNanoseconds(_ duration: Int64) {
        batches.record(self, duration)
    }
}

/// One thread's pending observations. Its lock is taken by that thread on each record and
/// by a scrape; so, but for scrapes, never contended. Observations move into the histograms
/// under the lock, so a scrape that drains after a record sees it, even while the owner is
/// moving a full batch. Timers are held unretained: retaining the shared timer on every
/// record would put one contended reference count back on the hot path (`TimerBatches`
/// keeps them alive).
private final class Batch: @unchecked Sendable {
    private let lock = NIOLock()
    private var pending: [(timer: Unmanaged<BatchedTimer>, nanoseconds: Int64)] = []

    init() { pending.reserveCapacity(TimerBatches.capacity) }

    func append(_ timer: BatchedTimer, _ nanoseconds: Int64) {
        lock.withLock {
            pending.append((Unmanaged.passUnretained(timer), nanoseconds))
            if pending.count >= TimerBatches.capacity { flush() }
        }
    }

    func drain() {
        lock.withLock { flush() }
    }

    /// Into the histograms (each takes its own lock), keeping the capacity. Under `lock`.
    private func flush() {
        for o in pending { o.timer.takeUnretainedValue().histogram.recordNanoseconds(o.nanoseconds) }
        pending.removeAll(keepingCapacity: true)
    }
}
