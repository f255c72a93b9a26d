import PylonCore
import PylonJSON

/// The write-transaction steps that start an instance or change one, shared by the admin
/// routes (`WorkflowService`) and `ctx.workflows` in functions (`FnWorkflowOps`), so a
/// mutation starts a workflow or delivers an event in its own transaction: a rolled-back
/// mutation starts nothing and delivers nothing.
extension WorkflowStore {
    package static let advanceJob = "pylon.workflow.advance"
    /// Advance jobs run in their own queue, so `PYLON_JOBS_QUEUES=workflows:N` bounds them.
    package static let queue = "workflows"

    /// Inserts a new pending instance of workflow `name` and its first advance; its id
    /// ("wf_" + 16 hex). The caller has checked that `name` is a workflow.
    package func start(_ tx: WriteTransaction, name: String, input: JSONValue, maxRetries: Int64) throws -> String {
        var random = SystemRandomNumberGenerator()
        let id = "wf_" + RowID.hex(random.next(), 16)
        let now = JobStore.nowMillis()
        let record = WorkflowRecord(id: id, name: name, input: input, status: "pending", steps: [], currentStep: 0, transitions: 0,
                                    wakeAt: nil, waitingFor: nil, inbox: [], output: nil, error: nil,
                                    maxRetries: maxRetries, createdAt: now, startedAt: nil, completedAt: nil, updatedAt: now)
        try insert(tx, record)
        _ = try jobs.enqueue(tx, advance(record, WorkflowNext(delayMs: 0)))
        return id
    }

    /// Reads instance `id`, changes it with `body` and enqueues the advance the change asks
    /// for, all in `tx`; that advance (nil when none).
    package func change(_ tx: WriteTransaction, id: String,
                        _ body: (inout WorkflowRecord, Int64) throws(HostError) -> WorkflowNext?) throws -> WorkflowNext? {
        guard var r = try load(tx.connection, id: id) else { throw Self.notFound(id) }
        let next = try body(&r, JobStore.nowMillis())
        try save(tx, r)
        if let next { _ = try jobs.enqueue(tx, advance(r, next)) }
        return next
    }

    /// Delivers `event` to instance `id` in `tx` (`WorkflowRecord.deliver`); whether it woke
    /// the workflow (else it is kept until the workflow waits for it).
    package func send(_ tx: WriteTransaction, id: String, event: String, data: JSONValue) throws -> Bool {
        try change(tx, id: id) { r, now throws(HostError) in try r.deliver(event, data: data, now: now) } != nil
    }

    /// The job that advances `r` at its current transition count. Keyed by that count, so
    /// each transition enqueues one advance however often it is asked for.
    package func advance(_ r: WorkflowRecord, _ next: WorkflowNext, keyed: Bool = true) -> JobRequest {
        JobRequest(name: Self.advanceJob, payload: .object([("id", .string(r.id)), ("n", .int(r.transitions))]), queue: Self.queue,
                   delayMs: next.delayMs, maxRetries: 10, idempotencyKey: keyed ? "wf:\(r.id):\(r.transitions)" : nil, origin: "workflow:\(r.name)")
    }

    package static func notFound(_ id: String) -> HostError { HostError.notFound("no workflow instance \(id)") }
}
