import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonJSON

/// A capability the host knows about: its versioned id, the manifest key under
/// `plugins`, the plugin that would provide it, and the HTTP routes its stub answers.
public struct CapabilityInfo: Sendable {
    public var id: String
    public var key: String
    public var providerHint: String
    public var routePrefixes: [String]

    public static let all: [CapabilityInfo] = [
        .init(id: PYLON_CAP_STORE, key: "store", providerHint: "libPylonStoreSQLite.so (or libPylonStorePostgres.so)", routePrefixes: []),
        .init(id: PYLON_CAP_FUNCTIONS, key: "functions", providerHint: "libPylonFnBun.so", routePrefixes: ["/api/fn", "/api/webhooks", "/api/jobs", "/api/scheduler", "/api/workflows"]),
        .init(id: PYLON_CAP_AUTH_CODE, key: "auth.code", providerHint: "libPylonAuthMagicCode.so", routePrefixes: ["/api/auth/magic", "/api/auth/magic-link", "/api/auth/email"]),
        .init(id: PYLON_CAP_AUTH_OAUTH, key: "auth.oauth", providerHint: "libPylonAuthOAuth.so", routePrefixes: ["/api/auth/oauth", "/api/auth/callback", "/api/auth/providers", "/api/auth/login"]),
        .init(id: PYLON_CAP_CACHE, key: "cache", providerHint: "libPylonCacheRESP.so", routePrefixes: ["/api/cache", "/api/pubsub"]),
        .init(id: PYLON_CAP_SHARD_TRANSPORT, key: "shard.transport", providerHint: "libPylonShardWS.so", routePrefixes: []),
        // The host serves the shard routes as soon as one simulation is loaded.
        .init(id: PYLON_CAP_SHARD_SIM, key: "shard.sim", providerHint: "a shard simulation plugin (see examples/shard-arena)",
              routePrefixes: ["/api/shards"]),
        .init(id: PYLON_CAP_FILES, key: "files", providerHint: "libPylonFilesLocal.so", routePrefixes: ["/api/files"]),
        .init(id: PYLON_CAP_CRDT, key: "crdt", providerHint: "a CRDT plugin (none ships yet; crdt fields are stored and synced as plain values)",
              routePrefixes: ["/api/crdt"]),
    ]
}

/// One capability served by a plugin instance.
public struct ServedCapability: @unchecked Sendable {
    public let plugin: LoadedPlugin
    package let instance: OpaquePointer
    package let table: UnsafeRawPointer
}

/// The selection of plugins for this app and their live instances.
/// Threads: built once at startup on one thread, then read-only.
public final class PluginRegistry: @unchecked Sendable {
    public let scan: PluginLoader.Scan
    public private(set) var served: [String: ServedCapability] = [:]
    /// Every plugin serving `pylon.shard.sim/1` (several sims may be loaded at once; `served`
    /// holds the first of them).
    public private(set) var sims: [ServedCapability] = []
    private var instances: [(LoadedPlugin, OpaquePointer)] = []
    package let services: HostServices

    package init(scan: PluginLoader.Scan, services: HostServices) {
        self.scan = scan
        self.services = services
    }

