import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON responses, error mapping and the headers every response carries.
enum HTTPSupport {
    static let allocator = ByteBufferAllocator()

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        bytes(JSONWriter.encode(value), status: status)
    }

    static func bytes(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        var buf = allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        return Response(status: status, headers: jsonHeaders, body: .init(byteBuffer: buf))
    }

    /// Built once (a field literal validates its name and value each time).
    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    static func error(_ e: HostError) -> Response {
        var r = json(e.body, status: HTTPResponse.Status(code: e.status))
        addFields(of: e, to: &r.headers)
        return r
    }

    /// The header fields an error answer carries beside its body (`Retry-After`).
    static func addFields(of e: HostError, to fields: inout HTTPFields) {
        if let wait = e.retryAfter { fields[.retryAfter] = String(wait) }
    }

    /// Reads and parses a JSON body, enforcing the size limit. Empty body → `empty`.
    static func body(_ request: Request, limit: Int, empty: JSONValue? = nil) async throws -> JSONValue {
        try body(try await rawBody(request, limit: limit), limit: limit, empty: empty)
    }

    /// The same for a body already collected (the routes that finish by callback, HTTP/ImmediateRoutes.swift).
    static func body(_ buffer: ByteBuffer, limit: Int, empty: JSONValue? = nil) throws -> JSONValue {
        if buffer.readableBytes > limit { throw tooLarge(limit) }
        if buffer.readableBytes == 0, let empty { return empty }
        do {
            return try JSONParser.parse(Array(buffer.readableBytesView))
        } catch {
            throw invalidJSON(error)
        }
    }

    /// The body as JSON text, checked but not parsed (for JSON that is only passed on);
    /// `empty` when there is no body.
    static func jsonBytes(_ request: Request, limit: Int, empty: [UInt8]) async throws -> [UInt8] {
        try jsonBytes(try await rawBody(request, limit: limit), limit: limit, empty: empty)
    }

    /// The same for a body already collected (the routes that finish by callback, HTTP/ImmediateRoutes.swift).
    static func jsonBytes(_ buffer: ByteBuffer, limit: Int, empty: [UInt8]) throws -> [UInt8] {
        if buffer.readableBytes > limit { throw tooLarge(limit) }
        if buffer.readableBytes == 0 { return empty }
        let bytes = Array(buffer.readableBytesView)
        do {
            try JSONParser.validate(bytes)
        } catch {
            throw invalidJSON(error)
        }
        return bytes
    }

    private static func invalidJSON(_ error: JSONParseError) -> HostError {
        HostError(status: 400, code: "INVALID_JSON", message: "Invalid request body: \(error)")
    }
}

extension HTTPSupport {
    /// The body as sent, enforcing the size limit (413 PAYLOAD_TOO_LARGE).
    static func rawBody(_ request: Request, limit: Int) async throws -> ByteBuffer {
        var req = request
        do {
            return try await req.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge(limit)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw tooLarge(limit)
        }
    }

    fileprivate static func tooLarge(_ limit: Int) -> HostError {
        HostError(status: 413, code: "PAYLOAD_TOO_LARGE", message: "the request body is larger than \(limit) bytes; send less data per request (PYLON_MAX_BODY_BYTES raises the limit)")
    }
}

