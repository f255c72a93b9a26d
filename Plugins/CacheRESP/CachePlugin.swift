import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// The CacheRESP plugin: `pylon.cache/1`, a Redis-compatible cache and pub/sub server.
/// It speaks RESP2 and RESP3 on its own port from its own event-loop thread (see
/// `Server`), and serves the host's HTTP routes through the `pylon_cache_v1` table.

/// Settings, from the manifest's `plugins.cache` object (and the host's overrides from
/// `PYLON_CACHE_*`).
struct CacheConfig {
    var bind = "127.0.0.1"
    /// 0: no RESP listener (the host interface still works).
    var port = 6380
    /// Fail `create` when the port cannot be bound (true when a port was configured
    /// explicitly); otherwise the cache runs without a RESP listener and logs why.
    var portRequired = false
    var requirepass: String?
    /// Redis' protected mode (`ProtectedMode`): with no password and a non-loopback
    /// `bind`, only loopback clients are served. `protected_mode: false` turns it off.
    var protectedMode = true
    var maxmemory = 0
    var maxmemoryPolicy = "allkeys-lru"
    /// Largest bulk string (an argument: a key, a `SET` or `PUBLISH` value) a client may send
    /// (Redis' `proto-max-bulk-len`, there 512 MB): a length header over it is answered
    /// `-ERR` and the connection closed before its body is read. 8 MiB: under the host's HTTP
    /// body limit (10 MiB), so a value fits either way; a cache is no place for larger ones.
    var maxBulkBytes = 8 * 1024 * 1024
    /// Most arguments in one command (Redis' limit too).
    var maxMultibulk = 1024 * 1024
    /// Largest request (all of one command's arguments; Redis' `client-query-buffer-limit`):
    /// without it 1,048,576 arguments of `maxBulkBytes` each could be one request. Never less
    /// than `maxBulkBytes` plus 64 KiB, so the largest value still fits (`queryLimit`).
    var maxQueryBytes = 64 * 1024 * 1024
    var queryLimit: Int { max(maxQueryBytes, maxBulkBytes + RequestParser.inlineMax) }
    var maxClients = 10_000
    /// The host's ceiling on `maxClients` (`maxclients_cap`): the RESP listener's share of
    /// the process' open files, so cache clients cannot exhaust the descriptors the HTTP
    /// listeners and the host need. nil: no ceiling (a host that does not send one).
    var maxClientsCap: Int?
    /// `maxClients` within the host's ceiling.
    var clientLimit: Int { min(maxClients, maxClientsCap ?? .max) }
    /// A client that sends part of a command and then nothing for this long gets an error
    /// and is disconnected (0 = never).
    var partialTimeoutMs = 30_000
    /// A client whose unsent replies pass this is disconnected (a subscriber that stopped reading).
    var maxOutputBytes = 64 * 1024 * 1024
    var snapshotPath: String?
    var snapshotIntervalSecs = 300

    static func parse(_ json: String) -> Result<CacheConfig, ConfigProblem> {
        var c = CacheConfig()
        guard let obj = configObject(Array(json.utf8)) else {
            return .failure(ConfigProblem("cache config is not a JSON object"))
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let v = obj[key] else { return nil }
            if let n = v.intValue.map(Int.init), range.contains(n) { return n }
            if let s = v.stringValue, let n = Int(s), range.contains(n) { return n }
            throw ConfigProblem("\"\(key)\" must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        do {
            if let p = try int("port", 0...65535) {
                c.port = p
                c.portRequired = p != 0
            }
            if let b = obj["bind"] {
                guard let s = b.stringValue, !s.isEmpty else { throw ConfigProblem("\"bind\" must be an IPv4 address") }
                c.bind = s
            }
            if let p = obj["requirepass"] {
                guard let s = p.stringValue else { throw ConfigProblem("\"requirepass\" must be a string") }
                c.requirepass = s.isEmpty ? nil : s
            }
            if let p = obj["protected_mode"] {
                guard let on = p.boolValue else { throw ConfigProblem("\"protected_mode\" must be true or false") }
                c.protectedMode = on
            }
            if let m = obj["maxmemory"] {
                guard let n = parseSize(m) else { throw ConfigProblem("\"maxmemory\" must be bytes (an integer) or a size such as \"100mb\"") }
                c.maxmemory = n
            }
            if let p = obj["maxmemory_policy"] {
                guard let s = p.stringValue, ["allkeys-lru", "noeviction"].contains(s) else {
                    throw ConfigProblem("\"maxmemory_policy\" must be \"allkeys-lru\" or \"noeviction\"")
                }
                c.maxmemoryPolicy = s
            }
            if let m = obj["max_bulk_bytes"] {
                guard let n = parseSize(m), n >= 1 else { throw ConfigProblem("\"max_bulk_bytes\" must be a positive size") }
                c.maxBulkBytes = n
            }
            if let n = try int("max_multibulk", 1...Int(Int32.max)) { c.maxMultibulk = n }
            if let m = obj["max_query_bytes"] {
                guard let n = parseSize(m), n >= 1024 else { throw ConfigProblem("\"max_query_bytes\" must be a size of at least 1024") }
                c.maxQueryBytes = n
            }
            if let n = try int("maxclients", 1...1_000_000) { c.maxClients = n }
            if let n = try int("maxclients_cap", 1...Int(Int32.max)) { c.maxClientsCap = n }
            if let n = try int("partial_timeout_ms", 0...86_400_000) { c.partialTimeoutMs = n }
            if let m = obj["max_output_bytes"] {
                guard let n = parseSize(m), n >= 1024 else { throw ConfigProblem("\"max_output_bytes\" must be a size of at least 1024") }
                c.maxOutputBytes = n
            }
            if let n = try int("snapshot_interval_secs", 0...31_536_000) { c.snapshotIntervalSecs = n }
            let dataDir = obj["data_dir"]?.stringValue ?? "."
            if let s = obj["snapshot"] {
                if let path = s.stringValue, !path.isEmpty {
                    c.snapshotPath = path.hasPrefix("/") ? path : (dataDir as NSString).appendingPathComponent(path)
                } else if let on = s.boolValue {
                    c.snapshotPath = on ? (dataDir as NSString).appendingPathComponent("cache.snapshot") : nil
                } else {
                    throw ConfigProblem("\"snapshot\" must be a file path or true/false")
                }
            }
        } catch let p as ConfigProblem {
            return .failure(p)
        } catch {
            return .failure(ConfigProblem("\(error)"))
        }
        return .success(c)
    }

    /// Bytes from an integer or a string with an optional k/kb/m/mb/g/gb suffix.
    static func parseSize(_ v: JSONValue) -> Int? {
        if let n = v.intValue.map(Int.init) { return n >= 0 ? n : nil }
        guard let s = v.stringValue?.lowercased().trimmingCharacters(in: .whitespaces) else { return nil }
        let units: [(String, Int)] = [("gb", 1 << 30), ("g", 1 << 30), ("mb", 1 << 20), ("m", 1 << 20), ("kb", 1 << 10), ("k", 1 << 10), ("b", 1)]
        for (suffix, mult) in units where s.hasSuffix(suffix) {
            guard let n = Int(s.dropLast(suffix.count)), n >= 0 else { return nil }
            return n * mult
        }
        return Int(s).flatMap { $0 >= 0 ? $0 : nil }
    }
}

struct ConfigProblem: Error {
    var message: String
    init(_ m: String) { message = m }
}

/// The instance behind `pylon_instance *`.
final class CacheInstance {
    let host: UnsafePointer<pylon_host_v1>
    let server: Server

