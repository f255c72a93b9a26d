import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import PylonCore
import PylonData
import PylonJSON
import PylonServices

/// OAuth / OpenID sign-in (pylon-aux.md §1.7, Pylon's routes and shapes, its gaps closed):
///
/// - `GET /api/auth/providers` → `[{"provider", "name", "auth_url"}]` (`auth_url`: the
///   login route below).
/// - `GET /api/auth/login/:p?callback=&error_callback=&redirect=1` → 302 to the provider (or
///   200 `{"redirect", "state"}`), with a short-lived cookie binding the flow to this
///   browser. `callback` must be a path on this host or a URL of a trusted origin.
/// - `GET /api/auth/callback/:p?code&state` (and a form POST, for `response_mode=form_post`):
///   the browser flow — session cookie and 302 to `callback`, or 302 to `error_callback`
///   with `oauth_error` and `oauth_error_message`; a bad state is 403 OAUTH_INVALID_STATE.
/// - `POST /api/auth/callback/:p` `{"state", "code"}` → `{"token", "user_id", "provider",
///   "expires_at"}` (in --dev also `{"state", "email", "name"}` without a provider).
/// - `POST /api/auth/oauth/refresh/:p` (a session) → `{"access_token", "expires_at",
///   "scope", "provider"}`.
///
/// Every route counts in the `verify` auth bucket of the caller's address (30 a minute by
/// default): a sign-in is a few requests, and offices share one address.
///
/// The state is a hash in the store, single use, ten minutes, and only good in the
/// browser that began it (`pylon_oauth_binding` cookie), so a login CSRF — a victim's
/// browser finishing an attacker's flow — fails; PKCE S256 and the OIDC nonce go with
/// every provider that takes them.
extension RouteContext {
    static let bindingCookie = "pylon_oauth_binding"
    /// Pylon's development origins, trusted for callbacks in --dev.
    static let devCallbackOrigins = ["http://localhost:3000", "http://localhost:4321", "http://localhost:5173", "http://127.0.0.1:3000"]

