import Foundation
import Logging
import PylonCore
import PylonJSON
import PylonPluginABI
import PylonPlugins
import PylonServices

/// The plugin serving `pylon.shard.transport/1` (ABI 2.6; Plugins/ShardWS, the shard
/// WebSocket on Pylon's port + 3), started once the shards and the routes' auth exist: the
/// host offers it "pylon.host.shards/1" (`ShardTransportHost`) and calls `start` with its
/// settings over the manifest's `plugins."shard.transport"` object. Without the plugin, or
/// without a loaded sim, there is nothing to start and the host runs as before.
package final class ShardTransport: @unchecked Sendable {
    private let table: UnsafePointer<pylon_shard_transport_v1>
    private let instance: OpaquePointer
    private let services: HostServices
    private let host: ShardTransportHost
    private let lock = NSLock()
    private var running = true

    private init(table: UnsafePointer<pylon_shard_transport_v1>, instance: OpaquePointer, services: HostServices, host: ShardTransportHost) {
        self.table = table
        self.instance = instance
        self.services = services
        self.host = host
    }

    /// Starts the transport, or returns nil (logged) when there is none to start.
    package static func start(registry: PluginRegistry, routes: RouteContext, manifest: Manifest,
                              logger: Logger) throws(HostError) -> ShardTransport? {
        guard let served = registry.served[PYLON_CAP_SHARD_TRANSPORT] else { return nil }
        guard let shards = routes.shards else {
            logger.info("shard transport: \(served.plugin.id) not started (no plugin serves \(PYLON_CAP_SHARD_SIM))")
            return nil
        }
        let size = served.table.load(as: UInt32.self)
        guard Int(size) >= MemoryLayout<pylon_shard_transport_v1>.size else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(served.plugin.id) returned a \(PYLON_CAP_SHARD_TRANSPORT) table of \(size) bytes, expected at least \(MemoryLayout<pylon_shard_transport_v1>.size); rebuild it against this host's header")
        }
        let table = served.table.assumingMemoryBound(to: pylon_shard_transport_v1.self)
        let host = ShardTransportHost(routes: routes, shards: shards)
        registry.services.offer(PYLON_SERVICE_SHARDS, UnsafeRawPointer(host.table))
        let config = settings(routes.config, manifest)
        let json = JSONWriter.encode(config)
        let capture = PluginErrorCapture()
        let status = json.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { c in capture.withSink { table.pointee.start(served.instance, c.baseAddress, c.count, $0) } }
        }
        guard status == PYLON_OK else {
            registry.services.offer(PYLON_SERVICE_SHARDS, nil)
            let e = capture.failure(status, code: "SHARD_TRANSPORT_START_FAILED", message: "start failed with status \(status)")
            throw HostError(status: 500, code: e.code, message: "\(served.plugin.id): \(e.message)")
        }
        let port = table.pointee.port(served.instance)
        logger.info("shard transport: \(served.plugin.id), \(port == 0 ? "listener off" : "WebSocket on port \(port)")")
        return ShardTransport(table: table, instance: served.instance, services: registry.services, host: host)
    }

    /// The plugin's config: the manifest's object with the host's settings over it.
    static func settings(_ config: HostConfig, _ manifest: Manifest) -> JSONValue {
        var out = manifest.plugins["shard.transport"]?.config.objectValue ?? []
        func set(_ key: String, _ value: JSONValue) {
            out.removeAll { $0.0 == key }
            out.append((key, value))
        }
        let explicit = config.shardWSPort ?? (out.first { $0.0 == "port" }?.1.intValue).map(Int.init)
        // Pylon's port + 3 when nothing names one; a port that was asked for must be bound.
        let port = explicit ?? (config.port > 0 && config.port <= 65532 ? config.port + 3 : 0)
        set("port", .int(Int64(port)))
        set("port_required", .bool(explicit != nil && explicit != 0))
        if !out.contains(where: { $0.0 == "bind" }) { set("bind", .string(config.bindHost)) }
        if !out.contains(where: { $0.0 == "max_connections_per_ip" }) {
            set("max_connections_per_ip", .int(Int64(config.maxConnectionsPerAddress)))
        }
        // The open-file budget's share (FileBudget.shardSocketCap) bounds any larger setting.
        // (A value that is no number is left for the plugin to refuse.)
        let cap = FileBudget.shardSocketCap()
        switch out.first(where: { $0.0 == "max_connections" })?.1 {
        case nil, .null?: set("max_connections", .int(Int64(cap)))
        case let v?: if let n = v.intValue, n > cap { set("max_connections", .int(Int64(cap))) }
        }
        return .object(out)
    }

    /// Stops the listener and every connection (the plugin unsubscribes them all), then
    /// withdraws the service. Once.
    package func stop() {
        let stop = lock.withLock { () -> Bool in
            defer { running = false }
            return running
        }
        guard stop else { return }
        table.pointee.stop(instance)
        services.offer(PYLON_SERVICE_SHARDS, nil)
        withExtendedLifetime(host) {}
    }
}
