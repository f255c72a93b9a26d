import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonServices
import PylonJSON

/// Changing a signed-in user's email (pylon-aux.md §1.12 `email/change/request|confirm`),
/// served with `pylon.auth.code/1`: the request mails a single-use link (24 h, the
/// `EMAIL_CHANGE` template, `{{url}}`) to the NEW address; the user's email changes only
/// when that link is opened (GET, then on to `PYLON_DASHBOARD_URL`) or posted back, and is
/// then verified. An address another user has is refused at both steps (409 EMAIL_IN_USE).
extension RouteContext {
    func addEmailChangeRoutes(_ router: Router<PylonRequestContext>, _ codes: AuthCodes) {
        router.post("/api/auth/email/change/request") { req, ctx in
            let user = try await sessionUser(req)
            guard try await !auth(req).isGuest else {
                throw HostError(status: 403, code: "GUEST_FORBIDDEN", message: "a guest has no email to change; sign up (upgrade the guest) first")
            }
            let b = try await body(req)
            guard let given = (b["newEmail"] ?? b["email"])?.stringValue else {
                throw HostError.badRequest("MISSING_FIELD", "the body needs \"newEmail\", the address to change to")
            }
            let email = try EmailAddress(given)
            try authLimiter.check(.send, client: client(req, ctx), account: user)
            if try await passwords.email(ofUser: user) == email {
                throw HostError.badRequest("SAME_EMAIL", "this is already your email")
            }
            if let owner = try await passwords.user(withEmail: email), owner != user {
                throw HostError(status: 409, code: "EMAIL_IN_USE", message: "another account has this email; choose another address")
            }
            // One pending change at a time: a new request replaces the last one's link.
            try await dropPendingEmailChanges(user)
            let (token, key, _) = try await codes.issueLink(.emailChange, email: email.value, userID: user)
            let url = "\(publicURL)/api/auth/email/change/confirm?token=\(token)"
            do {
                try await codes.send("EMAIL_CHANGE", to: email.value, vars: [("url", .string(url)), ("email", .string(email.value))])
            } catch {
                // In --dev the link is in the answer, so a failed delivery is not an error (as Pylon).
                guard config.dev else {
                    try? await codes.discard(.emailChange, subject: key)
                    throw error
                }
            }
            return HTTPSupport.json(.object([("sent", true), ("email", .string(email.value))] + devEcho([("dev_token", token), ("dev_url", url)])))
        }
        // The link opened in a browser: the change, then on to the app.
        router.get("/api/auth/email/change/confirm") { req, ctx in
            if req.method == .head { return Self.linkPreview } // a mail scanner: nothing happens
            let token = req.uri.queryParameters.get("token").map { String($0) } ?? ""
            _ = try await confirmEmailChange(codes, token: token, req, ctx)
            return Response(status: .found, headers: [.location: config.dashboardURL])
        }
        router.post("/api/auth/email/change/confirm") { req, ctx in
            let (user, email) = try await confirmEmailChange(codes, token: try Self.field(try await body(req), "token"), req, ctx)
            return HTTPSupport.json(.object([("changed", true), ("user_id", .string(user)), ("email", .string(email.value))]))
        }
    }

    /// Uses an email-change link: the user it was asked for now has the address it went to.
    private func confirmEmailChange(_ codes: AuthCodes, token: String, _ req: Request, _ ctx: PylonRequestContext) async throws
        -> (user: String, email: EmailAddress) {
        try authLimiter.check(.verify, client: client(req, ctx))
        guard case let .accepted(sentTo, userID?) = try Self.settled(try await codes.verifyLink(.emailChange, token: token)),
              let email = try? EmailAddress(sentTo) else {
            throw Self.invalidToken
        }
        try await passwords.changeEmail(userID: userID, to: email)
        return (userID, email)
    }
}
