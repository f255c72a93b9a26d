import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonJSON

/// The app's store as the manifest and the plugins folder select it: the plugin serving
/// `pylon.store/1`, its table read across ABI minors, and the dialect the host generates
/// SQL for. `serve` (Host.start), `backup` and `restore` find the store through this one
/// piece, so the three always agree on which database they mean.
struct StoreSelection {
    let served: ServedCapability
    let table: UnsafePointer<pylon_store_v1>
    let dialect: SQLDialect

    /// Checks the activated store: present, its required slots set, a dialect this host speaks.
    init(_ registry: PluginRegistry, pluginsDir: String) throws(HostError) {
        guard let served = registry.served[PYLON_CAP_STORE] else {
            throw HostError(status: 500, code: "STORE_UNAVAILABLE",
                            message: "no store plugin in \(pluginsDir): put libPylonStoreSQLite.so there (make build copies it) or pass --plugins with the right folder")
        }
        let table = StoreTable.normalized(served.table)
        guard table.pointee.open != nil, table.pointee.close != nil, table.pointee.execute != nil,
              table.pointee.transaction != nil, table.pointee.dialect != nil else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_INCOMPLETE",
                            message: "store plugin \(served.plugin.id) (\(served.plugin.fileName)) left open, close, execute, transaction or dialect NULL; the plugin is broken")
        }
        let dialectName = table.pointee.dialect.map { String(cString: $0) } ?? ""
        switch dialectName {
        case "sqlite": dialect = SQLiteDialect()
        case "postgres": dialect = PostgresDialect()
        default:
            throw HostError(status: 500, code: "STORE_DIALECT_UNSUPPORTED",
                            message: "store plugin \(served.plugin.id) declares dialect \"\(dialectName)\"; this host generates SQL for: sqlite, postgres")
        }
        self.served = served
        self.table = table
    }

    /// The SQLite file: `--db` / PYLON_DB_PATH, else the manifest's `plugins.store.path`,
    /// else `pylon.db`.
    static func path(_ config: HostConfig, _ manifest: Manifest) -> String {
        config.dbPath ?? manifest.plugins["store"]?.config["path"]?.stringValue ?? "pylon.db"
    }

    /// The store's config overrides (its `path`), to which the host adds the other plugins'.
    static func overrides(_ storePath: String) -> [String: [(String, JSONValue)]] {
        ["store": [("path", .string(storePath))]]
    }

    /// The files plugin's folder: PYLON_FILES_DIR, else the manifest's `dir` (relative to
    /// the manifest), else files/ beside the database; `serve`, `backup` and `restore` agree.
    static func filesOverrides(_ config: HostConfig, _ manifest: Manifest, storePath: String) -> [(String, JSONValue)] {
        let manifestDir = URL(fileURLWithPath: config.manifestPath).deletingLastPathComponent()
        let dataDir = (storePath as NSString).deletingLastPathComponent
        let dir = config.filesDir ?? manifest.plugins["files"]?.config["dir"]?.stringValue
            .map { URL(fileURLWithPath: $0, relativeTo: manifestDir).standardizedFileURL.path }
            ?? (dataDir.isEmpty ? "files" : dataDir + "/files")
        return [("dir", .string(dir))]
    }

    /// Scans the plugins folder, logs what loaded and what was refused, and returns the
    /// registry (no plugin instance created yet).
    static func loadPlugins(_ config: HostConfig, logger: Logger, metrics: Metrics) -> PluginRegistry {
        let services = HostServices(logger: logger, metrics: metrics)
        let scan = PluginLoader.scan(directory: config.pluginsDir)
        for p in scan.loaded {
            logger.info("plugin \(p.id) \(p.version) loaded from \(p.fileName) (ABI \(p.abiMajor).\(p.abiMinor); \(p.capabilities.joined(separator: ", ")))")
            for w in p.warnings { logger.warning("plugin \(p.fileName): \(w)") }
        }
        for r in scan.refused { logger.error("plugin \(r.description)") }
        return PluginRegistry(scan: scan, services: services)
    }

    /// The store and the files plugin alone, activated for `backup` / `restore` (no other
    /// plugin is started). Returns the store with the registry (to shut down after) and its
    /// one-line location; the files plugin, when one serves, is `registry.served[PYLON_CAP_FILES]`.
    static func activateAlone(_ config: HostConfig, logger: Logger) throws(HostError) -> (StoreSelection, PluginRegistry, location: String) {
        let manifest = try Host.loadManifest(config.manifestPath)
        let registry = loadPlugins(config, logger: logger, metrics: Metrics())
        let storePath = path(config, manifest)
        var overrides = overrides(storePath)
        overrides["files"] = filesOverrides(config, manifest, storePath: storePath)
        _ = try registry.activate(selections: manifest.plugins, overrides: overrides, only: ["store", "files"])
        do throws(HostError) {
            let selection = try StoreSelection(registry, pluginsDir: config.pluginsDir)
            return (selection, registry, selection.location(fallback: storePath))
        } catch {
            registry.shutdown()
            throw error
        }
    }

    /// Where the data lives, for messages (the store's `describe`, else its `path`).
    func location(fallback storePath: String) -> String {
        StoreTable.describe(table, served.instance) ?? storePath
    }
}
