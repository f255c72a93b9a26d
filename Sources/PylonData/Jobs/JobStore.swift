import Foundation
import PylonCore
import PylonJSON

/// The durable job queue's statements on `_pylon_jobs` (`SystemTables.jobs`), in the app's
/// own store. Every change of a job's state is one statement inside a write transaction:
/// the writer is the one writer on SQLite, and on PostgreSQL every host's write
/// transaction holds the one shared write lock (`PostgresDialect.writeLockSQL`, exclusive
/// across hosts), so claims never overlap and a job is claimed by one host at a time.
/// (Row locks, `FOR UPDATE SKIP LOCKED`, would add nothing under that lock but a write
/// to every row read.)
/// A claim bumps `claim`; finishing, failing or renewing a running job names the claim
/// it holds, so a host whose lease lapsed (and whose job was claimed again) changes nothing.
package struct JobStore: Sendable {
    package let dialect: SQLDialect
    package static let table = SystemTables.jobs.name
    /// Each queue's count of running jobs (`SystemTables.jobQueues`).
    package static let queues = SystemTables.jobQueues.name
    /// Failed attempts kept per job (the newest).
    package static let attemptsKept = 30
    package static let errorBytes = 2000

    package init(dialect: SQLDialect) { self.dialect = dialect }

    /// Indexes of `_pylon_jobs` made by earlier hosts, each on every row version; replaced
    /// by the partial ones of `SystemTables.jobs`.
    static let droppedIndexes = ["_pylon_jobs_ready", "_pylon_jobs_queue", "_pylon_jobs_finished", "_pylon_jobs_key"]

    /// DDL for the jobs, cron (state and function-registered tasks) and workflow tables.
    package static func createSQL(_ d: SQLDialect) -> [String] {
        droppedIndexes.map { "DROP INDEX IF EXISTS \(d.quote($0))" }
            + [SystemTables.jobs, SystemTables.jobQueues, SystemTables.cron, SystemTables.cronTasks, SystemTables.workflows].flatMap { d.createSystemTable($0) }
    }

    /// `template` with its `?`s in this dialect's placeholders (byte by byte: a claim's or
    /// a batch's statement has a placeholder per job, and walking Characters showed up in
    /// profiles).
    package func sql(_ template: String) -> String {
        guard dialect.placeholder(1) != "?" else { return template }
        var out: [UInt8] = []
        out.reserveCapacity(template.utf8.count * 2)
        var n = 0
        for byte in template.utf8 {
            if byte == UInt8(ascii: "?") {
                n += 1
                out.append(contentsOf: dialect.placeholder(n).utf8)
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    package static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    package static let columns = "id, name, payload, priority, queue, status, max_retries, retry_count, run_at, lease_until, claim, idempotency_key, error, attempts, origin, created_at, started_at, completed_at, delay_ms"

    /// Inserts `job` in `tx`, or finds the job enqueued earlier with the same idempotency key.
    /// Returns the job's id, its status and whether it was created now.
    package func enqueue(_ tx: WriteTransaction, _ job: JobRequest, now: Int64 = JobStore.nowMillis()) throws -> (id: String, status: String, created: Bool) {
        if let key = job.idempotencyKey,
           let row = try tx.connection.execute(sql("SELECT id, status, retry_count FROM \(Self.table) WHERE idempotency_key = ?"), [.text(key)]).rows.first,
           case let .text(id) = row[0], case let .text(status) = row[1] {
            return (id, Self.wireStatus(status, retries: row[2]), false)
        }
        let id = "job_" + RowID.generate()
        let values: [SQLValue] = [
            .text(id), .text(job.name), .text(JSONWriter.string(job.payload)), .int(job.priority.rawValue), .text(job.queue), .text("pending"),
            .int(job.maxRetries), .int(0), .int(now + job.delayMs), .null, .int(0), job.idempotencyKey.map(SQLValue.text) ?? .null, .null,
            .text("[]"), .text(job.origin), .int(now), .null, .null, .int(job.delayMs),
        ]
        // Sent with the batch's other statements on a batching store (a clash of keys then
        // fails the batch, which the writer replays with each job on its own).
        try tx.write(sql(Self.insertSQL), values)
        return (id, "pending", true)
    }

    private static let insertSQL = "INSERT INTO \(table) (\(columns)) VALUES (\(marks(columns.split(separator: ",").count)))"

    /// A claimed job, ready to run.
    package struct Claimed: Sendable {
        package let id: String
        package let name: String
        package let payload: String
        package let queue: String
        package let claim: Int64
    }

    /// Claims up to `slots` due jobs, highest priority first and oldest first within one,
    /// never more running in a queue than `limit(queue)` across all hosts (the counts in
    /// `_pylon_job_queues`; lapsed leases are taken back by `reclaimLapsed`). Usually three
    /// statements whatever the number claimed (the counts, one priority's due jobs, one
    /// UPDATE), each a round trip on a remote store, plus one count change per queue.
    ///
    /// `floors`: where a priority's read may start (`run_at` and `id` of the last job an
    /// earlier claim took there, in the index's order), updated for the next claim. The
    /// entries of claimed jobs stay at the front of `_pylon_jobs_due` until VACUUM
    /// (PostgreSQL), and a read from the front walked all of them, so each claim of a long
    /// burst cost more than the one before. A floor is only a hint: a job due before it
    /// (written by a host whose clock is behind, or straight into the table) is found when
    /// the caller forgets the floors (`JobService` does at every poll), so it is never lost,
    /// only later. A priority whose jobs were passed over (full queues) keeps no floor.
    package func claim(_ tx: WriteTransaction, slots: Int, leaseMs: Int64, limit: (String) -> Int,
                       floors: inout [JobPriority: Floor], now: Int64 = JobStore.nowMillis()) throws -> [Claimed] {
        let conn = tx.connection
        guard slots > 0 else { return [] }
        var running: [String: Int] = [:]
        for row in try conn.execute("SELECT queue, running FROM \(Self.queues)").rows {
            guard case let .text(queue) = row[0], case let .int(n) = row[1] else { continue }
            running[queue] = Int(max(0, n))
        }
        var full = Set(running.filter { $0.value >= limit($0.key) }.keys)
        var claimed: [Claimed] = []
        // Priority by priority, each read in the order of `_pylon_jobs_due` (no sort, however
        // long the queue), a few rounds each: a round may stop at a queue that fills up while
        // lower rows remain. Each round's jobs are marked running before the next round reads.
        for priority in JobPriority.allCases.reversed() where claimed.count < slots {
            // The floor holds only while nothing of this priority is passed over.
            var passedOver = false
            var last: Floor?
            // Every due job of this priority from the floor on was read (and taken).
            var exhausted = false
            let floor = floors[priority] ?? Floor(runAt: Int64.min, id: "")
            for _ in 0..<4 where claimed.count < slots {
                var params: [SQLValue] = [.int(priority.rawValue), .int(floor.runAt), .text(floor.id), .int(now)]
                var exclude = ""
                if !full.isEmpty {
                    exclude = " AND queue NOT IN (\(Self.marks(full.count)))"
                    params += full.sorted().map(SQLValue.text)
                    passedOver = true
                }
                let wanted = slots - claimed.count
                params.append(.int(Int64(wanted)))
                let rows = try conn.execute(sql("SELECT id, name, payload, queue, claim, run_at FROM \(Self.table) WHERE status = 'pending' AND priority = ? AND (run_at, id) >= (?, ?) AND run_at <= ?\(exclude) ORDER BY run_at, id LIMIT ?"),
                                            params).rows
                if rows.count < wanted { exhausted = true }
                if rows.isEmpty { break }
                var skipped = false
                var round: [Claimed] = []
                for row in rows where claimed.count + round.count < slots {
                    guard case let .text(id) = row[0], case let .text(name) = row[1], case let .text(payload) = row[2],
                          case let .text(queue) = row[3], case let .int(claim) = row[4], case let .int(runAt) = row[5] else { continue }
                    if full.contains(queue) { skipped = true; continue }
                    round.append(Claimed(id: id, name: name, payload: payload, queue: queue, claim: claim + 1))
                    last = Floor(runAt: runAt, id: id)
                    running[queue, default: 0] += 1
                    if running[queue]! >= limit(queue) { full.insert(queue) }
                }
                if skipped { passedOver = true }
                // The rows are this transaction's to change: no other writer runs meanwhile.
                if !round.isEmpty {
                    let ids = Self.padded(round.map { SQLValue.text($0.id) })
                    try tx.write(sql("UPDATE \(Self.table) SET status = 'running', claim = claim + 1, lease_until = ?, started_at = ? WHERE id IN (\(Self.marks(ids.count)))"),
                                 [.int(now + leaseMs), .int(now)] + ids)
                    for (queue, jobs) in Dictionary(grouping: round, by: \.queue) {
                        try tx.write(sql("INSERT INTO \(Self.queues) (queue, running) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET running = \(Self.queues).running + excluded.running"),
                                     [.text(queue), .int(Int64(jobs.count))])
                    }
                    claimed += round
                }
                if !skipped { break }
            }
            // A job written later is due at its writing or after (enqueue, retry, back-off all
            // count from now), so an exhausted priority's next read may start at now.
            if passedOver {
                floors[priority] = nil
            } else if exhausted {
                floors[priority] = Floor(runAt: now, id: "")
            } else if let last {
                floors[priority] = last
            }
        }
        return claimed
    }

    /// A place in `_pylon_jobs_due` within one priority (`claim`).
    package struct Floor: Sendable {
        let runAt: Int64
        let id: String
    }

    /// `n` placeholders for an IN list.
    private static func marks(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ", ") }

    /// `items` padded to a power of two by repeating the last (in an IN list that changes
    /// nothing): a handful of statement texts however many jobs a claim or a batch holds,
    /// so a store's prepared-statement cache keeps them all.
    static func padded<T>(_ items: [T]) -> [T] {
        guard let last = items.last else { return items }
        var size = 1
        while size < items.count { size <<= 1 }
        return items + Array(repeating: last, count: size - items.count)
    }

    /// Takes back jobs whose lease lapsed (their host died or stalled), each counted as a
    /// failed attempt; at most `max` at a time. Returns how many.
    package func reclaimLapsed(_ tx: WriteTransaction, backoff: JobBackoff, max: Int = 100, now: Int64 = JobStore.nowMillis()) throws -> Int {
        let rows = try tx.connection.execute(sql("SELECT id, claim FROM \(Self.table) WHERE lease_until IS NOT NULL AND lease_until < ? AND status = 'running' LIMIT ?"),
                                             [.int(now), .int(Int64(max))]).rows
        var n = 0
        for row in rows {
            guard case let .text(id) = row[0], case let .int(claim) = row[1] else { continue }
            if try fail(tx, id: id, claim: claim, error: "LEASE_EXPIRED: the host running it stopped or stalled for longer than the lease",
                        backoff: backoff, now: now) != nil { n += 1 }
        }
        return n
    }

    /// Rebuilds `_pylon_job_queues` from the running jobs themselves: at start-up (a store
    /// written before the counts existed) and now and then, so no drift can outlive a minute.
    package func recount(_ tx: WriteTransaction) throws {
        try tx.write("DELETE FROM \(Self.queues)", [])
        try tx.write("INSERT INTO \(Self.queues) (queue, running) SELECT queue, COUNT(*) FROM \(Self.table) WHERE lease_until IS NOT NULL AND status = 'running' GROUP BY queue", [])
    }

    /// One running job of `queue` fewer (its row was read in this transaction).
    private func countStopped(_ tx: WriteTransaction, queue: String) throws {
        try tx.write(sql("UPDATE \(Self.queues) SET running = running - 1 WHERE queue = ?"), [.text(queue)])
    }

    /// The jobs ran to completion. A job whose claim lapsed meanwhile (it is another host's
    /// now, or cancelled) changes nothing, and the statements check that themselves: they
    /// go out with the batch's other statements on a batching store, with no round trip to
    /// read. Where a WITH may write (Postgres), one statement changes the rows and takes
    /// what it changed off each queue's count; otherwise two: each queue's count (reading
    /// the rows), then the rows.
    package func complete(_ tx: WriteTransaction, _ done: [Claimed], now: Int64 = JobStore.nowMillis()) throws {
        guard !done.isEmpty else { return }
        func held(_ given: [Claimed]) -> (sql: String, params: [SQLValue]) {
            let jobs = Self.padded(given)
            let pairs = Array(repeating: "(CAST(? AS TEXT), CAST(? AS BIGINT))", count: jobs.count).joined(separator: ", ")
            return ("id IN (\(Self.marks(jobs.count))) AND status = 'running' AND (id, claim) IN (VALUES \(pairs))",
                    jobs.map { .text($0.id) } + jobs.flatMap { [SQLValue.text($0.id), .int($0.claim)] })
        }
        let completeRows = "UPDATE \(Self.table) SET status = 'completed', completed_at = ?, lease_until = NULL, error = NULL WHERE "
        if dialect.hasWritableWith {
            let (condition, params) = held(done)
            try tx.write(sql("WITH done AS (\(completeRows)\(condition) RETURNING queue) UPDATE \(Self.queues) SET running = \(Self.queues).running - stopped.n FROM (SELECT queue, COUNT(*) AS n FROM done GROUP BY queue) stopped WHERE \(Self.queues).queue = stopped.queue"),
                         [.int(now)] + params)
            return
        }
        for (queue, jobs) in Dictionary(grouping: done, by: \.queue) {
            let (condition, params) = held(jobs)
            try tx.write(sql("UPDATE \(Self.queues) SET running = running - (SELECT COUNT(*) FROM \(Self.table) WHERE \(condition)) WHERE queue = ?"),
                         params + [.text(queue)])
        }
        let (condition, params) = held(done)
        try tx.write(sql(completeRows + condition), [.int(now)] + params)
    }

    /// The attempt failed: back to pending after a back-off while retries remain, else
    /// dead (kept until retried or trimmed). The attempt is recorded in `attempts`.
    package func fail(_ tx: WriteTransaction, id: String, claim: Int64, error: String, backoff: JobBackoff,
                      now: Int64 = JobStore.nowMillis()) throws -> String? {
        let conn = tx.connection
        guard let row = try conn.execute(sql("SELECT retry_count, max_retries, attempts, queue FROM \(Self.table) WHERE id = ? AND claim = ? AND status = 'running'"),
                                         [.text(id), .int(claim)]).rows.first,
              case let .int(retries) = row[0], case let .int(maxRetries) = row[1], case let .text(attemptsText) = row[2],
              case let .text(queue) = row[3] else { return nil }
        try countStopped(tx, queue: queue)
        let message = String(decoding: error.utf8.prefix(Self.errorBytes), as: UTF8.self)
        let retry = retries < maxRetries
        let delay = retry ? backoff.delay(afterFailure: Int(retries)) : 0
        var attempts = ((try? JSONParser.parse(attemptsText))?.arrayValue ?? [])
        attempts.append(.object([("at", .string(ISOTime.string(millis: now))), ("error", .string(message)),
                                 ("retry_in_ms", retry ? .int(delay) : .null)]))
        if attempts.count > Self.attemptsKept { attempts.removeFirst(attempts.count - Self.attemptsKept) }
        let history = JSONWriter.string(.array(attempts))
        if retry {
            try conn.execute(sql("UPDATE \(Self.table) SET status = 'pending', retry_count = ?, run_at = ?, lease_until = NULL, error = ?, attempts = ? WHERE id = ? AND claim = ?"),
                             [.int(retries + 1), .int(now + delay), .text(message), .text(history), .text(id), .int(claim)], wantRows: false)
            return "retrying"
        }
        try conn.execute(sql("UPDATE \(Self.table) SET status = 'dead', completed_at = ?, lease_until = NULL, error = ?, attempts = ? WHERE id = ? AND claim = ?"),
                         [.int(now), .text(message), .text(history), .text(id), .int(claim)], wantRows: false)
        return "dead"
    }

    /// Extends the leases of jobs this host is running.
    package func renew(_ tx: WriteTransaction, _ held: [(id: String, claim: Int64)], leaseMs: Int64, now: Int64 = JobStore.nowMillis()) throws {
        for (id, claim) in held {
            try tx.write(sql("UPDATE \(Self.table) SET lease_until = ? WHERE id = ? AND claim = ? AND status = 'running'"),
                         [.int(now + leaseMs), .text(id), .int(claim)])
        }
    }

    /// What an operation found: the job's status before it and its queue, nil when no such job.
    package func status(_ conn: StoreConnection, _ id: String) throws -> (status: String, queue: String)? {
        guard let row = try conn.execute(sql("SELECT status, queue FROM \(Self.table) WHERE id = ?"), [.text(id)]).rows.first,
              let status = row[0].textValue, let queue = row[1].textValue else { return nil }
        return (status, queue)
    }

    /// Cancels a pending or running job (a running one's function is not interrupted; its
    /// outcome is then ignored). 404 unknown, 409 already finished.
    package func cancel(_ tx: WriteTransaction, id: String, now: Int64 = JobStore.nowMillis()) throws {
        guard let found = try status(tx.connection, id) else { throw HostError.notFound("no job \(id)") }
        let status = found.status
        guard status == "pending" || status == "running" else {
            throw HostError(status: 409, code: "JOB_FINISHED", message: "job \(id) is \(status); only pending or running jobs can be cancelled")
        }
        try tx.connection.execute(sql("UPDATE \(Self.table) SET status = 'cancelled', completed_at = ?, lease_until = NULL WHERE id = ? AND status IN ('pending', 'running')"),
                                  [.int(now), .text(id)], wantRows: false)
        if status == "running" { try countStopped(tx, queue: found.queue) }
    }

    /// Puts a dead job back in its queue with its retries reset (kept: its attempts).
    package func retryDead(_ tx: WriteTransaction, id: String, now: Int64 = JobStore.nowMillis()) throws {
        guard let status = try status(tx.connection, id)?.status else { throw HostError.notFound("no job \(id)") }
        guard status == "dead" else {
            throw HostError(status: 409, code: "JOB_NOT_DEAD", message: "job \(id) is \(status); only dead jobs can be retried")
        }
        try tx.connection.execute(sql("UPDATE \(Self.table) SET status = 'pending', retry_count = 0, run_at = ?, error = NULL, completed_at = NULL, started_at = NULL WHERE id = ? AND status = 'dead'"),
                                  [.int(now), .text(id)], wantRows: false)
    }

    /// Deletes finished jobs older than `before` (ms), a bounded number at a time.
    package func trim(_ tx: WriteTransaction, before: Int64) throws -> Int64 {
        try tx.connection.execute(sql("DELETE FROM \(Self.table) WHERE id IN (SELECT id FROM \(Self.table) WHERE status IN ('completed', 'dead', 'cancelled') AND completed_at < ? LIMIT 10000)"),
                                  [.int(before)], wantRows: false).rowsAffected
    }

    /// Whether any job is due: the cheap read before a claim.
    package func hasWork(_ conn: StoreConnection, now: Int64 = JobStore.nowMillis()) throws -> Bool {
        // One range per priority: delayed jobs of a higher priority are never walked.
        for p in JobPriority.allCases {
            let due = try conn.execute(sql("SELECT 1 FROM \(Self.table) WHERE status = 'pending' AND priority = ? AND run_at <= ? LIMIT 1"),
                                       [.int(p.rawValue), .int(now)]).rows
            if !due.isEmpty { return true }
        }
        return false
    }

    // MARK: reading (admin routes)

    /// One job as Pylon's `Job` JSON (with ISO 8601 times), or nil.
    package func job(_ conn: StoreConnection, id: String) throws -> JSONValue? {
        try conn.execute(sql("SELECT \(Self.columns) FROM \(Self.table) WHERE id = ?"), [.text(id)]).rows.first.map(Self.json)
    }

    /// Jobs, newest first (ids grow with time: the key's order, no sort), filtered by wire
    /// status (`retrying` = pending after a failure) and queue.
    package func list(_ conn: StoreConnection, status: String?, queue: String?, limit: Int) throws -> [JSONValue] {
        var clauses: [String] = [], params: [SQLValue] = []
        if let status {
            switch status {
            case "retrying": clauses.append("status = 'pending' AND retry_count > 0")
            case "pending": clauses.append("status = 'pending' AND retry_count = 0")
            case "failed": clauses.append("status = 'dead'")
            default:
                clauses.append("status = ?")
                params.append(.text(status))
            }
        }
        if let queue {
            clauses.append("queue = ?")
            params.append(.text(queue))
        }
        params.append(.int(Int64(limit)))
        let whereSQL = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
        return try conn.execute(sql("SELECT \(Self.columns) FROM \(Self.table)\(whereSQL) ORDER BY id DESC LIMIT ?"), params).rows.map(Self.json)
    }

    /// Counts by wire status and by queue.
    package func stats(_ conn: StoreConnection) throws -> (byStatus: [String: Int64], queues: [String: [String: Int64]]) {
        var byStatus: [String: Int64] = [:]
        var queues: [String: [String: Int64]] = [:]
        let rows = try conn.execute("SELECT queue, status, retry_count > 0, COUNT(*) FROM \(Self.table) GROUP BY queue, status, retry_count > 0").rows
        for row in rows {
            guard case let .text(q) = row[0], case let .text(s) = row[1], case let .int(n) = row[3] else { continue }
            let retried: Bool = switch row[2] {
            case let .int(i): i != 0
            case .text("t"), .text("true"): true
            default: false
            }
            let wire = s == "pending" && retried ? "retrying" : s
            byStatus[wire, default: 0] += n
            queues[q, default: [:]][wire, default: 0] += n
        }
        return (byStatus, queues)
    }

    /// The status clients see: a pending job that failed before is `retrying`.
    package static func wireStatus(_ status: String, retries: SQLValue) -> String {
        if status == "pending", case let .int(n) = retries, n > 0 { return "retrying" }
        return status
    }

    package static func json(_ r: [SQLValue]) -> JSONValue {
        func time(_ v: SQLValue) -> JSONValue { if case let .int(ms) = v { .string(ISOTime.string(millis: ms)) } else { .null } }
        func int(_ v: SQLValue) -> Int64 { if case let .int(i) = v { i } else { 0 } }
        let priority = JobPriority(rawValue: int(r[3])) ?? .normal
        let status = r[5].textValue ?? ""
        return .object([
            ("id", .string(r[0].textValue ?? "")),
            ("name", .string(r[1].textValue ?? "")),
            ("payload", (try? JSONParser.parse(r[2].textValue ?? "null")) ?? .null),
            ("priority", .string(priority.name)),
            ("status", .string(wireStatus(status, retries: r[7]))),
            ("max_retries", .int(int(r[6]))),
            ("retry_count", .int(int(r[7]))),
            ("created_at", time(r[15])),
            ("started_at", time(r[16])),
            ("completed_at", time(r[17])),
            ("error", r[12].textValue.map(JSONValue.string) ?? .null),
            ("delay_secs", .int(int(r[18]) / 1000)),
            ("queue", .string(r[4].textValue ?? "")),
            ("run_at", status == "pending" ? time(r[8]) : .null),
            ("lease_until", status == "running" ? time(r[9]) : .null),
            ("idempotency_key", r[11].textValue.map(JSONValue.string) ?? .null),
            ("origin", .string(r[14].textValue ?? "")),
            ("attempts", (try? JSONParser.parse(r[13].textValue ?? "[]")) ?? .array([])),
        ])
    }
}

/// Retry delays: `base` × 2^failures, capped at `max`, with "equal jitter" (a random
/// point in the upper half), so retries of many jobs spread out yet each delay is at
/// least half its nominal value: failure k waits in [base·2^k / 2, base·2^k].
package struct JobBackoff: Sendable {
    package let baseMs: Int64
    package let maxMs: Int64

    package init(baseMs: Int64, maxMs: Int64) {
        self.baseMs = baseMs
        self.maxMs = maxMs
    }

    package func delay(afterFailure n: Int) -> Int64 {
        let nominal = n >= 40 ? maxMs : min(maxMs, baseMs.multipliedReportingOverflow(by: 1 << Int64(n)).overflow ? maxMs : baseMs << Int64(n))
        let half = nominal / 2
        return half + Int64.random(in: 0...max(0, nominal - half))
    }
}