    func addOAuthRoutes(_ router: Router<PylonRequestContext>, _ oauth: OAuthService) {
        router.get("/api/auth/providers") { _, _ in
            HTTPSupport.json(.array(oauth.providers().map { p in
                let id = p["provider"]?.stringValue ?? ""
                return .object([("provider", .string(id)), ("name", p["name"] ?? .string(id)), ("auth_url", .string("/api/auth/login/\(id)"))])
            }))
        }
        router.get("/api/auth/login/:provider") { req, ctx in
            let provider = try ctx.parameters.require("provider").lowercased()
            try authLimiter.check(.verify, client: client(req, ctx))
            let q = req.uri.queryParameters
            guard let callback = q["callback"].map(String.init), !callback.isEmpty else {
                throw HostError.badRequest("MISSING_CALLBACK", "give ?callback=<where to send the browser after sign-in>")
            }
            let errorCallback = q["error_callback"].map(String.init) ?? callback
            for url in [callback, errorCallback] where !callbackAllowed(url) {
                throw HostError(status: 403, code: "UNTRUSTED_REDIRECT",
                                message: "\(url) is not on this host or a trusted origin; add its origin to PYLON_TRUSTED_ORIGINS (or the manifest's auth.trusted_origins)")
            }
            let state = Self.randomToken(), verifier = Self.randomToken(), nonce = Self.randomToken(), browser = Self.randomToken()
            let challenge = Self.base64URL(Array(SHA256.hash(data: Array(verifier.utf8))))
            let redirectURI = "\(config.dev ? "http" : "https")://\(req.head.authority ?? "localhost")/api/auth/callback/\(provider)"
            let answer = try await oauth.authorize(.object([("provider", .string(provider)), ("state", .string(state)), ("nonce", .string(nonce)),
                                                            ("code_challenge", .string(challenge)), ("redirect_uri", .string(redirectURI))]))
            guard let url = answer["url"]?.stringValue else { throw HostError(status: 502, code: "OAUTH_BAD_REPLY", message: "the auth.oauth plugin gave no URL") }
            try await oauth.accounts.begin(OAuthFlow(provider: provider, callbackURL: callback, errorCallbackURL: errorCallback,
                                                     verifier: verifier, nonce: nonce, redirectURI: redirectURI), state: state, browser: browser)
            var r = q["redirect"] == "1" ? Self.redirect(url) : HTTPSupport.json(.object([("redirect", .string(url)), ("state", .string(state))]))
            r.headers.append(HTTPField(name: .setCookie, value: bindingCookie(browser)))
            return r
        }
        router.get("/api/auth/callback/:provider") { req, ctx in
            try authLimiter.check(.verify, client: client(req, ctx))
            let q = req.uri.queryParameters
            return try await browserCallback(req, oauth, provider: try ctx.parameters.require("provider").lowercased(),
                                             state: q["state"].map(String.init), code: q["code"].map(String.init),
                                             error: q["error"].map(String.init), description: q["error_description"].map(String.init))
        }
        router.post("/api/auth/callback/:provider") { req, ctx in
            try authLimiter.check(.verify, client: client(req, ctx))
            let provider = try ctx.parameters.require("provider").lowercased()
            if req.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true {
                let raw = try await HTTPSupport.rawBody(req, limit: config.maxBodyBytes)
                let form = Self.formFields(String(buffer: raw))
                return try await browserCallback(req, oauth, provider: provider, state: form["state"], code: form["code"],
                                                 error: form["error"], description: form["error_description"])
            }
            let b = try await body(req)
            let state = try Self.field(b, "state")
            guard let flow = try await oauth.accounts.take(state: state, provider: provider, browser: Self.cookie(req, Self.bindingCookie)) else {
                throw Self.invalidState
            }
            let identity: OAuthIdentity
            if config.dev, b["code"] == nil, let email = b["email"]?.stringValue {
                identity = OAuthIdentity(devProvider: provider, email: try EmailAddress(email), name: b["name"]?.stringValue)
            } else {
                identity = try await exchange(oauth, flow, code: try Self.field(b, "code"))
            }
            let userID = try await signIn(oauth, identity)
            let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
            // The session cookie too when a page asked (it has an Origin), as every sign-in.
            var r = withSessionCookie(req, HTTPSupport.json(.object([("token", .string(token)), ("user_id", .string(userID)),
                                                                     ("provider", .string(provider)), ("expires_at", .int(expires))])),
                                      token: token, expires: expires)
            r.headers.append(HTTPField(name: .setCookie, value: bindingCookie(nil)))
            return r
        }
        router.post("/api/auth/oauth/refresh/:provider") { req, ctx in
            let provider = try ctx.parameters.require("provider").lowercased()
            let userID = try await sessionUser(req)
            try authLimiter.check(.verify, client: client(req, ctx), account: userID)
            guard let link = try await oauth.accounts.refreshToken(userID: userID, provider: provider) else {
                throw HostError(status: 404, code: "ACCOUNT_NOT_FOUND", message: "your account is not linked to \(provider); sign in with it first")
            }
            guard let refresh = link.token else {
                throw HostError.badRequest("NO_REFRESH_TOKEN", "\(provider) gave no refresh token; sign in with it again")
            }
            let tokens = try await oauth.refresh(.object([("provider", .string(provider)), ("refresh_token", .string(refresh))]))
            try await oauth.accounts.storeTokens(linkID: link.linkID, tokens)
            return HTTPSupport.json(.object([("access_token", tokens["access_token"] ?? .null), ("expires_at", tokens["expires_at"] ?? .null),
                                             ("scope", tokens["scope"] ?? .null), ("provider", .string(provider))]))
        }
    }

    /// The user `identity` signs in. An identity not linked yet whose provider vouches for
    /// its email is about to be linked to the account with that email: that account is
    /// claimed first (`claimIfUnproven`).
    private func signIn(_ oauth: OAuthService, _ identity: OAuthIdentity) async throws -> String {
        if identity.emailVerified, let email = identity.email,
           try await oauth.accounts.linkedUser(provider: identity.provider, subject: identity.subject) == nil {
            try await claimAccount(withEmail: email)
        }
        return try await oauth.accounts.signIn(identity)
    }

