import Dispatch
import Foundation
import Logging
import PylonPluginABI

/// Runs server functions through the plugin serving `pylon.functions/1`, and answers
/// their `ctx.db` operations itself (DESIGN.md §4): a mutation's operations all run inside
/// one write transaction on the writer thread (committed when the function returns,
/// rolled back when it throws; change events are published after commit, like every other
/// write), a query's on read connections, an action's one by one, each write its own
/// transaction. A function is the app's trusted code: its operations bypass the entity
/// policies (as in Pylon and Convex) unless the app enforces them on functions (manifest
/// `plugins.functions.policies: "enforce"`) or the function asks for it
/// (`policies: "enforce"`); `enforcesPolicies` decides.
final class FunctionService: @unchecked Sendable {
    let table: UnsafePointer<pylon_fn_v1>
    let instance: OpaquePointer
    let data: DataService
    let store: StoreThreads
    let logger: Logger
    let metrics: Metrics
    private let hostTable: UnsafeMutablePointer<pylon_fn_host_v1>
    private let callIDs = AtomicCounter()
    /// Recent calls for `GET /api/fn/traces`.
    let traces = FnTraceRing()

    /// Longest a mutation may hold the write transaction waiting for its function; the
    /// plugin's own call timeout (PYLON_FN_CALL_TIMEOUT) normally ends it much sooner.
    static let mutationHoldLimit: TimeInterval = 600

    /// The app's setting (`Manifest.functionsEnforcePolicies`).
    let appEnforcesPolicies: Bool

    init(served: ServedCapability, data: DataService, store: StoreThreads, enforcePolicies: Bool, logger: Logger,
         metrics: Metrics) throws(HostError) {
        appEnforcesPolicies = enforcePolicies
        table = served.table.assumingMemoryBound(to: pylon_fn_v1.self)
        instance = served.instance
        self.data = data
        self.store = store
        self.logger = logger
        self.metrics = metrics
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
        var err = pylon_error()
        err.struct_size = UInt32(MemoryLayout<pylon_error>.size)
        let status = table.pointee.bind_host(instance, hostTable, &err)
        if status != PYLON_OK {
            throw HostError(status: 500, code: "PLUGIN_CREATE_FAILED", message: "plugin \(served.plugin.id): bind_host failed: \(Self.message(err))")
        }
    }

    /// Read only up to the field's end: a plugin that leaves no NUL must not make the host
    /// read past it.
    static func message(_ err: pylon_error) -> String { boundedCString(err.message) }

