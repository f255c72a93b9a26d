import Foundation
import PylonCurl
import JWTKit
import PylonJSON
import PylonPluginABI

/// A failed OAuth request: ABI status, stable code, a message without secrets.
struct OAuthError: Error, Sendable {
    var status: pylon_status
    var code: String
    var message: String

    static func notFound(_ id: String) -> OAuthError {
        OAuthError(status: PYLON_ERR_NOT_FOUND, code: "PROVIDER_NOT_FOUND",
                   message: "no OAuth provider \"\(id)\" is configured; set PYLON_OAUTH_\(id.uppercased())_CLIENT_ID and _CLIENT_SECRET")
    }
    static func bad(_ message: String) -> OAuthError { OAuthError(status: PYLON_ERR_INVALID_ARGUMENT, code: "INVALID_REQUEST", message: message) }
    static func exchange(_ message: String) -> OAuthError { OAuthError(status: PYLON_ERR_GENERIC, code: "OAUTH_TOKEN_EXCHANGE_FAILED", message: message) }
    static func idToken(_ message: String) -> OAuthError { OAuthError(status: PYLON_ERR_GENERIC, code: "OAUTH_ID_TOKEN_INVALID", message: message) }
    static func unreachable(_ f: ProviderHTTP.Failure) -> OAuthError {
        OAuthError(status: PYLON_ERR_CONNECTION, code: "OAUTH_PROVIDER_UNREACHABLE", message: f.message)
    }
}

/// The claims read from an id_token; its signature, `exp`, `iss`, `aud` and `nonce` are checked.
struct IDTokenClaims: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nonce: String?
    var email: String?
    var email_verified: BoolClaim?
    var name: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// The provider conversations behind `pylon_oauth_v1`: authorization URLs, the code
/// exchange with id_token verification and userinfo, and refresh.
final class OAuthEngine: Sendable {
    let registry: ProviderRegistry
    let http: ProviderHTTP
    private let cache = ProviderCache()

    init(registry: ProviderRegistry) {
        self.registry = registry
        http = ProviderHTTP(timeoutMs: registry.timeoutMs, caFile: registry.caFile)
    }

    func providers() -> JSONValue {
        .array(registry.providers.values.sorted { $0.id < $1.id }.map { p in
            .object([("provider", .string(p.id)), ("name", .string(p.name)), ("pkce", .bool(p.pkce)), ("oidc", .bool(p.isOIDC))])
        })
    }

    func provider(_ req: JSONValue) throws(OAuthError) -> Provider {
        guard let id = req["provider"]?.stringValue else { throw .bad("the request names no provider") }
        guard let p = registry.providers[id.lowercased()] else { throw .notFound(id) }
        return p
    }

    func authorize(_ req: JSONValue) async throws(OAuthError) -> JSONValue {
        let p = try await resolved(try provider(req))
        guard let state = req["state"]?.stringValue, !state.isEmpty, let auth = p.authURL else { throw .bad("authorize needs a state") }
        guard let redirect = p.redirect ?? req["redirect_uri"]?.stringValue else {
            throw .bad("provider \(p.id) has no redirect URL: set PYLON_OAUTH_\(p.id.uppercased())_REDIRECT")
        }
        var q: [(String, String)] = [("client_id", p.clientID), ("redirect_uri", redirect), ("response_type", "code"),
                                     ("scope", p.scopes.joined(separator: " ")), ("state", state)]
        if p.isOIDC, let nonce = req["nonce"]?.stringValue { q.append(("nonce", nonce)) }
        if p.pkce, let challenge = req["code_challenge"]?.stringValue {
            q += [("code_challenge", challenge), ("code_challenge_method", "S256")]
        }
        q += p.extraAuthParams
        return .object([("url", .string(auth + (auth.contains("?") ? "&" : "?") + CurlHTTP.formEncode(q)))])
    }

