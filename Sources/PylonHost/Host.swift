import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import PylonPluginABI
import ServiceLifecycle
import PylonCore
import PylonPlugins
import PylonData
import PylonServices
import PylonEdge
import PylonJSON

/// The host process: loads the manifest and plugins, opens the store, migrates, and serves
/// HTTP. `pylon-host serve` is `try await Host.start(config).run()`.
public final class Host: Sendable {
    public let config: HostConfig
    public let manifest: Manifest
    let registry: PluginRegistry
    let store: StoreThreads
    public let data: DataService
    public let changes: ChangeLog
    let sessions: SessionStore
    let metrics: Metrics
    let logger: Logger
    let hub: ChangeHub
    let cache: CacheService?
    /// Feeds `hub` from the shared change log when other hosts may write the store.
    let tailer: ChangeTailer?
    /// Server functions, when a plugin serves `pylon.functions/1`.
    let functions: FunctionService?
    /// Durable jobs and the manifest's cron tasks, served with functions (their handlers).
    let jobs: JobService?
    let cron: CronService?
    let workflows: WorkflowService?
    let oauth: OAuthService?
    /// File uploads, when a plugin serves `pylon.files/1`.
    let files: FileRoutesConfig?
    /// One-time email codes and links, when a plugin serves `pylon.auth.code/1`.
    let codes: AuthCodes?
    /// Rooms and presence (in memory; their events go through `hub`).
    let rooms: RoomService
    /// Shards, when plugins serve `pylon.shard.sim/1`.
    let shards: ShardRegistry?

    init(config: HostConfig, manifest: Manifest, registry: PluginRegistry, store: StoreThreads,
                 data: DataService, changes: ChangeLog, sessions: SessionStore, metrics: Metrics, logger: Logger,
                 hub: ChangeHub, tailer: ChangeTailer?, functions: FunctionService?, cache: CacheService?,
                 jobs: JobService? = nil, cron: CronService? = nil, workflows: WorkflowService? = nil,
                 oauth: OAuthService? = nil, files: FileRoutesConfig? = nil, codes: AuthCodes? = nil,
                 shards: ShardRegistry? = nil) {
        self.shards = shards
        self.codes = codes
        self.oauth = oauth
        self.files = files
        self.functions = functions
        self.jobs = jobs
        self.cron = cron
        self.workflows = workflows
        self.hub = hub
        rooms = RoomService(limits: config.rooms, hub: hub, metrics: metrics)
        self.tailer = tailer
        self.cache = cache
        self.config = config
        self.manifest = manifest
        self.registry = registry
        self.store = store
        self.data = data
        self.changes = changes
        self.sessions = sessions
        self.metrics = metrics
        self.logger = logger
    }

