import Foundation

/// A session the host answered to a sign-in.
public struct Session: Sendable, Equatable {
    public var token: String
    public var userId: String
    public var isGuest: Bool
    /// As the host sent it (seconds or an ISO date), nil when it did not.
    public var expiresAt: JSON?

    init(json: JSON) throws(PylonError) {
        guard let token = json["token"]?.stringValue else {
            throw PylonError(code: "BAD_RESPONSE", message: "the host answered a sign-in without a token", status: 0)
        }
        self.token = token
        userId = json["user_id"]?.stringValue ?? ""
        isGuest = json["guest"]?.boolValue ?? json["is_guest"]?.boolValue ?? false
        expiresAt = json["expires_at"]
    }
}

/// Every sign-in flow of the host. A flow that yields a new token stores it (the client's
/// `TokenStorage`) and restarts sync as the new user: the replica and write queue of the
/// previous one are wiped first, so their rows never show to someone else.
public final class Auth: Sendable {
    private let http: HTTP
    private let sync: SyncEngine

    init(http: HTTP, sync: SyncEngine) {
        self.http = http
        self.sync = sync
    }

    /// The token in use (a session token or an API key), nil when signed out.
    public var token: String? { http.tokens.get() }

    /// Uses `token` (a session token or an API key `pk.…`) from now on; nil signs out locally.
    public func setToken(_ token: String?) async throws(PylonError) {
        guard token != http.tokens.get() else { return }
        let tokens = http.tokens
        do {
            try await sync.restart { tokens.set(token) }
        } catch {
            throw PylonError.store(error)
        }
    }

    private func session(_ path: String, _ body: JSON) async throws(PylonError) -> Session {
        let s = try Session(json: try await http.request(path, body: body, anonymous: true))
        try await setToken(s.token)
        return s
    }

    public func register(email: String, password: String, displayName: String? = nil) async throws(PylonError) -> Session {
        var body: [String: JSON] = ["email": .string(email), "password": .string(password)]
        if let displayName { body["displayName"] = .string(displayName) }
        return try await session("/api/auth/password/register", .object(body))
    }

    public func login(email: String, password: String) async throws(PylonError) -> Session {
        try await session("/api/auth/password/login", ["email": .string(email), "password": .string(password)])
    }

    /// Mails a sign-in code; in `--dev` the answer carries `dev_code`.
    public func sendMagicCode(email: String) async throws(PylonError) -> JSON {
        try await http.request("/api/auth/magic/send", body: ["email": .string(email)], anonymous: true)
    }

    public func verifyMagicCode(email: String, code: String) async throws(PylonError) -> Session {
        try await session("/api/auth/magic/verify", ["email": .string(email), "code": .string(code)])
    }

    /// A guest session (`POST /api/auth/guest`).
    public func guest() async throws(PylonError) -> Session {
        try await session("/api/auth/guest", [:])
    }

    /// Acts as the owner of an API key (`pk.…`) from now on.
    public func useApiKey(_ key: String) async throws(PylonError) {
        try await setToken(key)
    }

    /// Makes an API key for the signed-in user; the answer's `key` is shown only this once.
    public func createApiKey(name: String? = nil, scopes: [String]? = nil) async throws(PylonError) -> JSON {
        var body: [String: JSON] = [:]
        if let name { body["name"] = .string(name) }
        if let scopes { body["scopes"] = .array(scopes.map(JSON.string)) }
        return try await http.request("/api/auth/api-keys", body: .object(body))
    }

    /// The URL to open in a browser for OAuth sign-in with `provider`. The host sends the
    /// browser back to `callback` (or to `errorCallback` with `oauth_error`); hand the URL
    /// it arrives at to `handleOAuthCallback`.
    public func oauthLoginURL(provider: String, callback: String, errorCallback: String? = nil) -> URL {
        var q = "callback=\(escape(callback))&redirect=1"
        if let errorCallback { q += "&error_callback=\(escape(errorCallback))" }
        return http.url("/api/auth/login/\(escape(provider))?\(q)")
    }

    /// Finishes OAuth with the URL the browser came back to: `oauth_error` becomes a
    /// PylonError; a `token` parameter is used from now on; `state` + `code` (an app that
    /// receives the provider's redirect itself) are exchanged for a session. Answers the
    /// signed-in user (`GET /api/auth/me`).
    @discardableResult
    public func handleOAuthCallback(_ url: URL, provider: String? = nil) async throws(PylonError) -> JSON {
        let items = URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []
        let q = { (name: String) in items.first { $0.name == name }?.value }
        if let error = q("oauth_error") {
            throw PylonError(code: error, message: q("oauth_error_message") ?? "OAuth sign-in failed", status: 401)
        }
        if let token = q("token") {
            try await setToken(token)
        } else if let state = q("state"), let code = q("code"), let provider {
            _ = try await session("/api/auth/callback/\(escape(provider))", ["state": .string(state), "code": .string(code)])
        }
        return try await me()
    }

    /// `GET /api/auth/me`: `user_id` (null when signed out), `is_admin`, `is_guest`, …
    public func me() async throws(PylonError) -> JSON {
        try await http.request("/api/auth/me")
    }

    /// A new token for this session (the old one ends). The same user: the replica stays.
    @discardableResult
    public func refresh() async throws(PylonError) -> Session {
        let s = try Session(json: try await http.request("/api/auth/refresh", method: "POST", body: [:]))
        http.tokens.set(s.token)
        return s
    }

    /// Ends the session at the host and forgets the token, the replica and the write queue.
    /// When the host cannot be reached the error is thrown and nothing is forgotten (the
    /// session would stay valid at the host); an answer such as 401 (already ended) still
    /// signs out locally.
    public func logout() async throws(PylonError) {
        if let token, !token.hasPrefix("pk.") {
            do {
                _ = try await http.request("/api/auth/logout", method: "POST", body: [:])
            } catch where error.isNetwork {
                throw error
            } catch {
                // Already ended at the host (401 and the like): sign out locally anyway.
            }
        }
        try await setToken(nil)
    }
}

extension PylonError {
    /// A failure of the replica's store (the app's `ReplicaStore`).
    static func store(_ error: Error) -> PylonError {
        if let e = error as? PylonError { return e }
        return PylonError(code: "REPLICA_STORE_FAILED", message: "the replica's store failed: \(error)", status: 0)
    }
}