    func exchange(_ req: JSONValue) async throws(OAuthError) -> JSONValue {
        let p = try await resolved(try provider(req))
        guard let code = req["code"]?.stringValue, !code.isEmpty else { throw .bad("the exchange needs a code") }
        guard let redirect = p.redirect ?? req["redirect_uri"]?.stringValue else { throw .bad("provider \(p.id) has no redirect URL") }
        var fields: [(String, String)] = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect)]
        if p.pkce, let verifier = req["code_verifier"]?.stringValue { fields.append(("code_verifier", verifier)) }
        let tokens = try await tokenRequest(p, fields)
        guard let access = tokens["access_token"]?.stringValue else { throw .exchange("\(p.id) answered without an access token") }
        var identity: (subject: String, email: String?, verified: Bool, name: String?)
        switch p.identity {
        case .oidc:
            if let idToken = tokens["id_token"]?.stringValue {
                let c = try await verify(idToken, p, nonce: req["nonce"]?.stringValue)
                identity = (c.sub.value, c.email, c.email_verified?.value ?? false, c.name)
                if identity.email == nil, let info = p.userinfoURL {
                    let u = try await userinfo(info, access)
                    if u["sub"]?.stringValue == identity.subject {
                        identity.email = u["email"]?.stringValue
                        identity.verified = Self.flag(u["email_verified"])
                        identity.name = identity.name ?? u["name"]?.stringValue
                    }
                }
            } else if let info = p.userinfoURL {
                let u = try await userinfo(info, access)
                guard let sub = u["sub"]?.stringValue else { throw .exchange("\(p.id)'s userinfo has no sub") }
                identity = (sub, u["email"]?.stringValue, Self.flag(u["email_verified"]), u["name"]?.stringValue)
            } else {
                throw .idToken("\(p.id) answered without an id_token")
            }
        case .github:
            let u = try await userinfo(p.userinfoURL!, access)
            guard let id = u["id"].flatMap({ $0.intValue.map(String.init) ?? $0.stringValue }) else { throw .exchange("GitHub's user has no id") }
            let emails = (try? await userinfo("https://api.github.com/user/emails", access))?.arrayValue ?? []
            let primary = emails.first { $0["primary"]?.boolValue == true && $0["verified"]?.boolValue == true }
            identity = (id, primary?["email"]?.stringValue ?? u["email"]?.stringValue, primary != nil,
                        u["name"]?.stringValue ?? u["login"]?.stringValue)
        case .discord:
            let u = try await userinfo(p.userinfoURL!, access)
            guard let id = u["id"]?.stringValue else { throw .exchange("Discord's user has no id") }
            identity = (id, u["email"]?.stringValue, u["verified"]?.boolValue ?? false, u["global_name"]?.stringValue ?? u["username"]?.stringValue)
        case .gitlab:
            let u = try await userinfo(p.userinfoURL!, access)
            guard let id = u["id"].flatMap({ $0.intValue.map(String.init) }) else { throw .exchange("GitLab's user has no id") }
            identity = (id, u["email"]?.stringValue, u["confirmed_at"]?.stringValue != nil, u["name"]?.stringValue)
        }
        let email = identity.email?.trimmingCharacters(in: .whitespaces).lowercased()
        return .object([("provider", .string(p.id)), ("subject", .string(identity.subject)),
                        ("email", email.map(JSONValue.string) ?? .null), ("email_verified", .bool(email != nil && identity.verified)),
                        ("name", identity.name.map(JSONValue.string) ?? .null), ("tokens", Self.tokenSet(tokens))])
    }

    func refresh(_ req: JSONValue) async throws(OAuthError) -> JSONValue {
        let p = try await resolved(try provider(req))
        guard let token = req["refresh_token"]?.stringValue, !token.isEmpty else {
            throw OAuthError(status: PYLON_ERR_INVALID_ARGUMENT, code: "NO_REFRESH_TOKEN", message: "there is no refresh token to use")
        }
        do {
            return Self.tokenSet(try await tokenRequest(p, [("grant_type", "refresh_token"), ("refresh_token", token)]))
        } catch let e where e.code == "OAUTH_TOKEN_EXCHANGE_FAILED" {
            throw OAuthError(status: e.status, code: "REFRESH_FAILED", message: e.message)
        }
    }

    // MARK: pieces

    /// The token endpoint's JSON answer, with the client authenticated as `p` wants.
    private func tokenRequest(_ p: Provider, _ fields: [(String, String)]) async throws(OAuthError) -> JSONValue {
        guard let url = p.tokenURL else { throw .exchange("\(p.id) has no token endpoint") }
        var body = fields
        var headers: [String] = []
        var secret = p.clientSecret
        if let apple = p.appleSecret {
            do { secret = try await apple.mint() } catch { throw .exchange("\(p.id): the client secret could not be signed (\(error))") }
        }
        switch p.tokenAuth {
        case .form:
            body.append(("client_id", p.clientID))
            if let secret { body.append(("client_secret", secret)) }
        case .basic:
            let pair = CurlHTTP.escape(p.clientID) + ":" + CurlHTTP.escape(secret ?? "")
            headers.append("Authorization: Basic " + Data(pair.utf8).base64EncodedString())
        }
        let reply: ProviderHTTP.Reply
        do throws(ProviderHTTP.Failure) {
            reply = try await http.postForm(url, body, headers: headers)
        } catch {
            throw OAuthError(status: PYLON_ERR_CONNECTION, code: "OAUTH_TOKEN_EXCHANGE_FAILED", message: "\(p.id) cannot be reached: \(error.message)")
        }
        let json = reply.json
        guard (200..<300).contains(reply.status), let json, json["error"] == nil, json["access_token"] != nil else {
            throw .exchange("\(p.id) refused the request (HTTP \(reply.status)): \(Self.providerError(json))")
        }
        return json
    }

    /// A GET to a provider; a transport failure is OAUTH_PROVIDER_UNREACHABLE.
    private func get(_ url: String, bearer: String? = nil) async throws(OAuthError) -> ProviderHTTP.Reply {
        do throws(ProviderHTTP.Failure) {
            return try await http.getJSON(url, bearer: bearer)
        } catch {
            throw .unreachable(error)
        }
    }

    private func userinfo(_ url: String, _ access: String) async throws(OAuthError) -> JSONValue {
        let reply = try await get(url, bearer: access)
        guard (200..<300).contains(reply.status), let json = reply.json else {
            throw .exchange("\(CurlHTTP.origin(url)) answered HTTP \(reply.status) for the user's profile")
        }
        return json
    }

    /// Checks the id_token's signature against the provider's JWKS (fetched again once when
    /// no key matches, for a rotation), then iss, aud, exp and nonce.
    private func verify(_ token: String, _ p: Provider, nonce: String?) async throws(OAuthError) -> IDTokenClaims {
        guard let jwks = p.jwksURL else { throw .idToken("\(p.id) has no JWKS URL to check its id_token with") }
        var claims: IDTokenClaims?
        for fresh in [false, true] {
            let keys = try await cache.keys(jwks, fresh: fresh) { () async throws(OAuthError) -> String in
                let reply = try await self.get(jwks)
                guard reply.status == 200 else { throw OAuthError.idToken("the JWKS at \(CurlHTTP.origin(jwks)) answered HTTP \(reply.status)") }
                return String(decoding: reply.body, as: UTF8.self)
            }
            if let c = try? await keys.verify(token, as: IDTokenClaims.self) {
                claims = c
                break
            }
        }
        guard let claims else { throw .idToken("the id_token's signature or expiry does not check out against \(p.id)'s keys") }
        if let issuer = p.issuer {
            guard claims.iss.value == issuer else { throw .idToken("the id_token's issuer is \(claims.iss.value), expected \(issuer)") }
        } else if p.id == "microsoft" {
            guard claims.iss.value.hasPrefix("https://login.microsoftonline.com/") else { throw .idToken("the id_token's issuer is not Microsoft's") }
        } else if p.id == "apple" {
            guard claims.iss.value == "https://appleid.apple.com" else { throw .idToken("the id_token's issuer is not Apple's") }
        }
        guard claims.aud.value.contains(p.clientID) else { throw .idToken("the id_token was issued for another client") }
        if let nonce, claims.nonce != nonce { throw .idToken("the id_token's nonce does not match this sign-in") }
        return claims
    }

    /// Fills in an OIDC provider's endpoints from its discovery document.
    private func resolved(_ p: Provider) async throws(OAuthError) -> Provider {
        guard let issuer = p.issuer, p.authURL == nil || p.tokenURL == nil || p.jwksURL == nil else { return p }
        let doc = try await cache.discovery(issuer) { () async throws(OAuthError) -> JSONValue in
            let url = issuer + "/.well-known/openid-configuration"
            let reply = try await self.get(url)
            guard reply.status == 200, let json = reply.json, json["issuer"]?.stringValue == issuer else {
                throw OAuthError(status: PYLON_ERR_CONNECTION, code: "OAUTH_PROVIDER_UNREACHABLE",
                                 message: "\(url) is not a discovery document for issuer \(issuer) (HTTP \(reply.status))")
            }
            return json
        }
        var out = p
        func url(_ key: String) throws(OAuthError) -> String? {
            guard let u = doc[key]?.stringValue else { return nil }
            guard ProviderRegistry.acceptable(u) else { throw .exchange("\(issuer)'s \(key) is not an acceptable URL") }
            return u
        }
        if out.authURL == nil { out.authURL = try url("authorization_endpoint") }
        if out.tokenURL == nil { out.tokenURL = try url("token_endpoint") }
        if out.userinfoURL == nil { out.userinfoURL = try url("userinfo_endpoint") }
        if out.jwksURL == nil { out.jwksURL = try url("jwks_uri") }
        // OpenID's default client authentication is HTTP Basic (and RFC 6749 makes servers
        // support it); the form is used only when the provider lists it alone.
        let methods = doc["token_endpoint_auth_methods_supported"]?.arrayValue?.compactMap(\.stringValue) ?? []
        out.tokenAuth = methods.isEmpty || methods.contains("client_secret_basic") ? .basic : .form
        guard out.authURL != nil, out.tokenURL != nil else { throw .exchange("\(issuer)'s discovery document lacks endpoints") }
        return out
    }

    /// The token answer as the ABI's token set (`expires_at` in Unix seconds).
    static func tokenSet(_ t: JSONValue) -> JSONValue {
        var o: [(String, JSONValue)] = [("access_token", t["access_token"] ?? .null)]
        for key in ["refresh_token", "id_token", "scope"] { if let v = t[key]?.stringValue { o.append((key, .string(v))) } }
        if let s = t["expires_in"]?.intValue ?? t["expires_in"]?.stringValue.flatMap({ Int64($0) }) {
            o.append(("expires_at", .int(Int64(Date().timeIntervalSince1970) + s)))
        }
        return .object(o)
    }

    /// A provider's error answer without anything secret: its `error` and description only, cut short.
    static func providerError(_ json: JSONValue?) -> String {
        guard let json else { return "no JSON answer" }
        let code = json["error"]?.stringValue ?? "unknown_error"
        let text = json["error_description"]?.stringValue.map { ": " + $0 } ?? ""
        return String((code + text).prefix(240))
    }

    static func flag(_ v: JSONValue?) -> Bool { v?.boolValue ?? (v?.stringValue == "true") }
}

