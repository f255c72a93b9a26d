import Foundation
import PylonJSON

/// Settings of one host process. Precedence: command-line flag, then environment
/// (`PYLON_PORT`, `PYLON_DB_PATH`, `PYLON_ADMIN_TOKEN`, `PYLON_DEV_MODE`, ...), then the
/// manifest's `plugins` section, then these defaults.
public struct HostConfig: Sendable {
    public var pluginsDir = "plugins"
    public var manifestPath = "pylon.manifest.json"
    public var bindHost = "127.0.0.1"
    public var port = 4321
    /// SQLite file (overrides `plugins.store.path`). nil: the manifest's, else `pylon.db`.
    public var dbPath: String?
    public var dev = false
    public var adminToken: String?
    /// The key API-key secrets are HMACed with (`PYLON_API_KEY_PEPPER`); required for API
    /// keys outside --dev, where a fixed development pepper stands in.
    public var apiKeyPepper: String?
    /// Encrypts stored OAuth provider tokens (AES-256-GCM): 32 bytes as 64 hex digits or
    /// base64 (PYLON_AUTH_ENCRYPTION_KEY). Required outside --dev when a provider is set up.
    public var authEncryptionKey: String?
    /// HS256 JWTs (`POST /api/auth/jwt`, Bearer JWTs): the secret, the issuer required to
    /// accept them, and their lifetime in seconds (Pylon's names and defaults).
    public var jwtSecret: String?
    public var jwtIssuer: String?
    public var jwtLifetime: Int64 = 3600
    /// Pylon clients expect WS on port+1 and SSE on port+2 (served once sync lands).
    public var compatPorts = true
    public var maxBodyBytes = 10 * 1024 * 1024
    /// Change-log entries kept before trimming (PYLON_CHANGELOG_RETENTION).
    public var changelogRetention: Int64 = 1_000_000
    /// Read connections (PYLON_STORE_READERS); capped by the store's max_readers.
    public var readers = 4
    /// The session cookie's settings as given (`PYLON_COOKIE_*`), and the cookie they make
    /// with the manifest's app name and --dev: `Host.start` resolves it, and the edge reads
    /// only `sessionCookie`.
    public var cookie = SessionCookieSettings()
    public var sessionCookie = SessionCookie()
    /// Per-connection queue of undelivered realtime events (PYLON_SYNC_QUEUE).
    public var syncQueueLimit = 4096
    /// The same queue's bound in bytes (PYLON_SYNC_QUEUE_BYTES): frames queued or handed to
    /// the connection and not yet sent. Over it the queue overflows as over `syncQueueLimit`.
    public var syncQueueBytes = 8 * 1024 * 1024
    /// How often a host on a shared store polls the change log for other hosts' writes
    /// (PYLON_CHANGE_POLL_MS).
    public var changePollMs = 25
    /// How often every host reads the session change log (PYLON_SESSION_POLL_MS,
    /// `SessionWatcher`): the bound on how late another host's revocation ends streams here.
    public var sessionPollMs = 200
    /// WS + SSE connections per client address (PYLON_MAX_CONNECTIONS_PER_IP).
    public var maxConnectionsPerAddress = 64
    /// Largest WebSocket message (one frame, or a fragmented message in total) a client may
    /// send (PYLON_WS_MAX_FRAME). 1 MiB: a client sends only topic/presence relays, which
    /// PYLON_WS_MAX_RELAY_BYTES caps at 64 KiB anyway, and each connection may make the host
    /// buffer this much before its message is refused (Pylon's 16 MiB let a guest pin 16 MiB
    /// per socket).
    public var maxFrameBytes = 1024 * 1024
    /// Messages (topic/presence relays) one WebSocket client may send per second on
    /// average (PYLON_WS_RELAY_RATE), and in a burst (PYLON_WS_RELAY_BURST); see `RelayLimiter`.
    public var wsRelayRate = 20
    public var wsRelayBurst = 40
    /// Largest topic/presence message a WebSocket client may send (PYLON_WS_MAX_RELAY_BYTES);
    /// a larger one is refused with `RELAY_TOO_LARGE` (relays are small JSON).
    public var wsMaxRelayBytes = 64 * 1024
    /// A connection whose pending writes make no progress for this long is closed
    /// (PYLON_WRITE_TIMEOUT, seconds; 0: never): a client that stops reading cannot keep its
    /// connection and its unsent data in the host. One setting for every transport that
    /// streams (WebSockets, SSE and any other answer written as it comes): the reason is the
    /// same for all of them.
    public var writeTimeout: Double = 30
    /// The WebSocket's own deadline (PYLON_WS_WRITE_TIMEOUT, the older setting, kept: it
    /// still sets the WebSocket's deadline alone); nil: `writeTimeout`.
    public var wsWriteTimeout: Double?
    public var corsOrigin = "*"
    /// Requests per client address per `rateLimitWindow` (PYLON_RATE_LIMIT_MAX; 0: no
    /// limit). nil: `requestRateLimit`'s default.
    public var rateLimitMax: Int?
    /// Seconds (PYLON_RATE_LIMIT_WINDOW).
    public var rateLimitWindow = 60
    /// Client addresses each limiter tracks at once (PYLON_RATE_LIMIT_CLIENTS): the bound on
    /// its memory (`FixedWindowLimiter`).
    public var rateLimitClients = 100_000
    /// Proxies in front of the host whose `X-Forwarded-For` entry names the client
    /// (PYLON_TRUST_PROXY_HOPS; `ClientAddress.resolve`). 0: the socket peer.
    public var trustProxyHops = 0
    /// Origins trusted for cookie-authenticated writes (PYLON_TRUSTED_ORIGINS and
    /// PYLON_CSRF_ORIGINS, comma-separated); nil when neither is set (`csrfOrigins`).
    public var trustedOrigins: [String]?
    /// Auth buckets (PYLON_AUTH_RATE_LIMIT_LOGIN / _SEND / _VERIFY).
    public var authRateLimits = AuthRateLimits.pylon
    /// Seconds a request head may take from its first byte (PYLON_HTTP_HEADER_TIMEOUT), its
    /// body from the end of the head (PYLON_HTTP_BODY_TIMEOUT), and a keep-alive connection
    /// may sit idle between requests (PYLON_HTTP_IDLE_TIMEOUT); 0 turns one off. Every
    /// HTTP listener enforces them (`ConnectionDeadlines`).
    public var httpHeaderTimeout = 10.0
    public var httpBodyTimeout = 30.0
    public var httpIdleTimeout = 60.0
    /// Open connections per HTTP listener (PYLON_MAX_CONNECTIONS); more wait in the accept
    /// backlog. nil: derived from the open-file limit (`FileBudget.connectionCap`).
    public var maxConnections: Int?
    /// Settings for the cache plugin from `PYLON_CACHE_*`, merged over the manifest's
    /// `plugins.cache` (port, bind, requirepass, protected_mode, maxmemory, snapshot).
    public var cacheOverrides: [(String, JSONValue)] = []
    /// The shard WebSocket's port (`PYLON_SHARD_WS_PORT`, served by the `shard.transport`
    /// plugin): nil is Pylon's HTTP port + 3, 0 turns the listener off.
    public var shardWSPort: Int?
    /// Settings for the `auth.code` plugin from Pylon's email variables (`PYLON_EMAIL_*`,
    /// `PYLON_SMTP_URL`, `PYLON_EMAIL_TEMPLATE_<KIND>_SUBJECT|_BODY`), merged over the
    /// manifest's `plugins."auth.code"`.
    public var authCodeOverrides: [(String, JSONValue)] = []
    /// The address users reach this app at (`PYLON_PUBLIC_URL`), for the links in emails;
    /// nil: `http://localhost:<port>`.
    public var publicURL: String?
    /// Where a magic link opened in a browser lands once signed in (`PYLON_DASHBOARD_URL`).
    public var dashboardURL = "/"
    /// The page a password-reset email links to (`PYLON_PASSWORD_RESET_URL`, given
    /// `?token=`); nil: `<public URL>/reset-password`.
    public var passwordResetURL: String?

