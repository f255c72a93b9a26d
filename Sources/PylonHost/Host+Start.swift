import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonData
import PylonServices
import PylonEdge

/// `Host.start`, step by step: everything before serving. Each step throws `HostError` with
/// a message saying what to fix.
extension Host {
    public static func start(_ config: HostConfig, logger: Logger = Logger(label: "pylon")) throws -> Host {
        let manifest = try loadManifest(config.manifestPath)
        var config = config
        config.staticSite = try resolveStaticSite(config, manifest, logger: logger)
        config.sessionCookie = try config.cookie.resolve(appName: manifest.name, dev: config.dev)
        let policies: PolicyEngine
        do {
            policies = try PolicyEngine(manifest: manifest, dev: config.dev)
        } catch {
            throw HostError(status: 500, code: error.code, message: "\(config.manifestPath): \(error.path): \(error.message)")
        }
        let metrics = Metrics()
        let (registry, storePath) = try activatePlugins(config, manifest, logger: logger, metrics: metrics)
        let opened = try openStore(config, manifest, registry, logger: logger, metrics: metrics)
        let (store, dialect) = (opened.store, opened.dialect)
        let data = DataService(manifest: manifest, dialect: dialect, store: store, policies: policies)
        let changes = ChangeLog(store: store, dialect: dialect, epoch: opened.epoch, retention: config.changelogRetention)
        let sessions = SessionStore(store: store, dialect: dialect, lifetime: manifest.auth.sessionExpiresIn,
                                    verifiedEmail: VerifiedEmail(manifest: manifest, dialect: dialect))
        // Whichever write cleared a session's organisation (`SessionStore.clearTenant`).
        store.onSessionsEnded = { sessions.tenantCleared($0) }
        let hub = ChangeHub(queueLimit: config.syncQueueLimit, queueBytes: config.syncQueueBytes, maxPerAddress: config.maxConnectionsPerAddress, metrics: metrics)
        let emailChanges = EmailChanges(manifest: manifest, sessions: sessions, hub: hub)
        hub.observe = { emailChanges.notice($0) }
        let tailer = try changeFeed(opened, into: hub, config: config, logger: logger, metrics: metrics)
        let shards = registry.sims.isEmpty ? nil : try ShardRegistry(sims: registry.sims, config: config, metrics: metrics, logger: logger,
                                                                     persistence: ShardPersistence(store: store, dialect: dialect, logger: logger, metrics: metrics))
        shards?.restoreSaved()
        let functions = try registry.served[PYLON_CAP_FUNCTIONS].map {
            try FunctionService(served: $0, data: data, store: store, enforcePolicies: manifest.functionsEnforcePolicies,
                                logger: logger, metrics: metrics, shards: shards)
        }
        let jobs = functions.map { JobService(store: store, functions: $0, config: config, logger: logger) }
        let cron = jobs.map { CronService(tasks: manifest.cron, jobs: $0, catchUp: config.cronCatchUp, logger: logger) }
        let workflows = jobs.map { WorkflowService(jobs: $0, config: config, logger: logger) }
        if jobs == nil && !manifest.cron.isEmpty {
            logger.warning("cron: the manifest declares \(manifest.cron.count) task(s), but no plugin serves functions, which run them; none fires")
        }
        let cache = try registry.served[PYLON_CAP_CACHE].map { try cacheService($0, hub: hub, logger: logger) }
        let oauth = try registry.served[PYLON_CAP_AUTH_OAUTH].map { served throws(HostError) in
            try OAuthService(served: served, data: data, config: config, logger: logger)
        }
        let files = try registry.served[PYLON_CAP_FILES].map { try fileRoutes($0, config, manifest, store: store, logger: logger) }
        let codes = try registry.served[PYLON_CAP_AUTH_CODE].map { AuthCodes(plugin: try AuthCodePlugin($0), store: store, dialect: dialect) }
        logger.info("store: \(opened.served.plugin.id) at \(opened.selection.location(fallback: storePath)), dialect \(dialect.name), \(opened.readerCount) readers, epoch \(opened.epoch)")
        reportStartup(config, manifest, policies, logger: logger)
        return Host(config: config, manifest: manifest, registry: registry, store: store, data: data,
                    changes: changes, sessions: sessions, metrics: metrics, logger: logger, hub: hub, tailer: tailer,
                    functions: functions, cache: cache, jobs: jobs, cron: cron, workflows: workflows, oauth: oauth, files: files,
                    codes: codes, shards: shards)
    }

