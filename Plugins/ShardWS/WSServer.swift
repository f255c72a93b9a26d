import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import PylonPluginABI
import PylonPluginKit

/// The shard WebSocket listener: SwiftNIO with its WebSocket upgrader, on event-loop
/// threads of the plugin's own. (The host's `pylon.host.loops/1` only reads fds for a
/// plugin; a listener that writes frames to thousands of sockets needs a whole event loop,
/// and NIO here is a private copy: Plugins/exports.map keeps every symbol of it local.)
///
/// A connection: the TCP accept counts against the per-address and total caps (over them
/// the client gets HTTP 429 at once, without its request being read, and the connection
/// closes: `TurnAway`); the HTTP upgrade must finish within `handshakeTimeoutMs`; a request that is no WebSocket upgrade gets 426 (or 400 without
/// `?shard=`). After the upgrade a `WSConnection` serves it.
final class WSServer: @unchecked Sendable {
    let config: WSConfig
    let shards: HostShards
    let host: UnsafePointer<pylon_host_v1>
    let log: HostLog
    private let group: MultiThreadedEventLoopGroup
    private var listener: Channel?
    private let lock = NIOLock()
    private var perAddress: [String: Int] = [:]
    private var total = 0
    private var connections: [ObjectIdentifier: Channel] = [:]
    private var stopping = false
    /// The port bound (0: no listener).
    private(set) var boundPort = 0

    init(config: WSConfig, shards: HostShards, host: UnsafePointer<pylon_host_v1>) {
        self.config = config
        self.shards = shards
        self.host = host
        log = HostLog(host)
        group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
    }

    var isStopping: Bool { lock.withLock { stopping } }

    func count(_ name: String, _ delta: Int64 = 1) {
        var n = name
        n.withUTF8 { b in b.withMemoryRebound(to: CChar.self) { host.pointee.counter_add(host.pointee.host_ctx, $0.baseAddress, $0.count, delta) } }
    }

    private func gauge(_ name: String, _ value: Double) {
        var n = name
        n.withUTF8 { b in b.withMemoryRebound(to: CChar.self) { host.pointee.gauge_set(host.pointee.host_ctx, $0.baseAddress, $0.count, value) } }
    }

