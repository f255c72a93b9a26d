import Foundation
import Logging
import PylonCore
import PylonData
import PylonJSON
import PylonPluginABI

/// Durable workflows: functions of kind `workflow` (`workflow({handler})` in
/// `@pylon/functions`), advanced one step at a time by jobs of the durable queue.
///
/// Each advance calls the workflow function with the steps recorded so far; the function
/// replays up to its first new step, runs it, and answers what happened (a step's output,
/// a sleep, a wait for an event, the end, a failure). The answer is recorded in the
/// instance's row, in the write transaction that enqueues the next advance — immediately,
/// after the sleep, or when the event arrives — so a host may die between any two steps
/// and the next host goes on from the last recorded one. A completed step never runs
/// again; a step whose host died before recording it runs again (at least once). Every
/// advance job names the instance's transition count it was made for, and its answer is
/// recorded only if the count is unchanged, so a stale, repeated or cancelled advance
/// changes nothing. Workflows run as nobody (`user_id` null, not admin), as jobs do.
package final class WorkflowService: Sendable {
    package static let advanceJob = "pylon.workflow.advance"
    /// Advance jobs run in their own queue, so `PYLON_JOBS_QUEUES=workflows:N` bounds them.
    package static let queue = "workflows"

    let jobs: JobService
    let functions: FunctionService
    let table: WorkflowStore
    let backoff: JobBackoff
    let logger: Logger

    package init(jobs: JobService, config: HostConfig, logger: Logger) {
        self.jobs = jobs
        functions = jobs.functions
        table = WorkflowStore(dialect: jobs.store.dialect)
        backoff = JobBackoff(baseMs: Int64(config.jobsBackoffMs), maxMs: Int64(config.jobsBackoffMaxMs))
        self.logger = logger
        jobs.register(builtin: Self.advanceJob) { [self] payload in try await advance(payload) }
    }

    var store: StoreThreads { jobs.store }

    /// The workflow functions: [{name, description, max_retries, args_schema}].
    package func definitions() -> [JSONValue] {
        let all = (try? JSONParser.parse(functions.list()))?.arrayValue ?? []
        return all.filter { $0["fn_type"]?.stringValue == "workflow" }.map { d in
            .object([("name", d["name"] ?? .null), ("description", d["description"] ?? .string("")),
                     ("max_retries", d["max_retries"] ?? .int(3)), ("args_schema", d["args_schema"] ?? .null)])
        }
    }

    /// Starts workflow `name` with `input`; its instance id ("wf_" + 16 hex).
    package func start(_ name: String, input: JSONValue) async throws -> String {
        guard let def = definitions().first(where: { $0["name"]?.stringValue == name }) else {
            throw HostError.badRequest("WORKFLOW_START_FAILED", "no workflow named \"\(name)\"; GET /api/workflows/definitions lists them")
        }
        var random = SystemRandomNumberGenerator()
        let id = "wf_" + RowID.hex(random.next(), 16)
        let now = JobStore.nowMillis()
        let record = WorkflowRecord(id: id, name: name, input: input, status: "pending", steps: [], currentStep: 0, transitions: 0,
                                    wakeAt: nil, waitingFor: nil, inbox: [], output: nil, error: nil,
                                    maxRetries: def["max_retries"]?.intValue ?? 3, createdAt: now, startedAt: nil, completedAt: nil, updatedAt: now)
        let table = table, job = advance(record, WorkflowNext(delayMs: 0))
        try await store.write { tx in
            try table.insert(tx, record)
            _ = try table.jobs.enqueue(tx, job)
        }
        jobs.wake()
        return id
    }

    package func instance(_ id: String) async throws -> WorkflowRecord {
        let table = table
        guard let r = try await store.read({ conn in try table.load(conn, id: id) }) else { throw Self.notFound(id) }
        return r
    }

    package func list(status: String?, limit: Int) async throws -> [WorkflowRecord] {
        let table = table
        return try await store.read { conn in try table.list(conn, status: status, limit: limit) }
    }

    /// Delivers an event (`POST /api/workflows/:id/event`); whether it woke the workflow
    /// (else it is kept until the workflow waits for it).
    package func send(_ id: String, event: String, data: JSONValue) async throws -> Bool {
        try await change(id) { r, now throws(HostError) in try r.deliver(event, data: data, now: now) } != nil
    }

    package func cancel(_ id: String) async throws {
        _ = try await change(id) { r, now throws(HostError) in
            try r.cancel(now: now)
            return nil
        }
    }

    /// `POST /api/workflows/:id/advance`: runs the next step now unless the instance sleeps
    /// until later or waits for an event; its status.
    package func nudge(_ id: String) async throws -> String {
        let r = try await instance(id)
        guard !r.isFinished else { throw WorkflowRecord.finishedError(r) }
        if r.runnable(at: r.transitions, now: JobStore.nowMillis()) {
            let job = advance(r, WorkflowNext(delayMs: 0), keyed: false), table = table
            _ = try await store.write { tx in try table.jobs.enqueue(tx, job) }
            jobs.wake()
        }
        return WorkflowRecord.wireStatus(r.status)
    }

    /// Reads the instance, changes it and enqueues the advance the change asks for, in one
    /// write transaction.
    private func change(_ id: String, _ body: @escaping @Sendable (inout WorkflowRecord, Int64) throws(HostError) -> WorkflowNext?) async throws -> WorkflowNext? {
        let table = table
        let next: WorkflowNext? = try await store.write { [self] tx in
            guard var r = try table.load(tx.connection, id: id) else { throw Self.notFound(id) }
            let next = try body(&r, JobStore.nowMillis())
            try table.save(tx, r)
            if let next { _ = try table.jobs.enqueue(tx, advance(r, next)) }
            return next
        }
        if next != nil { jobs.wake() }
        return next
    }

    /// The job that advances `r` at its current transition count. Keyed by that count, so
    /// each transition enqueues one advance however often it is asked for.
    func advance(_ r: WorkflowRecord, _ next: WorkflowNext, keyed: Bool = true) -> JobRequest {
        JobRequest(name: Self.advanceJob, payload: .object([("id", .string(r.id)), ("n", .int(r.transitions))]), queue: Self.queue,
                   delayMs: next.delayMs, maxRetries: 10, idempotencyKey: keyed ? "wf:\(r.id):\(r.transitions)" : nil, origin: "workflow:\(r.name)")
    }

    /// One advance job: calls the workflow function for the instance's next step and
    /// records its answer, unless the instance changed since the job was made.
    func advance(_ payload: JSONValue) async throws {
        guard let id = payload["id"]?.stringValue, let n = payload["n"]?.intValue else { return }
        let table = table
        guard let r = try await store.read({ conn in try table.load(conn, id: id) }), r.runnable(at: n, now: JobStore.nowMillis()) else { return }
        let args: JSONValue = .object([("workflow_id", .string(r.id)), ("input", r.input), ("steps", r.replay)])
        let answer: Result<JSONValue, HostError>
        do {
            let bytes = try await functions.call(r.name, args: args, auth: .anonymous, expecting: PYLON_FN_WORKFLOW)
            answer = .success(try JSONParser.parse(bytes))
        } catch {
            answer = .failure(DataService.hostError(error))
        }
        let backoff = backoff
        let recorded: Bool = try await store.write { [self] tx in
            guard var now = try table.load(tx.connection, id: id), now.runnable(at: n, now: JobStore.nowMillis()) else { return false }
            if now.startedAt == nil { now.startedAt = JobStore.nowMillis() }
            let next = now.apply(answer, now: JobStore.nowMillis(), backoff: backoff)
            try table.save(tx, now)
            if let next { _ = try table.jobs.enqueue(tx, advance(now, next)) }
            return true
        }
        if recorded {
            jobs.wake()
        } else {
            logger.info("workflow \(id): changed while its step ran (cancelled, or advanced elsewhere); this step's answer is dropped")
        }
    }

    static func notFound(_ id: String) -> HostError { HostError.notFound("no workflow instance \(id)") }
}
