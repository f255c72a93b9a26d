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
    /// `_pylon_job_queues`; lapsed leases are taken back by `reclaimLapsed`). Usually two
    /// statements whatever the number claimed: one read of every priority's due jobs with
    /// their queues' counts (`dueSQL`), and one write (`start`) — on a remote store one
    /// round trip each, the write riding with COMMIT. A read that meets a full queue is
    /// made again without it, a few rounds at most.
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
        guard slots > 0 else { return [] }
        let order = Array(JobPriority.allCases.reversed())
        let from = order.map { floors[$0] ?? Floor(runAt: Int64.min, id: "") }
        // Each queue's running count as the first read found it, and with this claim's.
        var counts: [String: Int] = [:], running: [String: Int] = [:]
        var full = Set<String>()
        var claimed: [Claimed] = []
        // What the reads found of each priority, for its floor.
        var passedOver = Set<JobPriority>(), exhausted = Set<JobPriority>()
        var last: [JobPriority: Floor] = [:]
        for _ in 0..<4 where claimed.count < slots {
            let wanted = slots - claimed.count
            let excluded = full.sorted()
            var params: [SQLValue] = []
            for (i, priority) in order.enumerated() {
                params += [.int(priority.rawValue), .int(from[i].runAt), .text(from[i].id), .int(now)]
                params += excluded.map(SQLValue.text)
                params.append(.int(Int64(wanted)))
            }
            params.append(.int(Int64(wanted)))
            let answer = try tx.connection.execute(sql(dueSQL(excluding: excluded.count)), params).rows
            let rows = answer.compactMap(DueRow.init)
            if counts.isEmpty { counts = Dictionary(answer.compactMap(DueRow.count), uniquingKeysWith: { a, _ in a }) }
            // The branches come back in priority order; kept so even if a store mixed them.
            let read = order.flatMap { p in rows.filter { $0.priority == p } }
            // A short answer read every priority to its end; a full one, those above the last.
            let lowest = read.last?.priority
            for p in order {
                if read.count < wanted || (lowest.map { p.rawValue > $0.rawValue } ?? true) { exhausted.insert(p) }
                if !excluded.isEmpty, read.count < wanted || (lowest.map { p.rawValue >= $0.rawValue } ?? true) { passedOver.insert(p) }
            }
            var skipped = false
            var round: [Claimed] = []
            for row in read where claimed.count + round.count < slots {
                if running[row.queue] == nil { running[row.queue] = counts[row.queue] ?? 0 }
                if full.contains(row.queue) || running[row.queue]! >= limit(row.queue) {
                    full.insert(row.queue)
                    skipped = true
                    passedOver.insert(row.priority)
                    continue
                }
                round.append(Claimed(id: row.id, name: row.name, payload: row.payload, queue: row.queue, claim: row.claim + 1))
                last[row.priority] = Floor(runAt: row.runAt, id: row.id)
                running[row.queue]! += 1
                if running[row.queue]! >= limit(row.queue) { full.insert(row.queue) }
            }
            // The rows are this transaction's to change: no other writer runs meanwhile, and
            // the next round's read comes after this write.
            if !round.isEmpty {
                try start(tx, round, leaseMs: leaseMs, now: now)
                claimed += round
            }
            if !skipped || read.isEmpty { break }
        }
        // A job written later is due at its writing or after (enqueue, retry, back-off all
        // count from now), so an exhausted priority's next read may start at now.
        for p in order {
            if passedOver.contains(p) {
                floors[p] = nil
            } else if exhausted.contains(p) {
                floors[p] = Floor(runAt: now, id: "")
            } else if let l = last[p] {
                floors[p] = l
            }
        }
        return claimed
    }

    /// A due job as `dueSQL` reads it.
    private struct DueRow {
        let id: String, name: String, payload: String, queue: String
        let claim: Int64, runAt: Int64, priority: JobPriority

        init?(_ row: [SQLValue]) {
            guard row.count == 7, case let .text(id) = row[0], case let .text(name) = row[1], case let .text(payload) = row[2],
                  case let .text(queue) = row[3], case let .int(claim) = row[4], case let .int(runAt) = row[5],
                  case let .int(p) = row[6], let priority = JobPriority(rawValue: p) else { return nil }
            self.id = id
            self.name = name
            self.payload = payload
            self.queue = queue
            self.claim = claim
            self.runAt = runAt
            self.priority = priority
        }

        /// A queue's running count from the same read: (queue, count), or nil.
        static func count(_ row: [SQLValue]) -> (String, Int)? {
            guard row.count == 7, case .int(-1) = row[6], case let .text(queue) = row[3], case let .int(n) = row[4] else { return nil }
            return (queue, Int(max(0, n)))
        }
    }

    /// Every priority's due jobs from its floor, highest priority first, at most `LIMIT`
    /// in all: a branch per priority, so delayed jobs of a higher one are never walked, and
    /// a branch is read only while the ones above it left room. Then a row per queue with
    /// its running count (`priority` -1, the count in `claim`): read once, as a correlated
    /// read per job walked the count row's dead versions (Postgres) again for every job.
    /// Parameters per branch: priority, floor run_at, floor id, now, the `excluding` full
    /// queues, limit; then the overall limit.
    private func dueSQL(excluding: Int) -> String {
        let exclude = excluding == 0 ? "" : " AND queue NOT IN (\(Self.marks(excluding)))"
        let branch = "SELECT id, name, payload, queue, claim, run_at, priority FROM \(Self.table) WHERE status = 'pending' AND priority = ? AND (run_at, id) >= (?, ?) AND run_at <= ?\(exclude) ORDER BY run_at, id LIMIT ?"
        let branches = JobPriority.allCases.map { "SELECT * FROM (\(branch)) AS p\($0.rawValue)" }.joined(separator: " UNION ALL ")
        return "SELECT * FROM (\(branches) LIMIT ?) AS j UNION ALL SELECT queue, NULL, NULL, queue, running, NULL, -1 FROM \(Self.queues)"
    }

    /// Marks `jobs` running under a new claim with a lease, and counts them in their
    /// queues. Where a WITH may write (Postgres) one statement; otherwise one for the rows
    /// and one per queue.
    private func start(_ tx: WriteTransaction, _ jobs: [Claimed], leaseMs: Int64, now: Int64) throws {
        let ids = Self.padded(jobs.map { SQLValue.text($0.id) })
        let rows = "UPDATE \(Self.table) SET status = 'running', claim = claim + 1, lease_until = ?, started_at = ? WHERE id IN (\(Self.marks(ids.count)))"
        let count = "INSERT INTO \(Self.queues) (queue, running) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET running = \(Self.queues).running + excluded.running"
        if dialect.hasWritableWith {
            try tx.write(sql("WITH started AS (\(rows) RETURNING queue) INSERT INTO \(Self.queues) (queue, running) SELECT queue, COUNT(*) FROM started GROUP BY queue ON CONFLICT (queue) DO UPDATE SET running = \(Self.queues).running + excluded.running"),
                         [.int(now + leaseMs), .int(now)] + ids)
            return
        }
        try tx.write(sql(rows), [.int(now + leaseMs), .int(now)] + ids)
        for (queue, n) in Dictionary(grouping: jobs, by: \.queue).mapValues(\.count) {
            try tx.write(sql(count), [.text(queue), .int(Int64(n))])
        }
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
        // Each job's claim is checked as one key, "id claim", in a plain IN list: a list of
        // (id, claim) pairs was joined against every row found (quadratic in the batch).
        func held(_ given: [Claimed]) -> (sql: String, params: [SQLValue]) {
            let jobs = Self.padded(given)
            return ("id IN (\(Self.marks(jobs.count))) AND status = 'running' AND id || ' ' || CAST(claim AS TEXT) IN (\(Self.marks(jobs.count)))",
                    jobs.map { .text($0.id) } + jobs.map { .text("\($0.id) \($0.claim)") })
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
    /// dead (kept until an admin retries it). The attempt is recorded in `attempts`.
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

    /// Deletes completed and cancelled jobs that ended before `before` (ms), a bounded number
    /// at a time. Dead jobs are never trimmed: they stay (listed, and holding their
    /// idempotency keys) until an admin retries them. Trimming them too lost dead letters
    /// unretried and let their keys enqueue the work again (outside probe jobsfiles, F8).
    package func trim(_ tx: WriteTransaction, before: Int64) throws -> Int64 {
        try deleteEnded(tx, from: Self.table, statuses: ["completed", "cancelled"], before: before)
    }

    /// Deletes rows of `table` (keyed by `id`) in one of `statuses` whose `completed_at` is
    /// before `before`, at most 10,000 (the writer waits behind one such batch at most; the
    /// rest go at the next trim), read through the table's index on `completed_at`.
    func deleteEnded(_ tx: WriteTransaction, from table: String, statuses: [String], before: Int64) throws -> Int64 {
        let list = statuses.map { "'\($0)'" }.joined(separator: ", ")
        return try tx.connection.execute(sql("DELETE FROM \(table) WHERE id IN (SELECT id FROM \(table) WHERE status IN (\(list)) AND completed_at < ? LIMIT 10000)"),
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