    static func code(_ err: pylon_error) -> String { boundedCString(err.code) }

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
    func describe(_ name: String) throws -> pylon_fn_info {
        var err = pylon_error()
        err.struct_size = UInt32(MemoryLayout<pylon_error>.size)
        var info = pylon_fn_info()
        info.struct_size = UInt32(MemoryLayout<pylon_fn_info>.size)
        metrics.pluginCalls.fnDescribe.increment()
        let st = Array(name.utf8).withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { table.pointee.describe(instance, $0.baseAddress, $0.count, &info, &err) }
        }
        if st != PYLON_OK { throw Self.hostError(st, Self.code(err), Self.message(err)) }
        return info
    }

    static func kindName(_ kind: Int32) -> String {
        switch kind {
        case PYLON_FN_QUERY: "query"
        case PYLON_FN_MUTATION: "mutation"
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
    func list() -> [UInt8] {
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

    /// Runs `name` for `auth`; the function's return value as JSON text. `expecting` (a
    /// nested call's declared kind) must match the function's.
    /// `stream` receives `ctx.stream` chunks (event name, data) in order, all before the
    /// call returns; without it they are dropped (Pylon's JSON path does the same).
    /// `request` (a webhook's HTTP request) becomes the action's `ctx.request`.
    /// Every started call is traced (`traces`), whatever its outcome.
    func call(_ name: String, args: JSONValue, auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
              stream: (@Sendable (String, String) -> Void)? = nil) async throws -> [UInt8] {
        try await call(name, argsJSON: JSONWriter.encode(args), auth: auth, expecting: expecting, request: request, stream: stream)
    }

    /// The same with the arguments as JSON text (the caller has checked it is JSON).
    func call(_ name: String, argsJSON argBytes: [UInt8], auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
              stream: (@Sendable (String, String) -> Void)? = nil) async throws -> [UInt8] {
        try await withUnsafeThrowingContinuation { (cont: UnsafeContinuation<[UInt8], Error>) in
            start(name, argsJSON: argBytes, auth: auth, expecting: expecting, request: request, stream: stream) { cont.resume(with: $0) }
        }
    }

    /// `call` without a Task: `done` receives the function's return value (JSON text) or
    /// the error exactly once — on the thread that finishes the call (a plugin's or an
    /// event loop's thread, a store thread, or the caller's own when the call cannot start),
    /// possibly before `start` returns. Every started call is traced, whatever its outcome.
    func start(_ name: String, argsJSON argBytes: [UInt8], auth: AuthContext, expecting: Int32? = nil, request: JSONValue? = nil,
               stream: (@Sendable (String, String) -> Void)? = nil, done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        let started = DispatchTime.now().uptimeNanoseconds
        let info: pylon_fn_info
        do {
            info = try describe(name)
        } catch {
            metrics.functions.recordUnknown()
            done(.failure(error))
            return
        }
        if let expecting, expecting != info.kind {
            metrics.functions.record(name, ok: false, since: started)
            done(.failure(HostError.badRequest("FN_TYPE_MISMATCH", "\"\(name)\" is a \(Self.kindName(info.kind)), not a \(Self.kindName(expecting))")))
            return
        }
        let call = PreparedCall(name: name, nameBytes: Array(name.utf8), kind: info.kind, auth: auth,
                                policyAuth: enforcesPolicies(info.flags) ? auth : .admin,
                                args: argBytes, authBytes: auth.functionJSONBytes, requestBytes: request.map(JSONWriter.encode) ?? [],
                                stream: stream, started: started)
        // A mutation first runs optimistically (see `FnCall.held`); when that cannot be
        // completed it runs again from the start holding the transaction throughout. A
        // streamed call never runs twice: its chunks are already on their way.
        attempt(call, optimistic: info.kind == PYLON_FN_MUTATION && stream == nil, done)
    }

    /// What every attempt of one call sends to the plugin.
    private struct PreparedCall: Sendable {
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
    }

    private func attempt(_ p: PreparedCall, optimistic: Bool, _ done: @escaping @Sendable (Result<[UInt8], Error>) -> Void) {
        let fc = FnCall(service: self, kind: p.kind, auth: p.auth, policyAuth: p.policyAuth, optimistic: optimistic)
        fc.onStream = p.stream
        let id = callIDs.next()
        let startedAt = Int64(Date().timeIntervalSince1970 * 1000)
        // Cleared by whoever takes it (FnCall.take), so the cycle fc → finish → fc ends
        // with the call.
        fc.finish = { [self] result in
            switch result {
            case .success:
                traces.push(fc.trace(id: id, name: p.name, startedAt: startedAt, since: p.started, .ok))
                metrics.functions.record(p.name, ok: true, since: p.started)
                done(result)
            case .failure(is FnRestart):
                attempt(p, optimistic: false, done)
            case let .failure(error):
                let e = DataService.hostError(error)
                let outcome: FnTrace.Outcome = fc.beganTransaction
                    ? .rolledBack(code: e.code, message: e.message) : .error(code: e.code, message: e.message)
                traces.push(fc.trace(id: id, name: p.name, startedAt: startedAt, since: p.started, outcome))
                metrics.functions.record(p.name, ok: false, since: p.started)
                done(result)
            }
        }
        let ctx = Unmanaged.passRetained(fc).toOpaque()
        var e = pylon_error()
        e.struct_size = UInt32(MemoryLayout<pylon_error>.size)
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
                        return table.pointee.start_call(instance, &c, &e)
                    }
                }
            }
        }
        if status != PYLON_OK {
            // The plugin refused the call: no `complete` will come.
            Unmanaged<FnCall>.fromOpaque(ctx).release()
            fc.take()?(.failure(Self.hostError(status, Self.code(e), Self.message(e))))
        }
    }
}

extension FunctionService {
    static func str(_ b: UnsafeBufferPointer<UInt8>) -> pylon_str {
        pylon_str(ptr: UnsafeRawPointer(b.baseAddress)?.assumingMemoryBound(to: CChar.self), len: b.count)
    }

    /// `GET /api/fn/traces`: the most recent calls, newest first.
    func recentTraces(limit: Int) -> JSONValue {
        .array(traces.recent(limit).map(\.json))
    }
}

private final class ByteBox: @unchecked Sendable { var bytes: [UInt8] = [] }


