import HTTPTypes
import NIOCore
import PylonCore

/// The checks every API request passes before its handler runs, in Pylon's order
/// (pylon-aux.md §0.4 steps 3–4): the per-client request rate limit, the count of wrong API
/// keys (`ApiKeyGuesses`), then `CSRFGuard`.
/// `APIMiddleware.admit` runs it for both ways a handler finishes (`handle` and `handleNow`),
/// so no route can be reached around it; WebSocket upgrades, which no route answers, take
/// from the rate limit in `CodecGuard`. OPTIONS preflights never get here (the middleware
/// answers them first, as Pylon exempts them).
package struct RequestGuard: Sendable {
    /// nil: no request limit (PYLON_RATE_LIMIT_MAX=0).
    let rateLimit: FixedWindowLimiter<ClientAddress>?
    /// See `ClientAddress.resolve`.
    let trustProxyHops: Int
    let csrf: CSRFGuard
    let metrics: Metrics
    /// Wrong API keys per address and key id (`ApiKeyGuesses`).
    let keyGuesses: ApiKeyGuesses

    /// `csrf`: the routes' own guard (`RouteContext.cookiePages`), one for the whole host.
    package init(config: HostConfig, csrf: CSRFGuard, metrics: Metrics, keyGuesses: ApiKeyGuesses) {
        let limit = config.requestRateLimit
        rateLimit = limit > 0 ? FixedWindowLimiter(limit: limit, windowSeconds: config.rateLimitWindow, maxKeys: config.rateLimitClients) : nil
        trustProxyHops = config.trustProxyHops
        self.csrf = csrf
        self.keyGuesses = keyGuesses
        self.metrics = metrics
    }

    /// nil when `head` (from `peer`) may go on to its handler; else the error to answer with.
    func check(_ head: HTTPRequest, peer: SocketAddress?) -> HostError? {
        limit(path: head.path, headers: head.headerFields, peer: peer) ?? keyGuesses.refusal(head.headerFields, peer: peer) ?? csrf.check(head)
    }

    /// The request rate limit alone: takes one request of the client's budget (the client
    /// found from `peer` and `headers`' `X-Forwarded-For`); the error when it is used up.
    /// `CodecGuard` calls it for WebSocket upgrades, which never reach `check`.
    func limit(path: String?, headers: HTTPFields, peer: SocketAddress?) -> HostError? {
        guard let rateLimit, !Self.isExempt(path) else { return nil }
        let client = ClientAddress.resolve(peer: peer, headers: headers, trustHops: trustProxyHops)
        guard let wait = rateLimit.take(client) else { return nil }
        metrics.add("http_rate_limited_total", 1)
        return .rateLimited(retryAfter: wait, "too many requests from your address (\(rateLimit.limit) per \(rateLimit.windowNanos / 1_000_000_000) s): retry after \(wait) s")
    }

    /// `/health` and `/metrics` (Pylon serves both before its limiter): neither counted nor
    /// refused, so a load balancer's or monitor's checks are never told 429 because of the
    /// traffic they watch, nor use up the budget of the address they come from.
    static func isExempt(_ path: String?) -> Bool {
        guard let path else { return false }
        return isPath(path, "/health") || isPath(path, "/metrics")
    }

    /// `path` is `route`, with or without a query string.
    private static func isPath(_ path: String, _ route: StaticString) -> Bool {
        let p = path.utf8, r = UnsafeBufferPointer(start: route.utf8Start, count: route.utf8CodeUnitCount)
        guard p.count >= r.count, p.starts(with: r) else { return false }
        return p.count == r.count || p[p.index(p.startIndex, offsetBy: r.count)] == UInt8(ascii: "?")
    }
}
