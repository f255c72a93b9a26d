import Foundation
import Hummingbird

/// Everything a route handler needs. Immutable; shared by all requests.
struct RouteContext: Sendable {
    let data: DataService
    let changes: ChangeLog
    let sessions: SessionStore
    let config: HostConfig
    let metrics: Metrics
    let startedAt: Date
    let stubs: [CapabilityInfo]
    let hub: ChangeHub
    let sync: SyncStream
    let realtime: RealtimeConfig
    let functions: FunctionService?
    /// The cache plugin, when one serves `pylon.cache/1` (else its routes are stubs).
    let cache: CacheService?
    /// Pylon's auth buckets (guest and anonymous sessions).
    let authLimiter: AuthRateLimiter

    /// Resolves the caller (pylon-core.md §0.4 step 5): bearer header wins over the session
    /// cookie; the admin token is compared in constant time; unknown or expired session
    /// tokens are anonymous.
    func auth(_ request: Request) async throws -> AuthContext {
        try await authFor(token: Self.token(request, cookieName: config.cookieName))
    }

    /// `auth` without waiting (`authNow(token:)`) for the request's headers.
    func authNow(_ headers: HTTPFields) -> AuthContext? {
        authNow(token: Self.token(headers, cookieName: config.cookieName))
    }

    static func token(_ request: Request, cookieName: String) -> String? {
        token(request.headers, cookieName: cookieName)
    }

    static func token(_ headers: HTTPFields, cookieName: String) -> String? {
        credential(headers, cookieName: cookieName)?.token
    }

    /// The caller's token, and whether it came from the session cookie (which a browser
    /// attaches by itself, so `CSRFGuard` checks where such a request comes from).
    static func credential(_ headers: HTTPFields, cookieName: String) -> (token: String, fromCookie: Bool)? {
        if let h = headers[.authorization], h.lowercased().hasPrefix("bearer ") {
            let t = h.dropFirst(7).trimmingCharacters(in: .whitespaces)
            return t.isEmpty ? nil : (t, false)
        }
        if let cookies = headers[.cookie] {
            for part in cookies.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces)
                if kv.hasPrefix(cookieName + "=") { return (String(kv.dropFirst(cookieName.count + 1)), true) }
            }
        }
        return nil
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }

    func requireAdmin(_ request: Request, _ what: String) async throws {
        guard try await auth(request).isAdmin else {
            throw HostError.forbidden("\(what) requires admin auth (send Authorization: Bearer $PYLON_ADMIN_TOKEN)")
        }
    }

    func body(_ request: Request, empty: JSONValue? = nil) async throws -> JSONValue {
        try await HTTPSupport.body(request, limit: config.maxBodyBytes, empty: empty)
    }

    static func intParam(_ request: Request, _ name: String) throws(HostError) -> Int64? {
        // Given twice (`?limit=&limit=x`), the first alone would be read and the rest ignored.
        let given = request.uri.queryParameters.getAll(name)
        guard given.count <= 1 else {
            throw HostError.badRequest("INVALID_QUERY", "query parameter \(name) is given \(given.count) times; give it once")
        }
        guard let s = given.first, !s.isEmpty else { return nil }
        guard let n = Int64(s), n >= 0 else {
            throw HostError.badRequest("INVALID_QUERY", "query parameter \(name) must be a non-negative integer, got \"\(s)\"")
        }
        return n
    }
}

