import Foundation
import PylonJSON

/// How a provider wants the client authenticated at its token endpoint.
enum TokenAuth: Sendable {
    /// `client_id` and `client_secret` in the form body.
    case form
    /// HTTP Basic with the client id and secret (form body without them).
    case basic
}

/// How a provider's identity is read after the exchange.
enum IdentitySource: Sendable {
    /// The verified id_token's claims (OpenID Connect), else the userinfo endpoint's.
    case oidc
    /// GitHub: `/user`, and `/user/emails` for the primary verified address.
    case github
    /// Discord: `/users/@me` (`id`, `email`, `verified`, `global_name`/`username`).
    case discord
    /// GitLab: `/api/v4/user` (`id`, `email`, `confirmed_at`, `name`).
    case gitlab
}

/// One configured provider: its endpoints (fixed, or found by OIDC discovery from
/// `issuer`), its client credentials and how to read its identity.
struct Provider: Sendable {
    var id: String
    var name: String
    var clientID: String
    var clientSecret: String?
    var redirect: String?
    var scopes: [String]
    var authURL: String?
    var tokenURL: String?
    var userinfoURL: String?
    /// OIDC issuer: discovery at `<issuer>/.well-known/openid-configuration`; id_tokens
    /// must name it as `iss`.
    var issuer: String?
    var jwksURL: String?
    var tokenAuth: TokenAuth = .form
    var identity: IdentitySource = .oidc
    /// Sends a PKCE S256 challenge (every provider here accepts one except Apple's).
    var pkce = true
    var extraAuthParams: [(String, String)] = []
    /// Apple: the client secret is a JWT minted per token request (`AppleClientSecret`).
    var appleSecret: AppleClientSecret?

    var isOIDC: Bool { identity == .oidc }
}

/// The presets: endpoints and defaults of the well-known providers, by id. `tenant`
/// applies to Microsoft (default "common").
enum ProviderPresets {
    static func preset(_ id: String, tenant: String?) -> Provider? {
        func p(_ name: String, auth: String?, token: String?, userinfo: String?, scopes: [String], issuer: String? = nil,
               identity: IdentitySource = .oidc, tokenAuth: TokenAuth = .form, pkce: Bool = true) -> Provider {
            Provider(id: id, name: name, clientID: "", clientSecret: nil, redirect: nil, scopes: scopes, authURL: auth, tokenURL: token,
                     userinfoURL: userinfo, issuer: issuer, jwksURL: nil, tokenAuth: tokenAuth, identity: identity, pkce: pkce)
        }
        switch id {
        case "google":
            return p("Google", auth: nil, token: nil, userinfo: nil, scopes: ["openid", "email", "profile"], issuer: "https://accounts.google.com")
        case "microsoft":
            let t = tenant ?? "common"
            var m = p("Microsoft", auth: "https://login.microsoftonline.com/\(t)/oauth2/v2.0/authorize",
                      token: "https://login.microsoftonline.com/\(t)/oauth2/v2.0/token", userinfo: "https://graph.microsoft.com/oidc/userinfo",
                      scopes: ["openid", "email", "profile", "offline_access"])
            // The "common" tenant's id_tokens name each user's own tenant as issuer, so
            // only a single-tenant setup is checked against discovery.
            if t != "common" && t != "organizations" && t != "consumers" { m.issuer = "https://login.microsoftonline.com/\(t)/v2.0" }
            else { m.jwksURL = "https://login.microsoftonline.com/common/discovery/v2.0/keys" }
            return m
        case "apple":
            var a = p("Apple", auth: "https://appleid.apple.com/auth/authorize", token: "https://appleid.apple.com/auth/token", userinfo: nil,
                      scopes: ["name", "email"], issuer: nil, pkce: false)
            a.jwksURL = "https://appleid.apple.com/auth/keys"
            a.extraAuthParams = [("response_mode", "form_post")]
            return a
        case "github":
            return p("GitHub", auth: "https://github.com/login/oauth/authorize", token: "https://github.com/login/oauth/access_token",
                     userinfo: "https://api.github.com/user", scopes: ["read:user", "user:email"], identity: .github)
        case "discord":
            return p("Discord", auth: "https://discord.com/oauth2/authorize", token: "https://discord.com/api/oauth2/token",
                     userinfo: "https://discord.com/api/users/@me", scopes: ["identify", "email"], identity: .discord)
        case "gitlab":
            return p("GitLab", auth: nil, token: nil, userinfo: nil, scopes: ["openid", "email", "profile"], issuer: "https://gitlab.com")
        default:
            return nil
        }
    }
}

/// The provider registry: every `PYLON_OAUTH_<ID>_CLIENT_ID` in the environment (and every
/// provider in the plugin's config, which wins), completed from its preset, or from its
/// `_OIDC_ISSUER` for any other OpenID provider.
struct ProviderRegistry: Sendable {
    var providers: [String: Provider] = [:]
    var timeoutMs = 10_000
    var caFile: String?