    /// The browser flow's end: a session cookie and 302 to the flow's callback, or 302 to its
    /// error callback. Only a state that does not check out is answered in JSON (403): then
    /// there is no trusted place to send the browser.
    private func browserCallback(_ req: Request, _ oauth: OAuthService, provider: String, state: String?, code: String?,
                                 error: String?, description: String?) async throws -> Response {
        guard let state, let flow = try await oauth.accounts.take(state: state, provider: provider, browser: Self.cookie(req, Self.bindingCookie)) else {
            throw Self.invalidState
        }
        do {
            if let error {
                throw HostError(status: 400, code: "OAUTH_DENIED", message: "\(provider) said \(error)\(description.map { ": \($0)" } ?? "")")
            }
            guard let code, !code.isEmpty else { throw HostError.badRequest("MISSING_FIELD", "\(provider) sent no code") }
            let userID = try await signIn(oauth, try await exchange(oauth, flow, code: code))
            let (token, expires) = try await sessions.create(userID: userID, device: req.headers[.userAgent])
            var r = withSessionCookie(req, Self.redirect(flow.callbackURL), token: token, expires: expires, always: true)
            r.headers.append(HTTPField(name: .setCookie, value: bindingCookie(nil)))
            return r
        } catch let e as HostError {
            var r = Self.redirect(Self.appending(flow.errorCallbackURL, [("oauth_error", e.code), ("oauth_error_message", String(e.message.prefix(500)))]))
            r.headers.append(HTTPField(name: .setCookie, value: bindingCookie(nil)))
            return r
        }
    }

    private func exchange(_ oauth: OAuthService, _ flow: OAuthFlow, code: String) async throws -> OAuthIdentity {
        try OAuthIdentity(try await oauth.exchange(.object([("provider", .string(flow.provider)), ("code", .string(code)),
                                                            ("code_verifier", .string(flow.verifier)), ("nonce", .string(flow.nonce)),
                                                            ("redirect_uri", .string(flow.redirectURI))])))
    }

    /// A path on this host, or a URL of a trusted origin (Pylon's development origins in --dev).
    func callbackAllowed(_ url: String) -> Bool {
        // No control characters anywhere: the URL becomes a Location header.
        guard !url.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return false }
        if url.hasPrefix("/") { return !url.hasPrefix("//") && !url.hasPrefix("/\\") }
        guard let origin = CSRFGuard.origin(ofURL: url) else { return false }
        var trusted = (config.trustedOrigins ?? data.manifest.auth.trustedOrigins).map { CSRFGuard.origin(ofURL: $0) ?? CSRFGuard.normalize($0) }
        if config.dev { trusted += Self.devCallbackOrigins }
        return trusted.contains(origin)
    }

    /// The binding cookie for `value` (nil: removed). Only sent back to the callback routes;
    /// SameSite=None outside --dev so a provider's form POST (Apple) carries it too.
    func bindingCookie(_ value: String?) -> String {
        let tail = config.dev ? "; SameSite=Lax" : "; SameSite=None; Secure"
        guard let value else { return "\(Self.bindingCookie)=; Path=/api/auth/callback; Max-Age=0; HttpOnly\(tail)" }
        return "\(Self.bindingCookie)=\(value); Path=/api/auth/callback; Max-Age=\(OAuthAccounts.stateLifetimeSeconds); HttpOnly\(tail)"
    }

    static let invalidState = HostError(status: 403, code: "OAUTH_INVALID_STATE",
                                        message: "this sign-in's state is unknown, used, expired, for another provider or from another browser; start again")

    static func redirect(_ location: String) -> Response {
        var r = Response(status: .found)
        r.headers[.location] = location
        r.headers[.cacheControl] = "no-store"
        return r
    }

    static func appending(_ url: String, _ params: [(String, String)]) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        let query = params.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
        return url + (url.contains("?") ? "&" : "?") + query
    }

    /// 32 random bytes, base64url without padding (43 characters).
    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        return base64URL((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func cookie(_ req: Request, _ name: String) -> String? {
        SessionCookie.value(named: name, inCookieHeaders: req.headers[values: .cookie])
    }

    /// An `application/x-www-form-urlencoded` body's fields (the first of each name).
    static func formFields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            let key = decode(kv[0])
            if out[key] == nil { out[key] = kv.count > 1 ? decode(kv[1]) : "" }
        }
        return out
    }
}
