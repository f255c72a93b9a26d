import Foundation
import PylonCore
@testable import PylonPlugins
import PylonPluginABI
import Testing

/// A host of the tests' own for one real plugin, loaded in this process through
/// `PluginLoader`: a `pylon_host_v1` written from the ABI header alone. It offers no
/// capability and no optional service (`get_capability` and `get_service` answer NULL), so
/// the plugin must fall back wherever the header says it may. It keeps the plugin's log
/// lines and gauges, and counts every host function the plugin calls after `destroy` has
/// returned, which the ABI forbids (`close` checks there is none).
final class BareHost: @unchecked Sendable {
    /// What the plugin told this host; the host table's `host_ctx`. Kept for the life of the
    /// process (a small leak in a test), so a late call is counted instead of crashing.
    final class Record: @unchecked Sendable {
        let lock = NSLock()
        var logLines: [String] = []
        var gauges: [String: Double] = [:]
        var closed = false
        var afterClose: [String] = []

        /// Notes a call of the host function `function`; counted when it comes after `destroy`.
        func called(_ function: String) {
            lock.withLock { if closed { afterClose.append(function) } }
        }

        static func from(_ ctx: UnsafeMutableRawPointer?, _ function: String) -> Record {
            let record = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
            record.called(function)
            return record
        }
    }

    let record = Record()
    let plugin: LoadedPlugin
    let instance: OpaquePointer
    private let table = UnsafeMutablePointer<pylon_host_v1>.allocate(capacity: 1)

    /// Loads the plugin at `path` and creates an instance with `config` (JSON).
    init(path: String, config: String) throws {
        plugin = try PluginLoader.load(path: path).get()
        table.initialize(to: pylon_host_v1())
        table.pointee.struct_size = UInt32(MemoryLayout<pylon_host_v1>.size)
        table.pointee.abi_minor = UInt32(PYLON_ABI_MINOR)
        table.pointee.host_ctx = Unmanaged.passRetained(record).toOpaque()
        Self.fill(table)
        var made: OpaquePointer?
        let errors = PluginErrorCapture()
        let bytes = Array(config.utf8)
        let (descriptor, table) = (plugin.descriptor, self.table)
        let status = bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                errors.withSink { descriptor.pointee.create(table, c.baseAddress, c.count, &made, $0) }
            }
        }
        guard let made else {
            throw TestSetupError(description: "create failed (\(status)): \(errors.reported?.message ?? "")")
        }
        instance = made
    }

    /// The plugin's table of capability `id`, typed; throws when it serves none.
    func interface<T>(_ id: String, as _: T.Type) throws -> UnsafePointer<T> {
        guard let raw = plugin.descriptor.pointee.get_interface(instance, id) else {
            throw TestSetupError(description: "the plugin serves no \(id)")
        }
        return raw.assumingMemoryBound(to: T.self)
    }

    /// Destroys the instance and checks that the plugin calls the host no more. The tables
    /// stay allocated, so a late call is counted, not a crash.
    func close() {
        plugin.descriptor.pointee.destroy(instance)
        record.lock.withLock { record.closed = true }
        // Whatever of the plugin still runs would call the host within moments.
        Thread.sleep(forTimeInterval: 0.2)
        let late = record.lock.withLock { record.afterClose }
        #expect(late.isEmpty, "the plugin called the host after destroy returned: \(late.prefix(5))")
    }

    var log: String { record.lock.withLock { record.logLines.joined(separator: "\n") } }
    func gauge(_ name: String) -> Double? { record.lock.withLock { record.gauges[name] } }

    static func text(_ p: UnsafePointer<CChar>?, _ n: Int) -> String {
        guard let p, n > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    static func str(_ b: UnsafeBufferPointer<UInt8>) -> pylon_str {
        pylon_str(ptr: UnsafeRawPointer(b.baseAddress)?.assumingMemoryBound(to: CChar.self), len: b.count)
    }

    private static func fill(_ host: UnsafeMutablePointer<pylon_host_v1>) {
        host.pointee.log = { ctx, _, msg, len in
            let line = BareHost.text(msg, len)
            let record = Record.from(ctx, "log")
            record.lock.withLock { record.logLines.append(line) }
        }
        host.pointee.now_unix_nanos = { ctx in
            _ = Record.from(ctx, "now_unix_nanos")
            return Int64(Date().timeIntervalSince1970 * 1e9)
        }
        host.pointee.monotonic_nanos = { ctx in
            _ = Record.from(ctx, "monotonic_nanos")
            return Int64(DispatchTime.now().uptimeNanoseconds)
        }
        host.pointee.counter_add = { ctx, _, _, _ in _ = Record.from(ctx, "counter_add") }
        host.pointee.gauge_set = { ctx, name, len, value in
            let key = BareHost.text(name, len)
            let record = Record.from(ctx, "gauge_set")
            record.lock.withLock { record.gauges[key] = value }
        }
        host.pointee.get_capability = { ctx, _, out in
            _ = Record.from(ctx, "get_capability")
            out?.pointee = nil
            return nil
        }
        host.pointee.get_service = { ctx, _ in
            _ = Record.from(ctx, "get_service")
            return nil
        }
    }
}