extension RouteContext {
    func addDataRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/entities/:entity") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            let limit = try Self.intParam(req, "limit")
            let offset = try Self.intParam(req, "offset") ?? 0
            var filter: [(String, JSONValue)] = [("$offset", .int(offset))]
            if let limit { filter.append(("$limit", .int(limit))) }
            let rows = try await data.readableQuery(entity, filter: .object(filter), auth: try await auth(req))
            return HTTPSupport.json(.object([
                ("data", .array(rows)), ("count", .int(Int64(rows.count))), ("offset", .int(offset)),
                ("limit", limit.map { .int($0) } ?? .null),
            ]))
        }
        router.post("/api/entities/:entity") { req, ctx in
            try await respond(insertHandler(try ctx.parameters.require("entity")), req, success: .created)
        }
        router.get("/api/entities/:entity/cursor") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            let limit = min(max(try Self.intParam(req, "limit") ?? 20, 1), 100)
            let after = req.uri.queryParameters.get("after").flatMap { $0.isEmpty ? nil : String($0) }
            let who = try await auth(req)
            _ = try data.codec(entity)
            // Only readable rows are paged, so next_cursor (the last row returned) never
            // names a row the caller cannot read.
            let page = try await data.readablePage(entity, after: after, limit: limit, auth: who)
            return HTTPSupport.json(.object([
                ("data", .array(page.rows)),
                ("next_cursor", page.rows.last?["id"] ?? .null),
                ("has_more", .bool(page.hasMore)),
            ]))
        }
        router.get("/api/entities/:entity/:id") { req, ctx in
            try await respond(getHandler(try ctx.parameters.require("entity"), try ctx.parameters.require("id")), req, success: .ok)
        }
        router.patch("/api/entities/:entity/:id") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            let id = try ctx.parameters.require("id")
            _ = try data.codec(entity)
            _ = try await data.update(entity, id: id, try await body(req), auth: try await auth(req))
            return HTTPSupport.json(.object([("updated", true)]))
        }
        router.delete("/api/entities/:entity/:id") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            let id = try ctx.parameters.require("id")
            _ = try await data.delete(entity, id: id, auth: try await auth(req))
            return HTTPSupport.json(.object([("deleted", true)]))
        }
        for (path, allow) in [("/api/entities/:entity", "GET, HEAD, POST"), ("/api/entities/:entity/:id", "GET, HEAD, PATCH, DELETE")] {
            for method in [HTTPRequest.Method.put] {
                router.on(RouterPath(path), method: method) { _, _ -> Response in
                    Self.methodNotAllowed(allow, "use POST to insert, PATCH to update and DELETE to delete")
                }
            }
        }
        router.post("/api/query/:entity") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            _ = try data.codec(entity)
            let rows = try await data.readableQuery(entity, filter: try await body(req, empty: .object([])), auth: try await auth(req))
            return HTTPSupport.json(.array(rows))
        }
        router.post("/api/query") { req, _ in
            HTTPSupport.json(try await data.graphQuery(try await body(req), auth: try await auth(req)))
        }
        router.post("/api/aggregate/:entity") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            _ = try data.codec(entity)
            return HTTPSupport.json(try await data.aggregate(entity, try await body(req), auth: try await auth(req)))
        }
        router.post("/api/search/:entity") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            return HTTPSupport.json(try await data.search(entity, try await body(req, empty: .object([])), auth: try await auth(req)))
        }
        for method in [HTTPRequest.Method.get, .put, .patch, .delete] {
            router.on(RouterPath("/api/search/:entity"), method: method) { _, _ -> Response in
                Self.methodNotAllowed("POST", "use POST /api/search/<entity> with a JSON body like {\"query\": \"...\"}")
            }
        }
        router.get("/api/lookup/:entity/:field/:value") { req, ctx in
            let entity = try ctx.parameters.require("entity")
            let field = try ctx.parameters.require("field")
            let value = try ctx.parameters.require("value")
            let decoded = value.removingPercentEncoding ?? value
            // The same 404 whether no row has the value or only rows the caller cannot read.
            guard let row = try await data.lookup(entity, field: field, value: decoded, auth: try await auth(req)) else {
                throw HostError.notFound("\(entity).\(field) = \(decoded) not found")
            }
            return HTTPSupport.json(row)
        }
        router.post("/api/link") { req, _ in
            let b = try await body(req)
            guard let entity = b["entity"]?.stringValue, let id = b["id"]?.stringValue,
                  let relation = b["relation"]?.stringValue, let target = b["target_id"]?.stringValue
            else { throw HostError.badRequest("MISSING_FIELD", "link needs {\"entity\",\"id\",\"relation\",\"target_id\"}") }
            try await data.link(entity, id: id, relation: relation, targetID: target, auth: try await auth(req))
            return HTTPSupport.json(.object([("linked", true)]))
        }
        router.post("/api/unlink") { req, _ in
            let b = try await body(req)
            guard let entity = b["entity"]?.stringValue, let id = b["id"]?.stringValue,
                  let relation = b["relation"]?.stringValue
            else { throw HostError.badRequest("MISSING_FIELD", "unlink needs {\"entity\",\"id\",\"relation\"}") }
            try await data.link(entity, id: id, relation: relation, targetID: nil, auth: try await auth(req))
            return HTTPSupport.json(.object([("unlinked", true)]))
        }
        router.post("/api/batch") { req, _ in
            try await requireAdmin(req, "/api/batch")
            let b = try await body(req)
            guard let items = b["operations"]?.arrayValue else {
                throw HostError.badRequest("MISSING_OPERATIONS", "body must be {\"operations\": [{\"op\",\"entity\",\"id\"?,\"data\"?}]}")
            }
            let ops = try DataService.parseOperations(items)
            let results = try await data.batch(ops, auth: .admin)
            var ok = 0
            let out: [JSONValue] = zip(ops, results).map { op, r in
                switch r {
                case let .success(id):
                    ok += 1
                    return .object([("op", .string(op.op)), ("id", .string(id)), ("ok", true)])
                case let .failure(e):
                    var o: [(String, JSONValue)] = [("op", .string(op.op))]
                    if let id = op.id { o.append(("id", .string(id))) }
                    o += [("ok", false), ("error", .string(e.message)), ("code", .string(e.code))]
                    return .object(o)
                }
            }
            return HTTPSupport.json(.object([
                ("results", .array(out)), ("succeeded", .int(Int64(ok))), ("failed", .int(Int64(ops.count - ok))),
            ]))
        }
        router.post("/api/transact") { req, _ in
            try await requireAdmin(req, "/api/transact")
            let b = try await body(req)
            guard let items = b.arrayValue ?? b["operations"]?.arrayValue else {
                throw HostError.badRequest("MISSING_OPERATIONS", "body must be an array of {\"op\",\"entity\",\"id\"?,\"data\"?}")
            }
            let ops = try DataService.parseOperations(items)
            let (committed, results) = try await data.transact(ops, auth: .admin)
            let out: [JSONValue] = zip(ops, results).map { op, r in
                switch r {
                case let .success(id): return .object([("op", .string(op.op)), ("id", .string(id))])
                case let .failure(e): return .object([("op", .string(op.op)), ("error", .string(e.message)), ("code", .string(e.code))])
                }
            }
            return HTTPSupport.json(.object([("committed", .bool(committed)), ("results", .array(out))]),
                                    status: committed ? .ok : .badRequest)
        }
    }
}