/// Turns every error into the wire error body, adds CORS and security headers, answers
/// OPTIONS preflights, counts requests by route template and status class with their
/// duration (`RequestMetrics`), and refuses what `RequestGuard` refuses (rate
/// limit, CSRF) before any handler runs.
struct APIMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    /// Built once: header names are validated on construction, which is not free.
    static var securityHeaders: HTTPFields {
        HeaderCache.security
    }

    let corsOrigin: String
    let metrics: Metrics
    let requestGuard: RequestGuard
    /// The CORS fields for `corsOrigin` plus the security headers, built once: setting
    /// them one by one validated each name and value on every request.
    private let fixedHeaders: HTTPFields
    /// `HTTPSupport.jsonHeaders` + `fixedHeaders`: every `handleNow` answer's fields, shared
    /// (copy-on-write) instead of appended per answer.
    private let jsonAnswerHeaders: HTTPFields

    init(corsOrigin: String, metrics: Metrics, requestGuard: RequestGuard) {
        self.corsOrigin = corsOrigin
        self.metrics = metrics
        self.requestGuard = requestGuard
        var h = HTTPFields()
        h[.accessControlAllowOrigin] = corsOrigin
        h[.accessControlAllowMethods] = "GET, POST, PATCH, DELETE, OPTIONS"
        h[.accessControlAllowHeaders] = "Content-Type, Authorization"
        if corsOrigin != "*" {
            h[.accessControlAllowCredentials] = "true"
            h[.vary] = "Origin"
        }
        h.append(contentsOf: Self.securityHeaders)
        fixedHeaders = h
        var json = HTTPSupport.jsonHeaders
        json.append(contentsOf: h)
        jsonAnswerHeaders = json
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        if request.method == .options {
            response = Response(status: .noContent)
        } else if let refused = requestGuard.check(request.head, peer: context.remoteAddress) {
            response = HTTPSupport.error(refused)
        } else {
            do {
                response = try await next(request, context)
            } catch {
                response = HTTPSupport.error(answer(for: error, method: request.method, path: request.uri.path))
            }
        }
        // No handler sets these fields, so appending equals setting them.
        response.headers.append(contentsOf: fixedHeaders)
        // HEAD routes come from GET (`autoGenerateHeadEndpoints`), which drops the body;
        // an answer from no route (404) or an error still has one, which HEAD must not carry.
        if request.method == .head { response = response.createHeadResponse() }
        // The router set the route's template before this ran; a handler reached past it sets its own.
        metrics.requests.record(route: context.endpointPath, method: request.method, status: response.status.code, since: start)
        return response
    }

    /// `handle` for a handler that answers by callback instead of as an `async` function
    /// (the routes `HTTPFront` runs without a Task, `HTTPFront.Shared.immediate`): the same request
    /// count, `RequestGuard` check, error answers and fixed fields. `run` gets a `finish` that
    /// it (or whatever it starts) calls exactly once, from any thread, with the JSON body of a
    /// `success` (200) answer or the error; a throw from `run` itself is that call. `reply`
    /// then gets the whole answer, on the thread that called `finish`. `peer`: the
    /// connection's remote address; `route`: the template of the route it answers (metrics).
    func handleNow(_ request: HTTPRequest, peer: SocketAddress?, route: String, success: HTTPResponse.Status = .ok,
                   _ run: (@escaping @Sendable (Result<[UInt8], Error>) -> Void) throws -> Void,
                   reply: @escaping @Sendable (HTTPResponse, ByteBuffer) -> Void) {
        let start = DispatchTime.now().uptimeNanoseconds
        let method = request.method, path = request.path ?? ""
        let finish: @Sendable (Result<[UInt8], Error>) -> Void = { [self] result in
            let status: HTTPResponse.Status
            let bytes: [UInt8]
            var fields = jsonAnswerHeaders
            switch result {
            case let .success(b):
                (status, bytes) = (success, b)
            case let .failure(error):
                let e = answer(for: error, method: method, path: path)
                (status, bytes) = (HTTPResponse.Status(code: e.status), JSONWriter.encode(e.body))
                HTTPSupport.addFields(of: e, to: &fields)
            }
            let head = HTTPResponse(status: status, headerFields: fields)
            metrics.requests.record(route: route, method: method, status: status.code, since: start)
            var body = HTTPSupport.allocator.buffer(capacity: bytes.count)
            body.writeBytes(bytes)
            reply(head, body)
        }
        if let refused = requestGuard.check(request, peer: peer) {
            finish(.failure(refused))
            return
        }
        do {
            try run(finish)
        } catch {
            finish(.failure(error))
        }
    }

    /// The wire error for what a handler threw.
    func answer(for error: Error, method: HTTPRequest.Method, path: String) -> HostError {
        switch error {
        case let e as HostError:
            return e
        case let e as StoreError where e.isUniqueViolation:
            // Reaches here when the store reports it at COMMIT (deferred-write stores).
            return HostError.uniqueViolation(nil)
        case let e as StoreError where e.isBadValue:
            return StoreError.badValueAnswer
        case let e as StoreError:
            return HostError(status: e.status == 5 ? 503 : 500, code: "STORE_ERROR", message: e.message)
        case let e as HTTPError:
            let code: String
            switch e.status.code {
            case 404: code = "NOT_FOUND"
            case 405: code = "METHOD_NOT_ALLOWED"
            case 413: code = "PAYLOAD_TOO_LARGE"
            default: code = "HTTP_\(e.status.code)"
            }
            let msg = e.status.code == 404 ? "no route for \(method) \(path)" : (e.body ?? e.status.reasonPhrase)
            var h = HostError(status: e.status.code, code: code, message: msg)
            if e.status.code == 404 {
                h.hint = "data routes live under /api/entities/<Entity>, /api/query/<Entity>, /api/sync/pull and /api/sync/push"
            }
            return h
        default:
            metrics.add("http_errors_total", 1)
            return HostError(status: 500, code: "INTERNAL", message: "internal error: \(error)")
        }
    }
}

enum HeaderCache {
    static let security: HTTPFields = [
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "strict-origin-when-cross-origin",
        HTTPField.Name("X-XSS-Protection")!: "0",
        HTTPField.Name("Permissions-Policy")!: "camera=(), microphone=(), geolocation=()",
    ]
}
