import CoreMetrics
import Foundation
import Prometheus

/// The host's metrics (the host's own and those plugins report through `counter_add` /
/// `gauge_set`), shown on `GET /metrics`. The host records through swift-metrics' API
/// (`CoreMetrics.Counter`, `Timer`, `Recorder`, `Meter`), made by a
/// `PrometheusMetricsFactory` over this host's own `PrometheusCollectorRegistry`: the
/// registry renders the Prometheus text format, and the JSON view is read back from that
/// same text (`MetricsJSON`), so there is one store of values. No global bootstrap: each
/// `Metrics` is separate (tests build several in one process).
///
/// Hot paths never take a lock shared by every request: counters are atomics
/// (swift-prometheus), and their handles are made once and kept — the named series below
/// at init, request and function series on first use through lock-free lazy references
/// (`RequestMetrics`, `FunctionMetrics`: each made by its own layer over `factory`). Timers
/// record into a per-thread batch that reaches the histograms when full or scraped
/// (`HostMetricsFactory`).
///
/// Every Prometheus name is the JSON name with `pylon_` in front.
public final class Metrics: Sendable {
    package static let prefix = "pylon_"
    /// The `route` label of a request no route matched.
    package static let unmatchedRoute = "unmatched"
    let registry: PrometheusCollectorRegistry
    package let factory: HostMetricsFactory
    let startedAt = Date()

    /// Counters the host adds to by name (`add`): made at init, so `add` finds them
    /// without a lock. Another name (a plugin's, or one added later) is made on first use
    /// (`dynamic`).
    static let hostCounters = [
        "http_errors_total", "http_rate_limited_total",
        "write_batches_total", "write_jobs_total", "write_batches_replayed_total", "write_events_unnumbered_total",
        "changes_committed_total", "change_tail_reads_total",
        "realtime_deliveries_total", "realtime_sessions_ended_total", "realtime_queue_fallbacks_total",
        "realtime_slow_consumers_closed_total", "realtime_relay_floods_closed_total", "room_events_total",
    ]
    /// Gauges the host sets by name (`set`), likewise.
    static let hostGauges = ["realtime_connections"]

    private let named: [String: NamedSeries]
    private let dynamic: DynamicSeries
    package let pluginCalls: PluginCallCounters
    /// Write transactions of the writer thread (group commit): BEGIN to COMMIT, and jobs per batch.
    package let commitDuration: CoreMetrics.Timer
    package let batchJobs: CoreMetrics.Recorder
    /// From a commit until its events are in the queue of every subscriber that may read them.
    package let fanoutDuration: CoreMetrics.Timer
    /// How late each shard turn started against its schedule (the tick loop's accuracy).
    package let shardTickLateness: CoreMetrics.Timer
    private let uptime: Meter
    private let collectors = Collectors()

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var prometheus = PrometheusMetricsFactory(registry: registry)
        prometheus.defaultDurationHistogramBuckets = Self.durationBuckets
        prometheus.valueHistogramBuckets = [Self.prefix + "write_batch_jobs": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]]
        let f = HostMetricsFactory(prometheus: prometheus, batches: TimerBatches())
        factory = f
        var named: [String: NamedSeries] = [:]
        for n in Self.hostCounters { named[n] = .counter(CoreMetrics.Counter(label: Self.prefix + n, factory: f)) }
        for n in Self.hostGauges { named[n] = .gauge(Meter(label: Self.prefix + n, factory: f)) }
        pluginCalls = PluginCallCounters(factory: f)
        commitDuration = CoreMetrics.Timer(label: Self.prefix + "write_commit_duration_seconds", factory: f)
        batchJobs = Recorder(label: Self.prefix + "write_batch_jobs", factory: f)
        fanoutDuration = CoreMetrics.Timer(label: Self.prefix + "realtime_fanout_duration_seconds", factory: f)
        shardTickLateness = CoreMetrics.Timer(label: Self.prefix + "shard_tick_lateness_seconds", factory: f)
        uptime = Meter(label: Self.prefix + "uptime_seconds", factory: f)
        self.named = named
        dynamic = DynamicSeries(factory: f, reserved: Set(named.keys).union(Self.familyNames))
    }

    /// Families the host makes with labels or other types; a name reported by a plugin
    /// must not reuse them (the registry refuses a second type under one name by crashing).
    static let familyNames: Set<String> = [
        "http_requests_total", "http_request_duration_seconds", "fn_calls_total", "fn_call_duration_seconds",
        "plugin_calls_total", "write_commit_duration_seconds", "write_batch_jobs", "realtime_fanout_duration_seconds",
        "uptime_seconds", "shard_tick_lateness_seconds", "realtime_queued_messages", "realtime_queue_depth_max", "metrics_refused_total",
        "rooms", "room_members",
    ]

    /// 100 µs to 10 s: a point read takes tens of µs, a function call ms, a slow commit s.
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(10),
    ]

    /// Adds `delta` to the counter `name` (its JSON name; Prometheus: `pylon_<name>`).
    /// Negative deltas are ignored: a counter only grows.
    public func add(_ name: String, _ delta: Int64) {
        guard delta > 0 else { return }
        if case let .counter(c)? = named[name] ?? dynamic.series(name, counter: true) { c.increment(by: delta) }
    }

    /// Sets the gauge `name`.
    public func set(_ name: String, _ value: Double) {
        guard value.isFinite else { return }
        if case let .gauge(g)? = named[name] ?? dynamic.series(name, counter: false) { g.set(value) }
    }

    /// Runs `collect` before each rendering of `/metrics`: for gauges that are cheaper to
    /// compute when asked for (queue depths) than to keep up to date.
    package func onCollect(_ collect: @escaping @Sendable (Metrics) -> Void) {
        collectors.add(collect)
    }

    /// The Prometheus text exposition format 0.0.4.
    package func prometheusText() -> [UInt8] {
        uptime.set(Date().timeIntervalSince(startedAt))
        collectors.run(self)
        factory.batches.drain()
        return registry.emitToBuffer()
    }

    /// A gauge the host computes on collection (`onCollect`).
    package func collectedGauge(_ name: String) -> Meter {
        Meter(label: Self.prefix + name, factory: factory)
    }

    /// Duration since `start` (`DispatchTime.now().uptimeNanoseconds`) in the timer.
    package static func record(_ timer: CoreMetrics.Timer, since start: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        timer.recordNanoseconds(Int64(truncatingIfNeeded: now &- start))
    }
}

