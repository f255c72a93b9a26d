import Foundation
import PylonCore
@testable import PylonPlugins
import PylonPluginABI
import Testing

/// A host of the tests' own for one functions plugin (the real `libPylonFnBun.so`, loaded
/// in this process through `PluginLoader`): `pylon_host_v1` and `pylon_fn_host_v1` written
/// from the ABI header alone. Its `get_service` answers NULL for every id, as a host that
/// offers no optional service does, so the plugin must fall back wherever the header says
/// it may (FnBun then reads its workers' output with a thread per worker).
///
/// `db_call` answers `get` with the row set by `setRow` (else null) and fails every
/// other operation with "UNSUPPORTED_HERE"; `run_fn` fails the same way.
final class BareFnHost: @unchecked Sendable {
    /// How one call ended: the plugin's status, its JSON result or error code and message.
    struct Outcome: Sendable {
        var status: pylon_status
        var json: String
        var code: String
        var message: String
    }

    /// What the plugin told this host; the tables' `host_ctx`.
    private final class Record: @unchecked Sendable {
        let lock = NSLock()
        var logLines: [String] = []
        var gauges: [String: Double] = [:]
        var waiting: [UInt: CheckedContinuation<Outcome, Never>] = [:]
        var nextCall: UInt = 1
        /// Set once `destroy` has returned; host functions called after that are counted:
        /// the ABI lets a plugin use the host's tables only until `destroy` returns.
        var closed = false
        var afterClose: [String] = []
        var rows: [String: String] = [:]

        func finish(_ id: UInt, _ outcome: Outcome) {
            let waiter = lock.withLock { waiting.removeValue(forKey: id) }
            #expect(waiter != nil, "complete for call \(id), which is not waiting: twice, or never started")
            waiter?.resume(returning: outcome)
        }
    }

    private let record = Record()
    private let hostTable = UnsafeMutablePointer<pylon_host_v1>.allocate(capacity: 1)
    private let fnHostTable = UnsafeMutablePointer<pylon_fn_host_v1>.allocate(capacity: 1)
    private let plugin: LoadedPlugin
    private let instance: OpaquePointer
    private let table: UnsafePointer<pylon_fn_v1>