    /// Loads the plugins and activates the manifest's selection, with the settings the host
    /// adds to each capability's config (the database path, the functions folder, the
    /// cache's data folder and client cap). Returns the registry and the database path.
    static func activatePlugins(_ config: HostConfig, _ manifest: Manifest, logger: Logger,
                                metrics: Metrics) throws -> (PluginRegistry, String) {
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
        FileBudget.raiseOpenFileLimit()
        overrides["cache"] = [("data_dir", .string(dataDir.isEmpty ? "." : dataDir)), ("maxclients_cap", .int(Int64(FileBudget.respClientCap())))]
            + config.cacheOverrides
        // Files: PYLON_FILES_DIR, else the manifest's `dir` (relative to the manifest), else
        // files/ beside the database.
        overrides["files"] = StoreSelection.filesOverrides(config, manifest, storePath: storePath)
        // Email sign-in: dev mode (echoed codes), the app's name for the templates, and
        // Pylon's email variables over the manifest's settings.
        overrides["auth.code"] = [("dev", .bool(config.dev)), ("app_name", .string(manifest.name))] + config.authCodeOverrides
        let lines = try registry.activate(selections: manifest.plugins, overrides: overrides)
        for l in lines { logger.info("capability \(l)") }
        return (registry, storePath)
    }

    /// The store, opened and migrated, with its connections on their threads.
    struct OpenedStore {
        let selection: StoreSelection
        let store: StoreThreads
        let epoch: String
        let readerCount: Int
        /// The change log's newest seq when the store opened (0: empty).
        let newestSeq: Int64
        var served: ServedCapability { selection.served }
        var table: UnsafePointer<pylon_store_v1> { selection.table }
        var dialect: SQLDialect { selection.dialect }
    }

    /// Opens the writer, migrates the schema (and the schedules, jobs and cron tables when functions are
    /// served), then opens the readers (and, for a local store, one quick reader per core)
    /// and puts them on `StoreThreads` with the write metrics wired in.
    static func openStore(_ config: HostConfig, _ manifest: Manifest, _ registry: PluginRegistry, logger: Logger,
                          metrics: Metrics) throws -> OpenedStore {
        let selection = try StoreSelection(registry, pluginsDir: config.pluginsDir)
        let (served, table, dialect) = (selection.served, selection.table, selection.dialect)
        func connect(_ mode: Int32) throws(HostError) -> StoreConnection { try open(table, served.instance, mode, served.plugin, metrics) }
        let writer = try connect(PYLON_STORE_OPEN_WRITE)
        var opened: [StoreConnection] = [writer]
        do {
            let migrations = try SchemaApplier.apply(manifest.entities, on: writer, dialect: dialect)
            let epoch = try SchemaApplier.epoch(writer, dialect)
            let newest = try newestSeq(writer)
            for m in migrations { logger.info("schema: \(m)") }
            if registry.served[PYLON_CAP_FUNCTIONS] != nil {
                do {
                    for ddl in FunctionScheduler.createSQL(dialect) + JobStore.createSQL(dialect) { try writer.execute(ddl, wantRows: false) }
                } catch {
                    throw HostError(status: 500, code: "SCHEMA_FAILED", message: "cannot create the function schedules, jobs and cron tables: \(error)")
                }
            }
            if registry.served[PYLON_CAP_FILES] != nil {
                do {
                    for ddl in FileRecords.createSQL(dialect) { try writer.execute(ddl, wantRows: false) }
                } catch {
                    throw HostError(status: 500, code: "SCHEMA_FAILED", message: "cannot create the files table: \(error)")
                }
            }
            if !registry.sims.isEmpty {
                do {
                    for ddl in ShardPersistence.createSQL(dialect) { try writer.execute(ddl, wantRows: false) }
                } catch {
                    throw HostError(status: 500, code: "SCHEMA_FAILED", message: "cannot create the saved shards table: \(error)")
                }
            }
            if registry.served[PYLON_CAP_AUTH_CODE] != nil {
                do {
                    for ddl in AuthCodes.createSQL(dialect) { try writer.execute(ddl, wantRows: false) }
                } catch {
                    throw HostError(status: 500, code: "SCHEMA_FAILED", message: "cannot create the one-time codes table: \(error)")
                }
            }
            let readerCount = max(1, min(config.readers, Int(table.pointee.max_readers == 0 ? 4 : table.pointee.max_readers)))
            var readers: [StoreConnection] = []
            for _ in 0..<readerCount {
                let r = try connect(PYLON_STORE_OPEN_READ)
                readers.append(r)
                opened.append(r)
            }
            var quick: [StoreConnection] = []
            if table.pointee.flags & PYLON_STORE_FLAG_LOCAL_READS != 0 {
                // One per core: as many as requests can run their point reads at once.
                for _ in 0..<max(1, ProcessInfo.processInfo.activeProcessorCount) {
                    let q = try connect(PYLON_STORE_OPEN_READ_BOUNDED)
                    quick.append(q)
                    opened.append(q)
                }
            }
            let store = StoreThreads(writer: writer, readers: readers, quickReaders: quick, dialect: dialect)
            recordWrites(of: store, metrics: metrics, logger: logger)
            return OpenedStore(selection: selection, store: store, epoch: epoch, readerCount: readerCount, newestSeq: newest)
        } catch {
            // Nothing is serving yet: close what was opened, so a failed start leaves no handle.
            for c in opened { c.close() }
            throw error
        }
    }

