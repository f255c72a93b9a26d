import Foundation
import PylonCore
import PylonJSON

/// One workflow instance as stored in `_pylon_workflows` (`SystemTables.workflows`).
/// `status` is stored lowercase (pending, running, sleeping, waiting, completed, failed,
/// cancelled) and shown with Pylon's names (`wireStatus`).
package struct WorkflowRecord: Sendable {
    package var id: String
    package var name: String
    package var input: JSONValue
    package var status: String
    /// Every recorded step, completed or failed, in order (Pylon's `StepResult`s).
    package var steps: [JSONValue]
    /// How many steps have completed: the index of the next one.
    package var currentStep: Int64
    /// Counts state changes; an advance job is valid only for the count it was made for.
    package var transitions: Int64
    package var wakeAt: Int64?
    package var waitingFor: String?
    /// Events sent before the workflow waited for them: [{"event", "data"}], oldest first.
    package var inbox: [JSONValue]
    package var output: JSONValue?
    package var error: String?
    package var maxRetries: Int64
    package var createdAt: Int64
    package var startedAt: Int64?
    package var completedAt: Int64?
    package var updatedAt: Int64

    package init(id: String, name: String, input: JSONValue, status: String, steps: [JSONValue], currentStep: Int64,
                 transitions: Int64, wakeAt: Int64?, waitingFor: String?, inbox: [JSONValue], output: JSONValue?, error: String?,
                 maxRetries: Int64, createdAt: Int64, startedAt: Int64?, completedAt: Int64?, updatedAt: Int64) {
        self.id = id
        self.name = name
        self.input = input
        self.status = status
        self.steps = steps
        self.currentStep = currentStep
        self.transitions = transitions
        self.wakeAt = wakeAt
        self.waitingFor = waitingFor
        self.inbox = inbox
        self.output = output
        self.error = error
        self.maxRetries = maxRetries
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.updatedAt = updatedAt
    }

    package static let statuses = ["pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]

    /// The statuses an instance ends in; it never leaves one (`WORKFLOW_FINISHED`).
    package static let finishedStatuses = ["completed", "failed", "cancelled"]

    package var isFinished: Bool { Self.finishedStatuses.contains(status) }

    /// Pylon's `WorkflowStatus` names.
    package static func wireStatus(_ s: String) -> String {
        switch s {
        case "waiting": "WaitingForEvent"
        default: s.prefix(1).uppercased() + s.dropFirst()
        }
    }

    /// The completed steps as the workflow function replays them: [{"name", "output"}].
    package var replay: JSONValue {
        .array(steps.compactMap { s in
            guard s["status"]?.stringValue == "Completed" else { return nil }
            return .object([("name", s["name"] ?? .null), ("output", s["output"] ?? .null)])
        })
    }

    /// Pylon's `WorkflowInstance` JSON, with ISO 8601 times.
    package var json: JSONValue {
        func time(_ ms: Int64?) -> JSONValue { ms.map { .string(ISOTime.string(millis: $0)) } ?? .null }
        return .object([
            ("id", .string(id)), ("name", .string(name)), ("input", input), ("status", .string(Self.wireStatus(status))),
            ("steps", .array(steps)), ("output", output ?? .null), ("error", error.map(JSONValue.string) ?? .null),
            ("created_at", time(createdAt)), ("started_at", time(startedAt)), ("completed_at", time(completedAt)),
            ("wake_at", status == "sleeping" ? time(wakeAt) : .null), ("waiting_for", waitingFor.map(JSONValue.string) ?? .null),
            ("current_step", .int(currentStep)), ("max_retries", .int(maxRetries)), ("pending_events", .int(Int64(inbox.count))),
        ])
    }
}

/// The workflow table's statements, in the app's own store. Every change of an instance is
/// a read-modify-write inside one write transaction (the store's one writer on SQLite, the
/// shared write lock on PostgreSQL), so concurrent changes never overwrite each other.
package struct WorkflowStore: Sendable {
    package let jobs: JobStore
    static let table = SystemTables.workflows.name
    static let columns = "id, name, input, status, steps, current_step, transitions, wake_at, waiting_for, inbox, output, error, max_retries, created_at, started_at, completed_at, updated_at"

    package init(dialect: SQLDialect) { jobs = JobStore(dialect: dialect) }

    package func insert(_ tx: WriteTransaction, _ r: WorkflowRecord) throws {
        let marks = Array(repeating: "?", count: 17).joined(separator: ", ")
        try tx.connection.execute(jobs.sql("INSERT INTO \(Self.table) (\(Self.columns)) VALUES (\(marks))"), values(r), wantRows: false)
    }

    /// Writes every field of `r` (read in the same transaction).
    package func save(_ tx: WriteTransaction, _ r: WorkflowRecord) throws {
        let sets = Self.columns.split(separator: ",").dropFirst().map { "\($0.trimmingCharacters(in: .whitespaces)) = ?" }.joined(separator: ", ")
        var params = Array(values(r).dropFirst())
        params.append(.text(r.id))
        try tx.connection.execute(jobs.sql("UPDATE \(Self.table) SET \(sets) WHERE id = ?"), params, wantRows: false)
    }

    package func load(_ conn: StoreConnection, id: String) throws -> WorkflowRecord? {
        try conn.execute(jobs.sql("SELECT \(Self.columns) FROM \(Self.table) WHERE id = ?"), [.text(id)]).rows.first.map(Self.record)
    }

    /// Instances, newest first, optionally of one status.
    package func list(_ conn: StoreConnection, status: String?, limit: Int) throws -> [WorkflowRecord] {
        var params: [SQLValue] = []
        var whereSQL = ""
        if let status {
            whereSQL = " WHERE status = ?"
            params.append(.text(status))
        }
        params.append(.int(Int64(limit)))
        return try conn.execute(jobs.sql("SELECT \(Self.columns) FROM \(Self.table)\(whereSQL) ORDER BY created_at DESC, id DESC LIMIT ?"), params)
            .rows.map(Self.record)
    }

    /// Deletes finished instances (`WorkflowRecord.finishedStatuses`) that ended before
    /// `before` (ms), a bounded number at a time, as `JobStore.trim` does for jobs. Their
    /// steps and events are in the row; their advance jobs are the jobs' retention's. An
    /// instance still pending, running, sleeping or waiting is never deleted, whatever its
    /// times say.
    package func trim(_ tx: WriteTransaction, before: Int64) throws -> Int64 {
        try jobs.deleteEnded(tx, from: Self.table, statuses: WorkflowRecord.finishedStatuses, before: before)
    }

    /// Instance counts by stored status.
    package func counts(_ conn: StoreConnection) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for row in try conn.execute("SELECT status, COUNT(*) FROM \(Self.table) GROUP BY status").rows {
            if case let .text(s) = row[0], case let .int(n) = row[1] { out[s] = n }
        }
        return out
    }

    private func values(_ r: WorkflowRecord) -> [SQLValue] {
        func opt(_ v: Int64?) -> SQLValue { v.map(SQLValue.int) ?? .null }
        return [.text(r.id), .text(r.name), .text(JSONWriter.string(r.input)), .text(r.status), .text(JSONWriter.string(.array(r.steps))),
                .int(r.currentStep), .int(r.transitions), opt(r.wakeAt), r.waitingFor.map(SQLValue.text) ?? .null,
                .text(JSONWriter.string(.array(r.inbox))), r.output.map { .text(JSONWriter.string($0)) } ?? .null,
                r.error.map(SQLValue.text) ?? .null, .int(r.maxRetries), .int(r.createdAt), opt(r.startedAt), opt(r.completedAt), .int(r.updatedAt)]
    }

    static func record(_ r: [SQLValue]) -> WorkflowRecord {
        func int(_ v: SQLValue) -> Int64? { if case let .int(i) = v { i } else { nil } }
        func json(_ v: SQLValue) -> JSONValue? { v.textValue.flatMap { try? JSONParser.parse($0) } }
        return WorkflowRecord(
            id: r[0].textValue ?? "", name: r[1].textValue ?? "", input: json(r[2]) ?? .null, status: r[3].textValue ?? "",
            steps: json(r[4])?.arrayValue ?? [], currentStep: int(r[5]) ?? 0, transitions: int(r[6]) ?? 0, wakeAt: int(r[7]),
            waitingFor: r[8].textValue, inbox: json(r[9])?.arrayValue ?? [], output: json(r[10]), error: r[11].textValue,
            maxRetries: int(r[12]) ?? 0, createdAt: int(r[13]) ?? 0, startedAt: int(r[14]), completedAt: int(r[15]), updatedAt: int(r[16]) ?? 0)
    }
}
