import Foundation
import PylonPluginABI

/// Store connections live on dedicated threads, one connection per thread, so that a
/// blocking store (SQLite completes inline) never blocks an event loop or the Swift
/// concurrency pool. Async callers enqueue jobs and await their results.
///
/// - Readers: `readerCount` threads, each with a read connection, sharing one job queue.
/// - Writer: one thread with the one write connection. It drains every queued write job into
///   a single transaction (group commit): each job runs inside its own SAVEPOINT so a failed
///   job rolls back alone, and every job is answered only after COMMIT returned — a 2xx
///   always means durable. After each commit `onCommit` receives the change events of the
///   jobs that succeeded, in commit (seq) order.
final class StoreThreads: @unchecked Sendable {
    private let readQueue = JobQueue<(StoreConnection) -> Void>()
    private let writeQueue = JobQueue<WriteJob>()
    private var threads: [Thread] = []
    let dialect: SQLDialect
    /// Called on the writer thread after each successful commit, before jobs are answered.
    var onCommit: (@Sendable ([ChangeEvent]) -> Void)?
    /// Upper bound of jobs folded into one transaction.
    let maxBatch: Int

    struct WriteJob {
        let body: (WriteTransaction) throws -> Void
        let fail: (Error) -> Void
        let succeed: () -> Void
    }

    init(writer: StoreConnection, readers: [StoreConnection], dialect: SQLDialect, maxBatch: Int = 512) {
        self.dialect = dialect
        // A deferred-write store reports constraint violations only at COMMIT, for the whole
        // transaction: one job per transaction keeps a failure with the job that caused it.
        self.maxBatch = writer.defersWrites ? 1 : maxBatch
        for (i, conn) in readers.enumerated() {
            let t = Thread { [readQueue] in
                while let job = readQueue.take() { job(conn) }
                conn.close()
            }
            t.name = "pylon-store-reader-\(i)"
            threads.append(t)
        }
        let w = Thread { [unowned self] in self.writerLoop(writer) }
        w.name = "pylon-store-writer"
        threads.append(w)
        for t in threads { t.start() }
    }

    /// Runs `body` on a reader connection.
    func read<T: Sendable>(_ body: @escaping @Sendable (StoreConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let ok = readQueue.put { conn in
                do { cont.resume(returning: try body(conn)) } catch { cont.resume(throwing: error) }
            }
            if !ok { cont.resume(throwing: HostError.unavailable("the store is shutting down")) }
        }
    }

    /// Runs `body` inside the writer's transaction. Its change events are published after
    /// commit; the call returns after commit.
    func write<T: Sendable>(_ body: @escaping @Sendable (WriteTransaction) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let box = ResultBox<T>()
            let job = WriteJob(
                body: { tx in box.value = try body(tx) },
                fail: { cont.resume(throwing: $0) },
                succeed: { cont.resume(returning: box.value!) })
            if !writeQueue.put(job) { cont.resume(throwing: HostError.unavailable("the store is shutting down")) }
        }
    }

    func shutdown() {
        readQueue.close()
        writeQueue.close()
    }

    private func writerLoop(_ conn: StoreConnection) {
        while let first = writeQueue.take() {
            var batch = [first]
            batch.append(contentsOf: writeQueue.takeAvailable(max: maxBatch - 1))
            runBatch(batch, conn)
        }
        conn.close()
    }

    private func runBatch(_ batch: [WriteJob], _ conn: StoreConnection) {
        do {
            try conn.begin()
            if let lock = dialect.writeLockSQL { try conn.execute(lock, wantRows: false) }
        } catch {
            try? conn.rollback()
            for j in batch { j.fail(error) }
            return
        }
        var outcomes: [Error?] = []
        var events: [ChangeEvent] = []
        let tx = WriteTransaction(connection: conn, dialect: dialect)
        let single = batch.count == 1
        for job in batch {
            tx.events.removeAll(keepingCapacity: true)
            if single {
                do {
                    try job.body(tx)
                    outcomes.append(nil)
                    events.append(contentsOf: tx.events)
                } catch {
                    try? conn.rollback()
                    job.fail(error)
                    return
                }
                continue
            }
            let mark: WriteTransaction.Mark
            do {
                mark = try tx.savepoint("pylon_job")
            } catch {
                outcomes.append(error)
                continue
            }
            do {
                try job.body(tx)
                try tx.release("pylon_job")
                outcomes.append(nil)
                events.append(contentsOf: tx.events)
            } catch {
                try? tx.rollback(to: "pylon_job", mark)
                outcomes.append(error)
            }
        }
        do {
            if !events.isEmpty, let notify = dialect.notifyChangesSQL { try conn.execute(notify, wantRows: false) }
            try conn.commit()
        } catch {
            try? conn.rollback()
            let reported = Self.commitFailure(error)
            for j in batch { j.fail(reported) }
            return
        }
        if !events.isEmpty { onCommit?(events) }
        for (job, outcome) in zip(batch, outcomes) {
            if let outcome { job.fail(outcome) } else { job.succeed() }
        }
    }
}

