import Foundation
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

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
            // The same 404 whether no row has the value or only rows the caller cannot read.
            guard let row = try await data.lookup(entity, field: field, value: value, auth: try await auth(req)) else {
                throw HostError.notFound("\(entity).\(field) = \(value) not found")
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
