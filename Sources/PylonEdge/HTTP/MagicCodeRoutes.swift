import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// Sign-in by email (pylon-aux.md §1.5), served when a plugin provides `pylon.auth.code/1`:
/// 6-digit magic codes, magic links, and email verification for a signed-in user. The
/// plugin makes, checks and delivers the secrets; the host keeps their hashed state
/// (`AuthCodes`), counts requests in the auth buckets (per address and per email), and
/// resolves or creates the user. What Pylon got wrong is fixed with its wire shapes kept:
/// emails are validated and normalized, secrets are stored hashed, `magic/verify` is
/// counted per address too, a failed user insert fails the sign-in. With `PYLON_CAPTCHA_*`
/// set, sending a code or link needs a solved CAPTCHA (`captchaToken`), as in Pylon.
extension RouteContext {
    func addMagicCodeRoutes(_ router: Router<PylonRequestContext>, _ codes: AuthCodes) {
        router.post("/api/auth/magic/send") { req, ctx in
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            try authLimiter.check(.send, client: client(req, ctx), account: email.value)
            try await captcha?.verify(b["captchaToken"]?.stringValue)
            let code = try await sendCode(codes, .magicCode, subject: email.value, email: email, userID: nil)
            return HTTPSupport.json(.object([("sent", true), ("email", .string(email.value))] + devEcho([("dev_code", code)])))
        }
        router.post("/api/auth/magic/verify") { req, ctx in
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            let code = try Self.field(b, "code").trimmingCharacters(in: .whitespaces)
            // Per address too (Pylon counts only the code's 5 attempts): one address cannot
            // try codes for many emails.
            try authLimiter.check(.verify, client: client(req, ctx), account: email.value)
            guard case .accepted = try Self.settled(try await codes.verifyCode(.magicCode, subject: email.value, presented: code)) else {
                throw Self.invalidCode
            }
            try await claimAccount(withEmail: email)
            return try await signedIn(req, userID: try await passwords.signInByEmail(email))
        }
        router.post("/api/auth/email/send-verification") { req, ctx in
            let userID = try await sessionUser(req)
            try authLimiter.check(.send, client: client(req, ctx), account: userID)
            guard let email = try await passwords.email(ofUser: userID) else {
                throw HostError.badRequest("NO_EMAIL", "your user has no email address to verify; set its email field first")
            }
            let code = try await sendCode(codes, .emailVerification, subject: userID, email: email, userID: userID)
            return HTTPSupport.json(.object([("sent", true), ("email", .string(email.value))] + devEcho([("dev_code", code)])))
        }
        router.post("/api/auth/email/verify") { req, ctx in
            let userID = try await sessionUser(req)
            let code = try Self.field(try await body(req), "code").trimmingCharacters(in: .whitespaces)
            try authLimiter.check(.verify, client: client(req, ctx), account: userID)
            guard case let .accepted(sentTo, _) = try Self.settled(try await codes.verifyCode(.emailVerification, subject: userID, presented: code)) else {
                throw Self.invalidCode
            }
            guard let email = try? EmailAddress(sentTo), let stamped = try await passwords.markEmailVerified(userID: userID, email: email) else {
                throw HostError(status: 409, code: "EMAIL_CHANGED", message: "your email changed after the code was sent; ask for a new code")
            }
            return HTTPSupport.json(.object([("verified", true), ("emailVerified", stamped)]))
        }
        router.post("/api/auth/magic-link/send") { req, ctx in
            let b = try await body(req)
            let email = try EmailAddress(try Self.field(b, "email"))
            try authLimiter.check(.send, client: client(req, ctx), account: email.value)
            try await captcha?.verify(b["captchaToken"]?.stringValue)
            let (token, key, _) = try await codes.issueLink(.magicLink, email: email.value)
            let url = "\(publicURL)/api/auth/magic-link/verify?token=\(token)"
            do {
                try await codes.send("MAGIC_LINK", to: email.value, vars: [("url", .string(url)), ("email", .string(email.value))])
            } catch {
                // In --dev the link is in the answer, so a failed delivery is not an error (as Pylon).
                guard config.dev else {
                    try? await codes.discard(.magicLink, subject: key)
                    throw error
                }
            }
            return HTTPSupport.json(.object([("sent", true)] + devEcho([("dev_token", token), ("dev_url", url)])))
        }
        // A link opened in a browser: the session cookie, then on to the app (PYLON_DASHBOARD_URL).
        router.get("/api/auth/magic-link/verify") { req, ctx in
            // Mail scanners and link previews send HEAD: it must not use the link up.
            if req.method == .head { return Self.linkPreview }
            let token = req.uri.queryParameters.get("token").map { String($0) } ?? ""
            let (sessionToken, _, expires) = try await verifyMagicLink(codes, token: token, req, ctx)
            return withSessionCookie(req, Response(status: .found, headers: [.location: config.dashboardURL]),
                                     token: sessionToken, expires: expires, always: true)
        }
        router.post("/api/auth/magic-link/verify") { req, ctx in
            let token = try Self.field(try await body(req), "token")
            let (sessionToken, userID, expires) = try await verifyMagicLink(codes, token: token, req, ctx)
            let r = HTTPSupport.json(.object([("token", .string(sessionToken)), ("user_id", .string(userID)), ("expires_at", .int(expires))]))
            return withSessionCookie(req, r, token: sessionToken, expires: expires)
        }
    }