    /// Binds the listener; returns why it could not (nil: listening, or no port configured).
    func start() -> String? {
        guard config.port != 0 else { return nil }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture(withResultOf: { try self.setUp(channel) })
            }
        do {
            let ch = try bootstrap.bind(host: config.bind, port: config.port).wait()
            listener = ch
            boundPort = ch.localAddress?.port ?? config.port
            return nil
        } catch {
            return "cannot listen on \(config.bind):\(config.port): \(error)"
        }
    }

    /// Closes the listener and every connection (each unsubscribes as it closes), then
    /// stops the event loops: after it returns no call into the host is made.
    func stop() {
        let open = lock.withLock { () -> [Channel] in
            stopping = true
            return Array(connections.values)
        }
        try? listener?.close().wait()
        for ch in open { try? ch.close().wait() }
        try? group.syncShutdownGracefully()
    }

    // MARK: A new connection

    private func setUp(_ channel: Channel) throws {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        let admitted = lock.withLock { () -> Bool in
            guard !stopping, total < config.maxConnections, perAddress[address, default: 0] < config.maxConnectionsPerIP else { return false }
            perAddress[address, default: 0] += 1
            total += 1
            connections[ObjectIdentifier(channel)] = channel
            return true
        }
        guard admitted else {
            // Answered and closed at once, never held: a refused socket waits for nothing
            // (not even the request), so a flood of them costs no descriptors.
            count("shard_ws_refused_total")
            try channel.pipeline.syncOperations.addHandler(TurnAway(deadlineMs: config.handshakeTimeoutMs))
            return
        }
        count("shard_ws_connections_total")
        gauge("shard_ws_connections", Double(lock.withLock { total }))
        channel.closeFuture.whenComplete { [self] _ in
            let n = lock.withLock { () -> Int in
                perAddress[address, default: 1] -= 1
                if perAddress[address] == 0 { perAddress[address] = nil }
                total -= 1
                connections[ObjectIdentifier(channel)] = nil
                return total
            }
            gauge("shard_ws_connections", Double(n))
        }
        let upgraded = NIOLockedValueBox(false)
        channel.eventLoop.scheduleTask(in: .milliseconds(Int64(config.handshakeTimeoutMs))) {
            if !upgraded.withLockedValue({ $0 }) { channel.close(promise: nil) }
        }
        let target = NIOLockedValueBox<Handshake?>(nil)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: config.maxFrameBytes, automaticErrorHandling: true,
            shouldUpgrade: { ch, head in
                guard let h = Handshake(head) else { return ch.eventLoop.makeSucceededFuture(nil) }
                target.withLockedValue { $0 = h }
                var headers = HTTPHeaders()
                if let echo = h.protocolEcho { headers.add(name: "Sec-WebSocket-Protocol", value: echo) }
                return ch.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { [self] ch, _ in
                upgraded.withLockedValue { $0 = true }
                guard let h = target.withLockedValue({ $0 }) else { return ch.close() }
                return ch.eventLoop.makeCompletedFuture(withResultOf: {
                    // The HTTP answerer goes with the HTTP codec: frames must not reach it.
                    ch.pipeline.syncOperations.removeHandler(name: Refuse.name, promise: nil)
                    // Fragments go to the connection one by one: it checks each (masked, no
                    // reserved bit) before joining them (`WebSocketMessageJoiner`).
                    try ch.pipeline.syncOperations.addHandler(WSConnection(server: self, handshake: h, peer: address))
                })
            })
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        try channel.pipeline.syncOperations.addHandler(Refuse(), name: Refuse.name)
    }
}

/// What the upgrade request asked for: `GET /?shard=<id>&sid=<sid>`, the token from
/// `Authorization: Bearer` or a `bearer.<percent-encoded token>` subprotocol (echoed back).
struct Handshake: Sendable {
    let shard: String
    let sid: String
    let token: String
    let protocolEcho: String?

    init?(_ head: HTTPRequestHead) {
        guard let q = URLComponents(string: head.uri)?.queryItems,
              let shard = q.first(where: { $0.name == "shard" })?.value, !shard.isEmpty else { return nil }
        self.shard = shard
        sid = q.first(where: { $0.name == "sid" })?.value ?? ""
        var token = "", echo: String?
        if let h = head.headers.first(name: "Authorization"), h.lowercased().hasPrefix("bearer ") {
            token = String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        } else {
            for value in head.headers[canonicalForm: "Sec-WebSocket-Protocol"] {
                let entry = value.trimmingCharacters(in: .whitespaces)
                guard entry.hasPrefix("bearer.") else { continue }
                let raw = String(entry.dropFirst(7))
                token = raw.removingPercentEncoding ?? raw
                echo = entry
                break
            }
        }
        self.token = token
        protocolEcho = echo
    }
}

/// Answers a request that did not become a shard WebSocket with an HTTP error in the host's
/// shape and closes: 400 without `?shard=`, else 426 for a plain HTTP request.
final class Refuse: ChannelInboundHandler, RemovableChannelHandler {
    static let name = "shardws.refuse"
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case let .head(head) = unwrapInboundIn(data), !answered else { return }
        answered = true
        let (status, code, message): (HTTPResponseStatus, String, String) = Handshake(head) == nil
            ? (.badRequest, "SHARD_REQUIRED", "connect to ws://<host>:<port>/?shard=<id>&sid=<subscriber id>")
            : (.upgradeRequired, "UPGRADE_REQUIRED", "this port serves shard WebSockets only: send a WebSocket upgrade (GET /?shard=<id>)")
        let body = #"{"error":{"code":"\#(code)","message":"\#(message)"}}"#
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
