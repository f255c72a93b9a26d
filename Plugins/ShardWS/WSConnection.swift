import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import PylonPluginABI
import PylonWebSocket

/// The wakeup the host calls (from a tick thread) when a subscription has something new:
/// it hands the pump to the connection's event loop. Retained for the host from `subscribe`
/// until `unsubscribe` returned (or a failed `subscribe` completed).
final class WakeTarget: @unchecked Sendable {
    private let lock = NIOLock()
    private var pump: (@Sendable () -> Void)?

    func set(_ p: (@Sendable () -> Void)?) { lock.withLock { pump = p } }
    func fire() { lock.withLock { pump }?() }
}

private let shardWSWake: @convention(c) (UnsafeMutableRawPointer?) -> Void = { ctx in
    guard let ctx else { return }
    Unmanaged<WakeTarget>.fromOpaque(ctx).takeUnretainedValue().fire()
}

/// One shard WebSocket after the upgrade, on its event loop: authenticates the handshake's
/// token and subscribes through the host, then sends each delivery as text frames for the
/// input notes and one binary frame (8-byte big-endian tick + snapshot), and hands the
/// client's messages to the host as inputs.
///
/// BOUNDED: the next delivery is taken from the host only when the previous snapshot frame
/// has been written to the socket, so a client that stops reading holds one frame here and
/// one snapshot in the host's mailbox, where newer snapshots replace older ones.
final class WSConnection: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    enum State {
        case authenticating
        case subscribing
        case open(HostHandle)
        case closing
    }

    let server: WSServer
    let handshake: Handshake
    let peer: String
    private var state = State.authenticating
    private var context: ChannelHandlerContext?
    /// A snapshot frame is being written.
    private var sending = false
    private let wake = WakeTarget()
    private var malformed = 0
    /// Joins fragmented messages (each fragment checked in `channelRead` first), at most
    /// `max_frame_bytes` each.
    private var joiner: WebSocketMessageJoiner
    private var lastRead = NIODeadline.now()
    private var timer: RepeatedTask?
    private var lastPing = NIODeadline.now()

    init(server: WSServer, handshake: Handshake, peer: String) {
        self.server = server
        self.handshake = handshake
        self.peer = peer
        joiner = WebSocketMessageJoiner(limit: server.config.maxFrameBytes)
    }

    private var shards: HostShards { server.shards }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        wake.set { loop.execute { bound.value.pump() } }
        startTimer(context)
        let server = self.server
        shards.authenticate(token: handshake.token, peer: peer) { result in
            if server.isStopping {
                if case let .success(caller) = result { server.shards.releaseCaller(caller) }
                return
            }
            loop.execute { bound.value.authenticated(result) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) { finish() }
    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    // MARK: Subscribing

    private func authenticated(_ result: Result<HostHandle, Refusal>) {
        switch result {
        case let .failure(r):
            close(code: r.status == PYLON_ERR_BUSY ? 1013 : 1008, reason: "\(r.code): \(r.message)")
        case let .success(caller):
            guard case .authenticating = state, let loop = context?.eventLoop else {
                shards.releaseCaller(caller)
                return
            }
            state = .subscribing
            let bound = NIOLoopBound(self, eventLoop: loop)
            let server = self.server, wake = Unmanaged.passRetained(self.wake)
            shards.subscribe(caller, shard: handshake.shard, sid: handshake.sid, wake: shardWSWake, wakeCtx: wake.toOpaque()) { result in
                server.shards.releaseCaller(caller)
                if server.isStopping {
                    if case let .success(sub) = result { server.shards.unsubscribe(sub) }
                    wake.release()
                    return
                }
                loop.execute { bound.value.subscribed(result, wake) }
            }
        }
    }

    private func subscribed(_ result: Result<HostHandle, Refusal>, _ retained: Unmanaged<WakeTarget>) {
        switch result {
        case let .failure(r):
            retained.release()
            close(code: Self.closeCode(r.status), reason: "\(r.code): \(r.message)")
        case let .success(sub):
            guard case .subscribing = state else {
                shards.unsubscribe(sub)
                retained.release()
                return
            }
            state = .open(sub)
            self.retained = retained
            pump()
        }
    }

    private var retained: Unmanaged<WakeTarget>?

    /// The close code of a refused subscription (pylon-aux §5.4, with a reason for the
    /// unknown shard that Pylon drops silently): 4404 no such shard, 1008 not allowed or a
    /// bad subscriber id, 1013 full or stopped (try again later or elsewhere).
    static func closeCode(_ status: pylon_status) -> UInt16 {
        switch status {
        case PYLON_ERR_NOT_FOUND: 4404
        case PYLON_ERR_ABORTED, PYLON_ERR_INVALID_ARGUMENT: 1008
        case PYLON_ERR_BUSY: 1013
        default: 1011
        }
    }

    // MARK: Sending

    /// Sends what the host has while the socket takes it.
    private func pump() {
        guard case let .open(sub) = state, !sending, let context, context.channel.isActive else { return }
        guard let d = shards.next(sub, allocator: context.channel.allocator) else { return }
        switch d {
        case let .ended(reason):
            close(code: reason == "session_ended" ? 1008 : 1001, reason: reason)
        case let .frame(notes, frame, _):
            for n in notes { context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: n)), promise: nil) }
            sending = true
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: frame))).whenComplete { _ in
                bound.value.sending = false
                bound.value.pump()
            }
        }
    }

    // MARK: Receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastRead = .now()
        // Every frame, each fragment included, is checked as it arrives (RFC 6455 §5.1: a
        // client masks every frame; no extension was negotiated, so no reserved bit is set).
        if WebSocketFrameRules.violation(frame) != nil {
            let reason = frame.maskKey == nil ? "client frames must be masked"
                : frame.rsv1 || frame.rsv2 || frame.rsv3 ? "reserved bits set" : "unknown opcode"
            return close(code: 1002, reason: reason)
        }
        switch frame.opcode {
        case .text, .binary, .continuation:
            switch joiner.take(frame) {
            case .pending: break
            case let .message(_, data): input(data)
            case .refused(.messageTooLarge):
                close(code: 1009, reason: "a message is at most \(server.config.maxFrameBytes) bytes, its fragments together")
            case .refused:
                close(code: 1002, reason: "a continuation frame without a message to continue, or a new message inside a fragmented one")
            }
        case .ping:
            // A client that does not read gets no pongs queued for it.
            guard context.channel.isWritable else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            // The client's code echoed, 1002 for one that may not be sent, 1007 for a reason
            // that is not UTF-8 (RFC 6455 §5.5.1, §7.4); no code sent: 1000.
            close(code: WebSocketFrameRules.closeAnswer(frame.unmaskedData) ?? 1000, reason: "")
        default:
            break  // a pong
        }
    }

    private func input(_ message: ByteBuffer) {
        guard case let .open(sub) = state else {
            return reply(#"{"type":"error","error":{"code":"NOT_SUBSCRIBED","message":"wait for the first frame before sending input"},"client_seq":null}"#)
        }
        let (status, text) = shards.input(sub, message)
        guard status != PYLON_OK else {
            malformed = 0
            return
        }
        if status == PYLON_ERR_INVALID_ARGUMENT {
            malformed += 1
            if malformed >= server.config.maxMalformedInARow {
                return close(code: 1007, reason: "too many malformed input messages")
            }
        }
        if let text { reply(text) }
    }

    /// A text frame now, unless the client stopped reading (then it is dropped: its
    /// replies must not pile up).
    private func reply(_ text: String) {
        guard let context, context.channel.isWritable else {
            server.count("shard_ws_replies_dropped_total")
            return
        }
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))), promise: nil)
    }

    // MARK: Keepalive and closing

    private func startTimer(_ context: ChannelHandlerContext) {
        let cfg = server.config
        let every = [cfg.pingIntervalMs, cfg.idleTimeoutMs / 2].filter { $0 > 0 }.min() ?? 0
        guard every > 0 else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(Int64(every)), delay: .milliseconds(Int64(every))) { _ in
            let me = bound.value
            guard let ctx = me.context else { return }
            let now = NIODeadline.now()
            if cfg.idleTimeoutMs > 0 && now - me.lastRead > .milliseconds(Int64(cfg.idleTimeoutMs)) {
                return me.close(code: 1001, reason: "idle")
            }
            if cfg.pingIntervalMs > 0 && now - me.lastPing >= .milliseconds(Int64(cfg.pingIntervalMs)) && ctx.channel.isWritable {
                me.lastPing = now
                ctx.writeAndFlush(me.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ctx.channel.allocator.buffer(capacity: 0))), promise: nil)
            }
        }
    }

    /// Sends a close frame with `code` and `reason` (cut to the 123 bytes a close frame
    /// holds), leaves the shard, and closes the connection once the frame is written (or
    /// after 2 s if the client does not read).
    private func close(code: UInt16, reason: String) {
        guard let context else { return }
        if case .closing = state { return }
        finish()
        var cut = ""
        for ch in reason where cut.utf8.count + String(ch).utf8.count <= 123 { cut.append(ch) }
        var data = context.channel.allocator.buffer(capacity: 2 + cut.utf8.count)
        data.writeInteger(code)
        data.writeString(cut)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
            channel.close(promise: nil)
        }
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    /// Leaves the shard (once) and stops the timer and the wakeups.
    private func finish() {
        timer?.cancel()
        timer = nil
        wake.set(nil)
        if case let .open(sub) = state { shards.unsubscribe(sub) }
        retained?.release()
        retained = nil
        // A subscription still on its way is unsubscribed when it arrives (`subscribed`).
        state = .closing
    }
}
