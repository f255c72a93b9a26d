import HTTPTypes
import NIOCore
import NIOHTTP1
import PylonCore

/// Sits right after NIO's HTTP/1 request decoder on every listener (`HTTPListener`):
/// reports request and answer boundaries to the connection's `ConnectionGuard` (deadlines),
/// answers what the decoder rejects and heads over `HTTPLimits`, answers `Expect`, counts a
/// WebSocket upgrade against the per-address request limit (`RequestGuard.limit`; the
/// upgrade never reaches `APIMiddleware`), and marks an HTTP/1.0 request without keep-alive
/// with `Connection: close` (the version is lost in the conversion to `HTTPRequest`, so
/// `HTTPFront` goes by that field).
///
/// Why it exists: with Hummingbird's error handling off (`withErrorHandling: false`, it
/// handles `HTTPParserError` itself once a request reaches `handleHTTP`), a decoder error
/// on a connection that still has the WebSocket upgrade handler in its pipeline — every
/// first request on the API port and on port+1 — passes through that handler, which has
/// no `errorCaught`, to the pipeline's tail, where NIO drops it. The upgrade result never
/// completes, so nothing answers and nothing closes: the connection hangs. An error in a
/// body (a bad chunk size) did reach Hummingbird, but inside the handler's body read,
/// where it became a 500. Here every decoder error becomes its `HTTPFault` answer
/// (400/431/501/505 …), and the connection is closed. NIO's own
/// `HTTPServerProtocolErrorHandler` does the same with a bare 400 and no body, for every
/// fault alike; this one gives the status that fits and the host's JSON error.
///
/// The answer waits for earlier pipelined answers still being written (so answers stay in
/// request order), and a connection whose answer is half written is only closed.
///
/// On a WebSocket upgrade (a 101 leaves) it reports the upgrade and removes itself: NIO
/// takes the HTTP handlers out, and WebSocket frames must not pass a handler typed for
/// HTTP parts. Until it is gone, the bytes that came behind an upgrade request pass through.
///
/// Threads: every method runs on the channel's event loop.
final class CodecGuard: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: ConnectionGuard
    private let maxBody: Int
    private let serverName: String
    /// Counts WebSocket upgrades (nil: not counted, as in the unit tests).
    private let requestGuard: RequestGuard?
    /// A fault was found: nothing more is read.
    private var failed = false
    /// A fault whose answer waits for the earlier answers to finish.
    private var deferred: HostError?
    /// A 101 went by: remove this handler at the next flush.
    private var leaving = false
    /// The request being read asks for a protocol upgrade (it has an `Upgrade` field).
    private var upgradeAsked = false
    /// That request has ended: what arrives from now on is no HTTP part but the bytes the
    /// client sent behind it, which NIO's decoder hands on as they are when the upgrade takes
    /// it out (before the 101 is written). They pass untouched: unwrapping them as HTTP parts
    /// stopped the host. Only a WebSocket upgrade that NIO's upgrader takes keeps its
    /// `Upgrade` (`servedAsPlainHTTP`), and every answer to it ends the HTTP connection (101,
    /// or 400 when refused), so no request is read past this handler after it.
    private var pastUpgradeRequest = false
    /// A request head has gone by on this connection.
    private var seenRequest = false
    /// A request without keep-alive went by: the connection ends with its answer, so what the
    /// client sends after it is not read, and not answered either (RFC 9112 §9.6).
    private var last = false

    init(_ connection: ConnectionGuard, maxBody: Int, serverName: String, requestGuard: RequestGuard? = nil) {
        self.connection = connection
        self.maxBody = maxBody
        self.serverName = serverName
        self.requestGuard = requestGuard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if pastUpgradeRequest {
            context.fireChannelRead(data)
            return
        }
        guard !failed else { return }
        switch unwrapInboundIn(data) {
        case var .head(head):
            if let fault = Self.overLimits(head) ?? expectation(head, context) {
                fail(fault.error, context)
                return
            }
            if let refused = upgradeLimit(head, context) {
                fail(refused, context)
                return
            }
            connection.headReceived()
            // NIO's upgrade handler, where this listener has one, sees the first request only.
            let plain = Self.servedAsPlainHTTP(&head, upgradable: requestGuard != nil && !seenRequest)
            seenRequest = true
            upgradeAsked = head.headers.contains(name: "upgrade")
            last = plain || !head.isKeepAlive
            if plain || !head.isKeepAlive, !head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) {
                head.headers.add(name: "Connection", value: "close")
                context.fireChannelRead(wrapInboundOut(.head(head)))
                return
            }
        case .body:
            break
        case .end:
            connection.requestReceived()
            pastUpgradeRequest = upgradeAsked
        }
        context.fireChannelRead(data)
    }

    /// Takes the upgrade out of a request that asks for one no upgrade here will serve, and
    /// out of CONNECT: an `Upgrade` other than a WebSocket one that NIO's upgrader takes
    /// (`h2c` from `curl --http2`, or `websocket` without a single `Sec-WebSocket-Key` and
    /// version 13), or any upgrade when `upgradable` is false (a listener without WebSocket
    /// upgrades, or not the connection's first request). It is answered as plain HTTP, which
    /// RFC 9110 §7.8 allows, with `Connection: close`. Why: NIO's upgrade handler dropped such
    /// a first request without answering (no upgrader took it, or one failed), so the
    /// connection hung; and NIO's decoder reads nothing after a request that llhttp took for
    /// an upgrade, so the connection must end with the answer. True when it was changed.
    static func servedAsPlainHTTP(_ head: inout HTTPRequestHead, upgradable: Bool) -> Bool {
        let asksUpgrade = head.headers.contains(name: "upgrade")
        guard asksUpgrade || head.method == .CONNECT else { return false }
        if asksUpgrade, upgradable, isWebSocketUpgrade(head) { return false }
        head.headers.remove(name: "upgrade")
        head.headers.remove(name: "connection")
        return true
    }

    /// A request NIO's WebSocket upgrader accepts: `websocket` among the `Upgrade` tokens,
    /// exactly one `Sec-WebSocket-Key` and one `Sec-WebSocket-Version`, which is 13.
    private static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        let tokens = head.headers[canonicalForm: "upgrade"]
        guard tokens.contains(where: { $0.lowercased() == "websocket" }) else { return false }
        // As NIO reads them: comma-separated values count one by one.
        let version = head.headers[canonicalForm: "sec-websocket-version"]
        return head.headers[canonicalForm: "sec-websocket-key"].count == 1 && version.count == 1 && version[0] == "13"
    }

    /// The fault of a head over `HTTPLimits` (NIO's decoder only enforces the looser
    /// `HTTPLimits.decoderBytes`).
    private static func overLimits(_ head: HTTPRequestHead) -> HTTPFault? {
        if let fault = HTTPLimits.fault(target: head.uri.utf8.count, fields: head.headers.lazy.map { (name: $0.name.utf8.count, value: $0.value.utf8.count) }) {
            return fault
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without a Host field, or with more than one, is
        // answered 400.
        if head.version == .http1_1, head.headers["host"].count != 1 {
            return .malformed("an HTTP/1.1 request needs exactly one Host field")
        }
        return nil
    }

    /// A WebSocket upgrade request takes from the per-address request limit as every other
    /// request does (through `APIMiddleware`); over it, it is answered 429 and not upgraded.
    private func upgradeLimit(_ head: HTTPRequestHead, _ context: ChannelHandlerContext) -> HostError? {
        guard let requestGuard, let upgrade = head.headers.first(name: "upgrade"), upgrade.lowercased().contains("websocket") else { return nil }
        var fields = HTTPFields()
        for h in head.headers where h.name.lowercased() == "x-forwarded-for" || h.name.lowercased() == "forwarded" {
            if let name = HTTPField.Name(h.name) { fields.append(HTTPField(name: name, value: h.value)) }
        }
        return requestGuard.limit(path: head.uri, headers: fields, peer: context.channel.remoteAddress)
    }

    /// Answers `Expect: 100-continue` with 100 when the body may come (RFC 9110 §10.1.1);
    /// the fault when it may not (too large, or another expectation). HTTP/1.0 clients'
    /// expectations are ignored, as the RFC requires.
    private func expectation(_ head: HTTPRequestHead, _ context: ChannelHandlerContext) -> HTTPFault? {
        guard head.version == .http1_1, let expect = head.headers.first(name: "expect") else { return nil }
        guard expect.lowercased() == "100-continue" else { return .expectationFailed }
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > maxBody {
            return .bodyTooLarge(limit: maxBody)
        }
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        return nil
    }

    /// Leaves after the 101 is flushed: NIO writes it with `writeAndFlush`, whose flush
    /// would be lost if this context were gone between its write and its flush.
    func flush(context: ChannelHandlerContext) {
        context.flush()
        if leaving {
            leaving = false
            context.pipeline.removeHandler(self, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if last, error is HTTPParserError {
            failed = true
        } else if let e = error as? HTTPParserError {
            // See `ConnectionGuard.bareLFAfterVersion`.
            let fault = e == .invalidVersion && connection.bareLFAfterVersion() ? HTTPFault.malformed("the request line ends with a bare LF") : HTTPFault(e)
            fail(fault.error, context)
        } else if !failed {
            context.fireErrorCaught(error)
        }
        // After a fault the decoder reports every later byte as an error: dropped.
    }

    private func fail(_ fault: HostError, _ context: ChannelHandlerContext) {
        guard !failed else { return }
        failed = true
        if connection.isResponding {
            context.close(promise: nil)
        } else if connection.owesEarlierAnswers {
            deferred = fault
        } else {
            answer(fault, context)
        }
    }

    private func answer(_ fault: HostError, _ context: ChannelHandlerContext) {
        let (head, body) = HTTPFault.answer(fault, context.channel.allocator)
        var headers = HTTPHeaders()
        for field in head.headerFields { headers.add(name: field.name.rawName, value: field.value) }
        headers.add(name: "Date", value: HTTPDate.now())
        headers.add(name: "Server", value: serverName)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        let status = HTTPResponseStatus(statusCode: head.status.code)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// An answer `HTTPFront` wrote as bytes past the codec (`HTTPFront.write`): the same
    /// bookkeeping as for one whose head and end went through `write`.
    func answeredPastCodec() {
        connection.responseStarted()
        connection.answered()
        if let fault = deferred, !connection.owesEarlierAnswers, let context {
            deferred = nil
            answer(fault, context)
        }
    }

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case let .head(head) where head.status == .switchingProtocols:
            connection.upgraded()
            leaving = true
        case let .head(head):
            if head.status.code >= 200 { connection.responseStarted() }
        case .body:
            break
        case .end:
            context.write(data, promise: promise)
            connection.answered()
            if let fault = deferred, !connection.owesEarlierAnswers {
                deferred = nil
                answer(fault, context)
            }
            return
        }
        context.write(data, promise: promise)
    }
}
