import Foundation
import HTTPTypes
import Hummingbird

extension RouteContext {
    func addSyncRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/sync/pull") { req, _ in
            let since = try Self.intParam(req, "since") ?? 0
            let requested = try Self.intParam(req, "limit") ?? 100
            let limit = Int(min(requested, 1000))
            let epoch = req.uri.queryParameters.get("epoch").map { String($0) }
            // limit=0 reads the cursor only (Pylon's SSR helper); the cursor is still
            // validated, so a stale cursor learns it must resync.
            let page = try await changes.pull(since: since, limit: limit, epoch: epoch)
            // The cursor advances over events the caller may not read; they are just not sent.
            let who = try await auth(req)
            let visible: [String] = page.events.compactMap { e in
                e.visibleJSON { data.canRead(e.entity, $0, auth: who) }
            }
            var w = JSONWriter(reserving: 256 + page.events.count * 200)
            w.raw("{\"changes\":[")
            for (i, e) in visible.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(e)
            }
            w.raw("],\"cursor\":{\"last_seq\":\(page.lastSeq),\"epoch\":")
            w.writeString(changes.epoch)
            w.raw("},\"has_more\":\(page.hasMore)}")
            return HTTPSupport.bytes(w.bytes)
        }
        router.post("/api/sync/push") { req, _ in
            // Policy-checked per change, exactly like the entity routes (Pylon: admin-only).
            let result = try await data.push(try await body(req), auth: try await auth(req))
            let (_, newest) = try await changes.bounds()
            return HTTPSupport.json(.object([
                ("applied", .int(Int64(result.applied))), ("deduped", .int(Int64(result.deduped))),
                ("errors", .array(result.errors.map { .string($0) })),
                ("cursor", .object([("last_seq", .int(newest))])),
                ("id_map", .object(result.idMap.map { ($0.0, .string($0.1)) })),
                ("results", .array(result.results)),
            ]))
        }
    }

    func addAuthRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/auth/me") { req, _ in HTTPSupport.json(try await auth(req).json) }
        router.post("/api/auth/session") { req, _ in
            let who = try await auth(req)
            guard config.dev || who.isAdmin else {
                throw HostError.forbidden("minting a session for any user id is only allowed in --dev mode or with the admin token")
            }
            let b = try await body(req)
            guard let userID = b["user_id"]?.stringValue, !userID.isEmpty else {
                throw HostError.badRequest("MISSING_FIELD", "body must be {\"user_id\": \"...\"}")
            }
            let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
            return HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)), ("expires_at", .int(expires))]), status: .created)
        }
        router.post("/api/auth/guest") { req, ctx in
            let (token, userID, _) = try await mintGuest(req, ctx)
            return HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)), ("guest", true)]), status: .created)
        }
        // better-auth's name for the same thing, with its wire shape (pylon-aux.md §1.4).
        router.post("/api/auth/anonymous") { req, ctx in
            let (token, userID, expires) = try await mintGuest(req, ctx)
            return HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)), ("is_guest", true),
                                             ("expires_at", .int(expires))]))
        }
        let logout: @Sendable (Request, PylonRequestContext) async throws -> Response = { req, _ in
            var revoked = false
            if let token = Self.token(req, cookieName: config.cookieName), token.hasPrefix("pylon_") {
                revoked = try await sessions.revoke(token)
            }
            var r = HTTPSupport.json(.object([("revoked", .bool(revoked))]))
            r.headers[.setCookie] = "\(config.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
            return r
        }
        router.post("/api/auth/logout", use: logout)
        router.delete("/api/auth/session", use: logout)
        router.get("/api/auth/sessions") { req, _ in
            let user = try await sessionUser(req)
            let current = Self.token(req, cookieName: config.cookieName).map(SessionStore.hash)
            let listed = try await sessions.list(userID: user)
            return HTTPSupport.json(.array(listed.map { s in
                // Only a prefix of the token's SHA-256: enough to tell sessions apart, useless to sign in.
                var o: [(String, JSONValue)] = [("id", .string(String(s.tokenHash.prefix(16)))), ("user_id", .string(user)),
                                                ("device", s.device.map { .string($0) } ?? .null),
                                                ("created_at", .int(s.createdAt)), ("expires_at", .int(s.expiresAt))]
                o.append(("current", .bool(s.tokenHash == current)))
                return .object(o)
            }))
        }
        router.delete("/api/auth/sessions") { req, _ in
            let user = try await sessionUser(req)
            let n = try await sessions.revokeAll(userID: user)
            var r = HTTPSupport.json(.object([("revoked_count", .int(Int64(n)))]))
            r.headers[.setCookie] = "\(config.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
            return r
        }
    }

    /// The user id of a request signed in with a session (`/api/auth/sessions`): anonymous
    /// callers get 401, the admin token (which has no sessions) 403.
    private func sessionUser(_ req: Request) async throws -> String {
        let who = try await auth(req)
        if who.isAdmin {
            throw HostError.forbidden("the admin token has no sessions; call this with a user's session token")
        }
        guard let user = who.userID else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in first: send Authorization: Bearer <session token> or the session cookie")
        }
        return user
    }

    /// A new guest session (`guest_` + 32 hex user id): each is a database write anyone can
    /// ask for, so it is counted in the `send` auth bucket of the caller's address first.
    func mintGuest(_ req: Request, _ ctx: PylonRequestContext) async throws -> (token: String, userID: String, expiresAt: Int64) {
        try authLimiter.check(.send, client: client(req, ctx))
        var rng = SystemRandomNumberGenerator()
        let userID = "guest_" + (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
        return (token, userID, expires)
    }

    /// The client `req` is counted against (`ClientAddress.resolve`).
    func client(_ req: Request, _ ctx: PylonRequestContext) -> ClientAddress {
        ClientAddress.resolve(peer: ctx.remoteAddress, headers: req.headers, trustHops: config.trustProxyHops)
    }

    func addSystemRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/health") { _, _ in
            HTTPSupport.json(.object([
                ("status", "ok"), ("version", .string(PylonVersion.string)),
                ("uptime_secs", .int(Int64(Date().timeIntervalSince(startedAt)))),
            ]))
        }
        router.get("/api/manifest") { req, _ in
            let full = ["1", "true"].contains(req.uri.queryParameters.get("full").map { String($0) } ?? "")
            if full { try await requireAdmin(req, "the full manifest") }
            return HTTPSupport.json(ManifestJSON.encode(data.manifest, redactPolicies: !full))
        }
        // No auth, as in Pylon: built once, since the manifest and the routes are fixed at start.
        let openAPI = JSONWriter.encode(OpenAPIDocument.build(.init(
            manifest: data.manifest, cookieName: config.cookieName, dev: config.dev,
            functions: functions != nil, cache: cache != nil, unavailable: stubs)))
        router.get("/api/openapi.json") { _, _ in HTTPSupport.bytes(openAPI) }
        // Admin-only outside --dev, as in Pylon: the figures describe every user's traffic.
        router.get("/metrics") { req, _ in
            if !config.dev { try await requireAdmin(req, "/metrics") }
            let text = metrics.prometheusText()
            guard Self.wantsPrometheusText(req.headers[values: .accept]) else { return HTTPSupport.json(MetricsJSON.encode(text)) }
            var body = HTTPSupport.allocator.buffer(capacity: text.count)
            body.writeBytes(text)
            return Response(status: .ok, headers: Self.prometheusHeaders, body: .init(byteBuffer: body))
        }
        // Capabilities with no plugin: their routes answer 501 naming the capability.
        for cap in stubs {
            for prefix in cap.routePrefixes {
                for path in [prefix, prefix + "/**"] {
                    for method in [HTTPRequest.Method.get, .post, .patch, .delete, .put] {
                        router.on(RouterPath(path), method: method) { _, _ -> Response in
                            throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                                            message: "\(cap.id) is not configured: no plugin provides it. Put \(cap.providerHint) in the plugins folder (or select it under \"plugins\".\"\(cap.key)\" in the manifest) and restart.")
                        }
                    }
                }
            }
        }
    }
}

