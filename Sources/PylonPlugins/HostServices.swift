import Foundation
import Logging
import PylonPluginABI
import PylonCore

/// The host services table handed to every plugin (`pylon_host_v1`), and the optional
/// services it hands out by id (`get_service`: "pylon.host.loops/1"). Lives for the whole
/// process; `host_ctx` points at this object.
package final class HostServices: @unchecked Sendable {
    let logger: Logger
    let metrics: Metrics
    weak var registry: PluginRegistry?
    let table: UnsafeMutablePointer<pylon_host_v1>
    /// The event loops' service table (`HostLoops`), static like the loops.
    nonisolated(unsafe) static let loopsTable: UnsafeMutablePointer<pylon_host_loops_v1> = {
        let t = UnsafeMutablePointer<pylon_host_loops_v1>.allocate(capacity: 1)
        t.initialize(to: pylon_host_loops_v1())
        t.pointee.struct_size = UInt32(MemoryLayout<pylon_host_loops_v1>.size)
        t.pointee.loop_count = { _ in Int32(HostLoops.loops.count) }
        t.pointee.current_loop = { _ in HostLoops.current() }
        t.pointee.watch_fd = { _, fd, loop, onData, onClose, ctx in
            guard let onData, let onClose else { return nil }
            return HostLoops.watch(fd: fd, loop: loop, onData: onData, onClose: onClose, ctx: ctx)
        }
        t.pointee.unwatch_fd = { _, handle in
            if let handle { HostLoops.unwatch(handle) }
        }
        return t
    }()

    /// Services the layers above offer once they are ready (`offer`), e.g. the shards
    /// ("pylon.host.shards/1") once the routes' auth exists.
    private let offeredLock = NSLock()
    private var offered: [String: UnsafeRawPointer] = [:]

    /// Offers (or with nil withdraws) the table of the service `id` to plugins.
    package func offer(_ id: String, _ table: UnsafeRawPointer?) {
        offeredLock.withLock { offered[id] = table }
    }

    package init(logger: Logger, metrics: Metrics) {
        self.logger = logger
        self.metrics = metrics
        table = .allocate(capacity: 1)
        table.initialize(to: pylon_host_v1())
        table.pointee.struct_size = UInt32(MemoryLayout<pylon_host_v1>.size)
        table.pointee.abi_minor = UInt32(PYLON_ABI_MINOR)
        table.pointee.host_ctx = Unmanaged.passUnretained(self).toOpaque()
        table.pointee.log = { ctx, level, msg, len in
            let me = Unmanaged<HostServices>.fromOpaque(ctx!).takeUnretainedValue()
            let text = msg.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
            let lvl: Logger.Level = switch level {
            case PYLON_LOG_TRACE: .trace
            case PYLON_LOG_DEBUG: .debug
            case PYLON_LOG_INFO: .info
            case PYLON_LOG_WARN: .warning
            default: .error
            }
            me.logger.log(level: lvl, "\(text)", metadata: ["source": "plugin"])
        }
        table.pointee.now_unix_nanos = { _ in
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        }
        table.pointee.monotonic_nanos = { _ in
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        }
        table.pointee.counter_add = { ctx, name, len, delta in
            let me = Unmanaged<HostServices>.fromOpaque(ctx!).takeUnretainedValue()
            guard let name else { return }
            me.metrics.add(String(decoding: UnsafeRawBufferPointer(start: name, count: len), as: UTF8.self), delta)
        }
        table.pointee.gauge_set = { ctx, name, len, value in
            let me = Unmanaged<HostServices>.fromOpaque(ctx!).takeUnretainedValue()
            guard let name else { return }
            me.metrics.set(String(decoding: UnsafeRawBufferPointer(start: name, count: len), as: UTF8.self), value)
        }
        table.pointee.get_capability = { ctx, id, out in
            let me = Unmanaged<HostServices>.fromOpaque(ctx!).takeUnretainedValue()
            out?.pointee = nil
            guard let id, let served = me.registry?.served[String(cString: id)] else { return nil }
            out?.pointee = served.instance
            return served.table
        }
        table.pointee.get_service = { ctx, id in
            guard let id else { return nil }
            if strcmp(id, PYLON_SERVICE_LOOPS) == 0 { return UnsafeRawPointer(HostServices.loopsTable) }
            let me = Unmanaged<HostServices>.fromOpaque(ctx!).takeUnretainedValue()
            return me.offeredLock.withLock { me.offered[String(cString: id)] }
        }
    }
}