extension AuthContext {
    /// The caller as a function sees it (`ctx.auth`), snake_case as in Pylon's frames.
    /// `functionJSON` as text; the anonymous caller's (most calls of a public app) is
    /// encoded once.
    var functionJSONBytes: [UInt8] {
        self == .anonymous ? Self.anonymousFunctionJSON : JSONWriter.encode(functionJSON)
    }

    private static let anonymousFunctionJSON = JSONWriter.encode(AuthContext.anonymous.functionJSON)

    var functionJSON: JSONValue {
        .object([
            ("user_id", userID.map { .string($0) } ?? .null), ("is_admin", .bool(isAdmin)), ("is_guest", .bool(isGuest)),
            ("roles", .array(roles.map { .string($0) })), ("tenant_id", tenantID.map { .string($0) } ?? .null),
        ])
    }
}

/// One running call: the host's `call_ctx`. Retained from `start_call` until `complete`.
final class FnCall: @unchecked Sendable {
    let service: FunctionService
    let kind: Int32
    /// The caller (`ctx.auth`).
    let auth: AuthContext
    /// Whose policies `ctx.db` obeys: the caller's, or admin's for a privileged function.
    let policyAuth: AuthContext
    /// Called exactly once with the outcome: taken and cleared (`take`) by `begin`,
    /// `complete` or a refused start, which the ABI never lets overlap for one call (no
    /// `db_call` after or during `complete`).
    var finish: (@Sendable (Result<[UInt8], Error>) -> Void)?

    /// `finish`, cleared.
    func take() -> (@Sendable (Result<[UInt8], Error>) -> Void)? {
        let f = finish
        finish = nil
        return f
    }
    /// Set before the call starts; called from the plugin's threads, one chunk at a time.
    var onStream: (@Sendable (String, String) -> Void)?
    private let lock = NSLock()
    private var session: MutationSession?
    private var details = FnTraceBuilder()
    /// A mutation's inserts made before anything else, with the ids already handed to the
    /// function (`optimistic`): an insert's answer does not depend on the database, so it
    /// is answered at once and the writer is not held while the function runs. When the
    /// function returns, the held inserts are applied in one short write job (grouped with
    /// other requests); when it makes any other operation first, they are applied at the
    /// start of its transaction, which then runs as usual. If applying them fails (a
    /// constraint, a policy, a bad field), the call is abandoned with `FnRestart` and run
    /// again from the start without this shortcut, so the function meets the failure at
    /// the insert that caused it — as it would have the first time. A function that has
    /// effects outside `ctx.db` (logging, global state) may then see them twice.
    private var held: [(op: FnOp, id: String)] = []
    /// Whether anything was ever held (for the trace's outcome).
    private var heldAny = false
    let optimistic: Bool

    init(service: FunctionService, kind: Int32, auth: AuthContext, policyAuth: AuthContext, optimistic: Bool = false) {
        self.service = service
        self.kind = kind
        self.auth = auth
        self.policyAuth = policyAuth
        self.optimistic = optimistic && kind == PYLON_FN_MUTATION
    }

    /// `ctx.runQuery` / `ctx.runMutation` from an action: a new top-level call as the same
    /// user without admin rights (Pylon's rule for nested calls).
    func runNested(_ name: String, kind expected: Int32, args: JSONValue, _ reply: DBReplyBox) {
        guard kind == PYLON_FN_ACTION else {
            reply.fail(HostError.badRequest("NESTED_CALL_NOT_ALLOWED", "only actions may call other functions (ctx.runQuery / ctx.runMutation)"))
            return
        }
        var nested = auth
        nested.isAdmin = false
        nested.roles.removeAll { $0 == "admin" }
        let service = service
        Task {
            do {
                reply.succeed(raw: try await service.call(name, args: args, auth: nested, expecting: expected))
            } catch {
                reply.fail(DataService.hostError(error))
            }
        }
    }

    /// A mutation that wrote inside its transaction or optimistically (its failure undid
    /// something).
    var beganTransaction: Bool { lock.withLock { session != nil || heldAny } }

    /// Called as each operation is answered, before the function sees the answer.
    func recordOp(_ op: FnOp, durationMs: Double, result: JSONValue?) {
        if op.op == "cancel_schedule" { return }
        if op.op == "schedule" {
            guard result != nil else { return }
            let s = FnScheduleTrace(fnName: op.raw["fn_name"]?.stringValue ?? "", delayMs: op.raw["delay_ms"]?.intValue,
                                    runAt: op.raw["run_at"]?.intValue)
            lock.withLock { details.record(s) }
            return
        }
        let t = FnOpTrace(op: op.op, entity: op.entity, id: op.id ?? (op.op == "insert" ? result?["id"]?.stringValue : nil),
                          durationMs: durationMs, rowCount: result.flatMap { FnOpTrace.rowCount(op.op, $0) }, ok: result != nil)
        lock.withLock { details.record(t) }
    }