    init(host: UnsafePointer<pylon_host_v1>, config: CacheConfig) {
        self.host = host
        server = Server(config: config) { level, message in
            var m = message
            m.withUTF8 { b in
                b.withMemoryRebound(to: CChar.self) { host.pointee.log?(host.pointee.host_ctx, level, $0.baseAddress, $0.count) }
            }
        }
    }
}

// MARK: - Static descriptor and table

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.cache.resp", version: "0.1.0",
    description: "Redis-compatible cache and pub/sub (RESP2/RESP3 server, Redis \(Engine.serverVersion) semantics)",
    capabilities: [PYLON_CAP_CACHE],
    create: cacheCreate, destroy: cacheDestroy, getInterface: cacheGetInterface)

nonisolated(unsafe) private let cacheTable: UnsafeMutablePointer<pylon_cache_v1> = {
    let t = UnsafeMutablePointer<pylon_cache_v1>.allocate(capacity: 1)
    t.initialize(to: pylon_cache_v1())
    t.pointee.struct_size = UInt32(MemoryLayout<pylon_cache_v1>.size)
    t.pointee.command = cacheCommand
    t.pointee.set_message_listener = cacheSetListener
    t.pointee.resp_port = cacheRespPort
    return t
}()

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

@inline(__always)
private func instance(_ p: OpaquePointer?) -> CacheInstance? {
    p.map { Handle.borrow($0, as: CacheInstance.self) }
}

private func cacheCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<CacheInstance, StoreFailure> in
        switch CacheConfig.parse(String(decoding: bytes, as: UTF8.self)) {
        case let .failure(problem):
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.cache.resp: \(problem.message)"))
        case let .success(cfg):
            let inst = CacheInstance(host: host, config: cfg)
            if let problem = inst.server.start() {
                return .failure(StoreFailure(PYLON_ERR_IO, "CACHE_LISTEN_FAILED", "pylon.cache.resp: \(problem); choose another port (PYLON_CACHE_PORT or plugins.cache.port)"))
            }
            return .success(inst)
        }
    }
}

private func cacheDestroy(_ p: OpaquePointer?) {
    guard let p else { return }
    Handle.release(p, as: CacheInstance.self).server.stop()
}

private func cacheGetInterface(_ p: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_CACHE) == 0 else { return nil }
    return UnsafeRawPointer(cacheTable)
}

private func cacheCommand(
    _ p: OpaquePointer?, _ argv: UnsafePointer<pylon_str>?, _ argc: Int,
    _ done: pylon_cache_reply_fn?, _ ctx: UnsafeMutableRawPointer?
) {
    guard let inst = instance(p) else {
        withError(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "command called without an instance") { e in
            done?(ctx, PYLON_ERR_INVALID_ARGUMENT, nil, 0, e)
        }
        return
    }
    var args: [[UInt8]] = []
    args.reserveCapacity(argc)
    for i in 0..<argc {
        let s = argv![i]
        args.append(s.len == 0 ? [] : Array(UnsafeRawBufferPointer(start: s.ptr, count: s.len)))
    }
    inst.server.submit(HostJob(argv: args, done: done, ctx: ctx))
}

private func cacheSetListener(_ p: OpaquePointer?, _ fn: pylon_cache_message_fn?, _ ctx: UnsafeMutableRawPointer?) {
    instance(p)?.server.setListener(fn, ctx)
}

private func cacheRespPort(_ p: OpaquePointer?) -> Int32 {
    Int32(instance(p)?.server.boundPort ?? 0)
}
