import HTTPTypes
import Hummingbird
import PylonCore
import PylonServices

/// The routes whose handlers finish by callback, not as `async` functions: the requests
/// that dominate a busy app — function calls, point reads, inserts. Each route has one
/// handler (`insertHandler`, `getHandler`, `functionCallHandler`), which both ways of
/// reaching it call: `HTTPFront` without a Task (`immediateRoute`, inside
/// `APIMiddleware.handleNow`) when the request is plain and its caller known at once, and
/// the router otherwise (`respond(_:_:success:)`, on the request's Task, inside
/// `APIMiddleware.handle`).
extension RouteContext {
    typealias Finish = @Sendable (Result<[UInt8], Error>) -> Void
    /// Gets the request's whole body and its caller, and calls `finish` exactly once, from
    /// any thread, with the JSON body of the success answer or the error; a throw is that
    /// call.
    typealias CallbackHandler = @Sendable (ByteBuffer, AuthContext, @escaping Finish) throws -> Void

    /// `POST /api/entities/E`: 201 with `{"id"}`, answered after its commit.
    func insertHandler(_ entity: String) -> CallbackHandler {
        let data = data, limit = config.maxBodyBytes
        return { body, who, finish in
            _ = try data.codec(entity)
            insertRow(entity, try HTTPSupport.body(body, limit: limit), who: who, done: finish)
        }
    }

    /// `GET /api/entities/E/ID`: the row.
    func getHandler(_ entity: String, _ id: String) -> CallbackHandler {
        { _, who, finish in getRow(entity, id, who: who, done: finish) }
    }

    /// `POST /api/fn/NAME` answered as JSON (not a stream): the function's return value.
    func functionCallHandler(_ functions: FunctionService, _ name: String) -> CallbackHandler {
        let limit = config.maxBodyBytes
        return { body, who, finish in
            // Passed on to the function as sent, once checked to be JSON.
            let args = try HTTPSupport.jsonBytes(body, limit: limit, empty: Array("{}".utf8))
            functions.start(name, argsJSON: args, auth: who, done: finish)
        }
    }

    /// Runs `handler` for a request the router dispatched: the body and the caller awaited,
    /// then the handler's callback.
    func respond(_ handler: CallbackHandler, _ req: Request, success: HTTPResponse.Status) async throws -> Response {
        let body = try await HTTPSupport.rawBody(req, limit: config.maxBodyBytes)
        let who = try await auth(req)
        let bytes = try await withUnsafeThrowingContinuation { (cont: UnsafeContinuation<[UInt8], Error>) in
            do {
                try handler(body, who) { cont.resume(with: $0) }
            } catch {
                cont.resume(throwing: error)
            }
        }
        return HTTPSupport.bytes(bytes, status: success)
    }

    /// The handler for `head` when `HTTPFront` can run it without a Task: `POST /api/fn/NAME`,
    /// `GET /api/entities/E/ID` and `POST /api/entities/E` with plain names (as the router
    /// would route them: see `plainEntityGet`), when the caller is known at once (`authNow`:
    /// anonymous, the admin, or a cached session — an uncached session needs a store lookup,
    /// so such a request goes through the router on a Task) and, for a function, the answer
    /// is JSON, not a stream. Nil: the router.
    func immediateRoute(_ head: HTTPRequest, _ middleware: APIMiddleware<PylonRequestContext>) -> HTTPFront.ImmediateHandler? {
        let success: HTTPResponse.Status
        let route: String
        let handler: CallbackHandler
        if let (entity, id) = Self.plainEntityGet(head) {
            (success, route, handler) = (.ok, RequestMetrics.entityRowRoute, getHandler(entity, id))
        } else if let entity = Self.plainEntityInsert(head) {
            (success, route, handler) = (.created, RequestMetrics.entityRoute, insertHandler(entity))
        } else if let functions, let fnName = Self.plainFunctionName(head), !Self.wantsStream(head.headerFields) {
            (success, route, handler) = (.ok, RequestMetrics.functionCallRoute, functionCallHandler(functions, fnName))
        } else {
            return nil
        }
        guard let who = authNow(head.headerFields) else { return nil }
        return { body, peer, reply in
            middleware.handleNow(head, peer: peer, route: route, success: success, { finish in try handler(body, who, finish) }, reply: reply)
        }
    }

    /// `Accept: text/event-stream`: a function call's answer is then a stream.
    static func wantsStream(_ fields: HTTPFields) -> Bool {
        fields[.accept]?.contains("text/event-stream") == true
    }

    /// NAME of `POST /api/fn/NAME` when it is a plain name (letters, digits, `_`, `-`, `.`; no
    /// query string, no percent-encoding: as the router would route it).
    static func plainFunctionName(_ head: HTTPRequest) -> String? {
        guard head.method == .post, let path = head.path, path.hasPrefix("/api/fn/") else { return nil }
        let name = path.utf8.dropFirst("/api/fn/".utf8.count)
        return isPlainName(name) ? String(Substring(name)) : nil
    }

    /// E of `POST /api/entities/E` when it is plain (as in `plainEntityGet`).
    static func plainEntityInsert(_ head: HTTPRequest) -> String? {
        guard head.method == .post, let path = head.path, path.hasPrefix("/api/entities/") else { return nil }
        let entity = path.utf8.dropFirst("/api/entities/".utf8.count)
        return isPlainName(entity) ? String(Substring(entity)) : nil
    }

    /// Entity and id of `GET /api/entities/E/ID` when both are plain (letters, digits, `_`,
    /// `-`, `.`; no query string, no percent-encoding) and ID is not `cursor` (its own
    /// route); nil otherwise — the router then decides.
    static func plainEntityGet(_ head: HTTPRequest) -> (entity: String, id: String)? {
        guard head.method == .get, let path = head.path else { return nil }
        let prefix = "/api/entities/"
        guard path.hasPrefix(prefix) else { return nil }
        let rest = path.utf8.dropFirst(prefix.utf8.count)
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        let entity = rest[rest.startIndex..<slash], id = rest[rest.index(after: slash)...]
        guard isPlainName(entity), isPlainName(id) else { return nil }
        let idText = String(Substring(id))
        return idText == "cursor" ? nil : (String(Substring(entity)), idText)
    }

    /// Non-empty and only letters, digits, `_`, `-`, `.`.
    static func isPlainName(_ s: Substring.UTF8View) -> Bool {
        guard !s.isEmpty else { return false }
        for c in s {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."): continue
            default: return false
            }
        }
        return true
    }
}
