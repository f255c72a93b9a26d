import HTTPTypes
import Hummingbird

/// The fast lane's routes that need no Task (`FastLane.Shared.immediate`): the requests
/// that dominate a busy app — function calls, point reads, inserts — answered by callback
/// on the connection's event loop (or a store or plugin thread), through the same
/// middleware semantics (`APIMiddleware.handleNow`) and the same handler code as their
/// routes.
extension RouteContext {
    /// The handler for `head` when it can be answered without a Task
    /// (`FastLane.Shared.immediate`): `POST /api/fn/NAME` (as `callFunction`),
    /// `GET /api/entities/E/ID` and `POST /api/entities/E` (as their routes, through `getRow`
    /// and `insertRow`), when the caller is known at once (`authNow`: anonymous, the admin,
    /// or a cached session — an uncached session needs a store lookup, so such a request goes
    /// on a Task) and, for a function, the answer is JSON, not a stream. Each answers exactly
    /// as its route inside `middleware` does; nil: `directRoute` or the router.
    func immediateRoute(_ head: HTTPRequest, _ middleware: APIMiddleware<PylonRequestContext>) -> FastLane.ImmediateHandler? {
        typealias Finish = @Sendable (Result<[UInt8], Error>) -> Void
        let limit = config.maxBodyBytes
        let success: HTTPResponse.Status
        let route: String
        let run: @Sendable (ByteBuffer, AuthContext, @escaping Finish) throws -> Void
        if let (entity, id) = Self.plainEntityGet(head) {
            success = .ok
            route = RequestMetrics.entityRowRoute
            run = { _, who, finish in getRow(entity, id, who: who, done: finish) }
        } else if let entity = Self.plainEntityInsert(head) {
            // Answered after its commit.
            success = .created
            route = RequestMetrics.entityRoute
            let data = data
            run = { body, who, finish in
                _ = try data.codec(entity)
                insertRow(entity, try HTTPSupport.body(body, limit: limit), who: who, done: finish)
            }
        } else if let functions, let fnName = Self.plainFunctionName(head),
                  head.headerFields[.accept]?.contains("text/event-stream") != true {
            success = .ok
            route = RequestMetrics.functionCallRoute
            run = { body, who, finish in
                let args = try HTTPSupport.jsonBytes(body, limit: limit, empty: Array("{}".utf8))
                functions.start(fnName, argsJSON: args, auth: who, done: finish)
            }
        } else {
            return nil
        }
        guard let who = authNow(head.headerFields) else { return nil }
        return { body, peer, reply in
            middleware.handleNow(head, peer: peer, route: route, success: success, { finish in try run(body, who, finish) }, reply: reply)
        }
    }

    /// NAME of `POST /api/fn/NAME` when it is a plain name (see `directRoute`).
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
