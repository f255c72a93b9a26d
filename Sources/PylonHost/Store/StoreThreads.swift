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
        self.maxBatch = maxBatch
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
            do {
                try conn.execute("SAVEPOINT pylon_job", wantRows: false)
            } catch {
                outcomes.append(error)
                continue
            }
            do {
                try job.body(tx)
                try conn.execute("RELEASE pylon_job", wantRows: false)
                outcomes.append(nil)
                events.append(contentsOf: tx.events)
            } catch {
                _ = try? conn.execute("ROLLBACK TO pylon_job", wantRows: false)
                _ = try? conn.execute("RELEASE pylon_job", wantRows: false)
                outcomes.append(error)
            }
        }
        do {
            if !events.isEmpty, let notify = dialect.notifyChangesSQL { try conn.execute(notify, wantRows: false) }
            try conn.commit()
        } catch {
            try? conn.rollback()
            for j in batch { j.fail(error) }
            return
        }
        if !events.isEmpty { onCommit?(events) }
        for (job, outcome) in zip(batch, outcomes) {
            if let outcome { job.fail(outcome) } else { job.succeed() }
        }
    }
}

/// Holds a write job's result between its body (inside the transaction) and its answer
/// (after commit). Touched only by the writer thread until the continuation resumes.
private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// The writer's view of the open transaction, handed to write jobs.
final class WriteTransaction: @unchecked Sendable {
    let connection: StoreConnection
    let dialect: SQLDialect
    /// Change events appended by the current job, with their seq.
    var events: [ChangeEvent] = []

    init(connection: StoreConnection, dialect: SQLDialect) {
        self.connection = connection
        self.dialect = dialect
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
