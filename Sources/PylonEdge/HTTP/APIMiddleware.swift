import Dispatch
import HTTPTypes
import Hummingbird
import NIOCore
import PylonCore
import PylonData
import PylonJSON

/// The one middleware chain of every API request. Its steps, each defined once here:
/// 1. `admit`: an OPTIONS preflight is answered 204; else `RequestGuard` (rate limit, CSRF)
///    may refuse the request before any handler runs;
/// 2. the route's path parameters are percent-decoded (`PathParameters`), then its handler
///    runs; whatever either throws becomes the wire error (`answer(for:)`);
/// 3. `seal`: the CORS and security fields are added, and the request is counted by route
///    template and status class with its duration (`RequestMetrics`).
///
/// A handler finishes in one of two ways, and each has a thin entry here running the same
/// steps: `handle` for the router (the handler is an `async` function; Hummingbird calls
/// it as a `RouterMiddleware`), `handleNow` for the routes `HTTPFront` runs without a Task
/// (`RouteContext.immediateRoute`: the handler calls back, from any thread).
///
/// A class: every answer's `finish` closure captures it, and a struct of these fields cost
/// about a dozen reference-count operations per capture instead of one.
package final class APIMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    /// Built once: header names are validated on construction, which is not free.
    static var securityHeaders: HTTPFields {
        HeaderCache.security
    }

    let corsOrigin: String
    let metrics: Metrics
    /// `pylon_http_requests_total` and `pylon_http_request_duration_seconds`, in `metrics`'
    /// registry. Made once per host (one middleware serves every listener's router).
    let requests: RequestMetrics
    let requestGuard: RequestGuard
    /// The CORS fields for `corsOrigin` plus the security headers, built once: setting
    /// them one by one validated each name and value on every request.
    private let fixedHeaders: HTTPFields
    /// `HTTPSupport.jsonHeaders` + `fixedHeaders`: every `handleNow` answer's fields, shared
    /// (copy-on-write) instead of appended per answer.
    private let jsonAnswerHeaders: HTTPFields

    package init(corsOrigin: String, metrics: Metrics, requestGuard: RequestGuard) {
        self.corsOrigin = corsOrigin
        self.metrics = metrics
        requests = RequestMetrics(factory: metrics.factory)
        self.requestGuard = requestGuard
        var h = HTTPFields()
        h[.accessControlAllowOrigin] = corsOrigin
        h[.accessControlAllowMethods] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
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

    /// What step 1 decided.
    enum Admission {
        /// An OPTIONS preflight: answered 204 with the fixed fields, no handler.
        case preflight
        /// Refused before the handler (429, 403): answered with this error.
        case refused(HostError)
        /// The handler runs.
        case admitted
    }

    /// Step 1.
    func admit(_ head: HTTPRequest, peer: SocketAddress?) -> Admission {
        if head.method == .options { return .preflight }
        if let refused = requestGuard.check(head, peer: peer) { return .refused(refused) }
        return .admitted
    }

    /// Step 3, for an answer that carries the fixed fields: counts it. `route`: the template
    /// it matched (nil: none); `start`: `DispatchTime.now().uptimeNanoseconds` when it arrived.
    private func seal(status: Int, method: HTTPRequest.Method, route: String?, start: UInt64) {
        requests.record(route: route, method: method, status: status, since: start)
    }

    /// The chain for a handler the router runs.
    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        switch admit(request.head, peer: context.remoteAddress) {
        case .preflight:
            response = Response(status: .noContent)
        case let .refused(e):
            response = HTTPSupport.error(e)
        case .admitted:
            do {
                var context = context
                context.coreContext.parameters = try PathParameters.decoded(context.parameters)
                response = try await next(request, context)
            } catch {
                let e = answer(for: error, method: request.method, path: request.uri.path)
                countFailure(e, request.headers, peer: context.remoteAddress)
                response = HTTPSupport.error(e)
            }
        }
        // HEAD routes come from GET (`autoGenerateHeadEndpoints`), which drops the body;
        // an answer from no route (404) or an error still has one, which HEAD must not carry.
        if request.method == .head { response = response.createHeadResponse() }
        // The router set the route's template before this ran.
        // No handler sets the fixed fields, so appending equals setting them.
        response.headers.append(contentsOf: fixedHeaders)
        seal(status: response.status.code, method: request.method, route: context.endpointPath, start: start)
        return response
    }

    /// The chain for a handler that answers by callback. `run` gets a `finish` that it (or
    /// whatever it starts) calls exactly once, from any thread, with the JSON body of a
    /// `success` answer or the error; a throw from `run` itself is that call. `reply` then
    /// gets the whole answer, on the thread that called `finish`. `peer`: the connection's
    /// remote address; `route`: the template of the route it answers. The immediate routes
    /// are GET and POST only, so no HEAD (whose answer would need its body dropped) comes here.
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
                countFailure(e, request.headerFields, peer: peer)
                (status, bytes) = (HTTPResponse.Status(code: e.status), JSONWriter.encode(e.body))
                HTTPSupport.addFields(of: e, to: &fields)
            }
            seal(status: status.code, method: method, route: route, start: start)
            var body = HTTPSupport.allocator.buffer(capacity: bytes.count)
            body.writeBytes(bytes)
            reply(HTTPResponse(status: status, headerFields: fields), body)
        }
        switch admit(request, peer: peer) {
        case .preflight:
            // Not an immediate route's method (see above), but answered as `handle` would.
            seal(status: 204, method: method, route: route, start: start)
            reply(HTTPResponse(status: .noContent, headerFields: fixedHeaders), HTTPSupport.allocator.buffer(capacity: 0))
        case let .refused(e):
            finish(.failure(e))
        case .admitted:
            do {
                try run(finish)
            } catch {
                finish(.failure(error))
            }
        }
    }

    /// A wrong API key counts against its address and key id (`ApiKeyGuesses`).
    private func countFailure(_ e: HostError, _ headers: HTTPFields, peer: SocketAddress?) {
        if e.code == ApiKeyGuesses.invalidCode { requestGuard.keyGuesses.failed(headers, peer: peer) }
    }

    /// The wire error for what a handler threw.
    func answer(for error: Error, method: HTTPRequest.Method, path: String) -> HostError {
        switch error {
        case let e as HostError:
            return e
        case let e as StoreError:
            return e.answer
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

