import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// What every HTTP listener of the host (API, WS compat, SSE compat, and any later one)
/// puts around Hummingbird's child channel: a `ConnectionGuard` first (deadlines) and a
/// `CodecGuard` right after NIO's request decoder (decoder faults, head limits, `Expect`,
/// request boundaries for the deadlines). The listener's own channel (`inner`, with the
/// `HTTPFront` that answers its requests among its HTTP handlers) is set up in between,
/// unchanged.
struct HTTPListener<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value

    let inner: Inner
    let guards: ListenerGuards
    /// Where WebSocket upgrades are served (`inner` has the upgrade handler): the limit
    /// they take from (`CodecGuard`); nil elsewhere.
    var upgrades: RequestGuard?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture { () -> ConnectionGuard in
            let connection = ConnectionGuard(guards.limits, serverName: guards.serverName)
            try channel.pipeline.syncOperations.addHandler(connection, position: .first)
            return connection
        }.flatMap { connection in
            inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
                let pipeline = channel.pipeline.syncOperations
                let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
                try pipeline.addHandler(CodecGuard(connection, maxBody: guards.maxBody, serverName: guards.serverName, requestGuard: upgrades),
                                        position: .after(decoder))
                return value
            }
        }
    }

    /// Hummingbird's WebSocket-capable channel logs an *error* for every connection that
    /// closes before its first request reached the upgrade handler (a client that connects
    /// and leaves, one closed for a timeout or a malformed head): one log line per connection, at a client's will. Its other messages
    /// are debug or trace, so the connection's own handling logs only critical ones.
    func handle(value: Value, logger: Logger) async {
        var quiet = logger
        quiet.logLevel = .critical
        await inner.handle(value: value, logger: quiet)
    }
}

/// The settings every listener's guards share.
struct ListenerGuards: Sendable {
    var limits: ConnectionDeadlines.Limits
    /// Bodies announced larger than this are refused on `Expect: 100-continue`.
    var maxBody: Int
    var serverName: String
}

/// The decoder limits of every listener's codec (`HTTPLimits`: the decoder's are looser,
/// `CodecGuard` checks the real ones), in Hummingbird's terms.
extension HTTP1Channel.Configuration.DecoderConfiguration {
    static var pylon: Self {
        .init(maxHeaderFieldSize: HTTPLimits.decoderBytes, maxHeaderListSize: HTTPLimits.decoderBytes,
              maxHeaderFieldCount: HTTPLimits.maxHeaderFields)
    }
}
