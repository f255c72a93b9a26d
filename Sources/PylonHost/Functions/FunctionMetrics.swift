import CoreMetrics
import Prometheus

/// `pylon_fn_calls_total{function,outcome}` (outcome `ok` or `error`) and
/// `pylon_fn_call_duration_seconds{function}`, recorded by `FunctionService` for every call
/// it starts, whichever route (or schedule, or nested call) asked for it. Only functions the
/// plugin knows get their name as a label; a call of an unknown name counts under
/// `(unknown)`, so callers cannot add series by inventing names.
final class FunctionMetrics: Sendable {
    static let unknown = "(unknown)"
    static let other = "(other)"
    private let byName: SeriesTable<FunctionSeries>
    private let unknownSeries: FunctionSeries
    private let otherSeries: FunctionSeries

    init(factory: PrometheusMetricsFactory) {
        byName = SeriesTable(capacity: 1024) { FunctionSeries(function: $0, factory: factory) }
        unknownSeries = FunctionSeries(function: Self.unknown, factory: factory)
        otherSeries = FunctionSeries(function: Self.other, factory: factory)
    }

    /// A call of a name the plugin does not know (FN_NOT_FOUND).
    func recordUnknown() { unknownSeries.error.increment() }

    /// A finished call of the known function `name`, started at `start`
    /// (`DispatchTime.now().uptimeNanoseconds`).
    func record(_ name: String, ok: Bool, since start: UInt64) {
        let s = byName.series(name) ?? otherSeries
        (ok ? s.ok : s.error).increment()
        Metrics.record(s.duration, since: start)
    }
}

final class FunctionSeries: Sendable {
    let ok: CoreMetrics.Counter
    let error: CoreMetrics.Counter
    let duration: CoreMetrics.Timer

    init(function: String, factory: PrometheusMetricsFactory) {
        let calls = Metrics.prefix + "fn_calls_total"
        ok = CoreMetrics.Counter(label: calls, dimensions: [("function", function), ("outcome", "ok")], factory: factory)
        error = CoreMetrics.Counter(label: calls, dimensions: [("function", function), ("outcome", "error")], factory: factory)
        duration = CoreMetrics.Timer(label: Metrics.prefix + "fn_call_duration_seconds", dimensions: [("function", function)],
                                     factory: factory)
    }
}
