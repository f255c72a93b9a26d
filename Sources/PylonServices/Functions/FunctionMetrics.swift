import Atomics
import CoreMetrics
import Prometheus
import PylonCore

/// `pylon_fn_calls_total{function,outcome}` (outcome `ok` or `error`) and
/// `pylon_fn_call_duration_seconds{function}`, recorded by `FunctionService` for every call
/// it starts, whichever route (or schedule, or nested call) asked for it. Only functions the
/// plugin knows get their name as a label; a call of an unknown name counts under
/// `(unknown)`, so callers cannot add series by inventing names.
final class FunctionMetrics: Sendable {
    static let unknown = "(unknown)"
    static let other = "(other)"
    private let factory: HostMetricsFactory
    private let byName: SeriesTable<FunctionSeries>
    /// Made on first use, so a host without functions shows none of these.
    private let unknownCalls = ManagedAtomicLazyReference<CoreMetrics.Counter>()
    private let otherSeries = ManagedAtomicLazyReference<FunctionSeries>()

    init(factory: HostMetricsFactory) {
        self.factory = factory
        byName = SeriesTable(capacity: 1024) { FunctionSeries(function: $0, factory: factory) }
    }

    /// A call of a name the plugin does not know (FN_NOT_FOUND).
    func recordUnknown() {
        unknownCalls.get {
            CoreMetrics.Counter(label: FunctionSeries.calls, dimensions: [("function", Self.unknown), ("outcome", "error")],
                                factory: factory)
        }.increment()
    }

    /// A finished call of the known function `name`, started at `start`
    /// (`DispatchTime.now().uptimeNanoseconds`).
    func record(_ name: String, ok: Bool, since start: UInt64) {
        let s = byName.series(name) ?? otherSeries.get { FunctionSeries(function: Self.other, factory: factory) }
        (ok ? s.ok : s.error).increment()
        Metrics.record(s.duration, since: start)
    }
}

final class FunctionSeries: Sendable {
    static let calls = Metrics.prefix + "fn_calls_total"
    let ok: CoreMetrics.Counter
    let error: CoreMetrics.Counter
    let duration: CoreMetrics.Timer

    init(function: String, factory: HostMetricsFactory) {
        ok = CoreMetrics.Counter(label: Self.calls, dimensions: [("function", function), ("outcome", "ok")], factory: factory)
        error = CoreMetrics.Counter(label: Self.calls, dimensions: [("function", function), ("outcome", "error")], factory: factory)
        duration = CoreMetrics.Timer(label: Metrics.prefix + "fn_call_duration_seconds", dimensions: [("function", function)],
                                     factory: factory)
    }
}
