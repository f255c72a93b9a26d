import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON

/// Email-and-password sign-in (`/api/auth/password/*`, pylon-aux.md §1.12): register, log
/// in and change a password, each answered with a session as every sign-in flow is
/// (`{"token","user_id","expires_at"}`, plus the session cookie for a browser request).
/// Register counts in the SEND auth bucket, login and change in LOGIN, per address and per
/// account, so guessing is slow; a wrong password and an unknown email get the same 401
/// after the same work.
extension RouteContext {
    func addPasswordRoutes(_ router: Router<PylonRequestContext>) {
        router.post("/api/auth/password/register") { req, ctx in
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            let password = try Self.field(b, "password")
            try authLimiter.check(.send, client: client(req, ctx), account: email.value)
            let name = (b["displayName"] ?? b["name"])?.stringValue
            let userID = try await passwords.register(email, password: password, displayName: name)
            return try await signedIn(req, userID: userID)
        }
        router.post("/api/auth/password/login") { req, ctx in
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            let password = try Self.field(b, "password")
            try authLimiter.check(.login, client: client(req, ctx), account: email.value)
            guard let userID = try await passwords.login(email, password: password) else { throw Self.invalidCredentials }
            return try await signedIn(req, userID: userID)
        }
        // Every session of the user ends (a changed password is often a response to a
        // stolen one); the caller gets a new one.
        router.post("/api/auth/password/change") { req, ctx in
            let userID = try await sessionUser(req)
            let b = try await body(req)
            let current = try Self.field(b, "currentPassword"), new = try Self.field(b, "newPassword")
            try authLimiter.check(.login, client: client(req, ctx), account: userID)
            guard try await passwords.change(userID: userID, current: current, new: new) else { throw Self.invalidCredentials }
            _ = try await sessions.revokeAll(userID: userID)
            return try await signedIn(req, userID: userID, extra: [("changed", true)])
        }
        let resetUnavailable: @Sendable (Request, PylonRequestContext) async throws -> Response = { _, _ in
            throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                            message: "password reset sends a link by email, which needs the auth.code plugin (not installed); change the password while signed in instead")
        }
        router.post("/api/auth/password/reset/request", use: resetUnavailable)
        router.post("/api/auth/password/reset/complete", use: resetUnavailable)
    }

    /// A new session for `userID`: `{"token","user_id","expires_at"}` (after `extra`), and
    /// the session cookie when the request came from a page (it has an Origin), as Pylon.
    func signedIn(_ req: Request, userID: String, extra: [(String, JSONValue)] = []) async throws -> Response {
        let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
        let r = HTTPSupport.json(.object(extra + [("token", .string(token)), ("user_id", .string(userID)), ("expires_at", .int(expires))]))
        return withSessionCookie(req, r, token: token, expires: expires)
    }

    /// The Set-Cookie value that removes the session cookie (sign-out, account deletion).
    var clearedSessionCookie: String { "\(config.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax" }

    /// `response` with the session cookie for `token` when the request came from a page (it
    /// has an Origin), as Pylon sets it.
    func withSessionCookie(_ req: Request, _ response: Response, token: String, expires: Int64) -> Response {
        guard req.headers[.origin] != nil else { return response }
        var r = response
        r.headers[.setCookie] = sessionCookie(token: token, expires: expires)
        return r
    }

    /// The Set-Cookie value for a session `token` that ends at `expires` (0: in 30 days).
    func sessionCookie(token: String, expires: Int64) -> String {
        let maxAge = expires == 0 ? 2_592_000 : max(0, expires - Int64(Date().timeIntervalSince1970))
        let secure = config.dev ? "" : "; Secure"
        return "\(config.cookieName)=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Lax\(secure)"
    }

    /// A required string member of a request body.
    static func field(_ body: JSONValue, _ name: String) throws(HostError) -> String {
        guard let s = body[name]?.stringValue, !s.isEmpty else {
            throw HostError.badRequest("MISSING_FIELD", "the body needs \"\(name)\" (a non-empty string)")
        }
        return s
    }

    static let invalidCredentials = HostError(status: 401, code: "INVALID_CREDENTIALS", message: "the email or the password is wrong")
}
