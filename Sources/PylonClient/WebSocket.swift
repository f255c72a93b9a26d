import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// How a WebSocket ended: the close code the host sent (nil when the connection just dropped).
struct WebSocketEnd: Sendable {
    var code: Int?
    var reason: String
}

/// A client WebSocket on NIO (swift-corelibs-foundation's URLSessionWebSocketTask needs a
/// libcurl with WebSocket support, which Debian's lacks). Plain `ws://` only: TLS would need
/// swift-nio-ssl, which this package does not depend on (an `https` host is followed by
/// polling, see `SyncEngine`). Text messages are reassembled from fragments, pings answered,
/// and every client frame is masked (RFC 6455; the host closes on an unmasked one).
final class WebSocketConnection: Sendable {
    private typealias AsyncWS = NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
    private enum Upgrade: Sendable {
        case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused
    }

    private let channel: AsyncWS
    private let writer = NIOLockedValueBox<NIOAsyncChannelOutboundWriter<WebSocketFrame>?>(nil)
    /// The largest message accepted from the host (a change event with a big row).
    static let maxMessage = 16 << 20

    private init(channel: AsyncWS) { self.channel = channel }

    /// Opens `path` (with its query) on the host of `baseURL`, sending `headers` with the
    /// upgrade request. A refused upgrade (401, 400…) is TRANSPORT_UNAVAILABLE.
    ///
    /// A connection that brings nothing for `idleTimeout` is closed: the host pings every
    /// 30 s, so silence that long means the host or the network is gone without a word (a
    /// laptop that slept, a dropped route), and the sync engine reconnects.
    static func connect(baseURL: URL, path: String, headers extra: [(String, String)],
                        idleTimeout: Duration = .seconds(75)) async throws -> WebSocketConnection {
        guard let host = baseURL.host, baseURL.scheme == "http" else {
            throw PylonError(code: "TRANSPORT_UNAVAILABLE", message: "WebSocket needs an http:// base URL", status: 0)
        }
        let port = baseURL.port ?? 80
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        for (k, v) in extra { headers.add(name: k, value: v) }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        let upgrade: EventLoopFuture<Upgrade>
        do {
            upgrade = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let idle = TimeAmount.nanoseconds(Int64(idleTimeout.components.seconds) * 1_000_000_000
                                                          + idleTimeout.components.attoseconds / 1_000_000_000)
                        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: Self.maxMessage) { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandlers([IdleStateHandler(readTimeout: idle), SilenceCloser()])
                                return .websocket(try AsyncWS(wrappingChannelSynchronously: channel))
                            }
                        }
                        let config = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                            upgradeRequestHead: head, upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in
                                channel.close(promise: nil)
                                return channel.eventLoop.makeSucceededFuture(.refused)
                            })
                        // Frames the host sends right behind its 101 often arrive in the same
                        // read: NIO's default drops what follows the response (`.dropBytes`).
                        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: config)
                        pipeline.leftOverBytesStrategy = .forwardBytes
                        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
                    }
                }
        } catch {
            throw PylonError.network(error)
        }
        let result: Upgrade
        do { result = try await upgrade.get() } catch { throw PylonError.network(error) }
        guard case let .websocket(channel) = result else {
            throw PylonError(code: "TRANSPORT_UNAVAILABLE", message: "the host refused the WebSocket upgrade", status: 0)
        }
        return WebSocketConnection(channel: channel)
    }

    /// Reads messages until the connection ends, handing each text message to `onText`
    /// in order. `onOpen` runs once the writer is ready (sends work from then on).
    func run(onOpen: @Sendable () async -> Void, onText: @Sendable (String) async throws -> Void) async throws -> WebSocketEnd {
        try await channel.executeThenClose { inbound, outbound in
            writer.withLockedValue { $0 = outbound }
            defer { writer.withLockedValue { $0 = nil } }
            await onOpen()
            var text = ByteBuffer()
            var inText = false
            for try await frame in inbound {
                switch frame.opcode {
                case .text:
                    text = frame.unmaskedData
                    inText = !frame.fin
                    if frame.fin { try await onText(String(buffer: text)) }
                case .continuation where inText:
                    var piece = frame.unmaskedData
                    guard text.readableBytes + piece.readableBytes <= Self.maxMessage else {
                        return WebSocketEnd(code: nil, reason: "message too large")
                    }
                    text.writeBuffer(&piece)
                    if frame.fin {
                        inText = false
                        try await onText(String(buffer: text))
                    }
                case .ping:
                    try? await outbound.write(Self.frame(.pong, frame.unmaskedData))
                case .connectionClose:
                    var data = frame.unmaskedData
                    let code = data.readInteger(as: UInt16.self).map(Int.init)
                    let reason = data.readString(length: data.readableBytes) ?? ""
                    try? await outbound.write(Self.frame(.connectionClose, ByteBuffer(integer: UInt16(1000))))
                    return WebSocketEnd(code: code, reason: reason)
                default:
                    continue // binary frames (CRDT, shards) are not the sync protocol's
                }
            }
            return WebSocketEnd(code: nil, reason: "connection closed")
        }
    }

    /// Sends a text message; false when the connection is not open.
    @discardableResult
    func send(_ text: String) async -> Bool {
        guard let out = writer.withLockedValue({ $0 }) else { return false }
        do {
            try await out.write(Self.frame(.text, ByteBuffer(string: text)))
            return true
        } catch {
            return false
        }
    }

    /// Ends the connection from this side (the reading loop then returns).
    func close() {
        channel.channel.close(promise: nil)
    }

    private static func frame(_ opcode: WebSocketOpcode, _ data: ByteBuffer) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
    }
}

/// Closes the connection when `IdleStateHandler` reports that nothing was read for its timeout.
private final class SilenceCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