extension RouteContext {
    /// Whether `GET /metrics` answers in the Prometheus text format: when the client asks
    /// for it as Prometheus does (`text/plain` or `application/openmetrics-text` anywhere in
    /// Accept; the answer is format 0.0.4 either way, which Prometheus reads by its
    /// Content-Type), as Pylon decides. JSON otherwise.
    static func wantsPrometheusText(_ accept: [String]) -> Bool {
        accept.contains { a in
            let v = a.lowercased()
            return v.contains("text/plain") || v.contains("application/openmetrics-text")
        }
    }

    static let prometheusHeaders: HTTPFields = [.contentType: "text/plain; version=0.0.4; charset=utf-8"]
}

public enum PylonVersion {
    public static let string = "0.1.0"
}

/// The manifest as served by `GET /api/manifest` (policy expressions blanked unless full).
enum ManifestJSON {
    static func field(_ f: Field) -> JSONValue {
        var o: [(String, JSONValue)] = [("name", .string(f.name)), ("type", .string(f.typeName)),
                                        ("optional", .bool(f.optional)), ("unique", .bool(f.unique))]
        if let c = f.crdt { o.append(("crdt", .string(c))) }
        return .object(o)
    }

    static func encode(_ m: Manifest, redactPolicies: Bool) -> JSONValue {
        let entities: [JSONValue] = m.entities.map { e in
            var o: [(String, JSONValue)] = [
                ("name", .string(e.name)), ("fields", .array(e.fields.map(field))),
                ("indexes", .array(e.indexes.map { .object([("name", .string($0.name)), ("fields", .array($0.fields.map { .string($0) })), ("unique", .bool($0.unique))]) })),
            ]
            if !e.relations.isEmpty {
                o.append(("relations", .array(e.relations.map { .object([("name", .string($0.name)), ("target", .string($0.target)), ("field", .string($0.field)), ("many", .bool($0.many))]) })))
            }
            o.append(("crdt", .bool(e.crdt)))
            return .object(o)
        }
        let policies: [JSONValue] = m.policies.map { p in
            var o: [(String, JSONValue)] = [("name", .string(p.name))]
            if let e = p.entity { o.append(("entity", .string(e))) }
            if let a = p.action { o.append(("action", .string(a))) }
            if !redactPolicies {
                if !p.allow.isEmpty { o.append(("allow", .string(p.allow))) }
                for (k, v) in [("allowRead", p.allowRead), ("allowInsert", p.allowInsert), ("allowUpdate", p.allowUpdate),
                               ("allowDelete", p.allowDelete), ("allowWrite", p.allowWrite)] {
                    if let v { o.append((k, .string(v))) }
                }
            }
            return .object(o)
        }
        let named: ([NamedInput]) -> JSONValue = { list in
            .array(list.map { .object([("name", .string($0.name)), ("input", .array($0.input.map(field)))]) })
        }
        return .object([
            ("manifest_version", .int(Int64(m.manifestVersion))), ("name", .string(m.name)), ("version", .string(m.version)),
            ("entities", .array(entities)),
            ("routes", .array(m.routes.map { r in
                var o: [(String, JSONValue)] = [("path", .string(r.path)), ("mode", .string(r.mode))]
                if let q = r.query { o.append(("query", .string(q))) }
                if let a = r.auth { o.append(("auth", .string(a))) }
                return .object(o)
            })),
            ("queries", named(m.queries)), ("actions", named(m.actions)), ("policies", .array(policies)),
        ])
    }
}