    struct Problem: Error {
        var message: String
    }

    /// `env` is the process environment; `config` the manifest's `plugins["auth.oauth"]`
    /// object: {"providers": {"<id>": {"client_id", "client_secret", "redirect", "scopes",
    /// "tenant", "oidc_issuer"}}, "timeout_ms", "ca_file"}.
    static func load(env: [String: String], config: JSONValue) throws(Problem) -> ProviderRegistry {
        var settings: [String: [String: String]] = [:]
        for (key, value) in env where key.hasPrefix("PYLON_OAUTH_") {
            for suffix in ["_CLIENT_ID", "_CLIENT_SECRET", "_REDIRECT", "_SCOPES", "_TENANT", "_OIDC_ISSUER", "_TEAM_ID", "_KEY_ID", "_PRIVATE_KEY"]
                where key.hasSuffix(suffix) {
                let id = key.dropFirst("PYLON_OAUTH_".count).dropLast(suffix.count).lowercased()
                guard !id.isEmpty else { continue }
                settings[id, default: [:]][String(suffix.dropFirst()).lowercased()] = value
            }
        }
        for (id, obj) in config["providers"]?.objectValue ?? [] {
            for (k, v) in obj.objectValue ?? [] {
                if let s = v.stringValue { settings[id.lowercased(), default: [:]][k] = s }
                if let list = v.arrayValue { settings[id.lowercased(), default: [:]][k] = list.compactMap(\.stringValue).joined(separator: " ") }
            }
        }
        var r = ProviderRegistry()
        if let t = config["timeout_ms"]?.intValue { r.timeoutMs = Int(min(max(t, 100), 120_000)) }
        r.caFile = config["ca_file"]?.stringValue
        for (id, s) in settings {
            guard let clientID = s["client_id"], !clientID.isEmpty else { continue }
            guard id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw Problem(message: "provider id \"\(id)\" may use letters, digits, '-' and '_' only")
            }
            var p: Provider
            if let issuer = s["oidc_issuer"], !issuer.isEmpty {
                p = Provider(id: id, name: id, clientID: clientID, clientSecret: nil, redirect: nil, scopes: ["openid", "email", "profile"],
                             authURL: nil, tokenURL: nil, userinfoURL: nil, issuer: issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer,
                             jwksURL: nil)
            } else if let preset = ProviderPresets.preset(id, tenant: s["tenant"]) {
                p = preset
            } else {
                throw Problem(message: "provider \"\(id)\" has a client id but no preset: set PYLON_OAUTH_\(id.uppercased())_OIDC_ISSUER to its OpenID issuer URL, or use one of google, microsoft, apple, github, discord, gitlab")
            }
            p.clientID = clientID
            p.clientSecret = s["client_secret"].flatMap { $0.isEmpty ? nil : $0 }
            if id == "apple" { p.appleSecret = try Self.appleSecret(s, clientID: clientID) }
            p.redirect = s["redirect"].flatMap { $0.isEmpty ? nil : $0 }
            if let scopes = s["scopes"], !scopes.isEmpty {
                p.scopes = scopes.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            }
            for url in [p.authURL, p.tokenURL, p.userinfoURL, p.issuer, p.jwksURL, p.redirect].compactMap({ $0 }) {
                guard Self.acceptable(url) else {
                    throw Problem(message: "provider \(id): \(url) must be an https URL (plain http only for a loopback host)")
                }
            }
            r.providers[id] = p
        }
        return r
    }

    /// Apple's minted client secret when its team id, key id and private key are all given;
    /// nil when none is (a ready-made `client_secret` is then used); a Problem for a part.
    static func appleSecret(_ s: [String: String], clientID: String) throws(Problem) -> AppleClientSecret? {
        let parts = ["team_id", "key_id", "private_key"].map { s[$0].flatMap { $0.isEmpty ? nil : $0 } }
        if parts.allSatisfy({ $0 == nil }) { return nil }
        guard let team = parts[0], let kid = parts[1], let pem = parts[2] else {
            throw Problem(message: "apple: set all of PYLON_OAUTH_APPLE_TEAM_ID, PYLON_OAUTH_APPLE_KEY_ID and PYLON_OAUTH_APPLE_PRIVATE_KEY to mint its client secret")
        }
        return try AppleClientSecret(teamID: team, keyID: kid, privateKey: pem, clientID: clientID)
    }

    /// https, or http to a loopback host (a provider under test on this machine).
    static func acceptable(_ url: String) -> Bool {
        guard let u = URLComponents(string: url), let scheme = u.scheme?.lowercased(), let host = u.host, !host.isEmpty else { return false }
        if scheme == "https" { return true }
        return scheme == "http" && (host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]")
    }
}