/// Discovery documents and key sets, fetched once and kept for ten minutes.
actor ProviderCache {
    private var documents: [String: (JSONValue, Date)] = [:]
    private var keySets: [String: (JWTKeyCollection, Date)] = [:]
    static let ttl: TimeInterval = 600

    func discovery(_ issuer: String, fetch: () async throws(OAuthError) -> JSONValue) async throws(OAuthError) -> JSONValue {
        if let (doc, at) = documents[issuer], Date().timeIntervalSince(at) < Self.ttl { return doc }
        let doc = try await fetch()
        documents[issuer] = (doc, Date())
        return doc
    }

    /// The key set at `url`; `fresh` fetches it again unless it was fetched in the last 30 s.
    func keys(_ url: String, fresh: Bool, fetch: () async throws(OAuthError) -> String) async throws(OAuthError) -> JWTKeyCollection {
        if let (keys, at) = keySets[url] {
            let age = Date().timeIntervalSince(at)
            if age < Self.ttl && (!fresh || age < 30) { return keys }
        }
        let text = try await fetch()
        let keys = JWTKeyCollection()
        do { _ = try await keys.add(jwksJSON: text) } catch { throw .idToken("the provider's JWKS cannot be read: \(error)") }
        keySets[url] = (keys, Date())
        return keys
    }
}
