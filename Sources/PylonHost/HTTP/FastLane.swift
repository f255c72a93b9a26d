import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes

/// Serves short request/response exchanges (CRUD, queries, function calls) straight from
/// the connection's channel pipeline, through the same router, middleware and handlers as
/// every other request — only without Hummingbird's per-connection async machinery (the
/// async inbound stream and outbound writer a request otherwise crosses twice), which on
/// this host cost about as much CPU as the work of an insert itself.
///
/// It sits in each HTTP/1 connection's pipeline after the HTTP codec
/// (`additionalChannelHandlers`). A request qualifies when the whole body is announced by
/// Content-Length and small, the path is one of `routes` and the answer cannot be a
/// stream (no SSE, no upgrade). Everything else — and every request that arrives while a
/// forwarded one is still being answered — goes on to Hummingbird unchanged, so answers
/// always leave in request order. While a fast-lane request is being handled, later
/// pipelined requests wait in `queued` and reads are held back (backpressure).
///
/// The requests that dominate a busy app — `POST /api/fn/NAME`, `GET /api/entities/E/ID`
/// and `POST /api/entities/E` by a caller known at once — skip the Task as well (`Shared.immediate`,
/// HTTP/ImmediateRoutes.swift): their handlers finish by callback, with the middleware's
/// semantics from `APIMiddleware.handleNow`.
///
/// Threads: every method runs on the channel's event loop. The handler's Task prefers that
/// loop too (`LoopTaskExecutor`): it starts there, every continuation resumed from another
/// thread (a store thread, a plugin's thread) comes back there, and the answer is queued on
/// the same thread — one loop thread per request instead of whichever loop the global
/// executor picks at each step (each pick of another loop was a cross-thread wake-up).
final class FastLane: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection's lane shares.
    struct Shared: Sendable {
        let responder: RouterResponder<PylonRequestContext>
        let logger: Logger
        let serverName: String
        /// Bodies above this go to Hummingbird, which streams them.
        let maxBody: Int
        /// Gets `http_fast_lane_requests_total` when a connection ends.
        let metrics: Metrics
        /// Whether each API-port connection also gets a `RawFront` (PYLON_HTTP_RAW_FRONT,
        /// default on; see `HTTPListener`).
        var rawFront = true
        /// The router's middleware, for requests that skip the router (`direct`).
        var middleware: APIMiddleware<PylonRequestContext>?
        /// The handler of a request the router would send to one fixed route, found
        /// without the router's trie (`RouteContext.directRoute`): it still runs inside
        /// `middleware`, exactly as the router would run it. Nil: the router decides.
        var direct: (@Sendable (HTTPRequest) -> DirectHandler?)?
        /// The handler of a request that can be answered without a Task at all
        /// (`RouteContext.immediateRoute`, which wraps it in `APIMiddleware.handleNow`); nil:
        /// `direct` or the router, on a Task.
        var immediate: (@Sendable (HTTPRequest) -> ImmediateHandler?)?
    }

    typealias DirectHandler = @Sendable (Request, PylonRequestContext) async throws -> Response
    /// Gets the request's whole body and the connection's remote address, and calls its reply
    /// exactly once, from any thread, with the answer's head and body.
    typealias ImmediateHandler = @Sendable (ByteBuffer, SocketAddress?, @escaping @Sendable (HTTPResponse, ByteBuffer) -> Void) -> Void

    /// Path prefixes served here: routes whose answer is one finite body.
    static let routes = ["/api/entities/", "/api/fn/", "/api/query", "/api/lookup/", "/api/batch", "/api/transact",
                         "/api/sync/pull", "/api/sync/push", "/api/search/", "/api/aggregate/", "/api/link", "/api/unlink",
                         "/health"]

    private enum State {
        case idle
        /// A forwarded request's parts are passing through.
        case forwarding
        case collecting(HTTPRequest, ByteBuffer)
        /// The handler runs; inbound parts wait in `queued`.
        case answering
    }

    private let shared: Shared
    private var state = State.idle
    /// Forwarded requests whose answer has not fully left yet.
    private var forwardedOpen = 0
    private var queued: [HTTPRequestPart] = []
    private var readHeld = false
    /// Set when a part was handed on to Hummingbird (see `finish`).
    private var handedOn = false
    /// Requests answered here on this connection (counted into the metrics at its end).
    private var served: Int64 = 0

    /// Created on the first request (the channel's loop is known then).
    private var executor: LoopTaskExecutor?

    init(_ shared: Shared) { self.shared = shared }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .answering = state {
            queued.append(part)
            return
        }
        handle(part, context: context)
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (part, state) {
        case let (.head(head), .idle):
            if forwardedOpen == 0, let size = qualifies(head) {
                state = .collecting(head, context.channel.allocator.buffer(capacity: size))
            } else {
                forwardedOpen += 1
                state = .forwarding
                pass(part, context)
            }
        case (.body(var chunk), .collecting(let head, var body)):
            state = .answering  // no copy of `body` stays in `state` while appending
            body.writeBuffer(&chunk)
            state = .collecting(head, body)
        case let (.end, .collecting(head, body)):
            state = .answering
            served += 1
            answer(head, body, context: context)
        case (.end, .forwarding):
            state = .idle
            pass(part, context)
        default:
            // .body while forwarding, or anything the decoder should never produce here:
            // Hummingbird's side reports it.
            pass(part, context)
        }
    }

    private func pass(_ part: HTTPRequestPart, _ context: ChannelHandlerContext) {
        handedOn = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// The body capacity to reserve when `head` may be answered here; nil when it goes on.
    private func qualifies(_ head: HTTPRequest) -> Int? {
        switch head.method {
        case .get, .post, .patch, .put, .delete: break
        default: return nil
        }
        guard let path = head.path, Self.routes.contains(where: { path.hasPrefix($0) }) else { return nil }
        let h = head.headerFields
        if h[.upgrade] != nil || h[.expect] != nil || h[.transferEncoding] != nil { return nil }
        if let c = h[.connection], c.lowercased() != "keep-alive" { return nil }
        if let accept = h[.accept], accept.contains("text/event-stream") { return nil }
        guard let length = h[.contentLength].map({ Int($0) }) ?? 0, length >= 0, length <= shared.maxBody else { return nil }
        return length
    }

    private func answer(_ head: HTTPRequest, _ body: ByteBuffer, context: ChannelHandlerContext) {
        let executor = self.executor ?? LoopTaskExecutor(context.eventLoop)
        self.executor = executor
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let server = shared.serverName
        Self.respond(head, body, channel: context.channel, shared: shared, executor: executor) { head, bytes, failed in
            let (lane, context) = bound.value
            lane.finish(Self.framed(head, bodyLength: bytes.readableBytes, server: server), bytes, abort: failed, context: context)
        }
    }

    /// `head` with the fields every answer carries: Date, Server, Content-Length.
    static func framed(_ head: HTTPResponse, bodyLength: Int, server: String) -> HTTPResponse {
        var head = head
        head.headerFields[.date] = HTTPDate.now()
        head.headerFields[.server] = server
        head.headerFields[.contentLength] = String(bodyLength)
        return head
    }

    /// Runs one request through the router and middleware on a Task preferring `executor`
    /// (the channel's loop) and collects the answer's body — or, for an `immediate` route,
    /// without a Task. `then` runs on the channel's loop with the answer's head, its body,
    /// and whether the body failed half-way. The head has no Date, Server or Content-Length
    /// yet: `FastLane` sets them on it (`framed`), `RawFront` writes them straight into the
    /// bytes it sends. Shared by both.
    static func respond(_ head: HTTPRequest, _ body: ByteBuffer, channel: any Channel, shared: Shared, executor: LoopTaskExecutor,
                        then: @escaping (HTTPResponse, ByteBuffer, Bool) -> Void) {
        let loop = channel.eventLoop
        if let immediate = shared.immediate?(head) {
            let then = NIOLoopBound(then, eventLoop: loop)
            immediate(body, channel.remoteAddress) { head, bytes in
                // Queued even when already on the loop, as below.
                loop.execute { then.value(head, bytes, false) }
            }
            return
        }
        let request = Request(head: head, body: .init(buffer: body))
        let ctx = PylonRequestContext(source: .init(channel: channel, logger: shared.logger))
        let then = NIOLoopBound(then, eventLoop: loop)
        Task(executorPreference: executor) {
            var response: Response
            do {
                if let middleware = shared.middleware, let handler = shared.direct?(head) {
                    response = try await middleware.handle(request, context: ctx, next: handler)
                } else {
                    response = try await shared.responder.respond(to: request, context: ctx)
                }
            } catch {
                // APIMiddleware turns errors into answers; this is the framework's last resort.
                response = Response(status: .internalServerError)
            }
            let collected = CollectedBody(channel.allocator.buffer(capacity: response.body.contentLength ?? 256))
            var failed = false
            do {
                let body = response.body
                try await body.write(BodyCollector(into: collected))
            } catch {
                failed = true
            }
            let head = response.head
            let bytes = collected.buffer
            // Queued even when already on the loop: writing inside the handler's job measured
            // slower (get-by-id 18k vs 28k/s) than leaving it to the loop's next task run.
            loop.execute { then.value(head, bytes, failed) }
        }
    }

    /// Writes the answer, then resumes with what arrived meanwhile.
    private func finish(_ head: HTTPResponse, _ body: ByteBuffer, abort: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if abort {
            // The body failed half-way: the answer cannot be completed honestly.
            context.close(promise: nil)
            return
        }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        state = .idle
        // Queued parts handed on to Hummingbird need a read-complete after them: its async
        // channel delivers what it buffered only then.
        handedOn = false
        while !queued.isEmpty {
            if case .answering = state { break }
            handle(queued.removeFirst(), context: context)
        }
        if handedOn { context.fireChannelReadComplete() }
        if case .answering = state { return }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if served > 0 { shared.metrics.add("http_fast_lane_requests_total", served) }
        served = 0
        context.fireChannelInactive()
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if case .answering = state {
            readHeld = true
            return
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { forwardedOpen = max(0, forwardedOpen - 1) }
        context.write(data, promise: promise)
    }
}

/// Runs jobs on one event loop: the preferred executor of a fast-lane request's Task, so
/// its steps stay on its connection's loop thread. A job enqueued from that thread runs
/// after the current one (no wake-up); from another thread, it wakes the loop.
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A response body gathered into one buffer (owned by the answering Task).
private final class CollectedBody: @unchecked Sendable {
    var buffer: ByteBuffer
    init(_ buffer: ByteBuffer) { self.buffer = buffer }
}

/// Writes a response body into a `CollectedBody`.
private struct BodyCollector: ResponseBodyWriter {
    let into: CollectedBody

    mutating func write(_ chunk: ByteBuffer) async throws {
        var c = chunk
        into.buffer.writeBuffer(&c)
    }

    mutating func write(contentsOf chunks: some Sequence<ByteBuffer>) async throws {
        for c in chunks { try await write(c) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// The IMF-fixdate of the current second ("Mon, 23 Nov 2026 18:30:00 GMT"), formatted
/// once per second.
enum HTTPDate {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var second: time_t = 0
    nonisolated(unsafe) private static var text = ""

    static func now() -> String {
        let t = time(nil)
        lock.lock()
        defer { lock.unlock() }
        if t != second {
            var tm = tm()
            var copy = t
            gmtime_r(&copy, &tm)
            var buf = [CChar](repeating: 0, count: 40)
            let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tm)
            text = String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            second = t
        }
        return text
    }
}
