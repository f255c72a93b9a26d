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

    /// Everything before serving; throws `HostError` with a message saying what to fix.
    public static func start(_ config: HostConfig, logger: Logger = Logger(label: "pylon")) throws -> Host {
        let manifest = try loadManifest(config.manifestPath)
        let policies: PolicyEngine
        do {
            policies = try PolicyEngine(manifest: manifest, dev: config.dev)
        } catch {
            throw HostError(status: 500, code: error.code, message: "\(config.manifestPath): \(error.path): \(error.message)")
        }
        let metrics = Metrics()
        let registry = StoreSelection.loadPlugins(config, logger: logger, metrics: metrics)
        let storePath = StoreSelection.path(config, manifest)
        var overrides = StoreSelection.overrides(storePath)
        // Functions live next to the manifest unless the manifest says otherwise.
        let manifestDir = URL(fileURLWithPath: config.manifestPath).deletingLastPathComponent()
        let fnDir = manifest.plugins["functions"]?.config["dir"]?.stringValue ?? "functions"
        overrides["functions"] = [("dir", .string(URL(fileURLWithPath: fnDir, relativeTo: manifestDir).standardizedFileURL.path)),
                                  ("dev", .bool(config.dev))]
        // The cache keeps its snapshot (when enabled) beside the database.
        let dataDir = (storePath as NSString).deletingLastPathComponent
        // The RESP listener's clients share the open-file budget with the HTTP listeners
        // (`respClientCap`, `connectionCap`).
        Self.raiseOpenFileLimit()
        let respCap = Self.respClientCap()
        overrides["cache"] = [("data_dir", .string(dataDir.isEmpty ? "." : dataDir)), ("maxclients_cap", .int(Int64(respCap)))]
            + config.cacheOverrides
        let lines = try registry.activate(selections: manifest.plugins, overrides: overrides)
        for l in lines { logger.info("capability \(l)") }

        let selection = try StoreSelection(registry, pluginsDir: config.pluginsDir)
        let (served, table, dialect) = (selection.served, selection.table, selection.dialect)
        let writer = try open(table, served.instance, PYLON_STORE_OPEN_WRITE, served.plugin, metrics)
        let migrations: [String]
        let epoch: String
        do {
            migrations = try SchemaApplier.apply(manifest.entities, on: writer, dialect: dialect)
            epoch = try SchemaApplier.epoch(writer, dialect)
        } catch {
            writer.close()
            throw error
        }
        for m in migrations { logger.info("schema: \(m)") }
        if registry.served[PYLON_CAP_FUNCTIONS] != nil {
            do {
                for ddl in FunctionScheduler.createSQL(dialect) { try writer.execute(ddl, wantRows: false) }
            } catch {
                writer.close()
                throw HostError(status: 500, code: "SCHEMA_FAILED", message: "cannot create the function schedules table: \(error)")
            }
        }
        let readerCount = max(1, min(config.readers, Int(table.pointee.max_readers == 0 ? 4 : table.pointee.max_readers)))
        var readers: [StoreConnection] = []
        for _ in 0..<readerCount {
            readers.append(try open(table, served.instance, PYLON_STORE_OPEN_READ, served.plugin, metrics))
        }
        var quick: [StoreConnection] = []
        if table.pointee.flags & PYLON_STORE_FLAG_LOCAL_READS != 0 {
            // One per core: as many as requests can run their point reads at once.
            for _ in 0..<max(1, ProcessInfo.processInfo.activeProcessorCount) {
                quick.append(try open(table, served.instance, PYLON_STORE_OPEN_READ, served.plugin, metrics))
            }
        }
        let store = StoreThreads(writer: writer, readers: readers, quickReaders: quick, dialect: dialect)
        store.onBatch = { jobs, replayed, began in
            Metrics.record(metrics.commitDuration, since: began)
            metrics.batchJobs.record(jobs)
            metrics.add("write_batches_total", 1)
            metrics.add("write_jobs_total", Int64(jobs))
            if replayed { metrics.add("write_batches_replayed_total", 1) }
        }
        store.onUnnumbered = { [logger] n in
            metrics.add("write_events_unnumbered_total", Int64(n))
            logger.warning("store: a committed batch's \(n) change event(s) came back without their seq (the store did not return the newest seq); they reach subscribers from the change log instead")
        }
        let data = DataService(manifest: manifest, dialect: dialect, store: store, policies: policies)
        let changes = ChangeLog(store: store, dialect: dialect, epoch: epoch, retention: config.changelogRetention)
        let sessions = SessionStore(store: store, dialect: dialect, lifetime: manifest.auth.sessionExpiresIn)
        let hub = ChangeHub(queueLimit: config.syncQueueLimit, maxPerAddress: config.maxConnectionsPerAddress, metrics: metrics)
        var tailer: ChangeTailer?
        if table.pointee.flags & PYLON_STORE_FLAG_CONCURRENT_WRITERS != 0 {
            // Other hosts may write this database: the hub is fed from the shared log.
            let conn = try open(table, served.instance, PYLON_STORE_OPEN_READ, served.plugin, metrics)
            var newest: Int64 = 0
            if case let .int(n)? = try conn.execute("SELECT MAX(seq) FROM _pylon_changes").rows.first?.first { newest = n }
            let t = ChangeTailer(connection: conn, dialect: dialect, from: newest, pollInterval: Double(config.changePollMs) / 1000,
                                 logger: logger, publish: { hub.publish($0) })
            store.onCommit = { events in
                metrics.add("changes_committed_total", Int64(events.count))
                t.offer(events)
            }
            t.start()
            tailer = t
            logger.info("realtime: fed from the shared change log (other hosts may write this store)")
        } else {
            store.onCommit = { events in
                metrics.add("changes_committed_total", Int64(events.count))
                hub.publish(events)
            }
        }
        var functions: FunctionService?
        if let fn = registry.served[PYLON_CAP_FUNCTIONS] {
            functions = try FunctionService(served: fn, data: data, store: store, enforcePolicies: manifest.functionsEnforcePolicies,
                                            logger: logger, metrics: metrics)
        }
        var cache: CacheService?
        if let c = registry.served[PYLON_CAP_CACHE] {
            let size = c.table.load(as: UInt32.self)
            guard Int(size) >= MemoryLayout<pylon_cache_v1>.size else {
                throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                                message: "plugin \(c.plugin.id) returned a pylon.cache/1 table of \(size) bytes, expected at least \(MemoryLayout<pylon_cache_v1>.size); rebuild it against this host's header")
            }
            let service = CacheService(table: c.table.assumingMemoryBound(to: pylon_cache_v1.self), instance: c.instance,
                                       plugin: c.plugin, hub: hub)
            let port = service.respPort
            logger.info("cache: \(c.plugin.id), RESP \(port == 0 ? "listener off" : "on port \(port)"); HTTP /api/cache and /api/pubsub (admin)")
            cache = service
        }
        let location = selection.location(fallback: storePath)
        logger.info("store: \(served.plugin.id) at \(location), dialect \(dialect.name), \(readerCount) readers, epoch \(epoch)")
        for e in policies.unprotectedEntities {
            logger.warning("entity \(e) has no policy: \(config.dev ? "open to everyone (--dev)" : "admin-only until a policy names it")")
        }
        for (e, ops) in policies.unguardedOperations where !ops.isEmpty {
            logger.warning("entity \(e): no rule covers \(ops.map(\.rawValue).joined(separator: ", ")); \(config.dev ? "open to everyone (--dev)" : "admin-only")")
        }
        let crdtFields = manifest.entities.flatMap { e in e.fields.compactMap { f in f.crdt.flatMap { $0 == "lww" ? nil : "\(e.name).\(f.name) (\($0))" } } }
        if !crdtFields.isEmpty {
            logger.info("crdt: \(crdtFields.joined(separator: ", ")) stored and synced as plain values (last write wins): no plugin serves \(PYLON_CAP_CRDT), so /api/crdt answers 501")
        }
        return Host(config: config, manifest: manifest, registry: registry, store: store, data: data,
                    changes: changes, sessions: sessions, metrics: metrics, logger: logger, hub: hub, tailer: tailer,
                    functions: functions, cache: cache)
    }

    private init(config: HostConfig, manifest: Manifest, registry: PluginRegistry, store: StoreThreads,
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

    static func open(_ table: UnsafePointer<pylon_store_v1>, _ instance: OpaquePointer, _ mode: Int32,
                     _ plugin: LoadedPlugin, _ metrics: Metrics) throws(HostError) -> StoreConnection {
        var err = pylon_error()
        err.struct_size = UInt32(MemoryLayout<pylon_error>.size)
        var handle: OpaquePointer?
        let status = table.pointee.open(instance, mode, &handle, &err)
        guard status == PYLON_OK, let handle else {
            let msg = boundedCString(err.message)
            throw HostError(status: 500, code: "STORE_OPEN_FAILED", message: "\(plugin.id): \(msg)")
        }
        return StoreConnection(table: table, handle: handle, calls: metrics.pluginCalls)
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

    /// Open connections per listener: `configured`, but never more than the open-file limit
    /// allows with every listener full and `reservedDescriptors` left for the store,
    /// plugins and logs. At the cap a listener stops accepting (Hummingbird's
    /// `MaximumAvailableConnections`) and clients wait in the backlog, so connections never
    /// exhaust the descriptors: at EMFILE NIO only backs off accepting, but other code does
    /// not survive it (libdispatch, which runs Swift's task pool on Linux, aborts the process
    /// when its worker monitor cannot open /proc). Per listener because that is what
    /// Hummingbird's handler can resume (with a shared count a listener with no connections
    /// of its own would wait for ever). The cache's RESP listener has its share taken out
    /// first (`respClientCap`).
    static func connectionCap(_ configured: Int?, listeners: Int) -> Int {
        guard let files = openFileBudget() else { return configured ?? 1024 }
        let budget = max(16, (files - respClientCap()) / max(1, listeners))
        return min(configured ?? budget, budget)
    }

    /// The most clients the cache's RESP listener may hold (the plugin's `maxclients_cap`): a
    /// tenth of the open-file budget, at least 16. Its clients are usually a few app servers'
    /// pools, while the HTTP listeners hold every realtime subscriber.
    static func respClientCap() -> Int {
        guard let files = openFileBudget() else { return 1024 }
        return max(16, files / 10)
    }

    /// The open-file limit less `reservedDescriptors`; nil when it cannot be read.
    static func openFileBudget() -> Int? {
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0 else { return nil }
        return Int(clamping: min(UInt64(limit.rlim_cur), UInt64(Int32.max))) - reservedDescriptors
    }

    /// Raises the soft open-file limit to the hard one (as Go's runtime does): the default
    /// soft limit (often 1024) would cap connections far below what the system allows.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(openFiles, &limit)
    }

    #if canImport(Glibc)
    private static let openFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let openFiles = RLIMIT_NOFILE
    #endif

    static let reservedDescriptors = 128

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