    func recordStream(bytes: Int) {
        lock.withLock { details.recordStream(bytes: bytes) }
    }

    /// The finished call's trace; `since` is when it began (uptime ns).
    func trace(id: UInt64, name: String, startedAt: Int64, since: UInt64, _ outcome: FnTrace.Outcome) -> FnTrace {
        let ms = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e6
        return FnTrace(callID: id, fnName: name, kind: kind, userID: auth.userID, startedAt: startedAt, durationMs: ms,
                       outcome: outcome, details: lock.withLock { details })
    }

    func db(_ op: FnOp, _ reply: DBReplyBox) {
        reply.timer = FnOpTimer(call: self, op: op)
        if kind == PYLON_FN_MUTATION {
            var started: MutationSession?
            let heldID: String? = lock.withLock {
                guard session == nil, optimistic, op.op == "insert" else { return nil }
                let id = RowID.generate()
                held.append((op, id))
                heldAny = true
                return id
            }
            if let heldID {
                reply.succeed(.object([("id", .string(heldID))]))
                return
            }
            let s: MutationSession = lock.withLock {
                if let s = session { return s }
                let s = MutationSession(ops: FnOps(data: service.data, auth: policyAuth), held: held)
                held = []
                session = s
                started = s
                return s
            }
            s.post(.op(op, reply))
            if let started { begin(started) }
            return
        }
        let ops = FnOps(data: service.data, auth: policyAuth)
        let readOnly = kind == PYLON_FN_QUERY
        // A point read of a local store costs less than handing it to a task: answered on
        // the plugin's thread, which it holds for that read only.
        do {
            if let now = try ops.runNow(op) {
                reply.succeed(now)
                return
            }
        } catch {
            reply.fail(DataService.hostError(error))
            return
        }
        Task {
            do {
                reply.succeed(try await ops.run(op, readOnly: readOnly))
            } catch {
                reply.fail(DataService.hostError(error))
            }
        }
    }

    /// The mutation's write transaction: holds the writer until the function finishes. The
    /// outcome goes to `finish` on the writer thread, after commit or rollback.
    private func begin(_ s: MutationSession) {
        let finish = take()
        service.store.write({ tx in try s.run(tx) }) { result in
            if case .failure = result { s.abandon() }
            finish?(result)
        }
    }

    func complete(_ result: Result<[UInt8], HostError>) {
        let (s, inserts) = lock.withLock { () -> (MutationSession?, [(op: FnOp, id: String)]) in
            defer { held = [] }
            return (session, held)
        }
        if let s {
            s.post(.finish(result))
            return
        }
        let finish = take()
        if !inserts.isEmpty, case let .success(bytes) = result {
            let ops = FnOps(data: service.data, auth: policyAuth)
            service.store.write(replayable: true, { tx in try ops.applyHeld(inserts, in: tx) }) { applied in
                finish?(applied.map { bytes }.mapError { _ in FnRestart() })
            }
            return
        }
        finish?(result.mapError { $0 })
    }
}

/// An optimistic mutation could not be completed as it ran; `FunctionService.call` runs it
/// again from the start, holding its transaction throughout (see `FnCall.held`).
struct FnRestart: Error {}

/// The reply to one `db_call`: calls the plugin's `done` exactly once.
final class DBReplyBox: @unchecked Sendable {
    let done: pylon_fn_db_done_fn
    let ctx: UnsafeMutableRawPointer?
    /// Set for `ctx.db` operations: traces the operation when it is answered.
    var timer: FnOpTimer?

    init(done: pylon_fn_db_done_fn, ctx: UnsafeMutableRawPointer?) {
        self.done = done
        self.ctx = ctx
    }

    func succeed(_ value: JSONValue) {
        timer?.finish(value)
        succeed(raw: JSONWriter.encode(value))
    }