    /// Loads the plugin at `path`, creates an instance with `config` (JSON) and binds it.
    init(path: String, config: String) throws {
        plugin = try PluginLoader.load(path: path).get()
        hostTable.initialize(to: pylon_host_v1())
        hostTable.pointee.struct_size = UInt32(MemoryLayout<pylon_host_v1>.size)
        hostTable.pointee.abi_minor = UInt32(PYLON_ABI_MINOR)
        fnHostTable.initialize(to: pylon_fn_host_v1())
        fnHostTable.pointee.struct_size = UInt32(MemoryLayout<pylon_fn_host_v1>.size)
        var made: OpaquePointer?
        let errors = PluginErrorCapture()
        // `record` is kept for the life of the process (a small leak in a test), so a plugin
        // calling the host after `destroy` is counted instead of crashing the tests.
        let ctx = Unmanaged.passRetained(record).toOpaque()
        hostTable.pointee.host_ctx = ctx
        fnHostTable.pointee.host_ctx = ctx
        Self.fillTables(hostTable, fnHostTable)
        let bytes = Array(config.utf8)
        let (descriptor, hostTable) = (plugin.descriptor, self.hostTable)
        let status = bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                errors.withSink { descriptor.pointee.create(hostTable, c.baseAddress, c.count, &made, $0) }
            }
        }
        guard let made else {
            throw TestSetupError(description: "create failed (\(status)): \(errors.reported?.message ?? "")")
        }
        guard let table = descriptor.pointee.get_interface(made, PYLON_CAP_FUNCTIONS) else { throw TestSetupError(description: "the plugin serves no pylon.functions/1") }
        instance = made
        self.table = table.assumingMemoryBound(to: pylon_fn_v1.self)
        let bound = errors.withSink { self.table.pointee.bind_host(made, self.fnHostTable, $0) }
        guard bound == PYLON_OK else { throw TestSetupError(description: "bind_host failed: \(errors.reported?.message ?? "")") }
    }

    /// Destroys the instance (the plugin stops its workers) and checks that the plugin calls
    /// the host no more; the tables stay allocated, so a late call is counted, not a crash.
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
    /// Sets the row `get` answers for `entity` and `id`.
    func setRow(_ entity: String, _ id: String, _ json: String) { record.lock.withLock { record.rows["\(entity)/\(id)"] = json } }

    /// Waits (up to 30 s) until the plugin reports `count` ready workers.
    func workersReady(_ count: Int) async throws {
        for _ in 0..<600 where gauge("fn_workers_ready") != Double(count) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(gauge("fn_workers_ready") == Double(count), "workers ready: \(gauge("fn_workers_ready") ?? -1)\n\(log)")
    }

    /// Calls `name` with `args` as an anonymous caller, the way the host does: `describe`
    /// for the kind, then `start_call`, then waits for `complete`.
    func call(_ name: String, _ args: String) async -> Outcome {
        let errors = PluginErrorCapture()
        var info = pylon_fn_info()
        info.struct_size = UInt32(MemoryLayout<pylon_fn_info>.size)
        let nameBytes = Array(name.utf8)
        let described = nameBytes.withUnsafeBufferPointer { n in
            n.withMemoryRebound(to: CChar.self) { c in errors.withSink { table.pointee.describe(instance, c.baseAddress, c.count, &info, $0) } }
        }
        guard described == PYLON_OK else {
            return Outcome(status: described, json: "", code: errors.reported?.code ?? "", message: errors.reported?.message ?? "")
        }
        return await withCheckedContinuation { (done: CheckedContinuation<Outcome, Never>) in
            let id = record.lock.withLock {
                defer { record.nextCall += 1 }
                record.waiting[record.nextCall] = done
                return record.nextCall
            }
            let argBytes = Array(args.utf8)
            let auth = Array(#"{"user_id":null,"is_admin":false,"is_guest":false,"roles":[],"tenant_id":null}"#.utf8)
            let status = nameBytes.withUnsafeBufferPointer { n in
                argBytes.withUnsafeBufferPointer { a in
                    auth.withUnsafeBufferPointer { u in
                        var c = pylon_fn_call()
                        c.struct_size = UInt32(MemoryLayout<pylon_fn_call>.size)
                        c.kind = info.kind
                        c.call_id = UInt64(id)
                        c.name = Self.str(n)
                        c.args_json = Self.str(a)
                        c.auth_json = Self.str(u)
                        c.call_ctx = UnsafeMutableRawPointer(bitPattern: id)
                        return errors.withSink { table.pointee.start_call(instance, &c, $0) }
                    }
                }
            }
            if status != PYLON_OK {
                record.finish(id, Outcome(status: status, json: "", code: errors.reported?.code ?? "", message: errors.reported?.message ?? ""))
            }
        }
    }

    private static func str(_ b: UnsafeBufferPointer<UInt8>) -> pylon_str {
        pylon_str(ptr: UnsafeRawPointer(b.baseAddress)?.assumingMemoryBound(to: CChar.self), len: b.count)
    }

    /// The record behind `ctx`, noting a call of `function` after `destroy` returned.
    private static func me(_ ctx: UnsafeMutableRawPointer?, _ function: String) -> Record {
        let record = Unmanaged<Record>.fromOpaque(ctx!).takeUnretainedValue()
        record.lock.withLock { if record.closed { record.afterClose.append(function) } }
        return record
    }

    private static func text(_ p: UnsafePointer<CChar>?, _ n: Int) -> String {
        guard let p, n > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    private static func fillTables(_ host: UnsafeMutablePointer<pylon_host_v1>, _ fn: UnsafeMutablePointer<pylon_fn_host_v1>) {
        host.pointee.log = { ctx, _, msg, len in
            let line = BareFnHost.text(msg, len)
            let record = BareFnHost.me(ctx, "log")
            record.lock.withLock { record.logLines.append(line) }
        }
        host.pointee.now_unix_nanos = { _ in Int64(Date().timeIntervalSince1970 * 1e9) }
        host.pointee.monotonic_nanos = { _ in Int64(DispatchTime.now().uptimeNanoseconds) }
        host.pointee.counter_add = { _, _, _, _ in }
        host.pointee.gauge_set = { ctx, name, len, value in
            let key = BareFnHost.text(name, len)
            let record = BareFnHost.me(ctx, "gauge_set")
            record.lock.withLock { record.gauges[key] = value }
        }
        host.pointee.get_capability = { _, _, out in
            out?.pointee = nil
            return nil
        }
        host.pointee.get_service = { _, _ in nil }
        fn.pointee.db_call = { ctx, _, op, len, done, doneCtx in
            let record = BareFnHost.me(ctx, "db_call")
            let json = (try? JSONSerialization.jsonObject(with: Data(BareFnHost.text(op, len).utf8))) as? [String: Any]
            let key = "\(json?["entity"] as? String ?? "")/\(json?["id"] as? String ?? "")"
            if json?["op"] as? String == "get" {
                let row = Array((record.lock.withLock { record.rows[key] } ?? "null").utf8)
                row.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { done?(doneCtx, PYLON_OK, $0.baseAddress, $0.count, nil) }
                }
            } else {
                BareFnHost.fail(PYLON_ERR_UNSUPPORTED, "this test host answers only get") { done?(doneCtx, PYLON_ERR_UNSUPPORTED, nil, 0, $0) }
            }
        }
        fn.pointee.stream = { _, _, _, _, _, _ in }
        fn.pointee.complete = { ctx, callCtx, status, json, len, err in
            let e = PluginError(status, err)
            BareFnHost.me(ctx, "complete").finish(UInt(bitPattern: callCtx), Outcome(status: status, json: BareFnHost.text(json, len), code: e.code, message: e.message))
        }
        fn.pointee.run_fn = { _, _, _, _, _, _, _, done, doneCtx in
            BareFnHost.fail(PYLON_ERR_UNSUPPORTED, "this test host runs no nested call") { done?(doneCtx, PYLON_ERR_UNSUPPORTED, nil, 0, $0) }
        }
    }

    /// Calls `body` with a `pylon_error` (code "UNSUPPORTED_HERE") valid during the call.
    private static func fail(_ status: pylon_status, _ message: String, _ body: (UnsafePointer<pylon_error>) -> Void) {
        let code = Array("UNSUPPORTED_HERE".utf8), text = Array(message.utf8)
        code.withUnsafeBufferPointer { c in
            text.withUnsafeBufferPointer { m in
                var e = pylon_error(struct_size: UInt32(MemoryLayout<pylon_error>.size), status: status, code: str(c), message: str(m))
                body(&e)
            }
        }
    }
}