    /// Durable jobs (`JobRunner`), `PYLON_JOBS_*`: jobs this host runs at once, how often it
    /// looks for due jobs, how long a claim lasts without a heartbeat, the retry back-off
    /// (base, doubling, capped; with jitter), and each named queue's limit of jobs running
    /// at once across all hosts ("name=limit,..."; a queue not named gets `jobsWorkers`).
    public var jobsWorkers = 4
    public var jobsPollMs = 200
    public var jobsLeaseMs = 30_000
    public var jobsBackoffMs = 1_000
    public var jobsBackoffMaxMs = 3_600_000
    public var jobsQueues: [String: Int] = [:]
    /// Completed and cancelled jobs are deleted this many hours after they ended, and their
    /// idempotency keys with them (`PYLON_JOBS_RETENTION_HOURS`; 0 keeps them). Dead jobs
    /// are kept until retried.
    public var jobsRetentionHours = 168
    /// Finished workflow instances (completed, failed or cancelled) are deleted this many
    /// hours after they ended (`PYLON_WORKFLOWS_RETENTION_HOURS`; 0 keeps them). Instances
    /// still pending, running, sleeping or waiting are never deleted.
    public var workflowsRetentionHours = 168
    /// Push records (`_pylon_push_ops`, what makes a resent `op_id` apply once) are deleted
    /// after this many hours (`PYLON_PUSH_OPS_RETENTION_HOURS`; 0 keeps them): a week covers
    /// a client offline over a long weekend or a trip, and bounds the table by a week of
    /// pushes. A client offline longer that resends an op it already pushed has it applied
    /// again (`PushOpsRetention`).
    public var pushOpsRetentionHours = 168
    /// Whether a cron occurrence missed while no host ran fires once at start-up
    /// (`PYLON_CRON_CATCH_UP`).
    public var cronCatchUp = true
    /// Files (`pylon.files/1`): the folder FilesLocal keeps them in (`PYLON_FILES_DIR`; nil:
    /// the manifest's `plugins.files.dir`, else `files/` beside the database), the largest
    /// upload in bytes (`PYLON_FILES_MAX_BYTES`; nil: the manifest's
    /// `plugins.files.max_bytes`, else 10 MiB as in Pylon), and the secret that signs
    /// download links (`PYLON_FILES_SECRET`; --dev uses a fixed development secret).
    public var filesDir: String?
    public var filesMaxBytes: Int?
    /// The web page served beside the API (`PYLON_STATIC_DIR`, `serve --static DIR`; nil: the
    /// manifest's `static`, else none). `Host.start` puts the manifest's here, its folder
    /// made absolute and checked, so the edge reads only this. `PYLON_STATIC_SPA=0` turns the
    /// single-page fallback off.
    public var staticSite: StaticSite?
    public var filesSecret: String?
    /// Per-user file quotas (`PYLON_FILES_MAX_BYTES_PER_USER`, `PYLON_FILES_MAX_FILES_PER_USER`;
    /// 0, the default, is unlimited): checked in the transaction that records an upload.
    /// Uploads with the admin token (owner NULL) are exempt.
    public var filesMaxBytesPerUser: Int64 = 0
    public var filesMaxFilesPerUser: Int64 = 0
    /// The orphaned-bytes sweep (`FileSweeper`): how often it runs (`PYLON_FILES_SWEEP_SECS`;
    /// 0: never on its own) and how old stored bytes with no file row must be before they
    /// are deleted (`PYLON_FILES_ORPHAN_GRACE_SECS`), so an upload whose row is being
    /// written is never touched.
    public var filesSweepSecs = 3600
    public var filesOrphanGraceSecs = 3600
    /// Rooms and presence (`PYLON_MAX_ROOMS`, `PYLON_ROOMS_PER_USER`, `PYLON_ROOM_MAX_MEMBERS`,
    /// `PYLON_ROOM_IDLE_SECS`, `PYLON_ROOM_MESSAGE_RATE`).
    public var rooms = RoomLimits()
    /// The CAPTCHA magic codes and links need (`PYLON_CAPTCHA_*`); nil: none.
    public var captcha: CaptchaConfig?
    /// The k-anonymity range API new passwords are checked against
    /// (`PYLON_PASSWORD_BREACH_CHECK`: `on` for Have I Been Pwned's, or a compatible base URL);
    /// nil: off, since a host may have no internet.
    public var passwordBreachURL: String?
    public static let haveIBeenPwnedRangeURL = "https://api.pwnedpasswords.com/range/"
    /// Shards: the tick threads all shards share (`PYLON_SHARD_THREADS`; 0: one per core),
    /// the longest a sim call may run before its shard is stopped (`PYLON_SHARD_TICK_BUDGET_MS`),
    /// and the most shards at once (`PYLON_SHARD_MAX`).
    public var shardThreads = 0
    public var shardTickBudgetMs = 1_000
    public var shardMax = 1_000
    /// Shards save their state every this many ticks by default (`PYLON_SHARD_PERSIST_TICKS`;
    /// 0: not saved unless created with `persist_every_ticks`).
    public var shardPersistTicks = 0
    /// The matchmaker (`PYLON_MATCH_*`).
    public var matchmaker = MatchmakerSettings()

