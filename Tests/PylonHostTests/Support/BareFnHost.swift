import Foundation
import PylonCore
import PylonPluginABI
import Testing

/// `BareHost` for a functions plugin (the real `libPylonFnBun.so`), with a
/// `pylon_fn_host_v1` written from the ABI header alone. The host offers no event loops
/// ("pylon.host.loops/1"), so FnBun reads its workers' output with a thread per worker.
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

    /// Calls waiting for `complete` and the rows `get` answers; the fn table's `host_ctx`,
    /// kept for the life of the process like `BareHost.Record`.
    private final class Calls: @unchecked Sendable {
        let host: BareHost.Record
        let lock = NSLock()
        var waiting: [UInt: CheckedContinuation<Outcome, Never>] = [:]
        var nextCall: UInt = 1
        var rows: [String: String] = [:]

        init(host: BareHost.Record) { self.host = host }

        func finish(_ id: UInt, _ outcome: Outcome) {
            let waiter = lock.withLock { waiting.removeValue(forKey: id) }
            #expect(waiter != nil, "complete for call \(id), which is not waiting: twice, or never started")
            waiter?.resume(returning: outcome)
        }

        static func from(_ ctx: UnsafeMutableRawPointer?, _ function: String) -> Calls {
            let calls = Unmanaged<Calls>.fromOpaque(ctx!).takeUnretainedValue()
            calls.host.called(function)
            return calls
        }
    }

    private let host: BareHost
    private let calls: Calls
    private let fnHostTable = UnsafeMutablePointer<pylon_fn_host_v1>.allocate(capacity: 1)
    private let table: UnsafePointer<pylon_fn_v1>

    /// Loads the plugin at `path`, creates an instance with `config` (JSON) and binds it.
    init(path: String, config: String) throws {
        host = try BareHost(path: path, config: config)
        calls = Calls(host: host.record)
        table = try host.interface(PYLON_CAP_FUNCTIONS, as: pylon_fn_v1.self)
        fnHostTable.initialize(to: pylon_fn_host_v1())
        fnHostTable.pointee.struct_size = UInt32(MemoryLayout<pylon_fn_host_v1>.size)
        fnHostTable.pointee.host_ctx = Unmanaged.passRetained(calls).toOpaque()
        Self.fill(fnHostTable)
        let errors = PluginErrorCapture()
        let bound = errors.withSink { table.pointee.bind_host(host.instance, fnHostTable, $0) }
        guard bound == PYLON_OK else { throw TestSetupError(description: "bind_host failed: \(errors.reported?.message ?? "")") }
    }

    /// Destroys the instance; checks that the plugin calls the host no more (`BareHost.close`).
    func close() { host.close() }

    var log: String { host.log }
    /// Sets the row `get` answers for `entity` and `id`.
    func setRow(_ entity: String, _ id: String, _ json: String) { calls.lock.withLock { calls.rows["\(entity)/\(id)"] = json } }

    /// Waits (up to 30 s) until the plugin reports `count` ready workers.
    func workersReady(_ count: Int) async throws {
        for _ in 0..<600 where host.gauge("fn_workers_ready") != Double(count) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(host.gauge("fn_workers_ready") == Double(count), "workers ready: \(host.gauge("fn_workers_ready") ?? -1)\n\(log)")
    }

    /// Calls `name` with `args` as an anonymous caller, the way the host does: `describe`
    /// for the kind, then `start_call`, then waits for `complete`.
    func call(_ name: String, _ args: String) async -> Outcome {
        let errors = PluginErrorCapture()
        var info = pylon_fn_info()
        info.struct_size = UInt32(MemoryLayout<pylon_fn_info>.size)
        let nameBytes = Array(name.utf8)
        let (table, instance, calls) = (table, host.instance, calls)
        let described = nameBytes.withUnsafeBufferPointer { n in
            n.withMemoryRebound(to: CChar.self) { c in errors.withSink { table.pointee.describe(instance, c.baseAddress, c.count, &info, $0) } }
        }
        guard described == PYLON_OK else {
            return Outcome(status: described, json: "", code: errors.reported?.code ?? "", message: errors.reported?.message ?? "")
        }
        return await withCheckedContinuation { (done: CheckedContinuation<Outcome, Never>) in
            let id = calls.lock.withLock {
                defer { calls.nextCall += 1 }
                calls.waiting[calls.nextCall] = done
                return calls.nextCall
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
                        c.name = BareHost.str(n)
                        c.args_json = BareHost.str(a)
                        c.auth_json = BareHost.str(u)
                        c.call_ctx = UnsafeMutableRawPointer(bitPattern: id)
                        return errors.withSink { table.pointee.start_call(instance, &c, $0) }
                    }
                }
            }
            if status != PYLON_OK {
                calls.finish(id, Outcome(status: status, json: "", code: errors.reported?.code ?? "", message: errors.reported?.message ?? ""))
            }
        }
    }

    private static func fill(_ fn: UnsafeMutablePointer<pylon_fn_host_v1>) {
        fn.pointee.db_call = { ctx, _, op, len, done, doneCtx in
            let calls = Calls.from(ctx, "db_call")
            let json = (try? JSONSerialization.jsonObject(with: Data(BareHost.text(op, len).utf8))) as? [String: Any]
            let key = "\(json?["entity"] as? String ?? "")/\(json?["id"] as? String ?? "")"
            if json?["op"] as? String == "get" {
                let row = Array((calls.lock.withLock { calls.rows[key] } ?? "null").utf8)
                row.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { done?(doneCtx, PYLON_OK, $0.baseAddress, $0.count, nil) }
                }
            } else {
                BareFnHost.fail(PYLON_ERR_UNSUPPORTED, "this test host answers only get") { done?(doneCtx, PYLON_ERR_UNSUPPORTED, nil, 0, $0) }
            }
        }
        fn.pointee.stream = { ctx, _, _, _, _, _ in _ = Calls.from(ctx, "stream") }
        fn.pointee.complete = { ctx, callCtx, status, json, len, err in
            let e = PluginError(status, err)
            Calls.from(ctx, "complete").finish(UInt(bitPattern: callCtx),
                                               Outcome(status: status, json: BareHost.text(json, len), code: e.code, message: e.message))
        }
        fn.pointee.run_fn = { ctx, _, _, _, _, _, _, done, doneCtx in
            _ = Calls.from(ctx, "run_fn")
            BareFnHost.fail(PYLON_ERR_UNSUPPORTED, "this test host runs no nested call") { done?(doneCtx, PYLON_ERR_UNSUPPORTED, nil, 0, $0) }
        }
    }

    /// Calls `body` with a `pylon_error` (code "UNSUPPORTED_HERE") valid during the call.
    private static func fail(_ status: pylon_status, _ message: String, _ body: (UnsafePointer<pylon_error>) -> Void) {
        let code = Array("UNSUPPORTED_HERE".utf8), text = Array(message.utf8)
        code.withUnsafeBufferPointer { c in
            text.withUnsafeBufferPointer { m in
                var e = pylon_error(struct_size: UInt32(MemoryLayout<pylon_error>.size), status: status, code: BareHost.str(c), message: BareHost.str(m))
                body(&e)
            }
        }
    }
}