/// A counter or gauge found by name.
enum NamedSeries: Sendable {
    case counter(CoreMetrics.Counter)
    case gauge(Meter)
}

/// Series named at run time (by plugins through the ABI), made on first use. Bounded: at
/// most `limit` names, each a valid Prometheus name, none of them a host family; anything
/// else is dropped (and counted), so a plugin cannot make the output grow without end.
/// Off the request path (plugins report on state changes), so one lock is fine here.
final class DynamicSeries: @unchecked Sendable {
    static let limit = 256
    private let lock = NSLock()
    private var series: [String: NamedSeries] = [:]
    private let factory: HostMetricsFactory
    private let reserved: Set<String>
    private let refused: CoreMetrics.Counter

    init(factory: HostMetricsFactory, reserved: Set<String>) {
        self.factory = factory
        self.reserved = reserved
        refused = CoreMetrics.Counter(label: Metrics.prefix + "metrics_refused_total", factory: factory)
    }

    func series(_ name: String, counter: Bool) -> NamedSeries? {
        let found: NamedSeries? = lock.withLock {
            if let s = series[name] { return s }
            // A host family's name, or one its samples use (`X_bucket`, `X_count`), is taken.
            guard series.count < Self.limit, Self.isValid(name), !reserved.contains(where: { name.hasPrefix($0) }) else { return nil }
            let label = Metrics.prefix + name
            let s: NamedSeries = counter ? .counter(CoreMetrics.Counter(label: label, factory: factory))
                                         : .gauge(Meter(label: label, factory: factory))
            series[name] = s
            return s
        }
        switch (found, counter) {
        case (.counter?, true), (.gauge?, false): return found
        default:
            // Unknown and refused, or the name is already the other kind.
            refused.increment()
            return nil
        }
    }

    /// `[a-z][a-z0-9_]*`, at most 100 bytes (a Prometheus name without colons or capitals).
    static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        guard let first = u.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), u.count <= 100 else { return false }
        return u.allSatisfy { c in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || c == UInt8(ascii: "_")
        }
    }
}

/// The `onCollect` closures. Locked only while a scrape reads them.
private final class Collectors: @unchecked Sendable {
    private let lock = NSLock()
    private var all: [@Sendable (Metrics) -> Void] = []

    func add(_ c: @escaping @Sendable (Metrics) -> Void) { lock.withLock { all.append(c) } }

    func run(_ m: Metrics) {
        for c in lock.withLock({ all }) { c(m) }
    }
}

/// `pylon_plugin_calls_total{capability,call}`: calls the host makes into plugins through
/// the ABI, by capability (manifest key) and table function. Made at init: a fixed set.
package struct PluginCallCounters: Sendable {
    package let storeExecute, storeExecuteBatch, storeCommitBatch, storeTransaction: CoreMetrics.Counter
    package let fnDescribe, fnStartCall: CoreMetrics.Counter
    package let cacheCommand: CoreMetrics.Counter

    init(factory: HostMetricsFactory) {
        func counter(_ capability: String, _ call: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: Metrics.prefix + "plugin_calls_total",
                                dimensions: [("capability", capability), ("call", call)], factory: factory)
        }
        storeExecute = counter("store", "execute")
        storeExecuteBatch = counter("store", "execute_batch")
        storeCommitBatch = counter("store", "commit_batch")
        storeTransaction = counter("store", "transaction")
        fnDescribe = counter("functions", "describe")
        fnStartCall = counter("functions", "start_call")
        cacheCommand = counter("cache", "command")
    }
}