extension RouteContext {
    /// 405 with the `Allow` header RFC 9110 §15.5.6 requires.
    static func methodNotAllowed(_ allow: String, _ message: String) -> Response {
        var r = HTTPSupport.json(HostError(status: 405, code: "METHOD_NOT_ALLOWED", message: message).body, status: .methodNotAllowed)
        r.headers[.allow] = allow
        return r
    }

    /// `POST /api/entities/E` for `who`: `done` gets `{"id": …}` as JSON text (answered
    /// 201) or the error, exactly once — on the writer thread after commit, or on the
    /// caller's when the input is refused first. The route's handler (`insertHandler`).
    func insertRow(_ entity: String, _ body: JSONValue, who: AuthContext, done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        data.insert(entity, body, auth: who) { result in
            done(result.map { row in JSONWriter.encode(.object([("id", row["id"] ?? .null)])) })
        }
    }

    /// `GET /api/entities/E/ID` for `who`: `done` gets the row as JSON text, or the error,
    /// exactly once: on the calling thread when a quick read connection is free, else on a
    /// reader thread. The route's handler (`getHandler`). A row hidden from `who` answers exactly as an absent id (404, same body:
    /// DESIGN.md §4, no oracle by status code); 403 only when `who` may read no row of E.
    func getRow(_ entity: String, _ id: String, who: AuthContext, done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        let data = data
        data.get(entity, id: id) { result in
            done(Result {
                guard let row = try result.get(), data.canRead(entity, row, auth: who) else {
                    try data.requireReadGate(entity, auth: who)
                    throw HostError.notFound("\(entity) with id \"\(id)\" not found")
                }
                return JSONWriter.encode(row)
            })
        }
    }
}
