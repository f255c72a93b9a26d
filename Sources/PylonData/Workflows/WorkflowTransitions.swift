import PylonCore
import PylonJSON

/// An advance of the instance to schedule after a change: at its new transition count,
/// after `delayMs`.
package struct WorkflowNext: Sendable, Equatable {
    package let delayMs: Int64

    package init(delayMs: Int64) {
        self.delayMs = delayMs
    }
}

/// The instance's state machine (pylon-aux.md §2.3, made durable): every change bumps
/// `transitions`, and the advance job it schedules (if any) names the new count.
extension WorkflowRecord {
    /// Recorded steps (completed and failed) an instance may hold; past it the workflow fails.
    package static let maxSteps = 1000
    /// The longest event name, in bytes.
    package static let eventNameBytes = 200
    /// Events an instance keeps before it waits for them.
    package static let inboxLimit = 100
    /// The longest sleep (the job queue's longest delay).
    package static let maxSleepMs = JobRequest.maxDelayMs

    /// Whether an advance made for transition `n` may run now.
    package func runnable(at n: Int64, now: Int64) -> Bool {
        guard transitions == n else { return false }
        switch status {
        case "pending", "running": return true
        case "sleeping": return (wakeAt ?? 0) <= now
        default: return false
        }
    }

    /// Records the workflow function's answer for the current step (or its failure).
    package mutating func apply(_ answer: Result<JSONValue, HostError>, now: Int64, backoff: JobBackoff) -> WorkflowNext? {
        transitions += 1
        updatedAt = now
        status = "running"
        wakeAt = nil
        let a: JSONValue
        switch answer {
        case .failure(let e): return fail(step: "(workflow)", error: "\(e.code): \(e.message)", now: now, backoff: backoff)
        case .success(let v): a = v
        }
        guard steps.count < Self.maxSteps else {
            finish("failed", error: "WORKFLOW_TOO_LONG: a workflow records at most \(Self.maxSteps) steps (attempts included)", now: now)
            return nil
        }
        let name = a["step_name"]?.stringValue ?? "(workflow)"
        switch a["action"]?.stringValue {
        case "step_complete":
            record(name, "Completed", output: a["output"] ?? .null, durationMs: a["duration_ms"]?.intValue ?? 0, now: now)
            return WorkflowNext(delayMs: 0)
        case "sleep":
            // JavaScript writes 1e21 and up with an exponent: a double, clamped like an integer.
            let asked = a["duration_ms"]?.doubleValue ?? 0
            let ms = asked.isNaN ? 0 : Int64(min(max(asked, 0), Double(Self.maxSleepMs)))
            record("sleep", "Completed", output: .null, durationMs: 0, now: now)
            status = "sleeping"
            wakeAt = now + ms
            return WorkflowNext(delayMs: ms)
        case "wait_event":
            guard let event = a["event"]?.stringValue, !event.isEmpty else {
                return fail(step: name, error: "WORKFLOW_BAD_ANSWER: wait_event without an event name", now: now, backoff: backoff)
            }
            if let i = inbox.firstIndex(where: { $0["event"]?.stringValue == event }) {
                let data = inbox.remove(at: i)["data"] ?? .null
                record("event:" + event, "Completed", output: data, durationMs: 0, now: now)
                return WorkflowNext(delayMs: 0)
            }
            status = "waiting"
            waitingFor = event
            return nil
        case "complete":
            output = a["output"] ?? .null
            finish("completed", error: nil, now: now)
            return nil
        case "fail":
            return fail(step: name, error: a["error"]?.stringValue ?? "the step failed", now: now, backoff: backoff)
        default:
            return fail(step: name, error: "WORKFLOW_BAD_ANSWER: the workflow function answered \(JSONWriter.string(a).prefix(200))",
                        now: now, backoff: backoff)
        }
    }

    /// Delivers an event: to the waiting workflow when it waits for this one, else kept for
    /// a later wait. Fails when the instance has finished or its inbox is full.
    package mutating func deliver(_ event: String, data: JSONValue, now: Int64) throws(HostError) -> WorkflowNext? {
        guard !isFinished else { throw Self.finishedError(self) }
        updatedAt = now
        if status == "waiting", waitingFor == event {
            transitions += 1
            status = "running"
            waitingFor = nil
            record("event:" + event, "Completed", output: data, durationMs: 0, now: now)
            return WorkflowNext(delayMs: 0)
        }
        guard inbox.count < Self.inboxLimit else {
            throw HostError(status: 409, code: "WORKFLOW_INBOX_FULL",
                            message: "workflow \(id) already holds \(Self.inboxLimit) events it has not waited for; send more once it has taken some")
        }
        inbox.append(.object([("event", .string(event)), ("data", data)]))
        return nil
    }

    package mutating func cancel(now: Int64) throws(HostError) {
        guard !isFinished else { throw Self.finishedError(self) }
        transitions += 1
        finish("cancelled", error: nil, now: now)
    }

    package static func finishedError(_ r: WorkflowRecord) -> HostError {
        HostError(status: 409, code: "WORKFLOW_FINISHED", message: "workflow \(r.id) has finished (\(wireStatus(r.status))); start a new one")
    }

    /// A failed attempt at the current step: retried after a back-off while `maxRetries`
    /// allows, then the workflow fails.
    private mutating func fail(step name: String, error: String, now: Int64, backoff: JobBackoff) -> WorkflowNext? {
        let stepID = "step_\(currentStep)"
        let failures = steps.filter { $0["step_id"]?.stringValue == stepID && $0["status"]?.stringValue == "Failed" }.count
        record(name, "Failed", output: .null, durationMs: 0, now: now, error: String(error.prefix(2000)), retries: Int64(failures))
        guard Int64(failures) < maxRetries else {
            finish("failed", error: "step \(name) failed \(failures + 1) time(s): \(error.prefix(2000))", now: now)
            return nil
        }
        return WorkflowNext(delayMs: backoff.delay(afterFailure: failures))
    }

    private mutating func finish(_ end: String, error: String?, now: Int64) {
        status = end
        self.error = error
        waitingFor = nil
        wakeAt = nil
        completedAt = now
    }

    /// Appends a step; a completed one moves the instance to the next step.
    private mutating func record(_ name: String, _ outcome: String, output: JSONValue, durationMs: Int64, now: Int64,
                                 error: String? = nil, retries: Int64 = 0) {
        let time: (Int64) -> JSONValue = { .string(ISOTime.string(millis: $0)) }
        steps.append(.object([
            ("step_id", .string("step_\(currentStep)")), ("name", .string(name)), ("status", .string(outcome)), ("output", output),
            ("error", error.map(JSONValue.string) ?? .null), ("started_at", time(now - max(durationMs, 0))), ("completed_at", time(now)),
            ("duration_ms", .int(durationMs)), ("retry_count", .int(retries)),
        ]))
        if outcome == "Completed" { currentStep += 1 }
    }
}
