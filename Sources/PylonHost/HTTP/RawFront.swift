import Foundation
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// The fast lane's front half: parses HTTP/1.1 requests straight from the socket's bytes and
/// writes each answer as one buffer, ahead of NIO's HTTP codec. For the short requests that
/// dominate a realtime backend's load (CRUD, queries, function calls) NIO's decoder, the
/// HTTP/1 ⇄ HTTPTypes conversions and the response encoder cost about as much host CPU as
/// the request's own work; here they are a few scans of the bytes.
///
/// It takes only a strict, simple subset (`RawRequest.parse`): `GET POST PATCH PUT DELETE`,
/// an origin-form target under one of `FastLane.routes`, `HTTP/1.1`, header lines within
/// 8 KiB, a body announced by one Content-Length no larger than the lane's limit, and no
/// Upgrade, Expect, Transfer-Encoding, SSE Accept or Connection other than keep-alive. The
/// first well-formed request outside that subset (a WebSocket upgrade, a chunked body, a
/// route the lane does not serve, HTTP/1.0) switches the connection to pass-through for
/// good: the bytes not yet consumed, and all later ones, go on unchanged to Hummingbird's
/// upgrade handler and codec, which see them as a fresh connection (and `FastLane` still
/// takes its share behind them). Nothing is lost or reordered: the switch happens only
/// between requests, when no answer from here is outstanding. A head that is not HTTP/1.x
/// as RFC 9112 writes it (a bad request line, a header line without a token name, a bare
/// LF, two Content-Lengths) gets its `HTTPFault` answer (400 MALFORMED_HTTP with the
/// reason; 505 for another HTTP version, 414 for a request line over
/// `HTTPLimits.maxRequestLine`, 431 for too many fields), and the connection is closed.
/// Each request's boundaries go to the connection's `ConnectionGuard` (its deadlines).
///
/// Requests go through the same router, middleware and handlers as every other request
/// (`FastLane.respond`). While one is being answered, later pipelined bytes wait in `pending`
/// (reads are held back once 64 KiB wait). A server shutdown (`ChannelShouldQuiesceEvent`) closes the
/// connection once the answer in progress has left; the codec's handlers, which never saw
/// these requests, do not get the event.
///
/// It follows the `ConnectionGuard` on every connection of the API port (`HTTPListener`),
/// ahead of Hummingbird's WebSocket upgrade handler and HTTP codec, so it sees a connection's
/// bytes from the first; what it passes on reaches them as if straight from the socket.
///
/// Threads: every method runs on the channel's event loop.
final class RawFront: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Mode { case parsing, answering, passThrough }

    private let shared: FastLane.Shared
    private let connection: ConnectionGuard
    private var mode = Mode.parsing
    /// The head of the request whose body is still arriving was reported to `connection`.
    private var headReported = false
    /// Received bytes not yet consumed by a request.
    private var pending: ByteBuffer?
    private var readHeld = false
    /// The server is shutting down: close once idle.
    private var quiescing = false
    private var executor: LoopTaskExecutor?
    private var served: Int64 = 0

    init(_ shared: FastLane.Shared, _ connection: ConnectionGuard) {
        self.shared = shared
        self.connection = connection
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .passThrough = mode {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if pending == nil || pending!.readableBytes == 0 {
            pending = bytes
        } else {
            pending!.writeBuffer(&bytes)
        }
        if case .parsing = mode { next(context, inRead: true) }
    }

    /// Only the codec's side needs it, and only once it has bytes (`passThrough` sends its own).
    func channelReadComplete(context: ChannelHandlerContext) {
        if isPassThrough { context.fireChannelReadComplete() }
    }

    /// Takes the next complete request from `pending`, or switches to pass-through.
    /// `inRead`: called from `channelRead` (the socket's read-complete follows).
    private func next(_ context: ChannelHandlerContext, inRead: Bool) {
        guard case .parsing = mode else { return }
        guard var buffer = pending, buffer.readableBytes > 0 else {
            pending = nil
            if quiescing { context.close(promise: nil) }
            return
        }
        let parsed = buffer.withUnsafeReadableBytes { RawRequest.parse($0, maxBody: shared.maxBody) }
        switch parsed {
        case .needMore:
            return
        case .passThrough:
            passThrough(context, inRead: inRead)
        case let .fault(fault):
            reject(fault, context)
        case let .request(head, headLength, bodyLength):
            if !headReported {
                headReported = true
                connection.headReceived()
            }
            guard buffer.readableBytes >= headLength + bodyLength else { return }
            headReported = false
            connection.requestReceived()
            buffer.moveReaderIndex(forwardBy: headLength)
            let body = buffer.readSlice(length: bodyLength)!
            pending = buffer.readableBytes > 0 ? buffer : nil
            mode = .answering
            served += 1
            let executor = self.executor ?? LoopTaskExecutor(context.eventLoop)
            self.executor = executor
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            FastLane.respond(head, body, channel: context.channel, shared: shared, executor: executor) { head, bytes, failed in
                let (front, context) = bound.value
                front.finish(head, bytes, abort: failed, context: context)
            }
        }
    }

    private func passThrough(_ context: ChannelHandlerContext, inRead: Bool) {
        mode = .passThrough
        if let rest = pending, rest.readableBytes > 0 {
            pending = nil
            context.fireChannelRead(wrapInboundOut(rest))
            if !inRead { context.fireChannelReadComplete() }
        }
        pending = nil
        if quiescing { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Answers the fault and closes: nothing after a malformed head can be framed.
    private func reject(_ fault: HTTPFault, _ context: ChannelHandlerContext) {
        mode = .answering // takes nothing more
        pending = nil
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(fault.encoded(server: shared.serverName, context.channel.allocator)))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// Writes the answer as one buffer, then goes on with what arrived meanwhile.
    private func finish(_ head: HTTPResponse, _ body: ByteBuffer, abort: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if abort {
            // The body failed half-way: the answer cannot be completed honestly.
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(Self.encode(head, body, server: shared.serverName, context.channel.allocator))),
                              promise: nil)
        connection.answered()
        mode = .parsing
        next(context, inRead: false)
        if case .answering = mode { return }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Status line, header lines and body in one buffer, with Date, Server and
    /// Content-Length written here (`head` has none of them, see `FastLane.respond`). No
    /// body (and no Content-Length) for 1xx, 204 and 304, as HTTP/1.1 requires.
    static func encode(_ head: HTTPResponse, _ body: ByteBuffer, server: String, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        let code = head.status.code
        let bodiless = code < 200 || code == 204 || code == 304
        var out = allocator.buffer(capacity: 224 + head.headerFields.count * 32 + (bodiless ? 0 : body.readableBytes))
        out.writeStaticString("HTTP/1.1 ")
        out.writeString(String(code))
        out.writeStaticString(" ")
        // A status made from a bare code (`Status(code:)`) has no phrase: NIO's table has it.
        out.writeString(head.status.reasonPhrase.isEmpty ? HTTPResponseStatus(statusCode: code).reasonPhrase : head.status.reasonPhrase)
        out.writeStaticString("\r\n")
        for field in head.headerFields {
            // Hummingbird's Response may carry its own Content-Length; these three are ours.
            switch field.name {
            case .contentLength, .date, .server: continue
            default: break
            }
            out.writeString(field.name.rawName)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("Date: ")
        out.writeString(HTTPDate.now())
        out.writeStaticString("\r\nServer: ")
        out.writeString(server)
        if !bodiless {
            out.writeStaticString("\r\nContent-Length: ")
            out.writeString(String(body.readableBytes))
        }
        out.writeStaticString("\r\n\r\n")
        if !bodiless { out.writeImmutableBuffer(body) }
        return out
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, !isPassThrough else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if case .parsing = mode, pending == nil { context.close(promise: nil) }
    }

    private var isPassThrough: Bool { if case .passThrough = mode { return true } else { return false } }

    func channelInactive(context: ChannelHandlerContext) {
        if served > 0 { shared.metrics.add("http_fast_lane_requests_total", served) }
        served = 0
        context.fireChannelInactive()
    }

    // MARK: Outbound

    /// While a request is being answered the socket stays readable (taking it off the
    /// selector and back costs two `epoll_ctl`s per request); reads stop only once
    /// `maxPending` bytes of pipelined requests wait.
    func read(context: ChannelHandlerContext) {
        if case .answering = mode, (pending?.readableBytes ?? 0) >= Self.maxPending {
            readHeld = true
            return
        }
        context.read()
    }

    /// Pipelined bytes buffered while answering before reads are held back.
    static let maxPending = 64 * 1024
}

/// The request subset `RawFront` answers, parsed from raw bytes.
enum RawRequest {
    enum Parsed {
        /// The head is not complete yet.
        case needMore
        /// Well-formed but not for the front: the codec takes it from here.
        case passThrough
        /// Not a request the host can take (not HTTP/1.x as RFC 9112 writes it, or over a
        /// limit): answered here, and the connection closed.
        case fault(HTTPFault)
        case request(HTTPRequest, headLength: Int, bodyLength: Int)
    }

    /// Heads longer than this go to the codec.
    static let maxHead = 8192

    static func parse(_ p: UnsafeRawBufferPointer, maxBody: Int) -> Parsed {
        let limit = min(p.count, maxHead)
        // The head ends at the first empty line.
        // A bare LF anywhere in it is malformed (and would never make the end appear).
        var end = -1
        var i = 0
        while i < limit {
            if p[i] == 0x0A {
                guard i > 0, p[i - 1] == 0x0D else { return .fault(.malformed("a line ends with a bare LF")) }
                if i >= 3 && p[i - 2] == 0x0A && p[i - 3] == 0x0D { end = i - 3; break }
            }
            i += 1
        }
        if end < 0 {
            guard p.count >= maxHead else { return .needMore }
            // A request line that does not end within its limit is a target too long.
            return index(of: 0x0A, p, 0, min(p.count, HTTPLimits.maxRequestLine)) == nil ? .fault(.targetTooLong) : .passThrough
        }
        // Request line: METHOD SP request-target SP HTTP/1.x — ours: a lane method, an
        // origin-form target under a lane route, HTTP/1.1.
        guard let lineEnd = crlf(p, from: 0, to: end + 2) else { return .fault(.malformed("the request line does not end with CRLF")) }
        guard let sp1 = index(of: 0x20, p, 0, lineEnd), let sp2 = index(of: 0x20, p, sp1 + 1, lineEnd), sp1 > 0, sp2 > sp1 + 1
        else { return .fault(.malformed("the request line is not \"METHOD target HTTP/1.1\"")) }
        for k in 0..<sp1 where !isTokenByte(p[k]) { return .fault(.malformed("the method is not a token")) }
        for k in (sp1 + 1)..<sp2 where p[k] <= 0x20 || p[k] == 0x7F { return .fault(.malformed("the request target has a control character or a space")) }
        let v11 = lineEnd - sp2 - 1 == 8 && equals(p, sp2 + 1, "HTTP/1.1")
        guard v11 || (lineEnd - sp2 - 1 == 8 && equals(p, sp2 + 1, "HTTP/1.0")) else {
            // "HTTP/d.d" of another version: well-formed, not supported (as NIO's decoder says).
            let other = lineEnd - sp2 - 1 == 8 && equals(p, sp2 + 1, "HTTP/") && isDigit(p[sp2 + 6]) && p[sp2 + 7] == 0x2E && isDigit(p[sp2 + 8])
            return other ? .fault(.versionNotSupported) : .fault(.malformed("the HTTP version is not HTTP/1.1 or HTTP/1.0"))
        }
        let method = method(p, sp1)
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: p[(sp1 + 1)..<sp2]), as: UTF8.self)
        // Not ours: the headers are still checked, so that what goes on is well-formed.
        var ours = method != nil && v11 && p[sp1 + 1] == 0x2F && FastLane.routes.contains(where: { path.hasPrefix($0) })
        var fields = HTTPFields()
        var authority: String?
        var length: Int?
        var line = lineEnd + 2
        var count = 0
        while line < end + 2 {
            guard let e = crlf(p, from: line, to: end + 2), e > line else { return .fault(.malformed("a header line does not end with CRLF")) }
            count += 1
            if count > HTTPLimits.maxHeaderFields { return .fault(.headTooLarge) }
            guard let colon = index(of: 0x3A, p, line, e), colon > line else { return .fault(.malformed("a header line has no \"name:\"")) }
            for k in line..<colon where !isTokenByte(p[k]) { return .fault(.malformed("a header name is not a token (or the line is folded)")) }
            var vs = colon + 1
            var ve = e
            while vs < ve && (p[vs] == 0x20 || p[vs] == 0x09) { vs += 1 }
            while ve > vs && (p[ve - 1] == 0x20 || p[ve - 1] == 0x09) { ve -= 1 }
            for k in vs..<ve where (p[k] < 0x20 && p[k] != 0x09) || p[k] == 0x7F { return .fault(.malformed("a header value has a control character")) }
            let rawName = String(decoding: UnsafeRawBufferPointer(rebasing: p[line..<colon]), as: UTF8.self)
            let value = String(decoding: UnsafeRawBufferPointer(rebasing: p[vs..<ve]), as: UTF8.self)
            line = e + 2
            guard let name = HTTPField.Name(rawName) else { return .fault(.malformed("a header name is not valid")) }
            if name == .contentLength {
                guard length == nil else { return .fault(.malformed("Content-Length is given more than once")) }
                guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(value)
                else { return .fault(.malformed("Content-Length is not a number")) }
                length = n
                if n > maxBody { ours = false }
            }
            if !ours { continue }
            if authority == nil && name.canonicalName == "host" {
                authority = value
                continue // as NIO's conversion does: the first Host becomes the authority
            }
            switch name {
            case .transferEncoding, .upgrade, .expect:
                ours = false
                continue
            case .connection:
                if value.lowercased() != "keep-alive" { ours = false }
            case .accept:
                if value.contains("text/event-stream") { ours = false }
            case .cookie:
                // One field per cookie, as NIO's conversion does.
                for part in value.split(separator: "; ", omittingEmptySubsequences: false) {
                    fields.append(HTTPField(name: name, value: String(part)))
                }
                continue
            default:
                break
            }
            fields.append(HTTPField(name: name, value: value))
        }
        guard ours, let method else { return .passThrough }
        let head = HTTPRequest(method: method, scheme: "http", authority: authority, path: path, headerFields: fields)
        return .request(head, headLength: end + 4, bodyLength: length ?? 0)
    }

    private static func method(_ p: UnsafeRawBufferPointer, _ n: Int) -> HTTPRequest.Method? {
        switch n {
        case 3 where equals(p, 0, "GET"): .get
        case 3 where equals(p, 0, "PUT"): .put
        case 4 where equals(p, 0, "POST"): .post
        case 5 where equals(p, 0, "PATCH"): .patch
        case 6 where equals(p, 0, "DELETE"): .delete
        default: nil
        }
    }

    private static func equals(_ p: UnsafeRawBufferPointer, _ at: Int, _ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard at + n <= p.count else { return false }
        let b = s.utf8Start
        for k in 0..<n where p[at + k] != b[k] { return false }
        return true
    }

    /// Index of the CR of the first CRLF in [from, to), nil when none (or a bare LF/CR).
    private static func crlf(_ p: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        var k = from
        while k + 1 < to {
            if p[k] == 0x0D { return p[k + 1] == 0x0A ? k : nil }
            if p[k] == 0x0A { return nil }
            k += 1
        }
        return nil
    }

    private static func index(of byte: UInt8, _ p: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Int? {
        var k = from
        while k < to {
            if p[k] == byte { return k }
            k += 1
        }
        return nil
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// RFC 9110 tchar.
    private static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
        default: false
        }
    }
}