    /// Chooses a plugin for every known capability, creates the instances (store first,
    /// since other plugins may reach it through `get_capability`), and returns one report
    /// line per capability. `overrides` are merged into a plugin's config (e.g. `--db`).
    /// `only` (manifest keys) limits it to those capabilities: `pylon-host backup` starts the
    /// store alone, so no other plugin opens a port or a child process beside a serving host.
    package func activate(selections: [String: PluginSelection], overrides: [String: [(String, JSONValue)]],
                  only: Set<String>? = nil) throws(HostError) -> [String] {
        services.registry = self
        var lines: [String] = []
        for key in selections.keys where !CapabilityInfo.all.contains(where: { $0.key == key }) {
            throw HostError(status: 500, code: "MANIFEST_PLUGIN_UNKNOWN_CAPABILITY",
                            message: "manifest plugins.\(key): unknown capability; known ones are \(CapabilityInfo.all.map(\.key).joined(separator: ", "))")
        }
        for cap in CapabilityInfo.all where only?.contains(cap.key) ?? true {
            let sel = selections[cap.key]
            let candidates = scan.loaded.filter { $0.capabilities.contains(cap.id) }
            var chosen: LoadedPlugin?
            if let use = sel?.use {
                if use == "none" {
                    chosen = nil
                } else {
                    chosen = candidates.first { $0.id == use || $0.id.split(separator: ".").last.map(String.init) == use }
                    if chosen == nil {
                        let have = candidates.map(\.id)
                        throw HostError(status: 500, code: "PLUGIN_NOT_FOUND",
                                        message: "manifest plugins.\(cap.key).use is \"\(use)\", but no loaded plugin with that id provides \(cap.id) (loaded providers: \(have.isEmpty ? "none" : have.joined(separator: ", "))); put \(cap.providerHint) in the plugins folder or fix the name")
                    }
                }
            } else {
                chosen = candidates.first { $0.id == "pylon.store.sqlite" } ?? candidates.first
            }
            if cap.id == PYLON_CAP_SHARD_SIM, chosen != nil {
                // No `use`: every sim in the folder; `use`: that one alone.
                for plugin in sel?.use == nil ? candidates : [chosen!] {
                    let one = try serve(plugin, cap, sel, overrides)
                    sims.append(one)
                    lines.append("\(cap.id): \(plugin.id) \(plugin.version) (\(plugin.fileName))")
                }
                served[cap.id] = sims.first
                continue
            }
            guard let plugin = chosen else {
                lines.append("\(cap.id): stub (add \(cap.providerHint) to the plugins folder to enable)")
                continue
            }
            served[cap.id] = try serve(plugin, cap, sel, overrides)
            lines.append("\(cap.id): \(plugin.id) \(plugin.version) (\(plugin.fileName))")
        }
        return lines
    }

    /// `plugin`'s instance (created with the selection's config and the host's overrides)
    /// and its table for `cap`.
    private func serve(_ plugin: LoadedPlugin, _ cap: CapabilityInfo, _ sel: PluginSelection?,
                       _ overrides: [String: [(String, JSONValue)]]) throws(HostError) -> ServedCapability {
        var config: [(String, JSONValue)] = sel?.config.objectValue ?? []
        for (k, v) in overrides[cap.key] ?? [] {
            config.removeAll { $0.0 == k }
            config.append((k, v))
        }
        let instance = try instance(of: plugin, config: .object(config))
        guard let table = plugin.descriptor.pointee.get_interface(instance, cap.id) else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_MISSING",
                            message: "plugin \(plugin.id) (\(plugin.fileName)) lists \(cap.id) but returned no interface for it; the plugin is broken")
        }
        let size = table.load(as: UInt32.self)
        if cap.id == PYLON_CAP_STORE && Int(size) < StoreTable.minimumSize {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(plugin.id) returned a pylon.store/1 table of \(size) bytes, expected at least \(StoreTable.minimumSize) (its required slots); rebuild it against this host's header")
        }
        return ServedCapability(plugin: plugin, instance: instance, table: table)
    }

    private func instance(of plugin: LoadedPlugin, config: JSONValue) throws(HostError) -> OpaquePointer {
        if let existing = instances.first(where: { $0.0.id == plugin.id }) { return existing.1 }
        let err = PluginErrorCapture()
        var out: OpaquePointer?
        let json = JSONWriter.encode(config)
        let status = json.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { c in
                err.withSink { plugin.descriptor.pointee.create(services.table, c.baseAddress, c.count, &out, $0) }
            }
        }
        guard status == PYLON_OK, let out else {
            let msg = err.reported?.message ?? ""
            throw HostError(status: 500, code: "PLUGIN_CREATE_FAILED",
                            message: "plugin \(plugin.id) (\(plugin.fileName)) failed to start: \(msg.isEmpty ? "status \(status)" : msg)")
        }
        instances.append((plugin, out))
        return out
    }

    /// Destroys instances in reverse creation order. Libraries stay mapped (RTLD_NODELETE).
    package func shutdown() {
        for (plugin, inst) in instances.reversed() { plugin.descriptor.pointee.destroy(inst) }
        instances.removeAll()
        served.removeAll()
        sims.removeAll()
    }
}
