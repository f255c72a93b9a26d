import Foundation
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonData
import PylonJSON

/// The host's side of `pylon.cache/1`: runs commands on the cache plugin for the HTTP
/// routes, and relays every published message to WebSocket clients (as a `topic` frame
/// on the hub) and into a short per-channel history (`GET /api/pubsub/history/:channel`).
///
/// Threads: `run` may be called from any task; the plugin completes it from its own
/// thread. The message listener runs on the plugin's thread and only hands off.
package final class CacheService: @unchecked Sendable {
    package struct Message: Sendable {
        package let channel: String
        package let message: String
        package let timestamp: String
    }

    let table: UnsafePointer<pylon_cache_v1>
    let instance: OpaquePointer
    let plugin: LoadedPlugin
    private let hub: ChangeHub
    private let lock = NSLock()
    private var history: [String: [Message]] = [:]
    private var historyOrder: [String] = []
    /// Messages kept per channel, and channels kept (oldest channel dropped first).
    static let historyPerChannel = 100
    static let historyChannels = 10_000

    package init(table: UnsafePointer<pylon_cache_v1>, instance: OpaquePointer, plugin: LoadedPlugin, hub: ChangeHub) {
        self.table = table
        self.instance = instance
        self.plugin = plugin
        self.hub = hub
        let ctx = Unmanaged.passUnretained(self).toOpaque()
        table.pointee.set_message_listener(instance, { ctx, ch, chLen, msg, msgLen in
            let me = Unmanaged<CacheService>.fromOpaque(ctx!).takeUnretainedValue()
            let channel = String(decoding: UnsafeBufferPointer(start: ch, count: chLen), as: UTF8.self)
            let message = String(decoding: UnsafeBufferPointer(start: msg, count: msgLen), as: UTF8.self)
            me.published(channel: channel, message: message)
        }, ctx)
    }

    /// Stops listening (before the plugin instance is destroyed).
    package func detach() { table.pointee.set_message_listener(instance, nil, nil) }

    package var respPort: Int { Int(table.pointee.resp_port(instance)) }

    private func published(channel: String, message: String) {
        let m = Message(channel: channel, message: message, timestamp: ISOTime.now())
        lock.withLock {
            if history[channel] == nil {
                historyOrder.append(channel)
                if historyOrder.count > Self.historyChannels {
                    history.removeValue(forKey: historyOrder.removeFirst())
                }
            }
            history[channel, default: []].append(m)
            if history[channel]!.count > Self.historyPerChannel { history[channel]!.removeFirst() }
        }
        let frame: JSONValue = .object([("type", "topic"), ("topic", .string(channel)), ("data", .string(message)),
                                        ("from", "pubsub")])
        hub.relay(JSONWriter.string(frame))
    }

    /// The last `limit` messages of `channel`, oldest first.
    package func history(_ channel: String, limit: Int) -> [Message] {
        lock.withLock { Array((history[channel] ?? []).suffix(limit)) }
    }


    private final class Pending: @unchecked Sendable {
        let continuation: CheckedContinuation<Result<RESPValue, HostError>, Never>
        init(_ c: CheckedContinuation<Result<RESPValue, HostError>, Never>) { continuation = c }
    }

    /// Runs one command (`args[0]` is its name); a Redis error reply is `.error`, not a throw.
    package func run(_ args: [String]) async throws(HostError) -> RESPValue {
        let bytes = args.map { Array($0.utf8) }
        let result: Result<RESPValue, HostError> = await withCheckedContinuation { cont in
            let pending = Unmanaged.passRetained(Pending(cont)).toOpaque()
            // One buffer for all arguments; the plugin copies them before `command` returns.
            let total = bytes.reduce(0) { $0 + $1.count }
            let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, total))
            let strs = UnsafeMutablePointer<pylon_str>.allocate(capacity: max(1, bytes.count))
            var off = 0
            for (i, b) in bytes.enumerated() {
                b.withUnsafeBufferPointer { if let p = $0.baseAddress { (storage + off).update(from: p, count: b.count) } }
                strs[i] = pylon_str(ptr: UnsafeRawPointer(storage + off).assumingMemoryBound(to: CChar.self), len: b.count)
                off += b.count
            }
            hub.metrics.pluginCalls.cacheCommand.increment()
            table.pointee.command(instance, strs, bytes.count, { ctx, status, reply, len, err in
                let p = Unmanaged<Pending>.fromOpaque(ctx!).takeRetainedValue()
                guard status == PYLON_OK, let reply else {
                    let reported = PluginError(status, err).message
                    let message = reported.isEmpty ? "status \(status)" : reported
                    p.continuation.resume(returning: .failure(HostError(status: 503, code: "CACHE_UNAVAILABLE", message: "the cache plugin failed: \(message)")))
                    return
                }
                let data = Array(UnsafeBufferPointer(start: reply, count: len))
                do {
                    p.continuation.resume(returning: .success(try RESPValue.decode(data)))
                } catch {
                    p.continuation.resume(returning: .failure(HostError(status: 502, code: "CACHE_BAD_REPLY", message: "the cache plugin sent a reply that is not one RESP3 value")))
                }
            }, pending)
            strs.deallocate()
            storage.deallocate()
        }
        return try result.get()
    }
}
