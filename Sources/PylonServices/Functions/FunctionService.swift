import Dispatch
import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonPlugins
import PylonData
import PylonJSON

/// Runs server functions through the plugin serving `pylon.functions/1`, and answers
/// their `ctx.db` operations itself (DESIGN.md §4): a mutation's operations all run inside
/// one write transaction on the writer thread (committed when the function returns,
/// rolled back when it throws; change events are published after commit, like every other
/// write), a query's on read connections, an action's one by one, each write its own
/// transaction. A function is the app's trusted code: its operations bypass the entity
/// policies (as in Pylon and Convex) unless the app enforces them on functions (manifest
/// `plugins.functions.policies: "enforce"`) or the function asks for it
/// (`policies: "enforce"`); `enforcesPolicies` decides.
package final class FunctionService: @unchecked Sendable {
    let table: UnsafePointer<pylon_fn_v1>
    let instance: OpaquePointer
    let data: DataService
    let store: StoreThreads
    let logger: Logger
    let metrics: Metrics
    /// `pylon_fn_calls_total` and `pylon_fn_call_duration_seconds`, in `metrics`' registry.
    let callMetrics: FunctionMetrics
    private let hostTable: UnsafeMutablePointer<pylon_fn_host_v1>
    private let callIDs = AtomicCounter()
    /// Recent calls for `GET /api/fn/traces`.
    let traces = FnTraceRing()

    /// Longest a mutation may hold the write transaction waiting for its function; the
    /// plugin's own call timeout (PYLON_FN_CALL_TIMEOUT) normally ends it much sooner.
    static let mutationHoldLimit: TimeInterval = 600

    /// The app's setting (`Manifest.functionsEnforcePolicies`).
    let appEnforcesPolicies: Bool
    /// The shards `ctx.shards` reaches (nil: no sim is loaded).
    let shards: ShardRegistry?

    package init(served: ServedCapability, data: DataService, store: StoreThreads, enforcePolicies: Bool, logger: Logger,
         metrics: Metrics, shards: ShardRegistry? = nil) throws(HostError) {
        appEnforcesPolicies = enforcePolicies
        self.shards = shards
        table = served.table.assumingMemoryBound(to: pylon_fn_v1.self)
        instance = served.instance
        self.data = data
        self.store = store
        self.logger = logger
        self.metrics = metrics
        callMetrics = FunctionMetrics(factory: metrics.factory)
        guard Int(table.pointee.struct_size) >= MemoryLayout<pylon_fn_v1>.size else {
            throw HostError(status: 500, code: "PLUGIN_INTERFACE_TOO_SMALL",
                            message: "plugin \(served.plugin.id) returned a pylon.functions/1 table of \(table.pointee.struct_size) bytes, expected \(MemoryLayout<pylon_fn_v1>.size); rebuild it against this host's header")
        }
        hostTable = .allocate(capacity: 1)
        hostTable.initialize(to: pylon_fn_host_v1())
        hostTable.pointee.struct_size = UInt32(MemoryLayout<pylon_fn_host_v1>.size)
        hostTable.pointee.db_call = fnHostDBCall
        hostTable.pointee.stream = fnHostStream
        hostTable.pointee.complete = fnHostComplete
        hostTable.pointee.run_fn = fnHostRunFn
        hostTable.pointee.host_ctx = Unmanaged.passUnretained(self).toOpaque()
        let err = PluginErrorCapture()
        let status = err.withSink { table.pointee.bind_host(instance, hostTable, $0) }
        if status != PYLON_OK {
            throw HostError(status: 500, code: "PLUGIN_CREATE_FAILED",
                            message: "plugin \(served.plugin.id): bind_host failed: \(err.reported?.message ?? "status \(status)")")
        }
    }

    /// The plugin's failure of a synchronous call as the wire error (bounded: `PluginError`).
    static func hostError(_ status: pylon_status, _ err: PluginErrorCapture) -> HostError {
        hostError(status, err.reported?.code ?? "", err.reported?.message ?? "")
    }

    /// The plugin's failure as the wire error: HTTP status by ABI status and code.
    static func hostError(_ status: pylon_status, _ code: String, _ message: String) -> HostError {
        let http: Int
        switch (status, code) {
        case (_, "POLICY_DENIED"): http = 403
        case (_, "FN_NOT_FOUND"), (PYLON_ERR_NOT_FOUND, _): http = code == "FN_NOT_FOUND" || code.isEmpty ? 404 : 400
        case (PYLON_ERR_UNSUPPORTED, _): http = 501
        case (_, "FUNCTION_TIMEOUT"): http = 504
        case (PYLON_ERR_CONNECTION, _), (_, "WORKER_CRASHED"), (_, "FUNCTIONS_STARTING"): http = 503
        default: http = 400
        }
        return HostError(status: http, code: code.isEmpty ? "FUNCTION_ERROR" : code, message: message)
    }

    /// Kind and flags of `name`, or the wire error (404 FN_NOT_FOUND, 501 without Bun).
    package func describe(_ name: String) throws -> pylon_fn_info {
        let err = PluginErrorCapture()
        var info = pylon_fn_info()
        info.struct_size = UInt32(MemoryLayout<pylon_fn_info>.size)
        metrics.pluginCalls.fnDescribe.increment()
        let st = Array(name.utf8).withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in err.withSink { table.pointee.describe(instance, c.baseAddress, c.count, &info, $0) } }
        }
        if st != PYLON_OK { throw Self.hostError(st, err) }
        return info
    }

    package static func kindName(_ kind: Int32) -> String {
        switch kind {
        case PYLON_FN_QUERY: "query"
        case PYLON_FN_MUTATION: "mutation"
        case PYLON_FN_WORKFLOW: "workflow"
        default: "action"
        }
    }

    /// Whether a function with `flags` runs its `ctx.db` operations under the caller's
    /// policies (else as the admin): its own `policies: "enforce"`, else its `privileged`,
    /// else the app's setting.
    func enforcesPolicies(_ flags: UInt32) -> Bool {
        if flags & PYLON_FN_FLAG_ENFORCE_POLICIES != 0 { return true }
        if flags & PYLON_FN_FLAG_PRIVILEGED != 0 { return false }
        return appEnforcesPolicies
    }

    /// `GET /api/fn`: the plugin's list of functions (kind, argument schema), each with
    /// `policies`: "enforced" or "trusted", as calls will run it.
    package func list() -> [UInt8] {
        let box = ByteBox()
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        table.pointee.list(instance, { ctx, json, len in
            let box = Unmanaged<ByteBox>.fromOpaque(ctx!).takeUnretainedValue()
            if let json { box.bytes = Array(UnsafeRawBufferPointer(start: json, count: len)) }
        }, ctx)
        guard let items = (try? JSONParser.parse(box.bytes))?.arrayValue else { return Array("[]".utf8) }
        return JSONWriter.encode(.array(items.map { item in
            guard let name = item["name"]?.stringValue, let info = try? describe(name) else { return item }
            return item.setting("policies", .string(enforcesPolicies(info.flags) ? "enforced" : "trusted"))
        }))
    }

    /// A job (enqueued by an admin or by `ctx.jobs`) or a cron task (`ctx.cron.register`)
    /// names a mutation or an action this plugin serves: checked when it is enqueued or
    /// registered, not when it first runs and fails. `runner` names what runs it in the
    /// messages; `notFound` is the code of a name no function has (jobs keep Pylon's
    /// UNKNOWN_JOB_HANDLER; cron says FN_NOT_FOUND, as a call does).
    package func requireJobHandler(_ name: String, runner: String = "a job", notFound: String = "UNKNOWN_JOB_HANDLER") throws {
        let info: pylon_fn_info
        do {
            info = try describe(name)
        } catch let e as HostError where e.code == "FN_NOT_FOUND" {
            throw HostError.badRequest(notFound, "no function named \"\(name)\" can run as \(runner); name a mutation or action in the functions folder")
        }
        switch info.kind {
        case PYLON_FN_MUTATION, PYLON_FN_ACTION: return
        case PYLON_FN_WORKFLOW:
            throw HostError.badRequest("FN_IS_WORKFLOW", "\"\(name)\" is a workflow, which \(runner) cannot run; start it with POST /api/workflows/start")
        default:
            throw HostError.badRequest("FN_IS_QUERY", "\"\(name)\" is a query; \(runner) runs a mutation or an action")
        }
    }

    /// Runs `name` for `auth`; the function's return value as JSON text. `expecting` (a
    /// nested call's declared kind) must match the function's.
    /// `stream` receives `ctx.stream` chunks (event name, data) in order, all before the
    /// call returns; without it they are dropped (Pylon's JSON path does the same).
    /// `request` (a webhook's HTTP request) becomes the action's `ctx.request`.
    /// Every started call is traced (`traces`), whatever its outcome.
    /// `nesting`: where a nested call sits among its request's calls (`.root`: asked for by
    /// a route, a job..., a tree of its own).
    package func call(_ name: String, args: JSONValue, auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
              nesting: CallNesting = .root, stream: (@Sendable (String, String) -> Void)? = nil) async throws -> [UInt8] {
        try await call(name, argsJSON: JSONWriter.encode(args), auth: auth, expecting: expecting, request: request, nesting: nesting, stream: stream)
    }

    /// The same with the arguments as JSON text (the caller has checked it is JSON).
    package func call(_ name: String, argsJSON argBytes: [UInt8], auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
              nesting: CallNesting = .root, stream: (@Sendable (String, String) -> Void)? = nil) async throws -> [UInt8] {
        try await withUnsafeThrowingContinuation { (cont: UnsafeContinuation<[UInt8], Error>) in
            start(name, argsJSON: argBytes, auth: auth, expecting: expecting, request: request, nesting: nesting, stream: stream) { cont.resume(with: $0) }
        }
    }

    /// `call` without a Task: `done` receives the function's return value (JSON text) or
    /// the error exactly once — on the thread that finishes the call (a plugin's or an
    /// event loop's thread, a store thread, or the caller's own when the call cannot start),
    /// possibly before `start` returns. Every started call is traced, whatever its outcome.
    package func start(_ name: String, argsJSON argBytes: [UInt8], auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
               nesting: CallNesting = .root, stream: (@Sendable (String, String) -> Void)? = nil,
               done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        let started = DispatchTime.now().uptimeNanoseconds
        let info: pylon_fn_info
        do {
            info = try describe(name)
        } catch {
            callMetrics.recordUnknown()
            done(.failure(error))
            return
        }
        if info.kind == PYLON_FN_WORKFLOW, expecting != PYLON_FN_WORKFLOW {
            // Only the workflow engine calls a workflow: its arguments carry the recorded
            // steps, which a caller could otherwise forge.
            callMetrics.record(name, ok: false, since: started)
            done(.failure(HostError.badRequest("FN_IS_WORKFLOW", "\"\(name)\" is a workflow: start it with POST /api/workflows/start {\"name\": \"\(name)\", \"input\": {...}}")))
            return
        }
        if let expecting, expecting != info.kind {
            callMetrics.record(name, ok: false, since: started)
            done(.failure(HostError.badRequest("FN_TYPE_MISMATCH", "\"\(name)\" is a \(Self.kindName(info.kind)), not a \(Self.kindName(expecting))")))
            return
        }
        let call = PreparedCall(name: name, nameBytes: Array(name.utf8), kind: info.kind, auth: auth,
                                policyAuth: enforcesPolicies(info.flags) ? auth : .admin,
                                args: argBytes, authBytes: auth.functionJSONBytes, requestBytes: request.map(JSONWriter.encode) ?? [],
                                stream: stream, started: started, nesting: nesting)
        // A mutation first runs optimistically (see `FnCall.held`); when that cannot be
        // completed it runs again from the start holding the transaction throughout. A
        // streamed call never runs twice: its chunks are already on their way.
        attempt(call, optimistic: info.kind == PYLON_FN_MUTATION && stream == nil, done)
    }

    /// What every attempt of one call sends to the plugin.
    /// A class: it is handed to each attempt and captured by its callbacks, and as a struct
    /// of these fields every copy cost about fifteen reference-count operations.
    private final class PreparedCall: Sendable {
        let name: String
        let nameBytes: [UInt8]
        let kind: Int32
        let auth: AuthContext
        let policyAuth: AuthContext
        let args: [UInt8]
        let authBytes: [UInt8]
        let requestBytes: [UInt8]
        let stream: (@Sendable (String, String) -> Void)?
        /// Uptime ns when the call was asked for (the trace's duration).
        let started: UInt64
        let nesting: CallNesting

        init(name: String, nameBytes: [UInt8], kind: Int32, auth: AuthContext, policyAuth: AuthContext, args: [UInt8],
             authBytes: [UInt8], requestBytes: [UInt8], stream: (@Sendable (String, String) -> Void)?, started: UInt64, nesting: CallNesting) {
            self.name = name
            self.nameBytes = nameBytes
            self.kind = kind
            self.auth = auth
            self.policyAuth = policyAuth
            self.args = args
            self.authBytes = authBytes
            self.requestBytes = requestBytes
            self.stream = stream
            self.started = started
            self.nesting = nesting
        }
    }

    private func attempt(_ p: PreparedCall, optimistic: Bool, _ done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        let fc = FnCall(service: self, kind: p.kind, auth: p.auth, policyAuth: p.policyAuth, optimistic: optimistic, nesting: p.nesting)
        fc.onStream = p.stream
        let id = callIDs.next()
        let startedAt = Int64(Date().timeIntervalSince1970 * 1000)
        // Cleared by whoever takes it (FnCall.take), so the cycle fc → finish → fc ends
        // with the call.
        fc.finish = { [self] result in
            switch result {
            case .success:
                traces.push(fc.trace(id: id, name: p.name, startedAt: startedAt, since: p.started, .ok))
                callMetrics.record(p.name, ok: true, since: p.started)
                done(result)
            case .failure(is FnRestart):
                attempt(p, optimistic: false, done)
            case let .failure(error):
                let e = DataService.hostError(error)
                let outcome: FnTrace.Outcome = fc.beganTransaction
                    ? .rolledBack(code: e.code, message: e.message) : .error(code: e.code, message: e.message)
                traces.push(fc.trace(id: id, name: p.name, startedAt: startedAt, since: p.started, outcome))
                callMetrics.record(p.name, ok: false, since: p.started)
                done(result)
            }
        }
        let ctx = Unmanaged.passRetained(fc).toOpaque()
        let e = PluginErrorCapture()
        metrics.pluginCalls.fnStartCall.increment()
        let status = p.nameBytes.withUnsafeBufferPointer { n in
            p.args.withUnsafeBufferPointer { a in
                p.authBytes.withUnsafeBufferPointer { u in
                    p.requestBytes.withUnsafeBufferPointer { r in
                        var c = pylon_fn_call()
                        c.struct_size = UInt32(MemoryLayout<pylon_fn_call>.size)
                        c.kind = fc.kind
                        c.call_id = id
                        c.name = Self.str(n)
                        c.args_json = Self.str(a)
                        c.auth_json = Self.str(u)
                        c.request_json = Self.str(r)
                        c.call_ctx = ctx
                        return e.withSink { table.pointee.start_call(instance, &c, $0) }
                    }
                }
            }
        }
        if status != PYLON_OK {
            // The plugin refused the call: no `complete` will come.
            Unmanaged<FnCall>.fromOpaque(ctx).release()
            fc.take()?(.failure(Self.hostError(status, e)))
        }
    }
}

extension FunctionService {
    static func str(_ b: UnsafeBufferPointer<UInt8>) -> pylon_str {
        pylon_str(ptr: UnsafeRawPointer(b.baseAddress)?.assumingMemoryBound(to: CChar.self), len: b.count)
    }

    /// `GET /api/fn/traces`: the most recent calls, newest first.
    package func recentTraces(limit: Int) -> JSONValue {
        .array(traces.recent(limit).map(\.json))
    }
}

private final class ByteBox: @unchecked Sendable { var bytes: [UInt8] = [] }
