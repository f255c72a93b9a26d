import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The ShardWS plugin: `pylon.shard.transport/1` (ABI 2.6), the shard WebSocket (Pylon's
/// port + 3). The host starts it once its shards and auth are ready; it reaches them through
/// the host service "pylon.host.shards/1". It owns the listener, the framing and each
/// connection's queue; the host owns the shards, auth and the subscriber mailboxes.

/// The instance behind `pylon_instance *`.
final class ShardWSInstance {
    let host: UnsafePointer<pylon_host_v1>
    let lock = NSLock()
    var server: WSServer?

    init(host: UnsafePointer<pylon_host_v1>) { self.host = host }
}

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.shard.ws", version: "0.1.0",
    description: "Shard WebSocket transport: binary tick frames, inputs with acks, per-connection bounded queues",
    capabilities: [PYLON_CAP_SHARD_TRANSPORT],
    create: wsCreate, destroy: wsDestroy, getInterface: wsGetInterface)

nonisolated(unsafe) private let transportTable: UnsafeMutablePointer<pylon_shard_transport_v1> = {
    let t = UnsafeMutablePointer<pylon_shard_transport_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_shard_transport_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_shard_transport_v1>.size)
    t.pointee.start = wsStart
    t.pointee.port = wsPort
    t.pointee.stop = wsStop
    return t
}()

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

private func wsCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<ShardWSInstance, StoreFailure> in
        // The settings come with `start`; here only the manifest's object is checked.
        if case let .failure(problem) = WSConfig.parse(bytes) {
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.shard.ws: \(problem.message)"))
        }
        return .success(ShardWSInstance(host: host))
    }
}

private func wsDestroy(_ p: OpaquePointer?) {
    guard let p else { return }
    let inst = Handle.release(p, as: ShardWSInstance.self)
    inst.lock.withLock { inst.server }?.stop()
}

private func wsGetInterface(_ p: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_SHARD_TRANSPORT) == 0 else { return nil }
    return UnsafeRawPointer(transportTable)
}

private func wsStart(_ p: OpaquePointer?, _ config: UnsafePointer<CChar>?, _ len: Int, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let p else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "start called without an instance")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    let inst = Handle.borrow(p, as: ShardWSInstance.self)
    let bytes = config.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    let cfg: WSConfig
    switch WSConfig.parse(bytes) {
    case let .failure(problem):
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.shard.ws: \(problem.message)")
        return PYLON_ERR_INVALID_ARGUMENT
    case let .success(c): cfg = c
    }
    let host = inst.host
    guard let get = host.pointee.get_service, let raw = get(host.pointee.host_ctx, PYLON_SERVICE_SHARDS) else {
        fillError(err, PYLON_ERR_UNSUPPORTED, "SHARDS_SERVICE_MISSING", "pylon.shard.ws: the host offers no \(PYLON_SERVICE_SHARDS) service; use a host of ABI 2.6 or later")
        return PYLON_ERR_UNSUPPORTED
    }
    let table = raw.assumingMemoryBound(to: pylon_host_shards_v1.self)
    guard Int(table.pointee.struct_size) >= MemoryLayout<pylon_host_shards_v1>.size else {
        fillError(err, PYLON_ERR_UNSUPPORTED, "SHARDS_SERVICE_TOO_SMALL", "pylon.shard.ws: the host's \(PYLON_SERVICE_SHARDS) table is older than this plugin; upgrade the host")
        return PYLON_ERR_UNSUPPORTED
    }
    let server = WSServer(config: cfg, shards: HostShards(table: table), host: host)
    if let problem = server.start() {
        if cfg.portRequired {
            server.stop()
            fillError(err, PYLON_ERR_IO, "SHARD_WS_LISTEN_FAILED", "pylon.shard.ws: \(problem); choose another port (PYLON_SHARD_WS_PORT, 0 turns it off)")
            return PYLON_ERR_IO
        }
        HostLog(host)(PYLON_LOG_WARN, "pylon.shard.ws: \(problem); running without the shard WebSocket (set PYLON_SHARD_WS_PORT)")
    }
    inst.lock.withLock { inst.server = server }
    return PYLON_OK
}

private func wsPort(_ p: OpaquePointer?) -> Int32 {
    guard let p else { return 0 }
    let inst = Handle.borrow(p, as: ShardWSInstance.self)
    return Int32(inst.lock.withLock { inst.server?.boundPort } ?? 0)
}

private func wsStop(_ p: OpaquePointer?) {
    guard let p else { return }
    let inst = Handle.borrow(p, as: ShardWSInstance.self)
    let server = inst.lock.withLock { () -> WSServer? in
        defer { inst.server = nil }
        return inst.server
    }
    server?.stop()
}