    /// The writer's batches in the metrics (`write_*`), and a warning for events that came
    /// back from the store without their seq.
    static func recordWrites(of store: StoreThreads, metrics: Metrics, logger: Logger) {
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
    }

    /// Where committed changes reach the hub from: straight from this host's writer, or,
    /// when other hosts may write the store, from a tailer of the shared change log
    /// (returned, to be stopped with the host).
    static func changeFeed(_ opened: OpenedStore, into hub: ChangeHub, config: HostConfig, logger: Logger,
                           metrics: Metrics) throws -> ChangeTailer? {
        let store = opened.store
        guard opened.table.pointee.flags & PYLON_STORE_FLAG_CONCURRENT_WRITERS != 0 else {
            // Only this host writes: every commit after the one read at opening reaches the hub.
            hub.startAfter(opened.newestSeq)
            store.onCommit = { events in
                metrics.add("changes_committed_total", Int64(events.count))
                hub.publish(events)
            }
            return nil
        }
        let conn = try open(opened.table, opened.served.instance, PYLON_STORE_OPEN_READ, opened.served.plugin, metrics)
        let newest: Int64
        do {
            newest = try newestSeq(conn)
        } catch {
            conn.close()
            throw error
        }
        // The tailer publishes every entry after `newest`.
        hub.startAfter(newest)
        let t = ChangeTailer(connection: conn, dialect: opened.dialect, from: newest, pollInterval: Double(config.changePollMs) / 1000,
                             logger: logger, publish: { hub.publish($0) })
        store.onCommit = { events in
            metrics.add("changes_committed_total", Int64(events.count))
            t.offer(events)
        }
        t.onRead = { metrics.add("change_tail_reads_total", 1) }
        // The store may not signal this host's own commits to its tailer: entries committed
        // without their seq are read from the log at once instead.
        let warn = store.onUnnumbered
        store.onUnnumbered = { n in
            warn?(n)
            t.wake()
        }
        t.start()
        logger.info("realtime: fed from the shared change log (other hosts may write this store)")
        return t
    }

    /// The change log's newest seq (0 when empty).
    static func newestSeq(_ conn: StoreConnection) throws -> Int64 {
        if case let .int(n)? = try conn.execute("SELECT MAX(seq) FROM _pylon_changes").rows.first?.first { return n }
        return 0
    }

