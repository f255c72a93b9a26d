import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// Pylon's session routes (`/api/auth/*`): who the caller is, minting (dev or admin),
/// guest sessions, listing and revoking a user's sessions.
extension RouteContext {
    func addAuthRoutes(_ router: Router<PylonRequestContext>) {
        router.get("/api/auth/me") { req, _ in HTTPSupport.json(try await auth(req).json) }
        // The caller and their user row (pylon-aux.md §1.3), without credentials or hidden fields.
        router.get("/api/auth/session") { req, _ in
            let who = try await auth(req)
            var user: JSONValue = .null
            if let id = who.userID, !who.isAdmin, data.codecs[data.manifest.auth.userEntity] != nil,
               let row = try await data.get(data.manifest.auth.userEntity, id: id) {
                user = Self.visibleUser(row, data.manifest.auth)
            }
            return HTTPSupport.json(.object([("session", who.json), ("user", user)]))
        }
        // A short-lived JWT for the signed-in caller (pylon-aux.md §1.3).
        router.post("/api/auth/jwt") { req, _ in
            guard let jwts else {
                throw HostError(status: 501, code: "JWT_NOT_CONFIGURED", message: "set PYLON_JWT_SECRET (and PYLON_JWT_ISSUER to accept them back) on the host")
            }
            // The admin token, or a user's session: not an API key or another JWT, so a
            // credential cannot be stretched into a newer or wider one.
            let who = try await auth(req)
            if !who.isAdmin { _ = try await sessionUser(req) }
            let (token, expires) = try await jwts.mint(who)
            return HTTPSupport.json(.object([("token", .string(token)), ("expires_at", .int(expires))]))
        }
        // A new token for the caller's session, same user, device and organisation; the old one ends.
        router.post("/api/auth/refresh") { req, _ in
            guard let token = callerToken(req), token.hasPrefix("pylon_"),
                  let (fresh, userID, expires) = try await sessions.refresh(token) else {
                throw Self.sessionEnded
            }
            return withSessionCookie(req, HTTPSupport.json(.object([("token", .string(fresh)), ("user_id", .string(userID)),
                                                                     ("expires_at", .int(expires))])), token: fresh, expires: expires)
        }
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
            let (token, userID, expires) = try await mintGuest(req, ctx)
            return withSessionCookie(req, HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)), ("guest", true)]),
                                                           status: .created), token: token, expires: expires)
        }
        // better-auth's name for the same thing, with its wire shape (pylon-aux.md §1.4).
        router.post("/api/auth/anonymous") { req, ctx in
            let (token, userID, expires) = try await mintGuest(req, ctx)
            return withSessionCookie(req, HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)), ("is_guest", true),
                                                                     ("expires_at", .int(expires))])), token: token, expires: expires)
        }
        // Pylon's upgrade: a guest session becomes a user's, in place (--dev: the caller's own
        // session; the admin token: the session named by "token").
        router.post("/api/auth/upgrade") { req, _ in
            let who = try await auth(req)
            let b = try await body(req)
            guard who.isAdmin || config.dev else {
                throw HostError.forbidden("upgrading a guest session is only allowed in --dev mode or with the admin token")
            }
            guard let token = who.isAdmin ? b["token"]?.stringValue : callerToken(req), token.hasPrefix("pylon_") else {
                throw HostError.badRequest("MISSING_FIELD", who.isAdmin ? "the body needs \"token\": the guest session to upgrade" : "send the guest session's token")
            }
            guard let userID = b["user_id"]?.stringValue, !userID.isEmpty, userID.count <= 256, !userID.hasPrefix("guest_") else {
                throw HostError.badRequest("MISSING_FIELD", "the body needs \"user_id\": the user the guest session becomes (not a guest id)")
            }
            guard try await sessions.upgradeGuest(token, to: userID) else {
                throw HostError.badRequest("UPGRADE_FAILED", "that token is not a live guest session")
            }
            return HTTPSupport.json(.object([("upgraded", true), ("user_id", .string(userID))]))
        }
        let logout: @Sendable (Request, PylonRequestContext) async throws -> Response = { req, _ in
            var revoked = false
            if let token = callerToken(req), token.hasPrefix("pylon_") {
                revoked = try await sessions.revoke(token)
            }
            return withoutSessionCookie(req, HTTPSupport.json(.object([("revoked", .bool(revoked))])))
        }
        router.post("/api/auth/logout", use: logout)
        router.delete("/api/auth/session", use: logout)
        router.get("/api/auth/sessions") { req, _ in
            let user = try await sessionUser(req)
            let current = callerToken(req).map(SessionStore.hash)
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
            try await dropPendingEmailChanges(user)
            return withoutSessionCookie(req, HTTPSupport.json(.object([("revoked_count", .int(Int64(n)))])))
        }
    }

    /// The user id of a request signed in with a session (`/api/auth/sessions`, API keys,
    /// password change, JWTs, the account): anonymous callers get 401, the admin token
    /// (which has no sessions) 403, and so do API keys and JWTs — a credential derived from
    /// a session must not make more credentials, end sessions or change the account of the
    /// user it acts for.
    func sessionUser(_ req: Request) async throws -> String {
        let who = try await auth(req)
        if who.isAdmin {
            throw HostError.forbidden("the admin token has no sessions; call this with a user's session token")
        }
        if who.apiKeyID != nil {
            throw HostError(status: 403, code: "API_KEY_AUTH_FORBIDDEN", message: "an API key cannot do this; sign in with a session")
        }
        guard let user = who.userID else {
            throw HostError(status: 401, code: "AUTH_REQUIRED", message: "sign in first: send Authorization: Bearer <session token> or the session cookie")
        }
        guard callerToken(req)?.hasPrefix("pylon_") == true else {
            throw HostError(status: 403, code: "SESSION_REQUIRED", message: "a JWT cannot do this; sign in with a session")
        }
        return user
    }

    /// `row` as `GET /api/auth/session` shows it: never `passwordHash` or a `_` field, nor
    /// the manifest's `auth.user.hide` ones; only `auth.user.expose` (and `id`) when given.
    static func visibleUser(_ row: JSONValue, _ config: AuthConfig) -> JSONValue {
        guard case let .object(fields) = row else { return row }
        let hidden = Set(config.userHide + ["passwordHash"]), exposed = Set(config.userExpose)
        return .object(fields.filter { name, _ in
            name == "id" || (!name.hasPrefix("_") && !hidden.contains(name) && (exposed.isEmpty || exposed.contains(name)))
        })
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
}
