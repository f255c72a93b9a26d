import Foundation
import Hummingbird
import PylonCore
import PylonPlugins
import PylonData
import PylonServices
import PylonJSON

/// Everything a route handler needs. Immutable; shared by all requests.
package struct RouteContext: Sendable {
    let data: DataService
    let changes: ChangeLog
    let sessions: SessionStore
    let config: HostConfig
    let metrics: Metrics
    let startedAt: Date
    let stubs: [CapabilityInfo]
    let hub: ChangeHub
    let sync: SyncStream
    let realtime: RealtimeConfig
    let functions: FunctionService?
    /// The cache plugin, when one serves `pylon.cache/1` (else its routes are stubs).
    let cache: CacheService?
    /// Pylon's auth buckets (guest and anonymous sessions).
    let authLimiter: AuthRateLimiter
    /// Email-and-password accounts (`PasswordRoutes`).
    let passwords: PasswordAccounts
    /// API keys (`ApiKeyRoutes`); nil outside --dev without PYLON_API_KEY_PEPPER.
    let apiKeys: ApiKeys?
    /// HS256 JWTs; nil without PYLON_JWT_SECRET.
    let jwts: SessionJWTs?
    /// Durable jobs and cron (with functions; else their routes are the functions stub's).
    let jobs: JobService?
    let cron: CronService?
    /// Durable workflows, advanced by the jobs (with functions).
    let workflows: WorkflowService?
    /// OAuth / OpenID sign-in, when a plugin serves `pylon.auth.oauth/1`.
    let oauth: OAuthService?
    /// File uploads and downloads, when a plugin serves `pylon.files/1` (else its routes are stubs).
    let files: FileRoutesConfig?
    /// One-time email codes and links, when a plugin serves `pylon.auth.code/1` (else
    /// their routes are its stub's, and password reset answers 501).
    let codes: AuthCodes?
    /// Organisations, their members and invites (`OrgRoutes`).
    let orgs: Organisations
    /// Rooms and presence (`RoomRoutes`).
    let rooms: RoomService?
    /// The CAPTCHA magic codes and links need (`PYLON_CAPTCHA_*`).
    let captcha: CaptchaVerifier?
    /// The breached-password check of new passwords (`PYLON_PASSWORD_BREACH_CHECK`).
    let breaches: BreachedPasswords?
    /// Wrong API keys counted (the LOGIN bucket's caps), on HTTP requests and WebSocket handshakes alike.
    package let keyGuesses: ApiKeyGuesses
    /// Shards, when at least one plugin serves `pylon.shard.sim/1` (else `/api/shards` is a stub).
    let shards: ShardRegistry?
    /// The pages whose WebSocket handshakes may use the session cookie (`CSRFGuard.admitsCookie`).
    package let cookiePages: CSRFGuard

    package init(data: DataService, changes: ChangeLog, sessions: SessionStore, config: HostConfig,
                 metrics: Metrics, startedAt: Date, stubs: [CapabilityInfo], hub: ChangeHub,
                 sync: SyncStream, realtime: RealtimeConfig, functions: FunctionService?,
                 cache: CacheService?, authLimiter: AuthRateLimiter, passwords: PasswordAccounts, apiKeys: ApiKeys?,
                 jwts: SessionJWTs?, jobs: JobService? = nil, cron: CronService? = nil, workflows: WorkflowService? = nil,
                 orgs: Organisations, oauth: OAuthService? = nil, files: FileRoutesConfig? = nil, codes: AuthCodes? = nil,
                 rooms: RoomService? = nil, captcha: CaptchaVerifier? = nil, breaches: BreachedPasswords? = nil,
                 shards: ShardRegistry? = nil) {
        self.orgs = orgs
        cookiePages = CSRFGuard(origins: config.csrfOrigins(manifest: data.manifest), cookie: config.sessionCookie)
        self.captcha = captcha
        self.breaches = breaches
        keyGuesses = ApiKeyGuesses(config.authRateLimits.caps[.login], maxKeys: config.rateLimitClients, trustProxyHops: config.trustProxyHops)
        self.shards = shards
        self.codes = codes
        self.rooms = rooms
        self.oauth = oauth
        self.files = files
        self.jobs = jobs
        self.cron = cron
        self.workflows = workflows
        self.data = data
        self.changes = changes
        self.sessions = sessions
        self.config = config
        self.metrics = metrics
        self.startedAt = startedAt
        self.stubs = stubs
        self.hub = hub
        self.sync = sync
        self.realtime = realtime
        self.functions = functions
        self.cache = cache
        self.authLimiter = authLimiter
        self.passwords = passwords
        self.apiKeys = apiKeys
        self.jwts = jwts
    }

    /// Resolves the caller (pylon-core.md §0.4 step 5): bearer header wins over the session
    /// cookie; the admin token is compared in constant time; unknown or expired session
    /// tokens are anonymous.
    func auth(_ request: Request) async throws -> AuthContext {
        try await authFor(token: callerToken(request))
    }

    /// `auth` without waiting (`authNow(token:)`) for the request's headers.
    func authNow(_ headers: HTTPFields) -> AuthContext? {
        authNow(token: callerToken(headers))
    }

    /// The caller's token: `Authorization: Bearer`, else the session cookie.
    func callerToken(_ request: Request) -> String? {
        callerToken(request.headers)
    }

    /// The same for `headers`. A session cookie carrying the admin token is no credential
    /// (`cookieToken`).
    func callerToken(_ headers: HTTPFields) -> String? {
        guard let c = Self.credential(headers, cookie: config.sessionCookie) else { return nil }
        return c.fromCookie ? cookieToken(c.token) : c.token
    }

    /// `token`, read from a session cookie, unless it is the admin token: that is accepted
    /// as a bearer token (`Authorization: Bearer`, a WebSocket's `bearer.` subprotocol, a
    /// stream's `?token=`), never as a cookie, which a browser sends by itself and which a page script, a planted cookie
    /// or a log of `Cookie` headers could carry. Such a request is not signed in.
    func cookieToken(_ token: String) -> String? {
        isAdminToken(token) ? nil : token
    }

    /// Whether `token` is `PYLON_ADMIN_TOKEN` (compared in constant time).
    func isAdminToken(_ token: String) -> Bool {
        guard let admin = config.adminToken, !admin.isEmpty else { return false }
        return ConstantTime.equal(token, admin)
    }

    /// The caller's token, and whether it came from the session cookie (which a browser
    /// attaches by itself, so `CSRFGuard` checks where such a request comes from). Every
    /// reader of the cookie goes through here, so the legacy name (`SessionCookie.token`)
    /// is a cookie credential for the CSRF check exactly when it is one for auth.
    static func credential(_ headers: HTTPFields, cookie: SessionCookie) -> (token: String, fromCookie: Bool)? {
        if let h = headers[.authorization], h.lowercased().hasPrefix("bearer ") {
            let t = h.dropFirst(7).trimmingCharacters(in: .whitespaces)
            return t.isEmpty ? nil : (t, false)
        }
        return cookie.token(inCookieHeaders: headers[values: .cookie]).map { ($0.token, true) }
    }

    func requireAdmin(_ request: Request, _ what: String) async throws {
        guard try await auth(request).isAdmin else {
            throw HostError.forbidden("\(what) requires admin auth (send Authorization: Bearer $PYLON_ADMIN_TOKEN)")
        }
    }

    func body(_ request: Request, empty: JSONValue? = nil) async throws -> JSONValue {
        try await HTTPSupport.body(request, limit: config.maxBodyBytes, empty: empty)
    }

    static func intParam(_ request: Request, _ name: String) throws(HostError) -> Int64? {
        // Given twice (`?limit=&limit=x`), the first alone would be read and the rest ignored.
        let given = request.uri.queryParameters.getAll(name)
        guard given.count <= 1 else {
            throw HostError.badRequest("INVALID_QUERY", "query parameter \(name) is given \(given.count) times; give it once")
        }
        guard let s = given.first, !s.isEmpty else { return nil }
        guard let n = Int64(s), n >= 0 else {
            throw HostError.badRequest("INVALID_QUERY", "query parameter \(name) must be a non-negative integer, got \"\(s)\"")
        }
        return n
    }
}