    /// Issues a code for `subject` and emails it; the code (for `dev_code`). Outside --dev a
    /// failed send removes the code again (nothing half-done, no cooldown left behind) and
    /// answers 500 EMAIL_SEND_FAILED.
    private func sendCode(_ codes: AuthCodes, _ purpose: AuthCodes.Purpose, subject: String, email: EmailAddress,
                          userID: String?) async throws -> String {
        switch try await codes.issueCode(purpose, subject: subject, email: email.value, userID: userID) {
        case let .throttled(wait):
            var e = HostError.rateLimited(retryAfter: wait, "a code was sent to this address moments ago; use it, or ask again in \(wait) s")
            e.hint = "Try again in \(wait) seconds."
            throw e
        case let .issued(code, _):
            do {
                try await codes.send("MAGIC_CODE", to: email.value, vars: [("code", .string(code)), ("email", .string(email.value))])
            } catch {
                // In --dev the code is in the answer, so a failed delivery is not an error (as Pylon).
                guard config.dev else {
                    try? await codes.discard(purpose, subject: subject)
                    throw error
                }
            }
            return code
        }
    }

    /// Uses a magic-link token: the user (created on first sign-in) and a new session.
    private func verifyMagicLink(_ codes: AuthCodes, token: String, _ req: Request, _ ctx: PylonRequestContext) async throws
        -> (token: String, userID: String, expiresAt: Int64) {
        try authLimiter.check(.verify, client: client(req, ctx))
        guard case let .accepted(sentTo, _) = try Self.settled(try await codes.verifyLink(.magicLink, token: token)),
              let email = try? EmailAddress(sentTo) else {
            throw Self.invalidToken
        }
        try await claimAccount(withEmail: email)
        let userID = try await passwords.signInByEmail(email)
        let (session, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
        return (session, userID, expires)
    }

    /// The verdict, with a used-up code turned into Pylon's 429.
    static func settled(_ verdict: AuthCodes.Verdict) throws(HostError) -> AuthCodes.Verdict {
        if case .exhausted = verdict {
            throw HostError.rateLimited(retryAfter: 60, "too many wrong codes: this code no longer works; ask for a new one")
        }
        return verdict
    }

    /// `fields` in --dev (Pylon echoes codes and links there), else nothing.
    func devEcho(_ fields: [(String, String)]) -> [(String, JSONValue)] {
        config.dev ? fields.map { ($0.0, .string($0.1)) } : []
    }

    /// Where users reach this host (`PYLON_PUBLIC_URL`), for links in emails.
    var publicURL: String { config.publicURL ?? "http://localhost:\(config.port)" }

    static let invalidCode = HostError(status: 401, code: "INVALID_CODE", message: "the code is wrong or has expired; check it, or ask for a new one")
    static let invalidToken = HostError(status: 401, code: "INVALID_TOKEN", message: "the link is invalid, used or expired; ask for a new one")
}
