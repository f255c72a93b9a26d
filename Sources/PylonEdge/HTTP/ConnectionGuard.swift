import NIOCore

/// The first handler of every HTTP connection on every listener (`HTTPListener`): it sees
/// the connection's bytes before NIO's codec, keeps its `ConnectionDeadlines`, and runs the
/// one timer that enforces them. `CodecGuard` reports what the codec parses and what is
/// written; this handler only notes that bytes arrived.
///
/// When a deadline passes it closes the connection; a request that was too slow first gets
/// its 408 (`HTTPFault.headTimeout` / `.bodyTimeout`), written from here straight to the
/// socket, unless an answer is half written.
///
/// Cost: per read a clock read and a compare; per request a few stores. The timer is
/// per connection, armed at most every `Limits.shortest` while the host waits for the
/// client, and off while it does not (an answer in progress, an upgraded WebSocket).
///
/// Threads: every method runs on the channel's event loop.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var deadlines: ConnectionDeadlines
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private let serverName: String
    /// Set once the connection is being closed for a fault or a timeout.
    private var ending = false

    init(_ limits: ConnectionDeadlines.Limits, serverName: String) {
        deadlines = ConnectionDeadlines(limits, now: Self.now())
        self.serverName = serverName
    }

    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        deadlines = ConnectionDeadlines(deadlines.limits, now: Self.now())
        arm(now: Self.now())
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = deadlines.phase {
            let now = Self.now()
            deadlines.received(now: now)
            arm(now: now)
        }
        let bytes = unwrapInboundIn(data)
        reading = bytes
        context.fireChannelRead(data)
        reading = nil
        keepTail(of: bytes)
    }

    // MARK: What the codec cannot tell

    /// The read the codec is working on (only while it does), and the last 8 bytes received
    /// before it: `bareLFAfterVersion` looks at them when NIO's decoder fails on them.
    private var reading: ByteBuffer?
    private var tail: UInt64 = 0

    private func keepTail(of bytes: ByteBuffer) {
        let n = bytes.readableBytes
        if n >= 8, let last = bytes.getInteger(at: bytes.readerIndex + n - 8, as: UInt64.self) {
            tail = last
        } else {
            for b in bytes.readableBytesView { tail = tail << 8 | UInt64(b) }
        }
    }

    /// Whether the bytes the decoder just failed on have a request line ending in a bare LF
    /// right after its version ("HTTP/1.1\n"), which NIO's decoder reports as a bad version,
    /// as it does a real other version ("HTTP/2.0"): the first is malformed (400), the
    /// second a version the host does not speak (505). Called from `CodecGuard` while the
    /// decoder works on a read (the error comes from inside `channelRead`).
    func bareLFAfterVersion() -> Bool {
        var bytes = withUnsafeBytes(of: tail.bigEndian) { Array($0) }
        if let reading { bytes += reading.readableBytesView }
        let http = Array("HTTP/".utf8)
        var i = 0
        while i + 8 < bytes.count {
            if bytes[i] == http[0], Array(bytes[i..<(i + 5)]) == http, Self.isDigit(bytes[i + 5]), bytes[i + 6] == UInt8(ascii: "."),
               Self.isDigit(bytes[i + 7]), bytes[i + 8] == 0x0A {
                return true
            }
            i += 1
        }
        return false
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// On server shutdown (`ChannelShouldQuiesceEvent`) a connection with nothing owed
    /// either way closes now. Without this, one that has not sent a whole first request
    /// would hold the shutdown until its timeout: Hummingbird's quiescing handler joins the
    /// pipeline only with the first request.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, deadlines.isBetweenRequests {
            ending = true
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    // MARK: What the fronts report

    func headReceived() {
        let now = Self.now()
        deadlines.headReceived(now: now)
        arm(now: now)
    }

    func requestReceived() {
        deadlines.requestReceived(now: Self.now())
    }

    func responseStarted() {
        deadlines.responseStarted()
    }

    func answered() {
        let now = Self.now()
        deadlines.answered(now: now)
        arm(now: now)
    }

    /// Upgraded (WebSocket): its own pings keep it honest; no HTTP deadlines (and no timer;
    /// per frame only the phase check in `channelRead`).
    func upgraded() {
        deadlines.upgrade()
        timer?.cancel()
        timer = nil
    }

    /// Whether a final answer's head has left without its end (a fault answer would
    /// break its framing).
    var isResponding: Bool { deadlines.responding }

    /// Whether answers to earlier requests are still owed (a fault in a later request
    /// is answered after them). A fault inside the body of the request being read is
    /// that request's own answer.
    var owesEarlierAnswers: Bool {
        if case .body = deadlines.phase { return deadlines.unanswered > 1 }
        return deadlines.unanswered > 0
    }

    // MARK: Timer

    /// Arms the timer when it is off and there is a deadline (a running timer always
    /// fires within `Limits.shortest`, before any deadline set since).
    private func arm(now: Int64) {
        guard timer == nil, let context, let at = deadlines.nextCheck(now: now) else { return }
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: NIODeadline.uptimeNanoseconds(UInt64(max(at, 0)))) {
            self.fire()
        }
    }

    private func fire() {
        timer = nil
        guard let context, !ending else { return }
        let now = Self.now()
        switch deadlines.expiry(now: now) {
        case nil:
            arm(now: now)
        case .close?, .abort?:
            ending = true
            context.close(promise: nil)
        case let .answer(fault)?:
            ending = true
            let bytes = fault.encoded(server: serverName, context.channel.allocator)
            let channel = context.channel
            context.writeAndFlush(NIOAny(IOData.byteBuffer(bytes))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