    /// The bridge to the plugin serving `pylon.cache/1`.
    static func cacheService(_ c: ServedCapability, hub: ChangeHub, logger: Logger) throws -> CacheService {
        let size = c.table.load(as: UInt32.self)
        guard Int(size) >= MemoryLayout<pylon_cache_v1>.size else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(c.plugin.id) returned a pylon.cache/1 table of \(size) bytes, expected at least \(MemoryLayout<pylon_cache_v1>.size); rebuild it against this host's header")
        }
        let service = CacheService(table: c.table.assumingMemoryBound(to: pylon_cache_v1.self), instance: c.instance,
                                   plugin: c.plugin, hub: hub)
        let port = service.respPort
        logger.info("cache: \(c.plugin.id), RESP \(port == 0 ? "listener off" : "on port \(port)"); HTTP /api/cache and /api/pubsub (admin)")
        return service
    }

    /// The file routes over the plugin serving `pylon.files/1`: the upload limit (setting,
    /// else the manifest's `plugins.files.max_bytes`, else Pylon's 10 MiB) and the link
    /// signer (PYLON_FILES_SECRET; a fixed development secret in --dev; else none).
    static func fileRoutes(_ served: ServedCapability, _ config: HostConfig, _ manifest: Manifest, store: StoreThreads,
                           logger: Logger) throws -> FileRoutesConfig {
        let service = try FilesService(served)
        let maxBytes = config.filesMaxBytes ?? manifest.plugins["files"]?.config["max_bytes"]?.intValue.map { Int(max(1, $0)) } ?? 10 * 1024 * 1024
        var signer: FileSignature?
        if let secret = config.filesSecret {
            signer = FileSignature(secret: secret)
        } else if config.dev {
            logger.warning("files: PYLON_FILES_SECRET is not set; --dev signs file links with a fixed development secret")
            signer = FileSignature(secret: "pylon-development-files-secret")
        }
        var readRule: PolicyExpression?
        if let text = manifest.plugins["files"]?.config["allowRead"] {
            guard let source = text.stringValue else {
                throw HostError(status: 500, code: "MANIFEST_SHAPE", message: #"manifest plugins.files.allowRead must be a policy expression (a string), e.g. "data.type == \"image/png\"""#)
            }
            do {
                readRule = try PolicyExpression(source)
            } catch {
                throw HostError(status: 500, code: "POLICY_PARSE_ERROR", message: "manifest plugins.files.allowRead: \(error.annotated(source))")
            }
        }
        logger.info("files: \(served.plugin.id); uploads up to \(maxBytes) bytes; read by \(readRule.map { "the owner, admins and allowRead \($0.source)" } ?? "the owner and admins"); signed links \(signer == nil ? "off (set PYLON_FILES_SECRET)" : "on")")
        let records = FileRecords(store: store, dialect: store.dialect)
        let quota = FileQuota(maxBytes: config.filesMaxBytesPerUser, maxFiles: config.filesMaxFilesPerUser)
        if !quota.unlimited {
            logger.info("files: per-user quota \(quota.maxFiles > 0 ? "\(quota.maxFiles) files" : "any number of files"), \(quota.maxBytes > 0 ? "\(quota.maxBytes) bytes" : "any size")")
        }
        var sweeper: FileSweeper?
        if service.canList {
            sweeper = FileSweeper(service: service, records: records, graceSecs: config.filesOrphanGraceSecs, logger: logger)
        } else {
            logger.warning("files: \(served.plugin.id) cannot list its files (ABI 2.7 list); orphaned bytes are never swept")
        }
        return FileRoutesConfig(service: service, records: records, signer: signer, maxBytes: maxBytes, readRule: readRule,
                                quota: quota, sweeper: sweeper, logger: logger)
    }

    /// What an operator should know at startup: entities no policy protects, operations no
    /// rule covers, CRDT fields stored as plain values.
    static func reportStartup(_ config: HostConfig, _ manifest: Manifest, _ policies: PolicyEngine, logger: Logger) {
        for e in policies.unprotectedEntities {
            logger.warning("entity \(e) has no policy: \(config.dev ? "open to everyone (--dev)" : "admin-only until a policy names it")")
        }
        for (e, ops) in policies.unguardedOperations where !ops.isEmpty {
            logger.warning("entity \(e): no rule covers \(ops.map(\.rawValue).joined(separator: ", ")); \(config.dev ? "open to everyone (--dev)" : "admin-only")")
        }
        logger.info("session cookie: \(config.sessionCookie)")
        let crdtFields = manifest.entities.flatMap { e in e.fields.compactMap { f in f.crdt.flatMap { $0 == "lww" ? nil : "\(e.name).\(f.name) (\($0))" } } }
        if !crdtFields.isEmpty {
            logger.info("crdt: \(crdtFields.joined(separator: ", ")) stored and synced as plain values (last write wins): no plugin serves \(PYLON_CAP_CRDT), so /api/crdt answers 501")
        }
    }

    /// One connection of the store plugin in `mode`.
    static func open(_ table: UnsafePointer<pylon_store_v1>, _ instance: OpaquePointer, _ mode: Int32,
                     _ plugin: LoadedPlugin, _ metrics: Metrics) throws(HostError) -> StoreConnection {
        let capture = PluginErrorCapture()
        var handle: OpaquePointer?
        let status = capture.withSink { table.pointee.open(instance, mode, &handle, $0) }
        guard status == PYLON_OK, let handle else {
            let msg = capture.failure(status, code: "STORE_OPEN_FAILED", message: "open failed with status \(status)").message
            throw HostError(status: 500, code: "STORE_OPEN_FAILED", message: "\(plugin.id): \(msg)")
        }
        return StoreConnection(table: table, handle: handle, calls: metrics.pluginCalls)
    }
}
