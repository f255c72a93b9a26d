import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import PylonCore

/// The one way a request is answered, on every listener the host opens: it sits in each
/// HTTP/1 connection's pipeline right after NIO's HTTP codec (Hummingbird's
/// `additionalChannelHandlers`, behind the `CodecGuard` and the WebSocket upgrade handler)
/// and runs every request that is not a WebSocket upgrade through the listener's router and
/// its `APIMiddleware` — without Hummingbird's per-connection async machinery (the async
/// inbound stream and outbound writer a request otherwise crosses twice), which on this
/// host cost about as much CPU as the work of an insert itself. Hummingbird's own request
/// handling behind it never sees a request.
///
/// A request's body is collected whole (up to `Shared.maxBody`; more is answered 413 and
/// the connection closed once the body has gone by), then the request runs on a Task that
/// prefers the connection's event loop (`LoopTaskExecutor`). A few hot routes finish by
/// callback instead, without a Task (`Shared.immediate`, HTTP/ImmediateRoutes.swift): the
/// router runs the same handler functions for those routes, so a request reaches the same
/// code whichever way it is dispatched. An answer whose length is known is written as one
/// head and body; one that is a stream (SSE, a streamed function call) is written chunk by
/// chunk as it comes, each write awaited (backpressure); a stream whose writes make no
/// progress for PYLON_WRITE_TIMEOUT (its client stopped reading) closes the connection.
///
/// Answers leave in request order: while a request is being answered, later pipelined parts
/// wait in `queued` (reads are held back once `maxQueuedBytes` wait). `Connection: close`
/// (or HTTP/1.0 without keep-alive, which `CodecGuard` marks so) closes the connection after
/// its answer. A server shutdown (`ChannelShouldQuiesceEvent`) closes it once the answer in
/// progress has left; the event goes no further (Hummingbird's handler behind this one would
/// close the connection at once, as it never saw the request in progress).
///
/// Threads: every method runs on the channel's event loop. The handler's Task prefers that
/// loop too: it starts there, every continuation resumed from another thread (a store
/// thread, a plugin's thread) comes back there, and the answer is queued on the same thread
/// — one loop thread per request instead of whichever loop the global executor picks at
/// each step (each pick of another loop was a cross-thread wake-up).
final class HTTPFront: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection of one listener shares.
    struct Shared: Sendable {
        /// The listener's router, with its middleware.
        let responder: RouterResponder<PylonRequestContext>
        let logger: Logger
        let serverName: String
        /// Bodies above this are refused (413 PAYLOAD_TOO_LARGE).
        let maxBody: Int
        /// The handler of a request that can be answered without a Task
        /// (`RouteContext.immediateRoute`: a route's own handler, wrapped in
        /// `APIMiddleware.handleNow`); nil: the router, on a Task.
        var immediate: (@Sendable (HTTPRequest) -> ImmediateHandler?)?
        /// The body limit of a request whose body its handler reads as it arrives
        /// (`RouteContext.streamedBodyLimit`: file uploads); nil: the body is collected.
        var streamed: (@Sendable (HTTPRequest) -> Int?)? = nil
        /// A streamed answer whose writes make no progress for this long closes its
        /// connection (PYLON_WRITE_TIMEOUT; 0: never); `onWriteTimeout` counts it.
        var writeTimeout: Double = 0
        var onWriteTimeout: (@Sendable () -> Void)? = nil
    }

    /// Gets the request's whole body and the connection's remote address, and calls its reply
    /// exactly once, from any thread, with the answer's head and body.
    typealias ImmediateHandler = @Sendable (ByteBuffer, SocketAddress?, @escaping @Sendable (HTTPResponse, ByteBuffer) -> Void) -> Void

    private enum State {
        case idle
        /// The body is read into `collected`.
        case collecting(HTTPRequest)
        /// The body is over `maxBody` and was answered 413: its parts go by unread, then the
        /// connection closes.
        case refusing
        /// The handler runs (or its stream is being written); inbound parts wait in `queued`.
        case answering
        /// The handler runs and reads the body as it arrives (`Shared.streamed`): body parts
        /// go to it through `StreamedBody`.
        case streaming(StreamedBody)
        /// The handler of a streamed body runs but reads no more of it (it stopped, or the
        /// body passed its limit): the rest of the body goes by unread.
        case skipping
    }

    let shared: Shared
    private var state = State.idle
    /// The body being collected (`.collecting`), kept out of `state`: a buffer in an enum's
    /// payload is shared with every copy of the enum a `switch` makes, so each append copied
    /// the whole body so far (quadratic in the body's reads: a 10 MiB POST to any URL held an
    /// event loop for seconds). Here it has one owner and grows in place.
    private var collected: ByteBuffer?
    /// The most a collected body's buffer takes before its bytes arrive.
    static let initialBodyCapacity = 64 * 1024
    private var queued = CircularBuffer<HTTPRequestPart>()
    private var queuedBytes = 0
    private var readHeld = false
    /// The request being answered asked for the connection to end with its answer.
    private var closeAfter = false
    /// The server is shutting down: close once idle.
    private var quiescing = false
    /// Created on the first request (the channel's loop is known then).
    private var executor: LoopTaskExecutor?

    /// The write-progress deadline of a streamed answer (HTTPFrontWriters.swift).
    var streamWrites: WriteProgressDeadline

    init(_ shared: Shared) {
        self.shared = shared
        streamWrites = WriteProgressDeadline(seconds: shared.writeTimeout)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .answering = state {
            queued.append(part)
            queuedBytes += Self.size(part)
            return
        }
        dispatch(part, context: context)
    }

    /// A part that arrived (or waited in `queued`) while no answer was in progress: a
    /// streamed body's parts go to its handler, the rest to `handle`.
    private func dispatch(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .streaming, .skipping: streamedPart(part, context: context)
        default: handle(part, context: context)
        }
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (part, state) {
        case let (.head(head), .idle):
            closeAfter = Self.asksToClose(head)
            let announced = head.headerFields[.contentLength].flatMap { Int($0) } ?? 0
            if let limit = shared.streamed?(head) {
                if announced > limit {
                    refuse(.bodyTooLarge(limit: limit), context)
                } else {
                    startStreaming(head, limit: limit, context: context)
                }
            } else if announced > shared.maxBody {
                refuse(.bodyTooLarge(limit: shared.maxBody), context)
            } else {
                // Sized by what arrives, not by what the head announces: a head announcing
                // 10 MiB and sending a byte held 16 MiB until the body timeout (one client,
                // many connections: gigabytes). Doubling as it grows keeps the copies linear.
                collected = context.channel.allocator.buffer(capacity: min(announced, Self.initialBodyCapacity))
                state = .collecting(head)
            }
        case (.body(var chunk), .collecting):
            // Taken out while appending: the only reference, so it grows in place.
            guard var body = collected.take() else { break }
            if body.readableBytes + chunk.readableBytes > shared.maxBody {
                refuse(.bodyTooLarge(limit: shared.maxBody), context)
                return
            }
            body.writeBuffer(&chunk)
            collected = body
        case let (.end, .collecting(head)):
            state = .answering
            answer(head, collected.take() ?? context.channel.allocator.buffer(capacity: 0), context: context)
        case (.end, .refusing):
            context.close(promise: nil)
        default:
            // A body part being refused, or what the codec never produces here.
            break
        }
    }

    /// The caller asked for the connection to end with this answer (`CodecGuard` adds
    /// `Connection: close` to an HTTP/1.0 request without keep-alive).
    private static func asksToClose(_ head: HTTPRequest) -> Bool {
        guard let c = head.headerFields[.connection] else { return false }
        return c.utf8.count == 5 ? c.lowercased() == "close" : c.lowercased().contains("close")
    }

    private static func size(_ part: HTTPRequestPart) -> Int {
        if case let .body(b) = part { return b.readableBytes }
        return 256
    }

    private func answer(_ head: HTTPRequest, _ body: ByteBuffer, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        if let immediate = shared.immediate?(head) {
            immediate(body, context.channel.remoteAddress) { head, bytes in
                // Queued even when already on the loop, as below.
                loop.execute {
                    let (front, context) = bound.value
                    front.finish(head, bytes, context: context)
                }
            }
            return
        }
        run(Request(head: head, body: .init(buffer: body)), head, context: context)
    }

    /// Runs `request` through the router on a Task and queues its answer on the loop.
    private func run(_ request: Request, _ head: HTTPRequest, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let executor = self.executor ?? LoopTaskExecutor(loop)
        self.executor = executor
        let ctx = PylonRequestContext(source: .init(channel: context.channel, logger: shared.logger))
        let responder = shared.responder
        let allocator = context.channel.allocator
        let isHead = head.method == .head
        Task(executorPreference: executor) {
            var response: Response
            do {
                response = try await responder.respond(to: request, context: ctx)
            } catch {
                // APIMiddleware turns errors into answers; this is the framework's last resort.
                response = Response(status: .internalServerError)
            }
            if response.body.contentLength == nil && !isHead {
                await Self.stream(response, bound, loop)
                return
            }
            let collected = CollectedBody(allocator.buffer(capacity: response.body.contentLength ?? 0))
            let failed: Bool
            do {
                try await response.body.write(BodyCollector(into: collected))
                failed = false
            } catch {
                failed = true
            }
            let head = response.head
            let bytes = collected.buffer
            // Queued even when already on the loop: writing inside the handler's job measured
            // slower (get-by-id 18k vs 28k/s) than leaving it to the loop's next task run.
            loop.execute {
                let (front, context) = bound.value
                if failed {
                    // The body failed half-way: the answer cannot be completed honestly.
                    context.close(promise: nil)
                } else {
                    front.finish(head, bytes, context: context)
                }
            }
        }
    }

    /// Writes an answer of unknown length (an event stream) as it comes: the head at once
    /// (NIO's encoder frames the body as chunked), then each chunk once the previous one
    /// was written. A failed write (the client left) ends the body's writer with an error;
    /// a body that fails half-way closes the connection.
    private static func stream(_ response: Response, _ bound: NIOLoopBound<(HTTPFront, ChannelHandlerContext)>, _ loop: any EventLoop) async {
        let head = response.head
        let started = loop.submit {
            let (front, context) = bound.value
            return front.startStream(head, context: context)
        }
        guard (try? await started.get()) == true else { return }
        do {
            try await response.body.write(StreamWriter(bound: bound, loop: loop))
        } catch {
            loop.execute { bound.value.1.close(promise: nil) }
        }
    }

    private func startStream(_ head: HTTPResponse, context: ChannelHandlerContext) -> Bool {
        guard context.channel.isActive else { return false }
        context.writeAndFlush(wrapOutboundOut(.head(framed(head))), promise: nil)
        return true
    }

    func writeChunk(_ chunk: ByteBuffer, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        guard context.channel.isActive else { return context.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        let write = context.writeAndFlush(wrapOutboundOut(.body(chunk)))
        trackStreamWrite(write, context: context)
        return write
    }

    func endStream(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        answered(context)
    }

    /// A stream's `head` with Date and Server (no Content-Length: its length is not known),
    /// and `Connection: close` when the connection ends with it.
    private func framed(_ head: HTTPResponse) -> HTTPResponse {
        var head = head
        head.headerFields[.date] = HTTPDate.now()
        head.headerFields[.server] = shared.serverName
        if closeAfter || quiescing { head.headerFields[.connection] = "close" }
        return head
    }

    /// Writes a whole answer, then goes on with what arrived meanwhile.
    private func finish(_ head: HTTPResponse, _ body: ByteBuffer, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        write(head, body, context)
        answered(context)
    }

    /// A whole answer goes out as one buffer (`encode`) from the connection's first handler,
    /// past NIO's response encoder and the conversion to its types, which for these short
    /// answers cost about as much as the rest of the front; `CodecGuard` does its bookkeeping
    /// as for an answer that went through it. Streams go through the codec (`startStream`).
    private func write(_ head: HTTPResponse, _ body: ByteBuffer, _ context: ChannelHandlerContext) {
        let sync = context.pipeline.syncOperations
        if wire == nil { wire = try? sync.context(handlerType: ConnectionGuard.self) }
        if codec == nil { codec = try? sync.handler(type: CodecGuard.self) }
        guard let wire, let codec else {
            // Every listener's pipeline has both (`HTTPListener`).
            context.close(promise: nil)
            return
        }
        let bytes = Self.encode(head, body, server: shared.serverName, close: closeAfter || quiescing, context.channel.allocator)
        wire.writeAndFlush(NIOAny(IOData.byteBuffer(bytes)), promise: nil)
        codec.answeredPastCodec()
    }

    /// The connection's first handler (`ConnectionGuard`), where whole answers are written,
    /// and its `CodecGuard`; found on the first answer.
    private var wire: ChannelHandlerContext?
    private var codec: CodecGuard?

    func handlerRemoved(context: ChannelHandlerContext) {
        wire = nil
        codec = nil
        streamWrites.timer?.cancel()
        streamWrites.timer = nil
    }

    /// Status line, header fields and body in one buffer, with Date, Server and
    /// Content-Length written here (any the handler set are dropped, except a HEAD answer's
    /// Content-Length: its body is empty) and `Connection: close` when `close`. No body (and
    /// no Content-Length) for 1xx, 204 and 304, as HTTP/1.1 requires.
    static func encode(_ head: HTTPResponse, _ body: ByteBuffer, server: String, close: Bool, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        let code = head.status.code
        let bodiless = code < 200 || code == 204 || code == 304
        var length = bodiless ? nil : String(body.readableBytes)
        // The head is gathered in a local array and copied into the buffer once: each of the
        // ~50 pieces written to a ByteBuffer paid a runtime exclusivity check on its storage
        // (about 4% of the host's instructions per function call).
        var text: [UInt8] = []
        text.reserveCapacity(224 + head.headerFields.count * 48)
        put("HTTP/1.1 ", &text)
        put(String(code), &text)
        text.append(UInt8(ascii: " "))
        // A status made from a bare code (`Status(code:)`) has no phrase: NIO's table has it.
        put(head.status.reasonPhrase.isEmpty ? HTTPResponseStatus(statusCode: code).reasonPhrase : head.status.reasonPhrase, &text)
        put("\r\n", &text)
        for field in head.headerFields {
            // Only a name as long as one written here can be one: most fields skip the
            // four comparisons.
            if Self.maybeWrittenHere(field.name) {
                switch field.name {
                case .date, .server: continue
                case .contentLength:
                    if length != nil && body.readableBytes == 0 { length = field.value }
                    continue
                case .connection where close: continue
                default: break
                }
            }
            put(field.name.rawName, &text)
            put(": ", &text)
            put(field.value, &text)
            put("\r\n", &text)
        }
        put("Date: ", &text)
        put(HTTPDate.now(), &text)
        put("\r\nServer: ", &text)
        put(server, &text)
        if let length {
            put("\r\nContent-Length: ", &text)
            put(length, &text)
        }
        if close { put("\r\nConnection: close", &text) }
        put("\r\n\r\n", &text)
        var out = allocator.buffer(capacity: text.count + (bodiless ? 0 : body.readableBytes))
        out.writeBytes(text)
        if !bodiless { out.writeImmutableBuffer(body) }
        return out
    }

    /// Whether `name` is as long as `date`, `server`, `connection` or `content-length`.
    private static func maybeWrittenHere(_ name: HTTPField.Name) -> Bool {
        switch name.canonicalName.utf8.count {
        case 4, 6, 10, 14: return true
        default: return false
        }
    }

    /// Appends `s`'s UTF-8 as one copy (the generic append of a `UTF8View` walked it),
    /// reading it in place (`withUTF8` on a `var` copy retained and released it each time).
    @inline(__always)
    private static func put(_ s: String, _ text: inout [UInt8]) {
        if s.utf8.withContiguousStorageIfAvailable({ text.append(contentsOf: $0) }) == nil {
            text.append(contentsOf: s.utf8)
        }
    }

    /// A request refused before its handler (its body is over the limit): the fault's answer
    /// at once, then the rest of the body goes by unread and the connection closes at its end
    /// (closing earlier could reset the connection before a client still sending has read
    /// the answer; the body timeout bounds the wait).
    private func refuse(_ fault: HTTPFault, _ context: ChannelHandlerContext) {
        state = .refusing
        closeAfter = true
        let (head, body) = fault.answer(context.channel.allocator)
        write(head, body, context)
    }

    /// The answer has left: close if asked to, else take the next queued request. A streamed
    /// body still arriving is not read any more: it goes by unread and the connection closes
    /// at its end, as for a refused body.
    private func answered(_ context: ChannelHandlerContext) {
        switch state {
        case let .streaming(body):
            body.source.finish(HTTPFront.answeredEarly)
            fallthrough
        case .skipping:
            state = .refusing
            closeAfter = true
            resumeReading(context)
            return
        default: break
        }
        state = .idle
        if closeAfter || (quiescing && queued.isEmpty) {
            queued.removeAll()
            context.close(promise: nil)
            return
        }
        while let part = queued.popFirst() {
            queuedBytes -= Self.size(part)
            dispatch(part, context: context)
            if case .answering = state { return }
        }
        queuedBytes = 0
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if case .idle = state, queued.isEmpty { context.close(promise: nil) }
    }

    // MARK: Outbound

    /// While a request is being answered the socket stays readable (taking it off the
    /// selector and back costs two `epoll_ctl`s per request); reads stop only once
    /// `maxQueuedBytes` of pipelined requests wait.
    func read(context: ChannelHandlerContext) {
        if case .answering = state, queuedBytes >= Self.maxQueuedBytes {
            readHeld = true
            return
        }
        if case let .streaming(body) = state, body.paused {
            readHeld = true
            return
        }
        context.read()
    }

    // MARK: Streamed bodies

    /// Starts the handler of a streamed body at once; its parts follow through `StreamedBody`.
    private func startStreaming(_ head: HTTPRequest, limit: Int, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let delegate = StreamedBody.Delegate(front: NIOLoopBound((self, context), eventLoop: loop), loop: loop)
        let made = NIOThrowingAsyncSequenceProducer.makeSequence(
            elementType: ByteBuffer.self, backPressureStrategy: StreamedBody.Backpressure(lowWatermark: 2, highWatermark: 8),
            finishOnDeinit: false, delegate: delegate)
        state = .streaming(StreamedBody(source: made.source, limit: limit))
        run(Request(head: head, body: .init(asyncSequence: made.sequence)), head, context: context)
    }

    /// A part of a streamed body (or of one being skipped).
    private func streamedPart(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (part, state) {
        case let (.body(chunk), .streaming(body)):
            body.received += chunk.readableBytes
            if body.received > body.limit {
                body.source.finish(HTTPFault.bodyTooLarge(limit: body.limit).error)
                state = .skipping
                closeAfter = true
                return
            }
            if case .stopProducing = body.source.yield(chunk) { body.paused = true }
        case let (.end, .streaming(body)):
            body.source.finish()
            state = .answering
        case (.end, .skipping):
            state = .answering
        default:
            // Skipped body parts; a head cannot come before the body's end.
            break
        }
    }

    /// The handler wants more of a streamed body (or stopped reading it).
    fileprivate func bodyDemand(stopped: Bool, context: ChannelHandlerContext) {
        guard case let .streaming(body) = state else { return }
        if stopped {
            state = .skipping
            closeAfter = true
        } else {
            body.paused = false
        }
        resumeReading(context)
    }

    private func resumeReading(_ context: ChannelHandlerContext) {
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// The client left while its body was still coming: the handler's read fails.
    func channelInactive(context: ChannelHandlerContext) {
        if case let .streaming(body) = state {
            body.source.finish(HTTPFront.clientLeft)
            state = .skipping
        }
        context.fireChannelInactive()
    }

    static let clientLeft = HostError(status: 400, code: "BODY_INCOMPLETE", message: "the connection closed before the request body ended")
    static let answeredEarly = HostError(status: 400, code: "BODY_INCOMPLETE", message: "the request was answered before its body ended")

    /// Pipelined bytes (roughly: bodies, and 256 per head) buffered while answering before
    /// reads are held back.
    static let maxQueuedBytes = 64 * 1024
}

/// A request body its handler reads as it arrives: the producer's source the front feeds,
/// and how much came. Threads: used on the connection's event loop only (its delegate hops
/// there).
final class StreamedBody: @unchecked Sendable {
    typealias Backpressure = NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark
    typealias Source = NIOThrowingAsyncSequenceProducer<ByteBuffer, any Error, Backpressure, Delegate>.Source

    let source: Source
    let limit: Int
    var received = 0
    /// The handler has enough chunks waiting: reads stop until it asks for more.
    var paused = false

    init(source: Source, limit: Int) {
        self.source = source
        self.limit = limit
    }

    /// Hears the handler's demand (from any thread) and passes it to the front on its loop.
    struct Delegate: NIOAsyncSequenceProducerDelegate {
        let front: NIOLoopBound<(HTTPFront, ChannelHandlerContext)>
        let loop: any EventLoop

        func produceMore() {
            let front = front
            loop.execute { front.value.0.bodyDemand(stopped: false, context: front.value.1) }
        }

        func didTerminate() {
            let front = front
            loop.execute { front.value.0.bodyDemand(stopped: true, context: front.value.1) }
        }
    }
}
