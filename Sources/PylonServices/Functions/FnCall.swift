import Dispatch
import Foundation
import Logging
import PylonPluginABI
import PylonCore
import PylonData
import PylonJSON

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

    /// Where this call sits among the calls of its request, and their bounds (under `lock`).
    private var nesting: CallNesting

    init(service: FunctionService, kind: Int32, auth: AuthContext, policyAuth: AuthContext, optimistic: Bool = false,
         nesting: CallNesting = .root) {
        self.service = service
        self.kind = kind
        self.auth = auth
        self.policyAuth = policyAuth
        self.optimistic = optimistic && kind == PYLON_FN_MUTATION
        self.nesting = nesting
    }

    /// `ctx.runQuery` / `ctx.runMutation` from an action: a new top-level call as the same
    /// user without admin rights (Pylon's rule for nested calls), one level deeper, within the
    /// bounds of its request's calls (`CallNesting`).
    func runNested(_ name: String, kind expected: Int32, args: JSONValue, _ reply: DBReplyBox) {
        guard kind == PYLON_FN_ACTION || kind == PYLON_FN_WORKFLOW else {
            reply.fail(HostError.badRequest("NESTED_CALL_NOT_ALLOWED", "only actions and workflows may call other functions (ctx.runQuery / ctx.runMutation)"))
            return
        }
        lock.lock()
        let admitted = Result { () throws(HostError) in try nesting.nested() }
        lock.unlock()
        let child: CallNesting
        switch admitted {
        case let .success(c): child = c
        case let .failure(e):
            reply.fail(e)
            return
        }
        var nested = auth
        nested.isAdmin = false
        nested.roles.removeAll { $0 == "admin" }
        let service = service
        Task {
            do {
                reply.succeed(raw: try await service.call(name, args: args, auth: nested, expecting: expected, nesting: child))
            } catch {
                reply.fail(DataService.hostError(error))
            }
            child.ended()
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
        if ShardFnOps.ops.contains(op.op) {
            Task { [kind, service, auth] in
                do {
                    reply.succeed(try await ShardFnOps.run(op, kind: kind, shards: service.shards, auth: auth))
                } catch {
                    reply.fail(DataService.hostError(error))
                }
            }
            return
        }
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
                let s = MutationSession(ops: FnOps(data: service.data, functions: service, auth: policyAuth), held: held)
                held = []
                session = s
                started = s
                return s
            }
            s.post(.op(op, reply))
            if let started { begin(started) }
            return
        }
        let ops = FnOps(data: service.data, functions: service, auth: policyAuth)
        let readOnly = kind == PYLON_FN_QUERY
        // A point read of a local store costs less than handing it to a task: answered on
        // the plugin's thread, which it holds for that read only.
        if op.op == "get" {
            ops.get(op) { result in
                switch result {
                case .success(let row): reply.succeed(row)
                case .failure(let error): reply.fail(DataService.hostError(error))
                }
            }
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
            let ops = FnOps(data: service.data, functions: service, auth: policyAuth)
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
