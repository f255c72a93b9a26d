import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonServices
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
            try await checkNewPassword(password)
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
            try await checkNewPassword(new)
            guard try await passwords.change(userID: userID, current: current, new: new) else { throw Self.invalidCredentials }
            _ = try await sessions.revokeAll(userID: userID)
            try await dropPendingEmailChanges(userID)
            return try await signedIn(req, userID: userID, extra: [("changed", true)])
        }
        if let codes { addPasswordResetRoutes(router, codes) } else {
            let resetUnavailable: @Sendable (Request, PylonRequestContext) async throws -> Response = { _, _ in
                throw HostError(status: 501, code: "CAPABILITY_UNAVAILABLE",
                                message: "password reset sends a link by email, which needs the auth.code plugin (not installed); change the password while signed in instead")
            }
            router.post("/api/auth/password/reset/request", use: resetUnavailable)
            router.post("/api/auth/password/reset/complete", use: resetUnavailable)
        }
    }

    /// Reset by email: a single-use link (30 min) to `PYLON_PASSWORD_RESET_URL?token=`; the
    /// new password ends every session of the user and signs the caller in. The request
    /// answers the same, after the same work, whether the email has an account or not: the
    /// link is issued either way and mailed (in the background) only to an account.
    private func addPasswordResetRoutes(_ router: Router<PylonRequestContext>, _ codes: AuthCodes) {
        router.post("/api/auth/password/reset/request") { req, ctx in
            let email = try EmailAddress(try Self.field(try await body(req), "email"))
            try authLimiter.check(.send, client: client(req, ctx), account: email.value)
            let userID = try await passwords.user(withEmail: email)
            let (token, _, _) = try await codes.issueLink(.passwordReset, email: email.value, userID: userID)
            let base = config.passwordResetURL ?? publicURL + "/reset-password"
            let url = base + (base.contains("?") ? "&" : "?") + "token=" + token
            if userID != nil {
                Task { try? await codes.send("PASSWORD_RESET", to: email.value, vars: [("url", .string(url)), ("email", .string(email.value))]) }
            }
            return HTTPSupport.json(.object([("sent", true)] + devEcho([("dev_token", token), ("dev_url", url)])))
        }
        router.post("/api/auth/password/reset/complete") { req, ctx in
            let b = try await body(req)
            let token = try Self.field(b, "token")
            let new = try Self.field(b, b["newPassword"] != nil ? "newPassword" : "password")
            // Before the link is used, so a refused password does not burn it.
            try PasswordAccounts.checkStrength(new)
            try authLimiter.check(.verify, client: client(req, ctx))
            try await breaches?.check(new)
            guard case let .accepted(sentTo, recorded) = try Self.settled(try await codes.verifyLink(.passwordReset, token: token)),
                  let email = try? EmailAddress(sentTo), let userID = try await passwords.user(withEmail: email),
                  recorded == nil || recorded == userID else {
                throw Self.invalidToken
            }
            try await claimIfUnproven(userID)
            try await passwords.setPassword(userID: userID, new: new)
            _ = try await sessions.revokeAll(userID: userID)
            // A reset is a recovery: whoever had the account may have minted keys in it.
            _ = try await apiKeys?.revokeAll(userID: userID)
            try await dropPendingEmailChanges(userID)
            _ = try await passwords.markEmailVerified(userID: userID, email: email)
            return try await signedIn(req, userID: userID, extra: [("reset", true)])
        }
    }

    /// Length limits, then (when configured) the breached-password check: before any other
    /// work, so a refused password changes nothing.
    func checkNewPassword(_ password: String) async throws {
        try PasswordAccounts.checkStrength(password)
        try await breaches?.check(password)
    }

    /// A new session for `userID`: `{"token","user_id","expires_at"}` (after `extra`), and
    /// the session cookie when the request came from a page (it has an Origin), as Pylon.
    func signedIn(_ req: Request, userID: String, extra: [(String, JSONValue)] = []) async throws -> Response {
        let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
        let r = HTTPSupport.json(.object(extra + [("token", .string(token)), ("user_id", .string(userID)), ("expires_at", .int(expires))]))
        return withSessionCookie(req, r, token: token, expires: expires)
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
