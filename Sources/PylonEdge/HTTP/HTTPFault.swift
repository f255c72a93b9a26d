import HTTPTypes
import NIOCore
import NIOHTTP1
import PylonCore
import PylonJSON

/// A request the host cannot serve at the HTTP layer, before any route sees it, and its
/// RFC 9110/9112 answer. Everything that judges a request at the HTTP layer maps its
/// failures here (NIO's decoder and the head limits through `CodecGuard`, the body limit in
/// `HTTPFront`, the timeouts of `ConnectionGuard`), so the same fault gets the same status,
/// code and body on every port. Each answer closes the
/// connection: after any of these the framing of what follows is in doubt.
enum HTTPFault: Error, Equatable, Sendable {
    /// Not HTTP/1.1 as RFC 9112 writes it (the reason says what).
    case malformed(String)
    /// A method token the host does not know (`FOO`, lowercase `get`): 501.
    case methodNotImplemented
    /// A request line with an HTTP version other than 1.x: 505.
    case versionNotSupported
    /// The request line alone is over the head limit: 414.
    case targetTooLong
    /// The head (fields, count or size) is over the limits: 431.
    case headTooLarge
    /// A body announced larger than the host takes (`Expect: 100-continue` refused): 413.
    case bodyTooLarge(limit: Int)
    /// An `Expect` other than `100-continue`: 417.
    case expectationFailed
    /// The head did not complete within the header timeout: 408.
    case headTimeout
    /// The body did not complete within the body timeout: 408.
    case bodyTimeout

    /// NIO's decoder errors (`HTTPParserError`) as faults.
    init(_ error: HTTPParserError) {
        switch error {
        case .invalidMethod: self = .methodNotImplemented
        // NIO reports an HTTP/2.0 request line and a garbled version (a bare LF right after
        // it) alike; 505 fits the first, which is what clients actually send.
        case .invalidVersion: self = .versionNotSupported
        case .headerOverflow: self = .headTooLarge
        case .lfExpected: self = .malformed("a line does not end with CRLF")
        case .unexpectedContentLength: self = .malformed("Content-Length comes with Transfer-Encoding, or more than once")
        case .invalidContentLength: self = .malformed("Content-Length is not a number")
        case .invalidChunkSize: self = .malformed("a chunk size is not a hexadecimal number")
        case .invalidHeaderToken: self = .malformed("a header line is not \"name: value\" with a token name")
        case .invalidURL: self = .malformed("the request target is not valid")
        case .invalidCharactersUsed: self = .malformed("the head has characters HTTP does not allow")
        case .invalidEOFState: self = .malformed("the connection ended inside a request")
        default: self = .malformed("it is not valid HTTP/1.1 framing (a bare LF, Content-Length with Transfer-Encoding, or another error in the head)")
        }
    }

    /// The wire error: status, stable code and a message that says what to change.
    var error: HostError {
        switch self {
        case let .malformed(why):
            return HostError(status: 400, code: "MALFORMED_HTTP", message: "malformed HTTP/1.1 request: \(why); the connection is closed")
        case .methodNotImplemented:
            return HostError(status: 501, code: "METHOD_NOT_IMPLEMENTED",
                             message: "the request method is not one this host implements; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (methods are case-sensitive)")
        case .versionNotSupported:
            return HostError(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED", message: "this host speaks HTTP/1.1 (and 1.0); send the request as HTTP/1.1")
        case .targetTooLong:
            return HostError(status: 414, code: "URI_TOO_LONG", message: "the request target is longer than \(HTTPLimits.maxRequestLine) bytes; send long input in a POST body")
        case .headTooLarge:
            return HostError(status: 431, code: "HEADERS_TOO_LARGE",
                             message: "the request head is over the limits (\(HTTPLimits.maxHeaderFields) fields, \(HTTPLimits.maxHeaderFieldBytes) bytes per field, \(HTTPLimits.maxHeadBytes) bytes in all); send fewer or shorter header fields")
        case let .bodyTooLarge(limit):
            return HostError(status: 413, code: "PAYLOAD_TOO_LARGE", message: "the request body is larger than \(limit) bytes; send less data per request (PYLON_MAX_BODY_BYTES raises the limit; PYLON_FILES_MAX_BYTES for file uploads)")
        case .expectationFailed:
            return HostError(status: 417, code: "EXPECTATION_FAILED", message: "the only expectation this host meets is \"Expect: 100-continue\"")
        case .headTimeout:
            return HostError(status: 408, code: "REQUEST_TIMEOUT", message: "the request head did not arrive in time (PYLON_HTTP_HEADER_TIMEOUT); send the whole head at once")
        case .bodyTimeout:
            return HostError(status: 408, code: "REQUEST_TIMEOUT", message: "the request body did not arrive in time (PYLON_HTTP_BODY_TIMEOUT); send it right after the head")
        }
    }

    /// The answer: head (JSON, `Connection: close`; no Date, Server or Content-Length, which
    /// each front's encoder adds) and body.
    func answer(_ allocator: ByteBufferAllocator) -> (HTTPResponse, ByteBuffer) {
        Self.answer(error, allocator)
    }

    /// The same for any error refused at the HTTP layer (`CodecGuard`'s 429 for a WebSocket
    /// upgrade over the request limit), with the fields it carries (`Retry-After`).
    static func answer(_ e: HostError, _ allocator: ByteBufferAllocator) -> (HTTPResponse, ByteBuffer) {
        let bytes = JSONWriter.encode(e.body)
        var body = allocator.buffer(capacity: bytes.count)
        body.writeBytes(bytes)
        var head = HTTPResponse(status: HTTPResponse.Status(code: e.status))
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.connection] = "close"
        HTTPSupport.addFields(of: e, to: &head.headerFields)
        return (head, body)
    }

    /// The whole answer as bytes (`HTTPFront.encode`), for what writes straight to the socket
    /// (`ConnectionGuard`'s 408).
    func encoded(server: String, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        let (head, body) = answer(allocator)
        return HTTPFront.encode(head, body, server: server, close: false, allocator)
    }
}

/// The limits on a request head, on every listener. Over them: 431 (414 for the request
/// target alone). `CodecGuard` checks them on each parsed head. NIO's decoder, which cannot
/// tell a long target from long fields (it reports one "header overflow" for both), gets
/// the looser `decoderBytes` (`HTTPListener`), so a head within it reaches `CodecGuard` and
/// gets the status that fits; only a head over it is refused by the decoder (431).
enum HTTPLimits {
    /// The request target (`CodecGuard` checks the target, which is the request line
    /// without the method and version).
    static let maxRequestLine = 8192
    static let maxHeaderFields = 100
    static let maxHeaderFieldBytes = 16 * 1024
    static let maxHeadBytes = 32 * 1024
    /// NIO's decoder's limit per field (the target counts as one) and for the whole head.
    static let decoderBytes = 64 * 1024

    /// The fault of a parsed head over the limits; nil when within them.
    static func fault(target: Int, fields: some Sequence<(name: Int, value: Int)>) -> HTTPFault? {
        if target > maxRequestLine { return .targetTooLong }
        var total = target, count = 0
        for f in fields {
            if f.name + f.value > maxHeaderFieldBytes { return .headTooLarge }
            total += f.name + f.value + 4
            count += 1
        }
        return total > maxHeadBytes || count > maxHeaderFields ? .headTooLarge : nil
    }
}
