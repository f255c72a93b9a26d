import Foundation
import PylonPluginABI
import PylonCore

/// Store connections live on dedicated threads, one connection per thread, so that a
/// blocking store (SQLite completes inline) never blocks an event loop or the Swift
/// concurrency pool. Async callers enqueue jobs and await their results.
///
/// - Readers: `readerCount` threads, each with a read connection, sharing one job queue.
/// - Writer: one thread with the one write connection. It drains every queued write job into
///   a single transaction (group commit), and every job is answered only after COMMIT
///   returned — a 2xx always means durable. A failed job must roll back alone: a batch of
///   jobs that may run twice (`replayable`: their body only touches the transaction) first
///   runs without savepoints; if any of them fails, the transaction is rolled back and the
///   batch runs again with each job inside its own SAVEPOINT, which is how every other batch
///   runs. (A savepoint costs two statements per job, each a round trip on a remote store.)
///   After each commit `onCommit` receives the change events of the jobs that succeeded, in
///   commit (seq) order.
package final class StoreThreads: @unchecked Sendable {
    private let readQueue = JobQueue<(StoreConnection) -> Void>()
    private let writeQueue = JobQueue<WriteJob>()
    private var threads: [Thread] = []
    package let dialect: SQLDialect
    /// Called on the writer thread after each successful commit, before jobs are answered.
    package var onCommit: (@Sendable ([ChangeEvent]) -> Void)?
    /// Called on the writer thread after a commit whose jobs ended sessions
    /// (`WriteTransaction.endedSessions`), before jobs are answered: `SessionStore.tenantCleared`.
    package var onSessionsEnded: (@Sendable ([String]) -> Void)?
    /// Called on the writer thread after each batch: how many jobs it held, whether it
    /// had to be replayed with savepoints, and when it began (`DispatchTime` uptime ns;
    /// for the host's metrics: commit latency and batch size).
    package var onBatch: (@Sendable (_ jobs: Int, _ replayed: Bool, _ began: UInt64) -> Void)?
    /// Called on the writer thread when a committed batch's change events could not be
    /// numbered (the store did not return the newest seq): they are not published from
    /// the writer; the change tailer reads them from the log.
    package var onUnnumbered: (@Sendable (_ events: Int) -> Void)?
    /// Upper bound of jobs folded into one transaction.
    let maxBatch: Int

    struct WriteJob {
        /// The body only reads and writes through the transaction, so running it again
        /// after a rollback does the same thing (see the type's comment).
        let replayable: Bool
        let body: (WriteTransaction) throws -> Void
        let fail: (Error) -> Void
        let succeed: () -> Void
    }

    /// Read connections for `read(quick: true)` (none for remote stores).
    private let quick: QuickReaders

    /// `quickReaders`: extra read connections of a store with PYLON_STORE_FLAG_LOCAL_READS,
    /// used inline by `read(quick: true)` (none for other stores).
    package init(writer: StoreConnection, readers: [StoreConnection], quickReaders: [StoreConnection] = [],
         dialect: SQLDialect, maxBatch: Int = 512) {
        self.dialect = dialect
        quick = QuickReaders(quickReaders)
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
        // The writer holds the store until its loop ends (after `shutdown`): a start that
        // fails and drops the store while the thread still runs must not leave it reading
        // a freed object (it crashed the host's exit with status 2 under load).
        let w = Thread { [self] in self.writerLoop(writer) }
        w.name = "pylon-store-writer"
        threads.append(w)
        for t in threads { t.start() }
    }

    /// Runs `body` on a reader connection; `done` gets the outcome exactly once and must not
    /// block. On a reader thread — or, with `quick`, on the calling thread when the store is
    /// local (PYLON_STORE_FLAG_LOCAL_READS) and a quick connection is free: no hand-off to a
    /// reader thread and back, which costs more than the read itself. `quick` is for point
    /// reads (a row by key) only: they briefly hold the caller's thread, an event loop among
    /// them. On the caller's thread too when the store is shutting down.
    package func read<T: Sendable>(quick: Bool = false, _ body: @escaping @Sendable (StoreConnection) throws -> T,
                                   done: @escaping @Sendable (Result<T, Error>) -> Void) {
        if quick {
            let now: T?
            do {
                now = try self.quick.with(body)
            } catch {
                done(.failure(error))
                return
            }
            if let now {
                done(.success(now))
                return
            }
        }
        let ok = readQueue.put { conn in done(Result { try body(conn) }) }
        if !ok { done(.failure(HostError.unavailable("the store is shutting down"))) }
    }

    /// `read` for async callers.
    package func read<T: Sendable>(quick: Bool = false, _ body: @escaping @Sendable (StoreConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            read(quick: quick, body) { cont.resume(with: $0) }
        }
    }

    /// Runs `body` inside the writer's transaction. Its change events are published after
    /// commit. `done` gets the outcome exactly once — on the writer thread after commit (or
    /// rollback), or on the caller's thread when the store is shutting down. It must not
    /// block: the writer waits for it. `replayable`: `body` has no effect outside the
    /// transaction (no I/O, no shared state), so the writer may run it a second time after
    /// rolling back a batch; its last run is the one that counts.
    package func write<T: Sendable>(replayable: Bool = false, _ body: @escaping @Sendable (WriteTransaction) throws -> T,
                                    done: @escaping @Sendable (Result<T, Error>) -> Void) {
        let box = ResultBox<T>()
        let job = WriteJob(
            replayable: replayable,
            body: { tx in box.value = try body(tx) },
            fail: { done(.failure($0)) },
            succeed: { done(.success(box.value!)) })
        if !writeQueue.put(job) { done(.failure(HostError.unavailable("the store is shutting down"))) }
    }

    /// `write` for async callers: returns after commit.
    package func write<T: Sendable>(replayable: Bool = false, _ body: @escaping @Sendable (WriteTransaction) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            write(replayable: replayable, body) { cont.resume(with: $0) }
        }
    }

    package func shutdown() {
        readQueue.close()
        writeQueue.close()
        quick.shutdown()
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
        let began = DispatchTime.now().uptimeNanoseconds
        let together = batch.count > 1 && batch.allSatisfy(\.replayable)
        if together, runTogether(batch, conn) {
            onBatch?(batch.count, false, began)
            return
        }
        runIsolated(batch, conn)
        onBatch?(batch.count, together, began)
    }

    /// BEGIN and the dialect's write lock; on failure every job fails and false is returned.
    /// The lock statement waits in the connection's queue for the transaction's first
    /// statement (on a batching store one round trip fewer per transaction: a mutation's
    /// first read of the newest seq goes with it). Its failure then surfaces from that
    /// statement: a batch run together is replayed, jobs run one by one fail with it.
    private func open(_ batch: [WriteJob], _ conn: StoreConnection) -> Bool {
        do {
            try conn.begin()
            if let lock = dialect.writeLockSQL { try conn.enqueue(lock, []) }
            return true
        } catch {
            try? conn.rollback()
            for j in batch { j.fail(error) }
            return false
        }
    }

    /// Signals other hosts, commits, publishes and answers; a failed COMMIT fails every job.
    private func close(_ batch: [WriteJob], _ outcomes: [Error?], _ events: [ChangeEvent], ended: [String], _ tx: WriteTransaction) {
        let conn = tx.connection
        do {
            if !events.isEmpty, let notify = dialect.notifyChangesSQL { try conn.execute(notify, wantRows: false) }
            try conn.commit()
        } catch {
            try? conn.rollback()
            let reported = Self.commitFailure(error)
            for j in batch { j.fail(reported) }
            return
        }
        finish(batch, outcomes, events, ended: ended)
    }

    /// After COMMIT: publishes the events, ends the sessions the jobs ended, then answers
    /// the jobs.
    private func finish(_ batch: [WriteJob], _ outcomes: [Error?], _ events: [ChangeEvent], ended: [String]) {
        if !events.isEmpty { onCommit?(events) }
        if !ended.isEmpty { onSessionsEnded?(ended) }
        for (job, outcome) in zip(batch, outcomes) {
            if let outcome { job.fail(outcome) } else { job.succeed() }
        }
    }

    /// Runs replayable jobs without savepoints. Returns false, with the transaction rolled
    /// back and no job answered, when one of them failed: the caller runs them isolated.
    /// On a batching store the queued writes, the signal to other hosts, the newest seq
    /// (when the statements numbered the log: `WriteTransaction.seqByStatement`) and COMMIT
    /// go together — on Postgres the whole transaction is one round trip.
    private func runTogether(_ batch: [WriteJob], _ conn: StoreConnection) -> Bool {
        guard open(batch, conn) else { return true }
        let tx = WriteTransaction(connection: conn, dialect: dialect, batching: true)
        let committed: QueryResult
        let numbering: Bool
        do {
            for job in batch { try job.body(tx) }
            if !tx.events.isEmpty, let notify = dialect.notifyChangesSQL { try conn.enqueue(notify, []) }
            numbering = tx.seqByStatement && !tx.events.isEmpty
            committed = try conn.commit(after: numbering ? WriteTransaction.newestSeqSQL : nil)
        } catch {
            try? conn.rollback()
            // A connection lost around COMMIT leaves the outcome unknown: answer every job
            // with the failure rather than run them a second time.
            if let e = error as? StoreError, e.status == PYLON_ERR_CONNECTION {
                for j in batch { j.fail(e) }
                return true
            }
            return false
        }
        var events = tx.events
        if numbering, !tx.numberEvents(newest: committed.rows.first?.first) {
            // Committed, but the store did not say the newest seq: the change tailer
            // publishes these entries from the log instead.
            onUnnumbered?(events.count)
            events = []
        }
        finish(batch, Array(repeating: nil, count: batch.count), events, ended: tx.endedSessions)
        return true
    }

    /// Runs each job inside its own savepoint (a single job needs none).
    private func runIsolated(_ batch: [WriteJob], _ conn: StoreConnection) {
        guard open(batch, conn) else { return }
        var outcomes: [Error?] = []
        var events: [ChangeEvent] = []
        var ended: [String] = []
        let tx = WriteTransaction(connection: conn, dialect: dialect)
        if batch.count == 1 {
            do {
                try batch[0].body(tx)
            } catch {
                try? conn.rollback()
                batch[0].fail(error)
                return
            }
            close(batch, [nil], tx.events, ended: tx.endedSessions, tx)
            return
        }
        for job in batch {
            tx.events.removeAll(keepingCapacity: true)
            tx.endedSessions.removeAll()
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
                ended.append(contentsOf: tx.endedSessions)
            } catch {
                try? tx.rollback(to: "pylon_job", mark)
                outcomes.append(error)
            }
        }
        close(batch, outcomes, events, ended: ended, tx)
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