    public init() {}

    /// The request limit in force: `rateLimitMax`, else Pylon's defaults (pylon-aux.md §6.2)
    /// — 100,000 per window in --dev, 600 otherwise.
    public var requestRateLimit: Int { rateLimitMax ?? (dev ? 100_000 : 600) }

    /// The origins `CSRFGuard` trusts: those set in the environment; else `*` in --dev; else
    /// the manifest's `auth.trusted_origins` together with the CORS origin when it is not `*`
    /// (empty: no cookie-authenticated write is accepted from any page but the host's own).
    public func csrfOrigins(manifest: Manifest) -> [String] {
        if let trustedOrigins { return trustedOrigins }
        if dev { return ["*"] }
        return manifest.auth.trustedOrigins + (corsOrigin == "*" ? [] : [corsOrigin])
    }

    /// The fewest clients the request limiter tracks: one per stripe of its table
    /// (`FixedWindowLimiter.stripeCount`).
    package static let minRateLimitClients = 16

    /// Applies the environment over the defaults. Flags are applied after this by the CLI.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(HostError) -> HostConfig {
        var c = HostConfig()
        func int(_ key: String) throws(HostError) -> Int? {
            guard let v = env[key], !v.isEmpty else { return nil }
            guard let n = Int(v), n >= 0 else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: "\(key)=\(v) is not a non-negative integer")
            }
            return n
        }
        if let p = try int("PYLON_PORT") { c.port = p }
        if let d = env["PYLON_DB_PATH"], !d.isEmpty { c.dbPath = d }
        if let t = env["PYLON_ADMIN_TOKEN"], !t.isEmpty { c.adminToken = t }
        if let p = env["PYLON_API_KEY_PEPPER"], !p.isEmpty { c.apiKeyPepper = p }
        if let k = env["PYLON_AUTH_ENCRYPTION_KEY"], !k.isEmpty { c.authEncryptionKey = k }
        if let s = env["PYLON_JWT_SECRET"], !s.isEmpty { c.jwtSecret = s }
        if let s = env["PYLON_JWT_ISSUER"], !s.isEmpty { c.jwtIssuer = s }
        if let l = try int("PYLON_JWT_LIFETIME_SECS") {
            guard l > 0 else { throw HostError(status: 500, code: "INVALID_CONFIG", message: "PYLON_JWT_LIFETIME_SECS must be a positive number of seconds") }
            c.jwtLifetime = Int64(l)
        }
        if let d = env["PYLON_DEV_MODE"] { c.dev = ["1", "true", "yes"].contains(d.lowercased()) }
        if let b = try int("PYLON_MAX_BODY_BYTES") { c.maxBodyBytes = b }
        if let r = try int("PYLON_CHANGELOG_RETENTION") { c.changelogRetention = Int64(max(r, 1)) }
        if let r = try int("PYLON_STORE_READERS") { c.readers = max(1, min(r, 64)) }
        if let p = env["PYLON_PLUGINS_DIR"], !p.isEmpty { c.pluginsDir = p }
        if let o = env["PYLON_CORS_ORIGIN"], !o.isEmpty { c.corsOrigin = o }
        if let q = try int("PYLON_SYNC_QUEUE") { c.syncQueueLimit = max(16, q) }
        if let q = try int("PYLON_SYNC_QUEUE_BYTES") { c.syncQueueBytes = max(64 * 1024, q) }
        if let p = try int("PYLON_CHANGE_POLL_MS") { c.changePollMs = max(1, min(p, 10_000)) }
        if let p = try int("PYLON_SESSION_POLL_MS") { c.sessionPollMs = max(10, min(p, 60_000)) }
        if let n = try int("PYLON_JOBS_WORKERS") { c.jobsWorkers = max(1, min(n, 1024)) }
        if let n = try int("PYLON_JOBS_POLL_MS") { c.jobsPollMs = max(10, min(n, 60_000)) }
        if let n = try int("PYLON_JOBS_LEASE_MS") { c.jobsLeaseMs = max(300, min(n, 86_400_000)) }
        if let n = try int("PYLON_JOBS_BACKOFF_MS") { c.jobsBackoffMs = max(1, min(n, 86_400_000)) }
        if let n = try int("PYLON_JOBS_BACKOFF_MAX_MS") { c.jobsBackoffMaxMs = max(1, min(n, 7 * 86_400_000)) }
        if let n = try int("PYLON_JOBS_RETENTION_HOURS") { c.jobsRetentionHours = min(n, 24 * 3650) }
        if let n = try int("PYLON_WORKFLOWS_RETENTION_HOURS") { c.workflowsRetentionHours = min(n, 24 * 3650) }
        if let n = try int("PYLON_PUSH_OPS_RETENTION_HOURS") { c.pushOpsRetentionHours = min(n, 24 * 3650) }
        if let q = env["PYLON_JOBS_QUEUES"], !q.isEmpty {
            for item in q.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2, !pair[0].isEmpty, let n = Int(pair[1]), n >= 1 else {
                    throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_JOBS_QUEUES=\(q): give name=limit pairs separated by commas, limits at least 1 (e.g. \"emails=2,reports=1\")")
                }
                c.jobsQueues[pair[0]] = n
            }
        }
        if let v = env["PYLON_CRON_CATCH_UP"], !v.isEmpty { c.cronCatchUp = !["0", "false", "no", "off"].contains(v.lowercased()) }
        if let d = env["PYLON_FILES_DIR"], !d.isEmpty { c.filesDir = d }
        if let d = env["PYLON_STATIC_DIR"], !d.isEmpty {
            c.staticSite = StaticSite(dir: d, spa: !["0", "false", "no", "off"].contains((env["PYLON_STATIC_SPA"] ?? "").lowercased()))
        }
        if let n = try int("PYLON_FILES_MAX_BYTES") { c.filesMaxBytes = max(1, n) }
        if let s = env["PYLON_FILES_SECRET"], !s.isEmpty { c.filesSecret = s }
        if let n = try int("PYLON_FILES_MAX_BYTES_PER_USER") { c.filesMaxBytesPerUser = Int64(n) }
        if let n = try int("PYLON_FILES_MAX_FILES_PER_USER") { c.filesMaxFilesPerUser = Int64(n) }
        if let n = try int("PYLON_FILES_SWEEP_SECS") { c.filesSweepSecs = min(n, 7 * 86_400) }
        if let n = try int("PYLON_FILES_ORPHAN_GRACE_SECS") { c.filesOrphanGraceSecs = max(60, min(n, 30 * 86_400)) }
        if let n = try int("PYLON_SHARD_THREADS") { c.shardThreads = min(n, 64) }
        if let n = try int("PYLON_SHARD_TICK_BUDGET_MS") { c.shardTickBudgetMs = max(10, min(n, 60_000)) }
        if let n = try int("PYLON_SHARD_MAX") { c.shardMax = max(1, min(n, 100_000)) }
        if let n = try int("PYLON_SHARD_PERSIST_TICKS") { c.shardPersistTicks = min(n, Int(Int32.max)) }
        if let v = env["PYLON_MATCH_SIM"], !v.isEmpty { c.matchmaker.sim = v }
        if let n = try int("PYLON_MATCH_SIZE") { c.matchmaker.size = max(1, min(n, MatchmakerSettings.maxGroup)) }
        if let m = env["PYLON_MATCH_MODES"], !m.isEmpty {
            for item in m.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2, !pair[0].isEmpty, pair[0].utf8.count <= 64, let n = Int(pair[1]), (1...MatchmakerSettings.maxGroup).contains(n) else {
                    throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_MATCH_MODES=\(m): give mode=size pairs separated by commas, sizes 1..\(MatchmakerSettings.maxGroup) (e.g. \"duel=2,squad=4\")")
                }
                c.matchmaker.modes[pair[0]] = n
            }
        }
        if let v = env["PYLON_MATCH_CONFIG"], !v.isEmpty {
            guard let j = try? JSONParser.parse(v), j.objectValue != nil else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: #"PYLON_MATCH_CONFIG is not a JSON object; give a shard's create body without sim and id, e.g. {"config": {"speed": 100}, "tick_rate_hz": 20}"#)
            }
            c.matchmaker.shard = j
        }
        if let n = try int("PYLON_MATCH_MAX_WAIT_SECS") { c.matchmaker.maxWaitSeconds = Double(max(1, min(n, 86_400))) }
        if let n = try int("PYLON_MATCH_INTERVAL_MS") { c.matchmaker.intervalMs = max(10, min(n, 60_000)) }
        if let n = try int("PYLON_MATCH_QUEUE_MAX") { c.matchmaker.queueMax = max(1, min(n, 1_000_000)) }
        if let n = try int("PYLON_MATCH_JOIN_GRACE_SECS") { c.matchmaker.joinGraceSeconds = Double(max(1, min(n, 86_400))) }
        if let n = try int("PYLON_MATCH_SHARD_MAX") { c.matchmaker.maxShards = max(1, min(n, 100_000)) }
        if let m = try int("PYLON_MAX_CONNECTIONS_PER_IP") { c.maxConnectionsPerAddress = max(1, m) }
        if let f = try int("PYLON_WS_MAX_FRAME") { c.maxFrameBytes = max(1024, f) }
        /// Seconds, fractions allowed ("0.5"), or milliseconds with "ms" ("500ms").
        func seconds(_ key: String) throws(HostError) -> Double? {
            guard let v = env[key]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            let n = v.hasSuffix("ms") ? Double(v.dropLast(2)).map { $0 / 1000 } : Double(v.hasSuffix("s") ? String(v.dropLast()) : v)
            guard let n, n.isFinite, n >= 0, n <= 86_400 else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: "\(key)=\(v) is not a duration; give seconds (\"10\", \"0.5\") or milliseconds (\"500ms\"), 0 for none")
            }
            return n
        }
        if let t = try seconds("PYLON_HTTP_HEADER_TIMEOUT") { c.httpHeaderTimeout = t }
        if let t = try seconds("PYLON_HTTP_BODY_TIMEOUT") { c.httpBodyTimeout = t }
        if let t = try seconds("PYLON_HTTP_IDLE_TIMEOUT") { c.httpIdleTimeout = t }
        if let m = try int("PYLON_MAX_CONNECTIONS") { c.maxConnections = max(1, m) }
        if let n = try int("PYLON_MAX_ROOMS") { c.rooms.maxRooms = max(1, n) }
        if let n = try int("PYLON_ROOMS_PER_USER") { c.rooms.perUser = max(1, n) }
        if let n = try int("PYLON_ROOM_MAX_MEMBERS") { c.rooms.maxMembers = max(1, n) }
        if let t = try seconds("PYLON_ROOM_IDLE_SECS") { c.rooms.idleSeconds = max(0.1, t) }
        if let n = try int("PYLON_ROOM_MESSAGE_RATE") { c.rooms.messageRate = max(1, min(n, 100_000)) }
        if let r = try int("PYLON_WS_RELAY_RATE") { c.wsRelayRate = max(1, min(r, 100_000)) }
        if let b = try int("PYLON_WS_RELAY_BURST") { c.wsRelayBurst = max(1, min(b, 100_000)) }
        if let n = try int("PYLON_WS_MAX_RELAY_BYTES") { c.wsMaxRelayBytes = max(256, n) }
        if let t = try seconds("PYLON_WRITE_TIMEOUT") { c.writeTimeout = t }
        if let t = try seconds("PYLON_WS_WRITE_TIMEOUT") { c.wsWriteTimeout = t }
        if let m = try int("PYLON_RATE_LIMIT_MAX") { c.rateLimitMax = m }
        if let w = try int("PYLON_RATE_LIMIT_WINDOW") { c.rateLimitWindow = max(1, w) }
        if let n = try int("PYLON_RATE_LIMIT_CLIENTS") { c.rateLimitClients = max(Self.minRateLimitClients, n) }
        if let h = try int("PYLON_TRUST_PROXY_HOPS") { c.trustProxyHops = min(h, 64) }
        for key in ["PYLON_TRUSTED_ORIGINS", "PYLON_CSRF_ORIGINS"] {
            guard let list = env[key], !list.isEmpty else { continue }
            c.trustedOrigins = (c.trustedOrigins ?? []) + list.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        }
        for bucket in AuthBucket.allCases {
            let key = "PYLON_AUTH_RATE_LIMIT_\(bucket.rawValue.uppercased())"
            guard let v = env[key], !v.isEmpty else { continue }
            guard let caps = AuthRateLimits.parse(v) else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: "\(key)=\(v) is not <per-address-per-minute>[,<per-account-per-hour>] (non-negative integers; 0: no limit)")
            }
            c.authRateLimits.caps[bucket] = caps
        }
        if let p = try int("PYLON_CACHE_PORT") {
            guard p <= 65535 else { throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_CACHE_PORT=\(p) is not a TCP port (0 turns the RESP listener off)") }
            c.cacheOverrides.append(("port", .int(Int64(p))))
        }
        if let v = env["PYLON_SHARD_WS_PORT"]?.trimmingCharacters(in: .whitespaces), !v.isEmpty {
            if ["0", "off", "false", "no"].contains(v.lowercased()) {
                c.shardWSPort = 0
            } else {
                guard let p = Int(v), (1...65535).contains(p) else {
                    throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_SHARD_WS_PORT=\(v) is not a TCP port (0 or off turns the shard WebSocket off)")
                }
                c.shardWSPort = p
            }
        }
        if let b = env["PYLON_CACHE_BIND"], !b.isEmpty { c.cacheOverrides.append(("bind", .string(b))) }
        if let p = env["PYLON_CACHE_PASSWORD"], !p.isEmpty { c.cacheOverrides.append(("requirepass", .string(p))) }
        if let m = env["PYLON_CACHE_PROTECTED_MODE"], !m.isEmpty {
            switch m.lowercased() {
            case "1", "true", "yes", "on": c.cacheOverrides.append(("protected_mode", .bool(true)))
            case "0", "false", "no", "off": c.cacheOverrides.append(("protected_mode", .bool(false)))
            default: throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_CACHE_PROTECTED_MODE=\(m) is not 1 or 0 (0 serves RESP clients from any address without a password)")
            }
        }
        if let m = env["PYLON_CACHE_MAXMEMORY"], !m.isEmpty { c.cacheOverrides.append(("maxmemory", .string(m))) }
        if let s = env["PYLON_CACHE_SNAPSHOT"], !s.isEmpty {
            let v: JSONValue = ["1", "true", "yes"].contains(s.lowercased()) ? .bool(true) : (["0", "false", "no"].contains(s.lowercased()) ? .bool(false) : .string(s))
            c.cacheOverrides.append(("snapshot", v))
        }
        c.authCodeOverrides = authCodeSettings(env)
        c.cookie = try SessionCookieSettings.fromEnvironment(env)
        if let p = env["PYLON_CAPTCHA_PROVIDER"], !p.isEmpty {
            guard let secret = env["PYLON_CAPTCHA_SECRET"], !secret.isEmpty else {
                throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_CAPTCHA_PROVIDER=\(p) needs PYLON_CAPTCHA_SECRET (the provider's secret key)")
            }
            c.captcha = try CaptchaConfig(provider: p, secret: secret, minScore: env["PYLON_CAPTCHA_MIN_SCORE"],
                                          verifyURL: env["PYLON_CAPTCHA_VERIFY_URL"].flatMap { $0.isEmpty ? nil : $0 })
        }
        if let b = env["PYLON_PASSWORD_BREACH_CHECK"]?.trimmingCharacters(in: .whitespaces), !b.isEmpty {
            switch b.lowercased() {
            case "0", "off", "false", "no": c.passwordBreachURL = nil
            case "1", "on", "true", "yes", "hibp": c.passwordBreachURL = Self.haveIBeenPwnedRangeURL
            default:
                guard b.hasPrefix("https://") || b.hasPrefix("http://") else {
                    throw HostError(status: 500, code: "CONFIG_INVALID", message: "PYLON_PASSWORD_BREACH_CHECK=\(b) is not on, off or the http(s) base URL of a range API")
                }
                c.passwordBreachURL = b.hasSuffix("/") ? b : b + "/"
            }
        }
        if let u = env["PYLON_PUBLIC_URL"], !u.isEmpty { c.publicURL = String(u.trimmingCharacters(in: .whitespaces).trimmingSuffix("/")) }
        if let u = env["PYLON_DASHBOARD_URL"], !u.isEmpty { c.dashboardURL = u }
        if let u = env["PYLON_PASSWORD_RESET_URL"], !u.isEmpty { c.passwordResetURL = u }
        return c
    }

    /// Pylon's email variables as the `auth.code` plugin's config keys: `PYLON_EMAIL_X` is
    /// `x` (`PYLON_EMAIL_HTTP_URL`, the name Pylon's docs use, is `endpoint` too), and
    /// `PYLON_SMTP_URL` is `smtp_url`.
    static func authCodeSettings(_ env: [String: String]) -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        for (key, value) in env.sorted(by: { $0.key < $1.key }) where !value.isEmpty {
            if key == "PYLON_SMTP_URL" {
                out.append(("smtp_url", .string(value)))
            } else if key == "PYLON_EMAIL_HTTP_URL" {
                if env["PYLON_EMAIL_ENDPOINT"]?.isEmpty ?? true { out.append(("endpoint", .string(value))) }
            } else if key.hasPrefix("PYLON_EMAIL_") {
                out.append((key.dropFirst("PYLON_EMAIL_".count).lowercased(), .string(value)))
            }
        }
        return out
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> Substring {
        var s = Substring(self)
        while s.hasSuffix(suffix) { s = s.dropLast(suffix.count) }
        return s
    }
}
