import Foundation
import Hummingbird
import NIOCore
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// The rest of Pylon's data surface (pylon-core.md §2.9, §2.11, §2.13; pylon-aux.md §6.6):
/// export and import, one user's data (GDPR), the dev-only test reset and manifest actions.
/// Everything here but actions is admin-only; the work is in Data/DataExport.swift.
extension RouteContext {
    func addAdminDataRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/export") { req, _ in
            try await requireAdmin(req, "/api/export")
            return exportResponse(data.manifest.entities.map(\.name))
        }
        router.get("/api/export/:entity") { req, ctx in
            try await requireAdmin(req, "/api/export")
            let entity = try ctx.parameters.require("entity")
            _ = try data.codec(entity)
            return exportResponse([entity])
        }
        router.post("/api/import") { req, _ in
            try await requireAdmin(req, "/api/import")
            guard let entities = try await body(req)["entities"]?.objectValue else {
                throw HostError.badRequest("INVALID_DATA", "the body must be {\"entities\": {\"<Entity>\": [rows]}} (the shape /api/export returns)")
            }
            for (entity, rows) in entities {
                _ = try data.codec(entity)
                guard rows.arrayValue != nil else { throw HostError.badRequest("INVALID_DATA", "entities.\(entity) must be an array of rows") }
            }
            var imported = 0, failed = 0
            var byEntity: [JSONValue] = []
            for (entity, rows) in entities {
                let tally = try await data.importRows(entity, rows.arrayValue ?? [])
                imported += tally.inserted
                failed += tally.failed
                byEntity.append(.object([
                    ("entity", .string(entity)), ("inserted", .int(Int64(tally.inserted))), ("failed", .int(Int64(tally.failed))),
                    ("errors", .array(tally.errors.map { .object([("index", .int(Int64($0.index))), ("code", .string($0.error.code)),
                                                                  ("message", .string($0.error.message))]) })),
                ]))
            }
            return HTTPSupport.json(.object([("imported", .int(Int64(imported))), ("failed", .int(Int64(failed))),
                                             ("by_entity", .array(byEntity))]))
        }
        router.post("/api/admin/users/:id/export") { req, ctx in
            try await requireAdmin(req, "exporting a user's data")
            let id = try ctx.parameters.require("id")
            var owned = try await data.userRows(id)
            if let files { owned.append((FileRecords.entity, try await files.records.list(owner: id).map(\.json))) }
            return HTTPSupport.json(.object([
                ("user_id", .string(id)), ("exported_at", .string(ISOTime.now())),
                ("entities", .object(owned.map { ($0.entity, .array($0.rows)) })),
                ("counts", .object(owned.map { ($0.entity, .int(Int64($0.rows.count))) })),
            ]))
        }
        router.delete("/api/admin/users/:id/purge") { req, ctx in
            try await requireAdmin(req, "purging a user's data")
            let id = try ctx.parameters.require("id")
            // The user is gone, and so is every way to act as them: sessions (and the
            // streams they hold), API keys, sign-in methods, memberships, uploads.
            let ended = try await endAccount(id)
            var deleted = try await data.purgeUser(id)
            if files != nil { deleted.append((FileRecords.entity, ended.files)) }
            return HTTPSupport.json(.object([
                ("user_id", .string(id)), ("deleted", .object(deleted.map { ($0.entity, .int(Int64($0.deleted))) })),
                ("total", .int(Int64(deleted.reduce(0) { $0 + $1.deleted }))), ("sessions_revoked", .int(Int64(ended.sessions))),
                ("api_keys_revoked", .int(Int64(ended.apiKeys))), ("left_orgs", .int(Int64(ended.memberships))),
            ]))
        }
        router.post("/api/__test__/reset") { req, ctx in
            // Pylon's testing helper: only in --dev and only from this machine (the socket's
            // peer, not a forwarded header), so it can never wipe a deployed app.
            guard config.dev, Self.isLoopback(ctx.remoteAddress) else {
                throw HostError(status: 404, code: "NOT_FOUND", message: "no route for POST /api/__test__/reset")
            }
            // Any web page the developer opens can post to this machine: a request from a
            // page (it has an Origin) must come from a page this host serves.
            if let origin = req.headers[.origin], !CSRFGuard.isSameOrigin(CSRFGuard.normalize(origin), authority: req.head.authority) {
                throw HostError(status: 403, code: "CSRF_REJECTED", message: "the test reset is refused to a page of another origin (\(origin)); call it from a test runner or a script")
            }
            let deleted = try await data.deleteAllRows()
            return HTTPSupport.json(.object([("reset", true), ("deleted", .object(deleted.map { ($0.entity, .int(Int64($0.deleted))) }))]))
        }
        addAdminListings(router)
        router.post("/api/actions/:name") { req, ctx in try await runAction(try ctx.parameters.require("name"), req) }
        for method in [HTTPRequest.Method.get, .put, .patch, .delete] {
            router.on("/api/actions/:name", method: method) { _, _ -> Response in
                throw HostError(status: 405, code: "METHOD_NOT_ALLOWED", message: "manifest actions are called with POST")
            }
        }
    }

    /// The read-only admin listings Pylon's studio reads (pylon-aux.md §6.6), GET only.
    /// Tables of features this host does not have yet (OAuth accounts and state, magic
    /// codes, workflows) list nothing; jobs are the newest 1000, as in Pylon. Secrets never appear: a session shows as the
    /// first 16 hex characters of its token's SHA-256 (the host keeps no token).
    func addAdminListings(_ router: Router<PylonRequestContext>) {
        let listings: [(String, @Sendable () async throws -> JSONValue)] = [
            ("auth/sessions", { try await self.allSessions() }),
            ("auth/accounts", { .array([]) }), ("auth/oauth_state", { .array([]) }),
            ("auth/magic_codes", { try await self.codes?.pending() ?? .array([]) }),
            ("ops/jobs", { try await self.recentJobs() }), ("ops/workflows", { try await self.recentWorkflows() }),
            ("ops/scheduler", { try await self.pendingSchedules() }),
            ("ops/search_indexes", { .array(self.data.manifest.entities.compactMap { e in
                e.search.map { s in .object([
                    ("entity", .string(e.name)), ("text_fields", .array(s.text.map { .string($0) })),
                    ("facet_fields", .array(s.facets.map { .string($0) })), ("sortable_fields", .array(s.sortable.map { .string($0) })),
                    ("fts_table", .string(SearchIndex.table(e.name))),
                ]) }
            }) }),
        ]
        for (path, list) in listings {
            router.get(RouterPath("/api/admin/" + path)) { req, _ in
                try await requireAdmin(req, "/api/admin/\(path)")
                return HTTPSupport.json(try await list())
            }
            for method in [HTTPRequest.Method.post, .put, .patch, .delete] {
                router.on(RouterPath("/api/admin/" + path), method: method) { _, _ -> Response in
                    throw HostError(status: 405, code: "METHOD_NOT_ALLOWED", message: "/api/admin/\(path) is read-only (GET)")
                }
            }
        }
    }

    /// Every live session (at most 1000, newest first), without tokens.
    func allSessions() async throws -> JSONValue {
        let d = data.dialect
        let sql = "SELECT token_hash, user_id, device, created_at, expires_at FROM _pylon_sessions "
            + "WHERE expires_at = 0 OR expires_at > \(d.placeholder(1)) ORDER BY created_at DESC\(d.limitOffset(limit: "1000", offset: nil))"
        let rows = try await data.store.read { conn in try conn.execute(sql, [.int(SessionStore.now())]).rows }
        return .array(rows.map { row in
            .object([("id", row.at(0).textValue.map { .string(String($0.prefix(16))) } ?? .null), ("user_id", row.at(1).json),
                     ("device", row.at(2).json), ("created_at", row.at(3).json), ("expires_at", row.at(4).json)])
        })
    }

    /// The scheduled function calls not yet run (`ctx.scheduler`), soonest first (at most 1000).
    func pendingSchedules() async throws -> JSONValue {
        let d = data.dialect
        let sql = "SELECT \(["id", "fn_name", "args", "run_at", "attempts"].map(d.quote).joined(separator: ", ")) FROM \(d.quote(FunctionScheduler.table)) "
            + "ORDER BY \(d.quote("run_at"))\(d.limitOffset(limit: "1000", offset: nil))"
        let rows = try await data.store.read { conn in try conn.execute(sql).rows }
        return .array(rows.map { row in
            .object([("id", row.at(0).json), ("fn_name", row.at(1).json),
                     ("args", row.at(2).textValue.flatMap { try? JSONParser.parse($0) } ?? .null),
                     ("run_at", row.at(3).json), ("attempts", row.at(4).json)])
        })
    }

    /// `POST /api/actions/NAME`, as Pylon answers it (pylon-core.md §2.11): the action's
    /// policy first (so a caller who may not run it learns nothing about which exist), then
    /// its existence and required inputs; success echoes the input and runs nothing — write
    /// server code as a function (`/api/fn/NAME`) instead.
    func runAction(_ name: String, _ req: Request) async throws -> Response {
        let input = try await body(req, empty: .object([]))
        let who = try await auth(req)
        guard data.policies.checkAction(name, auth: who, input: input) else {
            throw HostError(status: 403, code: "POLICY_DENIED", message: "the policy for action \"\(name)\" does not allow this call")
        }
        guard let action = data.manifest.actions.first(where: { $0.name == name }) else {
            let names = data.manifest.actions.map(\.name)
            throw HostError(status: 404, code: "ACTION_NOT_FOUND",
                            message: "no action \"\(name)\" in the manifest; " + (names.isEmpty ? "it declares none" : "declared: \(names.joined(separator: ", "))"))
        }
        for f in action.input where !f.optional && (input[f.name] == nil || input[f.name]!.isNull) {
            throw HostError.badRequest("ACTION_MISSING_INPUT", "action \"\(name)\" needs input \"\(f.name)\"")
        }
        return HTTPSupport.json(.object([("action", .string(name)), ("input", input), ("executed", true)]))
    }

    /// `GET /api/export[/E]`: `{"exported_at","entities":{E:[rows]},"counts":{E:n}}`, written
    /// page by page as it is read (`DataService.exportPage` rows at a time), so the host's
    /// memory does not grow with the data. A failure after the first byte ends the body
    /// early: the document is then not valid JSON, which a reader notices.
    func exportResponse(_ entities: [String]) -> Response {
        let data = self.data
        let body = ResponseBody { writer in
            var out = ByteBuffer()
            func flush() async throws {
                try await writer.write(out)
                out = ByteBuffer()
            }
            out.writeString("{\"exported_at\":\(JSONWriter.string(.string(ISOTime.now()))),\"entities\":{")
            var counts: [(String, JSONValue)] = []
            for (n, entity) in entities.enumerated() {
                out.writeString((n == 0 ? "" : ",") + JSONWriter.string(.string(entity)) + ":[")
                var after: String?
                var count = 0
                repeat {
                    let page = try await data.readablePage(entity, after: after, limit: DataService.exportPage, auth: .admin)
                    for row in page.rows {
                        if count > 0 { out.writeString(",") }
                        out.writeBytes(JSONWriter.encode(row))
                        count += 1
                    }
                    after = page.hasMore ? page.rows.last?["id"]?.stringValue : nil
                    try await flush()
                } while after != nil
                out.writeString("]")
                counts.append((entity, .int(Int64(count))))
            }
            out.writeString("},\"counts\":" + JSONWriter.string(.object(counts)) + "}")
            try await flush()
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }

    /// The socket peer is this machine (127.0.0.0/8 or ::1).
    static func isLoopback(_ peer: SocketAddress?) -> Bool {
        switch peer {
        case let .v4(a)?: return UInt32(bigEndian: a.address.sin_addr.s_addr) >> 24 == 127
        case .v6?: return peer?.ipAddress == "::1"
        default: return false
        }
    }
}

extension RouteContext {
    /// `GET /api/admin/ops/jobs`: the newest 1000 jobs (none without functions).
    func recentJobs() async throws -> JSONValue {
        guard let jobs else { return .array([]) }
        let store = jobs.jobs
        return .array(try await jobs.store.read { conn in try store.list(conn, status: nil, queue: nil, limit: 1000) })
    }

    /// `GET /api/admin/ops/workflows`: the newest 1000 workflow instances (none without functions).
    func recentWorkflows() async throws -> JSONValue {
        guard let workflows else { return .array([]) }
        return .array(try await workflows.list(status: nil, limit: 1000).map(\.json))
    }
}