    /// Reads, decodes and validates the manifest; every problem is listed in one error.
    public static func loadManifest(_ path: String) throws(HostError) -> Manifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HostError(status: 500, code: "MANIFEST_NOT_FOUND",
                            message: "cannot read manifest \(path); pass --manifest with the path to pylon.manifest.json")
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.decode(Array(data))
        } catch {
            throw HostError(status: 500, code: error.code, message: "\(path): \(error.path): \(error.message)")
        }
        let problems = ManifestValidator.validate(manifest)
        if !problems.isEmpty {
            throw HostError(status: 500, code: problems[0].code,
                            message: "\(path) has \(problems.count) problem(s):\n  " + problems.map(\.description).joined(separator: "\n  "))
        }
        do {
            _ = try PolicyEngine(manifest: manifest, dev: false)
        } catch {
            throw HostError(status: 500, code: error.code, message: "\(path): \(error.path): \(error.message)")
        }
        return manifest
    }

    /// Serves HTTP (and WS/SSE) until the process is stopped: the API port, plus Pylon's
    /// WS (port+1) and SSE (port+2) listeners unless `compatPorts` is off.
    public func run() async throws {
        let passwordWorkers = PasswordWorkers()
        defer { passwordWorkers.shutdown() }
        let routes = routeContext(passwordWorkers)
        let trustedOrigins = config.csrfOrigins(manifest: manifest)
        let requestGuard = RequestGuard(config: config, csrf: routes.cookiePages, metrics: metrics, keyGuesses: routes.keyGuesses)
        let limit = config.requestRateLimit
        logger.info("request limit: \(limit > 0 ? "\(limit) per \(config.rateLimitWindow) s per client address" : "off"); writes with the session cookie accepted from: \(trustedOrigins.isEmpty ? "the host's own origin only (PYLON_TRUSTED_ORIGINS adds others)" : trustedOrigins.joined(separator: ", "))")
        let middleware = APIMiddleware<PylonRequestContext>(corsOrigin: config.corsOrigin, metrics: metrics, requestGuard: requestGuard)
        // The shard WebSocket (a `shard.transport` plugin), once the routes' auth exists.
        let transport = try ShardTransport.start(registry: registry, routes: routes, manifest: manifest, logger: logger)
        // The HTTP listeners' share of the open files is what the listeners this host runs
        // beside them leave.
        let others = FileBudget.OtherListeners(cache: cache != nil, shardSocket: transport != nil)
        let edge = EdgeServer(config: config, routes: routes, middleware: middleware, requestGuard: requestGuard,
                              others: others, logger: logger)
        try await serve(edge.services() + [RealtimeShutdown(hub: hub, shards: shards)], transport: transport)
    }

    /// What every route handler gets, with the hub's read check wired to the data plane.
    private func routeContext(_ passwordWorkers: PasswordWorkers) -> RouteContext {
        let stubs = CapabilityInfo.all.filter { registry.served[$0.id] == nil }
        let canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool = { [data] auth, entity, row in
            data.canRead(entity, row, auth: auth)
        }
        hub.canRead = canRead
        let sync = SyncStream(hub: hub, changes: changes, canRead: canRead)
        let realtime = RealtimeConfig(config)
        return RouteContext(data: data, changes: changes, sessions: sessions, config: config,
                            metrics: metrics, startedAt: Date(), stubs: stubs, hub: hub, sync: sync,
                            realtime: realtime, functions: functions, cache: cache,
                            authLimiter: AuthRateLimiter(config.authRateLimits, maxKeys: config.rateLimitClients),
                            passwords: PasswordAccounts(data: data, workers: passwordWorkers),
                            apiKeys: apiKeys(),
                            jwts: config.jwtSecret.map { SessionJWTs(secret: $0, issuer: config.jwtIssuer, lifetime: config.jwtLifetime) },
                            jobs: jobs, cron: cron, workflows: workflows,
                            orgs: Organisations(store: store, dialect: store.dialect),
                            oauth: oauth, files: files, codes: codes, rooms: rooms,
                            captcha: config.captcha.map(CaptchaVerifier.init),
                            breaches: config.passwordBreachURL.map { BreachedPasswords(rangeURL: $0, logger: logger) },
                            shards: shards)
    }

    /// API keys with the configured pepper; in --dev without one, a fixed development pepper
    /// (keys made with it stop working once a real pepper is set); otherwise none.
    private func apiKeys() -> ApiKeys? {
        let email = VerifiedEmail(manifest: manifest, dialect: store.dialect)
        if let pepper = config.apiKeyPepper { return ApiKeys(store: store, dialect: store.dialect, pepper: pepper, verifiedEmail: email) }
        guard config.dev else {
            logger.info("API keys: off (set PYLON_API_KEY_PEPPER to a long random secret to use them)")
            return nil
        }
        logger.warning("API keys: PYLON_API_KEY_PEPPER is not set; --dev uses a fixed development pepper")
        return ApiKeys(store: store, dialect: store.dialect, pepper: "pylon-development-api-key-pepper", verifiedEmail: email)
    }

    /// Runs `services` with the host's background work (change-log and push-record
    /// retention, the session watcher, the function scheduler) until a shutdown signal, then
    /// stops the store and the plugins.
    private func serve(_ services: [any Service], transport: ShardTransport? = nil) async throws {
        // Trim the change log once before serving (so a restart applies a lowered retention
        // at once); sweep push records at once too, but beside serving: the first sweep after
        // an upgrade may have millions to delete. Then both every minute.
        await Self.trimChangeLog(changes, logger)
        let pushOps = PushOpsRetention(store: store, retentionHours: config.pushOpsRetentionHours)
        if config.pushOpsRetentionHours == 0 {
            logger.info("push records: kept for good (PYLON_PUSH_OPS_RETENTION_HOURS=0); the table grows with every op pushed")
        }
        let trimmer = Task { [changes, logger] in
            await Self.sweepPushOps(pushOps, logger)
            while true {
                do { try await Task.sleep(for: .seconds(60)) } catch { return }  // cancelled: the host is stopping
                await Self.trimChangeLog(changes, logger)
                await Self.sweepPushOps(pushOps, logger)
            }
        }
        // Revoked, expired or changed sessions end their streams and leave the cache.
        sessions.onRevoked = { [hub] in hub.endSessions($0) }
        let watcher = SessionWatcher(store: store, dialect: store.dialect, sessions: sessions, hub: hub,
                                     pollInterval: .milliseconds(config.sessionPollMs), logger: logger)
        let watching = Task { await watcher.run() }
        let scheduleRunner = functions.map { FunctionScheduler.Runner($0, logger: logger) }
        let scheduler = scheduleRunner.map { r in Task { await r.run() } }
        let jobRunner = jobs.map { j in Task { await j.run() } }
        let cronTicker = cron.map { c in Task { await c.run() } }
        let roomSweeper = Task { [rooms] in await rooms.run() }
        let fileSweeper = config.filesSweepSecs > 0 ? files?.sweeper.map { s in Task { [config] in await s.run(every: config.filesSweepSecs) } } : nil
        var quiet = logger
        quiet.logLevel = .warning
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: quiet)
        // The background work stops before the store does, so it does not meet a closed store.
        defer {
            trimmer.cancel()
            watching.cancel()
            scheduler?.cancel()
            jobRunner?.cancel()
            cronTicker?.cancel()
            roomSweeper.cancel()
            fileSweeper?.cancel()
            jobs?.stop()
            transport?.stop()
            shards?.shutdown()
            tailer?.stop()
            store.shutdown()
            // Plugins stop their threads and save what they keep (the cache's snapshot).
            cache?.detach()
            registry.shutdown()
        }
        try await group.run()
        // A graceful stop: scheduled calls running now finish while the functions and the
        // store are still up (the work above stops in the `defer`, after this).
        await scheduleRunner?.drain(timeout: .seconds(10))
    }

    /// Trims the change log to its retention; a failure is logged and the next round tries again.
    private static func trimChangeLog(_ changes: ChangeLog, _ logger: Logger) async {
        do {
            let n = try await changes.trim()
            if n > 0 { logger.info("change log: trimmed \(n) entries beyond retention") }
        } catch {
            logger.warning("change log trim failed: \(error)")
        }
    }

    /// Deletes push records past their retention; a failure is logged and the next round
    /// tries again.
    private static func sweepPushOps(_ pushOps: PushOpsRetention, _ logger: Logger) async {
        do {
            let n = try await pushOps.sweep()
            if n > 0 { logger.info("push records: deleted \(n) older than PYLON_PUSH_OPS_RETENTION_HOURS") }
        } catch {
            logger.warning("push records: the retention sweep failed (\(error)); it runs again in a minute")
        }
    }
}
