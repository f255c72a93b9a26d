import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import PylonCore
import PylonData
import PylonJSON

/// The HTTP/1.1 channel of the listeners that take WebSocket upgrades (the API port with
/// `/api/sync/ws`, port+1 with every path). Plain requests are Hummingbird's (`handleHTTP`);
/// an upgrade is decided by `RouteContext.webSocketCaller`, subscribed before its 101 is
/// answered (`RouteContext.admitWebSocket`), and then served by a
/// `WebSocketConnection` on the channel's event loop: once upgraded, a connection has no
/// task of its own (Hummingbird's WebSocket channel keeps one, with its async streams,
/// for every connection's lifetime: most of an idle subscriber's memory).
struct WebSocketUpgradeChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade request this listener does not take (another path) or one the host
        /// refuses (a `since` that is no cursor, a wrong API key, ...), answered with the
        /// error's status and JSON body. nil: declined without `decide` saying why (the
        /// upgrader failed before asking), answered as `unexplained`.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, HostError?)
    }

    /// What `decide` made of an upgrade request.
    enum Decision: Sendable {
        case admit(WebSocketAdmission, HTTPHeaders)
        /// Answered with the error's status and JSON body, then the connection closes.
        case refuse(HostError)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let routes: RouteContext
    let services: WebSocketServices
    /// Whether a request path upgrades on this listener.
    let upgrades: @Sendable (String) -> Bool

    init(responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration, routes: RouteContext,
         upgrades: @escaping @Sendable (String) -> Bool) {
        self.responder = responder
        self.http1 = http1
        self.routes = routes
        services = WebSocketServices(routes)
        self.upgrades = upgrades
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let admitted = NIOLoopBoundBox<WebSocketAdmission?>(nil, eventLoop: channel.eventLoop)
            let refusal = NIOLoopBoundBox<HostError?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: routes.realtime.maxFrameBytes,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    return decide(head, channel: channel).map { decision in
                        guard case let .admit(admission, headers) = decision else {
                            if case let .refuse(error) = decision { refusal.value = error }
                            return nil
                        }
                        admitted.value = admission
                        // A subscriber whose upgrade never completes (the client left first)
                        // is unsubscribed with the channel (at once if it is closed already).
                        channel.closeFuture.whenComplete { [hub = routes.hub] _ in
                            guard case let .subscribed(sub, _)? = admitted.value else { return }
                            admitted.value = nil
                            hub.unsubscribe(sub)
                        }
                        return headers
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let a = admitted.value else { throw ChannelError.inappropriateOperationForState }
                        admitted.value = nil
                        try routes.openWebSocket(a, channel: channel, services: services)
                        return .webSocket
                    }
                })
            let plain = NIOTypedHTTPServerUpgradeConfiguration<UpgradeResult>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try pipeline.addHandlers(http1.additionalChannelHandlers())
                        try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger))
                        let async = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return attempted.value ? .refused(async, refusal.value) : .notUpgraded(async)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: plain)
            configuration.enablePipelining = false  // NIOAsyncChannel serves requests in order
            configuration.enableErrorHandling = false  // CodecGuard answers decoder errors
            configuration.enableResponseHeaderValidation = false  // HTTPTypes already validates
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .webSocket:
                // Served by its `WebSocketConnection` from here on.
                return
            case let .notUpgraded(http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case let .refused(http, error):
                try await http.executeThenClose { _, outbound in try await outbound.write(contentsOf: Self.refusal(error)) }
            }
        } catch {
            logger.trace("connection ended before its first request was served: \(error)")
        }
    }

    /// The admitted caller (subscribed already: see `RouteContext.admitWebSocket`) and the
    /// response headers for an upgrade request, or why it is refused.
    private func decide(_ head: HTTPRequestHead, channel: any Channel) -> EventLoopFuture<Decision> {
        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false) else {
            return channel.eventLoop.makeSucceededFuture(.refuse(Self.malformed))
        }
        let path = URI(head.uri).path
        guard upgrades(path) else { return channel.eventLoop.makeSucceededFuture(.refuse(Self.notServed(path))) }
        let hbRequest = Request(head: request, body: .init(buffer: ByteBuffer()))
        let promise = channel.eventLoop.makePromise(of: Decision.self)
        promise.completeWithTask { [routes] in
            let caller: WebSocketCaller
            do {
                caller = try await routes.webSocketCaller(hbRequest, peer: channel.remoteAddress)
            } catch {
                // A request the host refuses (a `since` that is no cursor: 400 INVALID_QUERY, as
                // `/api/sync/pull` and the event stream answer it; a wrong API key: 401; a store
                // that failed: 5xx): its status and error body, not an upgrade.
                return .refuse(DataService.hostError(error))
            }
            var headers = HTTPHeaders()
            if let echo = RouteContext.webSocketToken(hbRequest).protocolEcho { headers.add(name: "Sec-WebSocket-Protocol", value: echo) }
            return .admit(routes.admitWebSocket(caller, address: channel.remoteAddress?.ipAddress ?? "unknown"), headers)
        }
        return promise.futureResult
    }

    /// An upgrade to a path that takes no WebSocket here.
    static func notServed(_ path: String) -> HostError {
        HostError.badRequest("WEBSOCKET_NOT_SERVED", "\(path.prefix(200)) takes no WebSocket upgrade on this port; "
            + "the sync WebSocket is /api/sync/ws (or any path on port+1, unless the host runs with --no-compat-ports)")
    }

    /// A head HTTPTypes cannot represent (NIO's decoder took it).
    static let malformed = HostError.badRequest("MALFORMED_HTTP", "the upgrade request's head is not valid HTTP (a bad method, target or header); send a WebSocket handshake per RFC 6455 §4.1")

    /// A refusal no decision explains (the upgrade failed before `decide` ran).
    static let unexplained = HostError.badRequest("WEBSOCKET_HANDSHAKE_INVALID", "the WebSocket handshake was refused; send GET with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key and Sec-WebSocket-Version: 13")

    /// The answer to a refused upgrade (the connection closes after it): the host's error as
    /// JSON with its status, like every other error the host answers.
    static func refusal(_ refused: HostError?) -> [HTTPResponsePart] {
        let error = refused ?? unexplained
        let bytes = JSONWriter.encode(error.body)
        var fields = HTTPSupport.jsonHeaders
        fields[.connection] = "close"
        fields[.contentLength] = String(bytes.count)
        HTTPSupport.addFields(of: error, to: &fields)
        var body = HTTPSupport.allocator.buffer(capacity: bytes.count)
        body.writeBytes(bytes)
        return [.head(HTTPResponse(status: .init(code: error.status), headerFields: fields)), .body(body), .end(nil)]
    }
}
