import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import PylonPluginABI
import ServiceLifecycle

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

    init(config: HostConfig, manifest: Manifest, registry: PluginRegistry, store: StoreThreads,
                 data: DataService, changes: ChangeLog, sessions: SessionStore, metrics: Metrics, logger: Logger,
                 hub: ChangeHub, tailer: ChangeTailer?, functions: FunctionService?, cache: CacheService?) {
        self.functions = functions
        self.hub = hub
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

    /// HTTP listeners that share the open-file budget: the API port and the compat ports when on.
    static func listenerCount(_ config: HostConfig) -> Int { config.compatPorts ? 3 : 1 }

    /// Serves HTTP (and WS/SSE) until the process is stopped: the API port, plus Pylon's
    /// WS (port+1) and SSE (port+2) listeners unless `compatPorts` is off.
    public func run() async throws {
        let stubs = CapabilityInfo.all.filter { registry.served[$0.id] == nil }
        let canRead: @Sendable (AuthContext, String, JSONValue?) -> Bool = { [data] auth, entity, row in
            data.canRead(entity, row, auth: auth)
        }
        hub.canRead = canRead
        let sync = SyncStream(hub: hub, changes: changes, canRead: canRead)
        let realtime = RealtimeConfig(maxFrameBytes: config.maxFrameBytes, relayRate: config.wsRelayRate, relayBurst: config.wsRelayBurst)
        let routes = RouteContext(data: data, changes: changes, sessions: sessions, config: config,
                                  metrics: metrics, startedAt: Date(), stubs: stubs, hub: hub, sync: sync,
                                  realtime: realtime, functions: functions, cache: cache,
                                  authLimiter: AuthRateLimiter(config.authRateLimits, maxKeys: config.rateLimitClients))
        let trustedOrigins = config.csrfOrigins(manifest: manifest)
        let requestGuard = RequestGuard(config: config, trustedOrigins: trustedOrigins, metrics: metrics)
        let limit = config.requestRateLimit
        logger.info("request limit: \(limit > 0 ? "\(limit) per \(config.rateLimitWindow) s per client address" : "off"); writes with the session cookie accepted from: \(trustedOrigins.isEmpty ? "the host's own origin only (PYLON_TRUSTED_ORIGINS adds others)" : trustedOrigins.joined(separator: ", "))")
        let middleware = APIMiddleware<PylonRequestContext>(corsOrigin: config.corsOrigin, metrics: metrics, requestGuard: requestGuard)
        // HEAD is answered wherever GET is (the GET handler's head, no body).
        let router = Router(context: PylonRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: middleware)
        routes.addSystemRoutes(router)
        routes.addAuthRoutes(router)
        routes.addDataRoutes(router)
        routes.addSyncRoutes(router)
        routes.addFunctionRoutes(router)
        routes.addAdminDataRoutes(router)
        if let cache { routes.addCacheRoutes(router, cache) }
        routes.addEventStreamRoute(router, path: "/api/sync/events")
        var appLogger = logger
        appLogger.logLevel = .warning
        /// The HTTP handlers of a listener answering with `router`: its `HTTPFront` (the one
        /// path every request takes; see HTTP/HTTPFront.swift) after NIO's codec.
        func answering(_ router: Router<PylonRequestContext>,
                       immediate: (@Sendable (HTTPRequest) -> HTTPFront.ImmediateHandler?)? = nil) -> HTTP1Channel.Configuration {
            let front = HTTPFront.Shared(responder: router.buildResponder(), logger: appLogger, serverName: "pylon-host",
                                         maxBody: config.maxBodyBytes, immediate: immediate)
            return HTTP1Channel.Configuration(additionalChannelHandlers: [HTTPFront(front)], httpDecoderConfiguration: .pylon)
        }
        let guards = ListenerGuards(limits: config.connectionLimits, maxBody: config.maxBodyBytes, serverName: "pylon-host")
        let listeners = Self.listenerCount(config)
        let cap = Self.connectionCap(config.maxConnections, listeners: listeners)
        if let asked = config.maxConnections, asked > cap {
            logger.warning("PYLON_MAX_CONNECTIONS=\(asked) is more than the open-file limit allows for \(listeners) listener(s); serving at most \(cap) per listener (raise the limit with ulimit -n)")
        }
        logger.info("HTTP: at most \(cap) open connections per listener; timeouts: head \(config.httpHeaderTimeout) s, body \(config.httpBodyTimeout) s, idle \(config.httpIdleTimeout) s (0 = off)")
        /// Every listener's configuration: its address and the connection cap.
        func listening(on port: Int) -> ApplicationConfiguration {
            .init(address: .hostname(config.bindHost, port: port), serverName: "pylon-host",
                  availableConnectionsDelegate: MaximumAvailableConnections(cap, logger: appLogger))
        }
        let http1 = answering(router, immediate: { routes.immediateRoute($0, middleware) })
        let server = HTTPServerBuilder { responder -> any ServerChildChannel in
            HTTPListener(inner: WebSocketUpgradeChannel(responder: responder, http1: http1, routes: routes,
                                                        upgrades: { $0 == "/api/sync/ws" }),
                         guards: guards, upgrades: requestGuard)
        }
        let main = Application(
            router: router,
            server: server,
            configuration: listening(on: config.port),
            onServerRunning: { [logger, config] _ in
                logger.info("pylon-host listening on http://\(config.bindHost):\(config.port)\(config.dev ? " (dev mode)" : "") (\(Allocator.description))")
            },
            logger: appLogger)
        var services: [any Service] = [main, RealtimeShutdown(hub: hub)]
        if config.compatPorts {
            // Requests that are not upgrades get the API's error answers (404 in JSON).
            let wsHTTP = Router(context: PylonRequestContext.self, options: .autoGenerateHeadEndpoints)
            wsHTTP.add(middleware: middleware)
            let wsPlain = answering(wsHTTP)
            let wsApp = Application(
                router: wsHTTP,
                server: HTTPServerBuilder { responder in
                    // Every path upgrades here, as on Pylon's WebSocket port.
                    HTTPListener(inner: WebSocketUpgradeChannel(responder: responder, http1: wsPlain, routes: routes,
                                                                upgrades: { _ in true }),
                                 guards: guards, upgrades: requestGuard)
                },
                configuration: listening(on: config.port + 1),
                logger: appLogger)
            let sseRouter = Router(context: PylonRequestContext.self, options: .autoGenerateHeadEndpoints)
            sseRouter.add(middleware: middleware)
            routes.addEventStreamRoute(sseRouter, path: "/")
            routes.addEventStreamRoute(sseRouter, path: "/**")
            let ssePlain = answering(sseRouter)
            let sseApp = Application(
                router: sseRouter,
                server: HTTPServerBuilder { responder in
                    HTTPListener(inner: HTTP1Channel(responder: responder, configuration: ssePlain), guards: guards)
                },
                configuration: listening(on: config.port + 2),
                logger: appLogger)
            services += [wsApp, sseApp]
            logger.info("Pylon-compatible listeners: WebSocket on port \(config.port + 1), SSE on port \(config.port + 2)")
        }
        // Trim once before serving (so a restart applies a lowered retention at once),
        // then every minute.
        if let n = try? await changes.trim(), n > 0 { logger.info("change log: trimmed \(n) entries beyond retention") }
        let trimmer = Task { [changes, logger] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(60))
                do {
                    let n = try await changes.trim()
                    if n > 0 { logger.info("change log: trimmed \(n) entries beyond retention") }
                } catch {
                    logger.warning("change log trim failed: \(error)")
                }
            }
        }
        defer { trimmer.cancel() }
        // Revoked, expired or changed sessions end their streams and leave the cache.
        sessions.onRevoked = { [hub] in hub.endSessions($0) }
        let watcher = SessionWatcher(store: store, dialect: store.dialect, sessions: sessions, hub: hub,
                                     pollInterval: .milliseconds(config.sessionPollMs), logger: logger)
        let watching = Task { await watcher.run() }
        defer { watching.cancel() }
        let scheduler = functions.map { fn in Task { [logger] in await FunctionScheduler.run(fn, logger: logger) } }
        defer { scheduler?.cancel() }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: appLogger)
        try await group.run()
        tailer?.stop()
        store.shutdown()
        // Plugins stop their threads and save what they keep (the cache's snapshot).
        cache?.detach()
        registry.shutdown()
    }
}
