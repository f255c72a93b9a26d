import Foundation
import NIOCore
import NIOWebSocket
import PylonCore
import PylonData
import PylonJSON
import PylonWebSocket

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
/// - topic/presence messages relayed to every WebSocket client, limited by `RelayLimiter`;
///   one over `maxRelayBytes` is refused (`RELAY_TOO_LARGE`), one imitating a room event or
///   the host's notice too (`RelayMessage`: `RELAY_NOT_ALLOWED`).
/// - live change events and relays drained from the `Subscriber` whenever it wakes the
///   connection and the socket takes more (a client that stops reading is not drained; its
///   queue overflows to the log, by count or by bytes, and the stall watchdog closes it).
/// - a connection whose pending writes make no progress for `writeTimeout` is closed
///   (`WriteProgressDeadline`).
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
    /// What relayed messages carry as `from` and `user_id`.
    private let from: JSONValue
    private var phase = Phase.catchingUp
    /// The newest change seq sent (live events at or below it were already read from the log).
    private var cursor: Int64 = 0
    private var limiter: RelayLimiter
    /// Joins fragmented messages, at most `maxFrameBytes` each.
    private var joiner: WebSocketMessageJoiner
    private var awaitingPong = false
    private var pinger: RepeatedTask?
    private var closeTimer: Scheduled<Void>?
    private var reader: Task<Void, Never>?
    /// The last frame written from the log (its future completes once it left).
    private var lastLogWrite: EventLoopFuture<Void>?
    /// Drained messages not sent yet, from `backlogIndex` on (see `deliver`).
    private var backlog: [HubMessage] = []
    private var backlogIndex = 0
    /// A chunk of frames was written that the socket has not taken yet.
    private var writing = false
    /// The `HubMessage.byteCount` of the messages in that chunk (`Subscriber.sent` once it left).
    private var writingBytes = 0
    private var writes: WriteProgressDeadline
    /// `deliver` is running (a chunk taken at once calls back into it).
    private var delivering = false
    /// The context of NIO's frame encoder: writes through it skip the encoder, for chunks
    /// that are frames already.
    private var rawOut: ChannelHandlerContext?
    private var context: ChannelHandlerContext?

    init(services: WebSocketServices, subscriber: Subscriber, start: Start) {
        self.services = services
        sub = subscriber
        self.start = start
        from = subscriber.auth.isAdmin ? "admin" : .string(subscriber.auth.userID ?? "")
        limiter = RelayLimiter(rate: services.routes.realtime.relayRate, burst: services.routes.realtime.relayBurst)
        writes = WriteProgressDeadline(seconds: services.routes.realtime.writeTimeout)
        joiner = WebSocketMessageJoiner(limit: services.routes.realtime.maxFrameBytes)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // (Without an encoder in the pipeline, the chunk's bytes go out from here as they are.)
        rawOut = (try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)) ?? context
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        sub.attach(ConnectionWaker(connection: me, eventLoop: context.eventLoop))
        let period = TimeAmount.seconds(Int64(services.routes.realtime.pingSeconds))
        pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in me.value.ping() }
        services.routes.armStallWatchdog(sub, channel: context.channel)
        if let since = start.since {
            readLog(from: since, epoch: start.epoch)
        } else {
            // Live from where the hub was when it subscribed, before the 101 was sent: what
            // it queued since is delivered below, and an overflow reads the log from there.
            cursor = sub.start
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
        writes.timer?.cancel()
        reader?.cancel()
        backlog = []
        rawOut = nil
        services.routes.hub.unsubscribe(sub)
        sub.detach()
        services.routes.hub.announceLeave(of: sub.id)
        self.context = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Graceful shutdown: the server asks its connections to finish.
        if event is ChannelShouldQuiesceEvent { close(.normalClosure, reason: "") }
        // The client closed its side without a close frame (the server allows half-closure;
        // one that left during the handshake is told once the upgrade is done): it can answer
        // no ping or close frame any more, so the connection, and its subscriber's slot of
        // the address's limit, end now rather than at the next unanswered ping.
        if let e = event as? ChannelEvent, e == .inputClosed, phase == .live || phase == .catchingUp {
            context.close(promise: nil)
        }
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

    /// Joins a message's fragments (`WebSocketMessageJoiner`: at most `maxFrameBytes` in
    /// all, checked before a fragment is appended) and hands on each whole message.
    private func reassemble(_ frame: WebSocketFrame) {
        let message: (opcode: WebSocketOpcode, data: ByteBuffer)
        switch joiner.take(frame) {
        case .pending: return
        case let .refused(code):
            closeNow(code)
            return
        case let .message(opcode, data): message = (opcode, data)
        }
        if message.opcode == .text {
            guard let text = WebSocketFrameRules.utf8Text(message.data) else {
                closeNow(.dataInconsistentWithMessage)
                return
            }
            received(text: text, bytes: message.data.readableBytes)
        } else {
            received(text: nil, bytes: message.data.readableBytes)
        }
    }

    /// A complete client message (`text` nil: binary) of `bytes`. Every message counts
    /// against the relay limit, relayed or not: each costs the host a parse. One over
    /// `maxRelayBytes` is answered `RELAY_TOO_LARGE` unread: relays are small JSON, and each
    /// is queued for every WebSocket client.
    private func received(text: String?, bytes: Int) {
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
        let cap = services.routes.realtime.maxRelayBytes
        guard bytes <= cap else {
            write(RelayLimiter.tooLargeFrame(bytes: bytes, limit: cap))
            context?.flush()
            return
        }
        guard let text else { return }
        switch RelayMessage.read(text, from: from) {
        case .relay(let frame): services.routes.hub.relay(frame)
        case .refuse(let frame):
            write(frame)
            context?.flush()
        case .ignore: break
        }
    }

    // MARK: Delivery

    /// Sends what the subscriber queued (called on the event loop when the subscriber wakes
    /// it). Frames leave in chunks of about `chunkBytes`, one at a time: the next chunk is
    /// made only once the socket took the last one (at once, usually, inside the flush). So a
    /// connection whose client stops reading holds at most one chunk in the host; the rest
    /// waits in its queue (a disconnect range stays one entry however long) until the queue
    /// overflows to the log and the stall watchdog closes it. With a write per frame, every
    /// connection could hold NIO's 64 KB write buffer plus ~100 bytes of bookkeeping per
    /// frame: when 10,000 clients left at once and each of the others was sent their
    /// disconnect notices, the host's RSS went from 124 to 739 MB (bench/RESULTS.md).
    fileprivate func deliver() {
        guard !delivering, let context, let raw = rawOut else { return }
        delivering = true
        defer { delivering = false }
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        var wrote = false
        while phase == .live, !writing {
            if backlogIndex == backlog.count {
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
            var chunk = context.channel.allocator.buffer(capacity: 512)
            let bytes = fillChunk(&chunk)
            // Nothing to send from what was drained (events already read from the log).
            guard chunk.readableBytes > 0 else {
                sub.sent(bytes)
                continue
            }
            wrote = true
            writing = true
            writingBytes = bytes
            // Below NIO's frame encoder: the chunk is frames already (`appendTextFrame`).
            let left = raw.writeAndFlush(WebSocketFrameEncoder.wrapOutboundOut(chunk))
            tracked(left)
            left.whenComplete { _ in me.value.chunkLeft() }
        }
        if wrote { sub.madeProgress() }
    }

    /// The last chunk left (or failed: the connection is closing): send the next one.
    private func chunkLeft() {
        writing = false
        sub.sent(writingBytes)
        writingBytes = 0
        deliver()
    }

    /// Encodes frames from `backlog` into `chunk` until it holds `chunkBytes` or the backlog
    /// is done; returns the `HubMessage.byteCount` of the messages it took.
    private func fillChunk(_ chunk: inout ByteBuffer) -> Int {
        var taken = 0
        while backlogIndex < backlog.count, chunk.readableBytes < Self.chunkBytes {
            taken += backlog[backlogIndex].byteCount
            switch backlog[backlogIndex] {
            case let .change(e):
                // The hub already applied the read policy for this identity.
                if e.seq > cursor {
                    cursor = e.seq
                    Self.appendTextFrame(e.payload, to: &chunk)
                }
            case let .relay(text):
                Self.appendTextFrame(text, to: &chunk)
            case let .leaves(range):
                if let rest = appendLeaves(range, to: &chunk) {
                    backlog[backlogIndex] = .leaves(rest)
                    return taken
                }
            }
            backlogIndex += 1
        }
        if backlogIndex == backlog.count {
            backlog = []
            backlogIndex = 0
        }
        return taken
    }

    /// Encodes the hub's disconnect notices of `range` until the chunk is full; returns the
    /// part left (nil: none). Takes from the hub only about what fits in one chunk.
    private func appendLeaves(_ range: ClosedRange<Int64>, to chunk: inout ByteBuffer) -> ClosedRange<Int64>? {
        let part = range.lowerBound...min(range.upperBound, range.lowerBound + Int64(Self.chunkBytes / 48))
        let frames = services.routes.hub.leaveFrames(part)
        // Notices the hub no longer keeps are skipped: `frames` are the newest of `part`.
        let first = part.upperBound - Int64(frames.count) + 1
        for (i, text) in frames.enumerated() {
            if chunk.readableBytes >= Self.chunkBytes {
                return (first + Int64(i))...range.upperBound
            }
            Self.appendTextFrame(text, to: &chunk)
        }
        return part.upperBound < range.upperBound ? (part.upperBound + 1)...range.upperBound : nil
    }

    /// About how many bytes one write of `deliver` carries (a larger frame goes whole).
    static let chunkBytes = 4096

    /// Appends a final, unmasked text frame (RFC 6455 §5.2: a server never masks).
    static func appendTextFrame(_ text: String, to buffer: inout ByteBuffer) {
        let n = text.utf8.count
        buffer.writeInteger(UInt8(0x81))  // FIN + text
        if n < 126 {
            buffer.writeInteger(UInt8(n))
        } else if n <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(n))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(n))
        }
        buffer.writeString(text)
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
        guard let page = lastLogWrite else { return loop.makeSucceededVoidFuture() }
        tracked(page)
        return page
    }

    private func write(_ text: String) {
        guard let context else { return }
        context.write(wrapOutboundOut(textFrame(text, context)), promise: nil)
    }

    private func textFrame(_ text: String, _ context: ChannelHandlerContext) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))
    }

    // MARK: Liveness and closing

    /// Counts a write that carries the stream towards the write-progress deadline;
    /// `write` completes once it left (or failed).
    private func tracked(_ write: EventLoopFuture<Void>) {
        guard let context else { return }
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        if let due = writes.began(now: .now()) {
            writes.timer = context.eventLoop.scheduleTask(deadline: due) { me.value.checkWrites() }
        }
        write.whenComplete { _ in me.value.writes.ended(now: .now()) }
    }

    /// The write-progress check: closes a connection whose pending writes made no progress
    /// for `writeTimeout` (no close frame: it would wait behind them).
    private func checkWrites() {
        guard let context, phase != .closed else { return }
        switch writes.check(now: .now()) {
        case .idle: break
        case let .checkAt(due):
            let me = NIOLoopBound(self, eventLoop: context.eventLoop)
            writes.timer = context.eventLoop.scheduleTask(deadline: due) { me.value.checkWrites() }
        case .stalled:
            services.routes.metrics.add("realtime_slow_consumers_closed_total", 1)
            services.routes.metrics.add("realtime_write_timeouts_total", 1)
            context.close(promise: nil)
        }
    }

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
        tracked(context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))))
        armCloseTimer(context)
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
        closeAfter(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), context)
    }

    /// Sends a close frame, then closes the socket once it left, or after `closeSeconds` if
    /// it cannot leave (a client that stopped reading: it waits behind unsent frames).
    private func closeAfter(_ frame: WebSocketFrame, _ context: ChannelHandlerContext) {
        let channel = context.channel
        let sent = context.writeAndFlush(wrapOutboundOut(frame))
        tracked(sent)
        sent.whenComplete { _ in channel.close(promise: nil) }
        armCloseTimer(context)
    }

    /// Closes the socket `closeSeconds` from now, whatever the client does.
    private func armCloseTimer(_ context: ChannelHandlerContext) {
        let channel = context.channel
        closeTimer = context.eventLoop.scheduleTask(in: .seconds(Int64(services.routes.realtime.closeSeconds))) {
            channel.close(promise: nil)
        }
    }

    private func receivedClose(_ frame: WebSocketFrame) {
        guard let context else { return }
        if phase == .closing {
            // The answer to our close frame.
            context.close(promise: nil)
            return
        }
        // The client closes: answer with its code (RFC 6455 §5.5.1) — or 1002 for a code that
        // may not be sent, 1007 for a reason that is not UTF-8 (`closeAnswer`) — then close
        // the socket.
        let code = WebSocketFrameRules.closeAnswer(frame.unmaskedData)
        phase = .closing
        reader?.cancel()
        sub.close()
        var data = context.channel.allocator.buffer(capacity: 2)
        if let code { data.writeInteger(code) }
        closeAfter(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), context)
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
