import PylonCore

/// When an HTTP/1.1 connection has waited too long for its client, and what to do then: a
/// request head must be complete within `Limits.header` of its first byte, a body within
/// `Limits.body` of its head, and a keep-alive connection with nothing outstanding is closed
/// after `Limits.idle`. While the host owes an answer (a handler runs, an SSE stream is
/// open) the client is not waited for and nothing expires; an upgraded connection
/// (WebSocket, with its own pings) never expires here.
///
/// A plain value with the clock passed in (nanoseconds of a monotonic clock), so that it is
/// tested without a channel or a timer. `ConnectionGuard` owns one per connection and arms a
/// single timer from `nextCheck`: the events a request causes only move a phase and a count,
/// they never touch the timer, which keeps the per-request cost at a few stores.
///
/// Why not Hummingbird's `HTTP1Channel.Configuration.idleTimeout`: it sees only the requests
/// that reach Hummingbird's own handler (none do: `HTTPFront` answers them ahead of it, so a
/// busy connection would look idle and be cut), has no header or body timeout, and is
/// absent on a connection before its first request reaches the codec.
struct ConnectionDeadlines: Sendable {
    /// Nanoseconds; nil turns that timeout off.
    struct Limits: Sendable, Equatable {
        var header: Int64?
        var body: Int64?
        var idle: Int64?

        /// The shortest timeout that is on: the timer never sleeps longer than this, so any
        /// deadline that appears while it sleeps is still met on time.
        var shortest: Int64? { [header, body, idle].compactMap { $0 }.min() }
    }

    enum Phase: Equatable {
        /// Between requests since then (or since the connection opened).
        case idle(since: Int64)
        /// The first bytes of a request head arrived then.
        case head(since: Int64)
        /// A head was complete then; its body is still arriving.
        case body(since: Int64)
        /// Upgraded to another protocol: no HTTP deadlines any more.
        case upgraded
    }

    /// What to do with a connection whose deadline has passed.
    enum Expiry: Equatable {
        /// Nothing outstanding: close quietly.
        case close
        /// The request was too slow: answer 408 (`HTTPFault.headTimeout` / `.bodyTimeout`)
        /// and close.
        case answer(HTTPFault)
        /// Too slow, but an answer is half written: a 408 cannot be framed, close.
        case abort
    }

    let limits: Limits
    private(set) var phase: Phase
    /// Requests whose head arrived and whose answer has not been written to the end.
    private(set) var unanswered = 0
    /// A final answer's head has been written and its end not yet.
    private(set) var responding = false

    init(_ limits: Limits, now: Int64) {
        self.limits = limits
        phase = .idle(since: now)
    }

    // MARK: Events

    /// Bytes arrived from the client: between requests they begin the next head.
    mutating func received(now: Int64) {
        if case .idle = phase { phase = .head(since: now) }
    }

    /// A request head is complete; its body (if any) follows.
    mutating func headReceived(now: Int64) {
        guard phase != .upgraded else { return }
        unanswered += 1
        phase = .body(since: now)
    }

    /// The request's body is complete (or it had none).
    mutating func requestReceived(now: Int64) {
        guard phase != .upgraded else { return }
        phase = .idle(since: now)
    }

    /// A final (non-1xx) answer's head was written.
    mutating func responseStarted() {
        responding = true
    }

    /// An answer was written to its end. Once nothing is outstanding the client's turn
    /// begins now: the idle clock, or the header clock of a request that was sent ahead
    /// (pipelined) while this one was answered.
    mutating func answered(now: Int64) {
        responding = false
        unanswered = max(0, unanswered - 1)
        guard unanswered == 0 else { return }
        switch phase {
        case .idle: phase = .idle(since: now)
        case .head: phase = .head(since: now)
        case .body, .upgraded: break
        }
    }

    /// The connection switched protocols (101).
    mutating func upgrade() {
        phase = .upgraded
        responding = false
    }

    /// Nothing owed either way: between requests, or inside a head not complete yet. A
    /// server shutdown closes such a connection at once.
    var isBetweenRequests: Bool {
        guard unanswered == 0 else { return false }
        switch phase {
        case .idle, .head: return true
        case .body, .upgraded: return false
        }
    }

    // MARK: Time

    /// When the client's time runs out, nil when the host is not waiting for the client.
    /// A body is timed even while its answer is outstanding (a handler may answer first);
    /// a head or idleness only when nothing is.
    var deadline: Int64? {
        switch phase {
        case .upgraded: return nil
        case let .body(since): return limits.body.map { since + $0 }
        case let .head(since): return unanswered > 0 ? nil : limits.header.map { since + $0 }
        case let .idle(since): return unanswered > 0 ? nil : limits.idle.map { since + $0 }
        }
    }

    /// What the connection's timer should do at `now`, nil when nothing has expired.
    func expiry(now: Int64) -> Expiry? {
        guard let deadline, now >= deadline else { return nil }
        switch phase {
        case .idle: return .close
        case .head: return responding ? .abort : .answer(.headTimeout)
        // The request was answered before its body came (a 404, a 413): just close.
        case .body: return responding ? .abort : (unanswered == 0 ? .close : .answer(.bodyTimeout))
        case .upgraded: return nil
        }
    }

    /// When the timer should look again: the deadline, but no later than `shortest` from
    /// now (a deadline may appear meanwhile without anyone re-arming the timer). Nil: no
    /// deadline now; the timer stays off until an event makes one (see `ConnectionGuard`).
    func nextCheck(now: Int64) -> Int64? {
        guard let deadline, let shortest = limits.shortest else { return nil }
        return min(deadline, now + shortest)
    }
}

extension HostConfig {
    /// The HTTP timeouts as `ConnectionDeadlines` takes them (nanoseconds, nil = off).
    var connectionLimits: ConnectionDeadlines.Limits {
        func ns(_ s: Double) -> Int64? { s > 0 ? Int64(s * 1e9) : nil }
        return .init(header: ns(httpHeaderTimeout), body: ns(httpBodyTimeout), idle: ns(httpIdleTimeout))
    }
}
