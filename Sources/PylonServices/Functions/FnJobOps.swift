import PylonCore
import PylonData
import PylonJSON

/// `ctx.jobs` from a function: `enqueue_job` (`name`, `args`, `priority`, `queue`,
/// `delay_ms`, `max_retries`, `idempotency_key`) → `{"id","status","duplicate"}` and
/// `cancel_job` (`job_id`) → `{"cancelled": bool}`, inside the function's transaction
/// when it is a mutation (a rolled-back mutation enqueues nothing), in a write of their
/// own from an action. The runner picks the job up at its next poll.
enum FnJobOps {
    static func run(_ op: FnOp, functions: FunctionService, in tx: WriteTransaction) throws -> JSONValue {
        let jobs = JobStore(dialect: tx.dialect)
        if op.op == "cancel_job" {
            guard let id = op.raw["job_id"]?.stringValue, !id.isEmpty else {
                throw HostError.badRequest("INVALID_OP", "cancel needs the id ctx.jobs.enqueue returned")
            }
            do {
                try jobs.cancel(tx, id: id)
                return .object([("cancelled", true)])
            } catch let e as HostError where e.code == "NOT_FOUND" || e.code == "JOB_FINISHED" {
                return .object([("cancelled", false)])
            }
        }
        let request = try JobRequest.parse(op.raw, payloadKey: "args", origin: "function")
        try functions.requireJobHandler(request.name)
        let r = try jobs.enqueue(tx, request)
        return .object([("id", .string(r.id)), ("status", .string(r.status)), ("duplicate", .bool(!r.created))])
    }
}
