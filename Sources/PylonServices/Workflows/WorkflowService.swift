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
    package static let advanceJob = WorkflowStore.advanceJob

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
        let hours = config.workflowsRetentionHours
        if hours > 0 { jobs.register(trim: { [self] now in await trim(before: now - Int64(hours) * 3_600_000, hours: hours) }) }
    }

    /// `PYLON_WORKFLOWS_RETENTION_HOURS`: deletes instances that finished before `before`
    /// (ms), with the jobs' trim; a failure is logged and the next trim tries again.
    func trim(before: Int64, hours: Int) async {
        let table = table
        do {
            let n = try await store.write(replayable: true) { tx in try table.trim(tx, before: before) }
            if n > 0 { logger.info("workflows: deleted \(n) completed, failed or cancelled instances older than \(hours) h") }
        } catch {
            logger.warning("workflows: trimming finished instances failed (tried again in a minute): \(error)")
        }
    }

    var store: StoreThreads { jobs.store }

    /// The workflow functions: [{name, description, max_retries, args_schema}].
    package func definitions() -> [JSONValue] { functions.workflowDefinitions() }

    /// Starts workflow `name` with `input`; its instance id ("wf_" + 16 hex).
    package func start(_ name: String, input: JSONValue) async throws -> String {
        let maxRetries = try functions.workflowMaxRetries(name)
        let table = table
        let id = try await store.write { tx in try table.start(tx, name: name, input: input, maxRetries: maxRetries) }
        jobs.wake()
        return id
    }

    package func instance(_ id: String) async throws -> WorkflowRecord {
        let table = table
        guard let r = try await store.read({ conn in try table.load(conn, id: id) }) else { throw WorkflowStore.notFound(id) }
        return r
    }

    package func list(status: String?, limit: Int) async throws -> [WorkflowRecord] {
        let table = table
        return try await store.read { conn in try table.list(conn, status: status, limit: limit) }
    }

    /// Delivers an event (`POST /api/workflows/:id/event`); whether it woke the workflow
    /// (else it is kept until the workflow waits for it).
    package func send(_ id: String, event: String, data: JSONValue) async throws -> Bool {
        let table = table
        let woke = try await store.write { tx in try table.send(tx, id: id, event: event, data: data) }
        if woke { jobs.wake() }
        return woke
    }

    package func cancel(_ id: String) async throws {
        let table = table
        _ = try await store.write { tx in
            try table.change(tx, id: id) { r, now throws(HostError) in
                try r.cancel(now: now)
                return nil
            }
        }
    }

    /// `POST /api/workflows/:id/advance`: runs the next step now unless the instance sleeps
    /// until later or waits for an event; its status. When the step's advance job is still
    /// pending or running nothing is added (two advances of one step would run it twice at
    /// once); when that job has ended (dead after store failures, say) a new one is queued.
    package func nudge(_ id: String) async throws -> String {
        let table = table
        let status: String = try await store.write { tx in
            guard let r = try table.load(tx.connection, id: id) else { throw WorkflowStore.notFound(id) }
            guard !r.isFinished else { throw WorkflowRecord.finishedError(r) }
            guard r.runnable(at: r.transitions, now: JobStore.nowMillis()) else { return r.status }
            let keyed = try table.jobs.enqueue(tx, table.advance(r, WorkflowNext(delayMs: 0)))
            if !keyed.created, !["pending", "retrying", "running"].contains(keyed.status) {
                _ = try table.jobs.enqueue(tx, table.advance(r, WorkflowNext(delayMs: 0), keyed: false))
            }
            return r.status
        }
        jobs.wake()
        return WorkflowRecord.wireStatus(status)
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
        let recorded: Bool = try await store.write { tx in
            guard var now = try table.load(tx.connection, id: id), now.runnable(at: n, now: JobStore.nowMillis()) else { return false }
            if now.startedAt == nil { now.startedAt = JobStore.nowMillis() }
            let next = now.apply(answer, now: JobStore.nowMillis(), backoff: backoff)
            try table.save(tx, now)
            if let next { _ = try table.jobs.enqueue(tx, table.advance(now, next)) }
            return true
        }
        if recorded {
            jobs.wake()
        } else {
            logger.info("workflow \(id): changed while its step ran (cancelled, or advanced elsewhere); this step's answer is dropped")
        }
    }
}
