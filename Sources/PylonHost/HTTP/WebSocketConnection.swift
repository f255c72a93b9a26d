import Foundation
import NIOCore
import NIOWebSocket

/// One upgraded WebSocket connection (`/api/sync/ws` and port+1), served by callbacks on
/// its event loop. An idle subscriber costs its channel, this handler and its `Subscriber`:
/// no task, no async stream, no buffer (a task per connection kept ~24 KB of async frames
/// alive per idle socket; bench/RESULTS.md "Session 10"). A task runs only while the
/// connection reads the durable log (a cursor to resume from, or a queue overflow).
///
/// What it does:
/// - client frames: the RFC 6455 rules of `WebSocketFrameRules` (masking on every frame,
///   control frames included: 1002; invalid UTF-8 text: 1007; a message over the size
///   limit: 1009); messages reassembled from fragments; pings answered.
/// - topic/presence messages relayed to every WebSocket client, limited by `RelayLimiter`.
/// - live change events and relays drained from the `Subscriber` whenever it wakes the
///   connection and the socket takes more (a client that stops reading is not drained; its
///   queue overflows to the log and the stall watchdog closes it).
/// - a ping every `pingSeconds`; a client that has not answered the previous one is closed.
/// - close: 1008 `session revoked` when the session ends, 4410 after a resync notice,
///   1000 at shutdown; the socket closes when the client answers or after `closeSeconds`.
final class WebSocketConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Where the connection starts: live from now, or reading the log from a cursor.
    struct Start: Sendable {
        var since: Int64?
        var epoch: String?
        /// The session cache's generation before the caller was looked up (`confirmSession`).
        var generation: UInt64
    }

    private enum Phase { case catchingUp, live, closing, closed }

    private let services: WebSocketServices
    private let sub: Subscriber
    private let start: Start
    /// What relayed messages carry as `from`.
    private let from: JSONValue
    private var phase = Phase.catchingUp
    /// The newest change seq sent (live events at or below it were already read from the log).
    private var cursor: Int64 = 0
    private var limiter: RelayLimiter
    /// A fragmented message being reassembled: its first frame's opcode and the bytes so far.
    private var partial: (opcode: WebSocketOpcode, data: ByteBuffer)?
    private var awaitingPong = false
    private var pinger: RepeatedTask?
    private var closeTimer: Scheduled<Void>?
    private var reader: Task<Void, Never>?
    /// The last frame written from the log (its future completes once it left).
    private var lastLogWrite: EventLoopFuture<Void>?
    /// Drained messages the socket has not taken yet, from `backlogIndex` on (see `deliver`).
    private var backlog: [HubMessage] = []
    private var backlogIndex = 0
    private var context: ChannelHandlerContext?

    init(services: WebSocketServices, subscriber: Subscriber, start: Start) {
        self.services = services
        sub = subscriber
        self.start = start
        from = subscriber.auth.isAdmin ? "admin" : .string(subscriber.auth.userID ?? "")
        limiter = RelayLimiter(rate: services.routes.realtime.relayRate, burst: services.routes.realtime.relayBurst)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        sub.attach(ConnectionWaker(connection: me, eventLoop: context.eventLoop))
        let period = TimeAmount.seconds(Int64(services.routes.realtime.pingSeconds))
        pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in me.value.ping() }
        services.routes.armStallWatchdog(sub, channel: context.channel)
        if let since = start.since {
            readLog(from: since, epoch: start.epoch)
        } else {
            _ = sub.goLive()
            phase = .live
        }
        if services.routes.sessions.generation != start.generation {
            Task { [routes = services.routes, sub, start] in try? await routes.confirmSession(sub, since: start.generation) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        pinger?.cancel()
        closeTimer?.cancel()
        reader?.cancel()
        backlog = []
        services.routes.hub.unsubscribe(sub)
        sub.detach()
        services.routes.hub.announceLeave(of: sub.id)
        self.context = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { deliver() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Graceful shutdown: the server asks its connections to finish.
        if event is ChannelShouldQuiesceEvent { close(.normalClosure, reason: "") }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors were answered (1002/1009) and the socket closed by NIO's protocol
        // error handler ahead of this one; anything else ends the connection.
        if !(error is NIOWebSocketError) { context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard phase != .closed else { return }
        if let code = WebSocketFrameRules.violation(frame) {
            closeNow(code)
            return
        }
        switch frame.opcode {
        case .ping:
            guard phase != .closing else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            awaitingPong = false
        case .connectionClose:
            receivedClose(frame)
        default:
            // After our close frame, data is read and dropped (RFC 6455 §5.5.1).
            guard phase != .closing else { return }
            reassemble(frame)
        }
    }

    // MARK: Client messages

    private func reassemble(_ frame: WebSocketFrame) {
        var message: (opcode: WebSocketOpcode, data: ByteBuffer)
        switch (frame.opcode, partial) {
        case (.continuation, var started?):
            var more = frame.unmaskedData
            started.data.writeBuffer(&more)
            message = started
        case (.text, nil), (.binary, nil):
            message = (frame.opcode, frame.unmaskedData)
        default:
            // A continuation with nothing started, or a new message inside a fragmented one.
            closeNow(.protocolError)
            return
        }
        guard message.data.readableBytes <= services.routes.realtime.maxFrameBytes else {
            closeNow(.messageTooLarge)
            return
        }
        guard frame.fin else {
            partial = message
            return
        }
        partial = nil
        if message.opcode == .text {
            guard let text = WebSocketFrameRules.utf8Text(message.data) else {
                closeNow(.dataInconsistentWithMessage)
                return
            }
            received(text: text)
        } else {
            received(text: nil)
        }
    }

    /// A complete client message (`text` nil: binary). Every message counts against the
    /// relay limit, relayed or not: each costs the host a parse.
    private func received(text: String?) {
        // A stream whose session ended speaks for no one any more.
        guard !sub.isClosed else { return }
        switch limiter.admit() {
        case .accept: break
        case .drop:
            write(limiter.errorFrame)
            context?.flush()
            return
        case .close:
            services.routes.metrics.add("realtime_relay_floods_closed_total", 1)
            close(.policyViolation, reason: "relay rate limit exceeded")
            return
        }
        guard let text, let v = try? JSONParser.parse(text),
              let type = v["type"]?.stringValue, type == "presence" || type == "topic" else { return }
        services.routes.hub.relay(JSONWriter.string(v.setting("from", from)), except: nil)
    }

    // MARK: Delivery

    /// Sends what the subscriber queued, while the socket takes more (called on the event
    /// loop when the subscriber wakes it and when the socket becomes writable again). What
    /// the socket does not take yet waits in `backlog` (at most one drained queue, so at most
    /// `PYLON_SYNC_QUEUE` entries) and nothing more is drained meanwhile: a connection that
    /// stops reading overflows its queue (log fallback, stall watchdog) instead of buffering
    /// frames in the channel without bound.
    fileprivate func deliver() {
        guard let context else { return }
        var wrote = false
        while phase == .live, context.channel.isWritable {
            if backlogIndex == backlog.count {
                // Drained only once the last drain was written, so a wake-up that came
                // meanwhile is not lost: draining re-arms it.
                let (messages, overflowed) = sub.drain()
                backlog = messages
                backlogIndex = 0
                if overflowed {
                    // The queue was dropped: continue from the durable log, then go live again.
                    backlog = []
                    services.routes.metrics.add("realtime_queue_fallbacks_total", 1)
                    readLog(from: cursor, epoch: nil)
                    break
                }
                if messages.isEmpty { break }
            }
            wrote = true
            while backlogIndex < backlog.count, context.channel.isWritable {
                switch backlog[backlogIndex] {
                case let .change(e):
                    // The hub already applied the read policy for this identity.
                    if e.seq > cursor {
                        cursor = e.seq
                        write(e.payload)
                    }
                case let .relay(text):
                    write(text)
                case let .leaves(range):
                    if let rest = writeLeaves(range, context) {
                        backlog[backlogIndex] = .leaves(rest)
                        continue
                    }
                }
                backlogIndex += 1
            }
        }
        guard wrote else { return }
        context.flush()
        sub.madeProgress()
    }

    /// Writes the hub's disconnect notices of `range` while the socket takes more; returns
    /// the part not written yet (nil: all of it).
    private func writeLeaves(_ range: ClosedRange<Int64>, _ context: ChannelHandlerContext) -> ClosedRange<Int64>? {
        let frames = services.routes.hub.leaveFrames(range)
        // Notices the hub no longer keeps are skipped: `frames` are the newest of the range.
        let first = range.upperBound - Int64(frames.count) + 1
        for (i, text) in frames.enumerated() {
            guard context.channel.isWritable else { return (first + Int64(i))...range.upperBound }
            write(text)
        }
        return nil
    }

    /// Reads the log from `from` in a task (`SyncStream.resume`), then goes live.
    private func readLog(from: Int64, epoch: String?) {
        guard let context else { return }
        phase = .catchingUp
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        let sink = WebSocketSink(connection: me, eventLoop: context.eventLoop)
        let channel = context.channel
        reader = Task { [sync = services.routes.sync, sub] in
            do {
                guard let c = try await sync.resume(sub, from: from, epoch: epoch, sink: sink) else { return }
                channel.eventLoop.execute { me.value.caughtUp(to: c) }
            } catch {
                channel.close(promise: nil)
            }
        }
    }

    private func caughtUp(to c: Int64) {
        guard phase == .catchingUp else { return }
        reader = nil
        cursor = max(cursor, c)
        phase = .live
        deliver()
    }

    fileprivate func sendFromLog(_ text: String) {
        guard phase == .catchingUp, let context else { return }
        lastLogWrite = context.write(wrapOutboundOut(textFrame(text, context)))
    }

    /// Flushes what the log reader sent; the future completes once it left (fails once the
    /// connection is gone, which ends the reader).
    fileprivate func flushLog(on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        context.flush()
        defer { lastLogWrite = nil }
        return lastLogWrite ?? loop.makeSucceededVoidFuture()
    }

    private func write(_ text: String) {
        guard let context else { return }
        context.write(wrapOutboundOut(textFrame(text, context)), promise: nil)
    }

    private func textFrame(_ text: String, _ context: ChannelHandlerContext) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))
    }

    // MARK: Liveness and closing

    private func ping() {
        guard phase == .live || phase == .catchingUp, let context else { return }
        if awaitingPong {
            // No answer to the last ping: the client is gone or stuck.
            closeNow(.goingAway)
            return
        }
        awaitingPong = true
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
    }

    /// The subscriber closed: its session ended, or the host is shutting down.
    fileprivate func subscriberClosed() {
        if sub.sessionEnded {
            close(.policyViolation, reason: "session revoked")
        } else {
            close(.normalClosure, reason: "")
        }
    }

    /// Starts the closing handshake: sends a close frame, delivers and relays nothing more,
    /// and closes the socket when the client answers or after `closeSeconds`.
    fileprivate func close(_ code: WebSocketErrorCode, reason: String) {
        guard phase != .closing, phase != .closed, let context else { return }
        phase = .closing
        reader?.cancel()
        sub.close()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        let channel = context.channel
        closeTimer = context.eventLoop.scheduleTask(in: .seconds(Int64(services.routes.realtime.closeSeconds))) {
            channel.close(promise: nil)
        }
    }

    /// A protocol error: the close frame, then the socket at once (RFC 6455 §7.1.7: the
    /// connection is failed, not closed politely).
    private func closeNow(_ code: WebSocketErrorCode) {
        guard let context else { return }
        let alreadyClosing = phase == .closing
        phase = .closing
        reader?.cancel()
        sub.close()
        guard !alreadyClosing else {
            context.close(promise: nil)
            return
        }
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    private func receivedClose(_ frame: WebSocketFrame) {
        guard let context else { return }
        if phase == .closing {
            // The answer to our close frame.
            context.close(promise: nil)
            return
        }
        // The client closes: answer with its code (RFC 6455 §5.5.1), then close the socket.
        var payload = frame.unmaskedData
        let code = payload.readableBytes >= 2 ? payload.readWebSocketErrorCode() : nil
        phase = .closing
        reader?.cancel()
        sub.close()
        var data = context.channel.allocator.buffer(capacity: 2)
        if let code { data.write(webSocketErrorCode: code) }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}

/// What every WebSocket connection of a listener shares: one reference per connection
/// instead of a copy of the route context (with the host's settings) in each.
final class WebSocketServices: Sendable {
    let routes: RouteContext
    init(_ routes: RouteContext) { self.routes = routes }
}

/// Wakes a WebSocket connection on its event loop (the hub calls it from its fan-out queue).
private struct ConnectionWaker: SubscriberWaker {
    let connection: NIOLoopBound<WebSocketConnection>
    let eventLoop: any EventLoop

    func wake() { eventLoop.execute { connection.value.deliver() } }
    func subscriberClosed() { eventLoop.execute { connection.value.subscriberClosed() } }
}

/// Frames from the durable log to a WebSocket (`SyncStream.resume` runs in the connection's
/// log-reading task): each hops to the connection's event loop, which drops it once the
/// connection is closing, so nothing follows a close frame.
struct WebSocketSink: SyncSink {
    let connection: NIOLoopBound<WebSocketConnection>
    let eventLoop: any EventLoop

    func sendChange(_ payload: String, seq: Int64) async throws { eventLoop.execute { connection.value.sendFromLog(payload) } }
    func sendRelay(_ payload: String) async throws { eventLoop.execute { connection.value.sendFromLog(payload) } }
    func sendKeepalive() async throws {}
    func flush() async throws { try await eventLoop.flatSubmit { [eventLoop] in connection.value.flushLog(on: eventLoop) }.get() }
    /// The 410 error body as a text frame, then close code 4410.
    func sendResyncAndClose(_ error: HostError) async throws {
        let body = JSONWriter.string(error.body)
        eventLoop.execute {
            connection.value.sendFromLog(body)
            connection.value.close(.unknown(4410), reason: "RESYNC_REQUIRED")
        }
    }
    func sendSessionEnded() async throws {
        eventLoop.execute { connection.value.close(.policyViolation, reason: "session revoked") }
    }
}