    func succeed(raw bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { done(ctx, PYLON_OK, $0.baseAddress, $0.count, nil) }
        }
    }

    func fail(_ e: HostError) {
        timer?.finish(nil)
        var err = pylon_error()
        err.struct_size = UInt32(MemoryLayout<pylon_error>.size)
        let status: pylon_status = e.status == 404 ? PYLON_ERR_NOT_FOUND : e.status == 409 ? PYLON_ERR_CONSTRAINT : PYLON_ERR_GENERIC
        err.status = status
        withUnsafeMutableBytes(of: &err.code) { copyC(e.code, $0) }
        withUnsafeMutableBytes(of: &err.message) { copyC(e.message, $0) }
        // The whole error too: `err.code` holds 31 bytes (ABI 1.4).
        let whole = JSONWriter.encode(.object([("code", .string(e.code)), ("message", .string(e.message))]))
        whole.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { done(ctx, status, $0.baseAddress, $0.count, &err) }
        }
    }
}

private func copyC(_ s: String, _ buf: UnsafeMutableRawBufferPointer) {
    let bytes = Array(s.utf8.prefix(buf.count - 1))
    buf.copyBytes(from: bytes)
    buf[bytes.count] = 0
}

private func fnHostDBCall(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ json: UnsafePointer<CChar>?,
                          _ len: Int, _ done: pylon_fn_db_done_fn?, _ doneCtx: UnsafeMutableRawPointer?) {
    guard let done else { return }
    let reply = DBReplyBox(done: done, ctx: doneCtx)
    guard let callCtx, let json else {
        reply.fail(HostError.badRequest("INVALID_OP", "db_call without a call or an operation"))
        return
    }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    let op: FnOp
    do {
        op = try FnOp.parse(Array(UnsafeRawBufferPointer(start: json, count: len)))
    } catch {
        reply.fail(DataService.hostError(error))
        return
    }
    call.db(op, reply)
}

private func fnHostComplete(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ status: pylon_status,
                            _ json: UnsafePointer<CChar>?, _ len: Int, _ err: UnsafePointer<pylon_error>?) {
    guard let callCtx else { return }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeRetainedValue()
    if status == PYLON_OK {
        let bytes = json.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? Array("null".utf8)
        // The plugin hands over the function's value; never trust it to be JSON.
        if (try? JSONParser.validate(bytes)) == nil {
            call.complete(.failure(HostError(status: 502, code: "INVALID_RESULT", message: "the function runtime returned a result that is not JSON")))
        } else {
            call.complete(.success(bytes))
        }
    } else if let json, len > 0, let whole = try? JSONParser.parse(Array(UnsafeRawBufferPointer(start: json, count: len))),
              let code = whole["code"]?.stringValue {
        // ABI 1.4: the untruncated error.
        call.complete(.failure(FunctionService.hostError(status, code, whole["message"]?.stringValue ?? "")))
    } else {
        let e = err?.pointee ?? pylon_error()
        call.complete(.failure(FunctionService.hostError(status, FunctionService.code(e), FunctionService.message(e))))
    }
}

private func fnHostRunFn(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?,
                         _ nameLen: Int, _ kind: Int32, _ args: UnsafePointer<CChar>?, _ argsLen: Int,
                         _ done: pylon_fn_db_done_fn?, _ doneCtx: UnsafeMutableRawPointer?) {
    guard let done else { return }
    let reply = DBReplyBox(done: done, ctx: doneCtx)
    guard let callCtx, let name, nameLen > 0 else {
        reply.fail(HostError.badRequest("INVALID_OP", "run_fn without a call or a function name"))
        return
    }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    let fn = String(decoding: UnsafeRawBufferPointer(start: name, count: nameLen), as: UTF8.self)
    var value: JSONValue = .object([])
    if let args, argsLen > 0 {
        do {
            value = try JSONParser.parse(Array(UnsafeRawBufferPointer(start: args, count: argsLen)))
        } catch {
            reply.fail(HostError.badRequest("INVALID_ARGS", "the arguments are not JSON: \(error)"))
            return
        }
    }
    call.runNested(fn, kind: kind, args: value, reply)
}

private func fnHostStream(_ hostCtx: UnsafeMutableRawPointer?, _ callCtx: UnsafeMutableRawPointer?, _ event: UnsafePointer<CChar>?,
                          _ eventLen: Int, _ data: UnsafePointer<CChar>?, _ dataLen: Int) {
    guard let callCtx else { return }
    let call = Unmanaged<FnCall>.fromOpaque(callCtx).takeUnretainedValue()
    call.recordStream(bytes: dataLen)
    guard let sink = call.onStream else { return }
    let text = { (p: UnsafePointer<CChar>?, n: Int) in
        p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: n), as: UTF8.self) } ?? ""
    }
    sink(text(event, eventLen), text(data, dataLen))
}
