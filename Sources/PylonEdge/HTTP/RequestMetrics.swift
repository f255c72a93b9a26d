import Atomics
import CoreMetrics
import Dispatch
import HTTPTypes
import Hummingbird
import Prometheus
import PylonCore

/// `pylon_http_requests_total{method,route,status}` and
/// `pylon_http_request_duration_seconds{method,route}`, recorded by `APIMiddleware` for
/// every request it answers. `route` is the router's template (`/api/entities/{entity}/{id}`,
/// Hummingbird's `endpointPath`), never the raw path, and `status` the class (`2xx`); a
/// request no route matched is `unmatched`, a method outside the usual ones `other`. So the
/// number of series is bounded by the routes the host registers, whatever paths clients send.
final class RequestMetrics: Sendable {
    static let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
    private let routes: SeriesTable<RouteSeries>
    private let unmatchedSeries: RouteSeries

    init(factory: HostMetricsFactory) {
        routes = SeriesTable(capacity: 512) { RouteSeries(route: $0, factory: factory) }
        unmatchedSeries = RouteSeries(route: Metrics.unmatchedRoute, factory: factory)
    }

    /// Counts one answered request. `route`: the matched template (nil, or Hummingbird's
    /// "NotFound": none matched); `start`: `DispatchTime.now().uptimeNanoseconds` when it
    /// arrived.
    func record(route: String?, method: HTTPRequest.Method, status: Int, since start: UInt64) {
        var series = unmatchedSeries
        if let route, route != "NotFound", let s = routes.series(route) { series = s }
        series.method(method).record(status: status, since: start)
    }
}

/// One route's series, per method (`RequestMetrics.methods`, then `other`).
final class RouteSeries: Sendable {
    let byMethod: [MethodSeries]

    init(route: String, factory: HostMetricsFactory) {
        byMethod = (RequestMetrics.methods.map(\.rawValue) + ["other"]).map { MethodSeries(route: route, method: $0, factory: factory) }
    }

    func method(_ m: HTTPRequest.Method) -> MethodSeries {
        byMethod[RequestMetrics.methods.firstIndex(of: m) ?? RequestMetrics.methods.count]
    }
}

/// The series of one route and method: a counter per status class and the duration histogram.
final class MethodSeries: Sendable {
    static let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]
    let route: String
    let method: String
    let factory: HostMetricsFactory
    private let counters = MethodSeries.classes.map { _ in ManagedAtomicLazyReference<CoreMetrics.Counter>() }
    private let duration = ManagedAtomicLazyReference<CoreMetrics.Timer>()

    init(route: String, method: String, factory: HostMetricsFactory) {
        self.route = route
        self.method = method
        self.factory = factory
    }

    func record(status: Int, since start: UInt64) {
        let i = min(max(status / 100, 1), 5) - 1
        counters[i].get {
            CoreMetrics.Counter(label: Metrics.prefix + "http_requests_total",
                                dimensions: [("method", method), ("route", route), ("status", Self.classes[i])], factory: factory)
        }.increment()
        let timer = duration.get {
            CoreMetrics.Timer(label: Metrics.prefix + "http_request_duration_seconds",
                              dimensions: [("method", method), ("route", route)], factory: factory)
        }
        Metrics.record(timer, since: start)
    }
}

extension RequestMetrics {
    /// The templates of the routes the fast lane answers past the router's trie
    /// (`RouteContext.immediateRoute`): the strings the router would set.
    static let functionCallRoute = RouterPath("/api/fn/:name").description
    static let entityRowRoute = RouterPath("/api/entities/:entity/:id").description
    static let entityRoute = RouterPath("/api/entities/:entity").description
}