extension StoreThreads {
    /// A COMMIT that failed on the change log's seq key means another process wrote to the
    /// same database (possible only with a deferred-write store, where the host numbers the
    /// log itself): say so instead of reporting a unique violation of the user's data.
    static func commitFailure(_ error: Error) -> Error {
        guard let e = error as? StoreError, e.isUniqueViolation, e.message.contains("_pylon_changes") else { return error }
        return HostError(status: 503, code: "CONCURRENT_WRITER",
                         message: "another process wrote to this database's change log; only one pylon-host may write to a store with deferred writes (D1). Nothing was applied; retry")
    }
}

/// Holds a write job's result between its body (inside the transaction) and its answer
/// (after commit). Touched only by the writer thread until the continuation resumes.
private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// The writer's view of the open transaction, handed to write jobs.
///
/// On a deferred-write store (`PYLON_STORE_FLAG_DEFERRED_WRITES`, e.g. D1) the rows a job
/// writes are not readable inside the transaction and RETURNING yields nothing until COMMIT,
/// so the transaction itself remembers what it wrote (`written`, consulted by row fetches)
/// and numbers change-log entries itself (`nextSeq`). One writer owns the log, so
/// MAX(seq)+1 read at the first append is the number the store would have chosen; a second
/// writer on the same database makes the COMMIT fail on the seq primary key instead of
/// reusing a number.
final class WriteTransaction: @unchecked Sendable {
    let connection: StoreConnection
    let dialect: SQLDialect
    /// Change events appended by the current job, with their seq.
    var events: [ChangeEvent] = []
    /// Rows written in this transaction (deferred-write stores only): "Entity\0id" → the
    /// row as it now is, or nil once deleted.
    private(set) var written: [String: JSONValue?] = [:]
    /// The last change-log seq handed out in this transaction (deferred-write stores only).
    private var lastSeq: Int64?

    var defersWrites: Bool { connection.defersWrites }

    init(connection: StoreConnection, dialect: SQLDialect) {
        self.connection = connection
        self.dialect = dialect
    }

    /// What a savepoint restores besides the store's own state.
    struct Mark {
        fileprivate var events: Int
        fileprivate var written: [String: JSONValue?]
        fileprivate var lastSeq: Int64?
    }

    func savepoint(_ name: String) throws -> Mark {
        try connection.execute("SAVEPOINT \(name)", wantRows: false)
        return Mark(events: events.count, written: written, lastSeq: lastSeq)
    }

    func release(_ name: String) throws {
        try connection.execute("RELEASE \(name)", wantRows: false)
    }

    /// Undoes everything since `savepoint(name)`: the store's changes, the job's events, the
    /// remembered rows and seq numbers.
    func rollback(to name: String, _ mark: Mark) throws {
        if events.count > mark.events { events.removeSubrange(mark.events...) }
        written = mark.written
        lastSeq = mark.lastSeq
        try connection.execute("ROLLBACK TO \(name)", wantRows: false)
        try connection.execute("RELEASE \(name)", wantRows: false)
    }

    private static func key(_ entity: String, _ id: String) -> String { entity + "\u{0}" + id }

    /// Records the row as written in this transaction (nil: deleted). A no-op on stores
    /// that read their own writes.
    func remember(_ entity: String, _ id: String, _ row: JSONValue?) {
        guard defersWrites else { return }
        written[Self.key(entity, id)] = .some(row)
    }

    /// `.some(row or nil)` when this transaction wrote the row, nil when it did not.
    func writtenRow(_ entity: String, _ id: String) -> JSONValue?? {
        guard defersWrites else { return nil }
        return written[Self.key(entity, id)]
    }

    /// The next change-log seq on a deferred-write store.
    func nextSeq() throws -> Int64 {
        if lastSeq == nil {
            let r = try connection.execute("SELECT COALESCE(MAX(seq), 0) FROM _pylon_changes")
            guard case let .int(max)? = r.rows.first?.first else {
                throw HostError(status: 500, code: "CHANGELOG_FAILED", message: "the store did not return the newest change-log seq")
            }
            lastSeq = max
        }
        lastSeq! += 1
        return lastSeq!
    }
}

/// A blocking multi-producer queue for store threads. `take` blocks; `close` wakes everyone.
final class JobQueue<Job>: @unchecked Sendable {
    private var items: [Job] = []
    private var head = 0
    private var closed = false
    private let cond = NSCondition()

    func put(_ job: Job) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if closed { return false }
        items.append(job)
        cond.signal()
        return true
    }

    func take() -> Job? {
        cond.lock()
        defer { cond.unlock() }
        while head == items.count && !closed { cond.wait() }
        if head == items.count { return nil }
        return pop()
    }

    /// Up to `max` already-queued jobs, without waiting.
    func takeAvailable(max: Int) -> [Job] {
        cond.lock()
        defer { cond.unlock() }
        var out: [Job] = []
        while head < items.count && out.count < max { out.append(pop()) }
        return out
    }

    private func pop() -> Job {
        let j = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return j
    }

    func close() {
        cond.lock()
        closed = true
        cond.broadcast()
        cond.unlock()
    }
}
