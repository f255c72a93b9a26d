import Foundation
import PylonPluginABI
import PylonCore
import PylonJSON

/// The writer's view of the open transaction, handed to write jobs.
///
/// Writes whose result a job does not need go through `write`: when the batch runs without
/// savepoints (`batching`) they are queued on the connection and sent together (one round
/// trip on a store with PYLON_STORE_FLAG_BATCHES); otherwise each runs at once, so a failure is
/// reported by the statement that caused it.
///
/// On a deferred-write store (`PYLON_STORE_FLAG_DEFERRED_WRITES`, e.g. D1) the rows a job
/// writes are not readable inside the transaction and RETURNING yields nothing until COMMIT,
/// so the transaction itself remembers what it wrote (`written`, consulted by row fetches).
///
/// Change-log entries are numbered by the transaction itself (`nextSeq`) on such a store
/// and wherever the dialect asks for it (Postgres, whose writers hold a lock across hosts):
/// MAX(seq) is read once, at the first append, and counted up from there, so an append
/// needs no answer from the store. One writer at a time owns the log, so that is the number
/// the store would have chosen; a second writer on a deferred-write database makes the
/// COMMIT fail on the seq primary key instead of reusing a number.
package final class WriteTransaction: @unchecked Sendable {
    package let connection: StoreConnection
    package let dialect: SQLDialect
    /// Change events appended by the current job, with their seq.
    package var events: [ChangeEvent] = []
    /// Token hashes of sessions the current job changed (`SessionStore.clearTenant`) whose
    /// cached copies and streams must end once the transaction commits: the writer hands
    /// them to `StoreThreads.onSessionsEnded`, so a write that does not know about sessions
    /// (an `OrgMember` row deleted by any path) ends them all the same.
    package var endedSessions: [String] = []
    /// Rows written in this transaction (deferred-write stores only): "Entity\0id" → the
    /// row as it now is, or nil once deleted.
    private(set) var written: [String: JSONValue?] = [:]
    /// The last change-log seq handed out in this transaction (when the host numbers them).
    private var lastSeq: Int64?

    var defersWrites: Bool { connection.defersWrites }

    /// Writes are queued (see the type's comment).
    let batching: Bool

    /// The statements that append to the change log number their entries themselves
    /// (`SQLDialect.appendNextChangeSQL`), so a batch needs no answer from the store before
    /// it is sent: the events carry `unnumbered` until `numberEvents`. Chosen for a batching
    /// transaction on a store that can send batches and whose dialect can number in SQL
    /// (Postgres); its events must all come from such statements.
    let seqByStatement: Bool

    /// The seq of an event whose entry the store has not numbered yet.
    static let unnumbered: Int64 = 0
    /// The newest change-log seq.
    static let newestSeqSQL = "SELECT COALESCE(MAX(seq), 0) FROM _pylon_changes"

    init(connection: StoreConnection, dialect: SQLDialect, batching: Bool = false) {
        self.connection = connection
        self.dialect = dialect
        self.batching = batching
        seqByStatement = batching && connection.canBatch && !connection.defersWrites && dialect.appendChangeSQL == nil
            && dialect.appendNextChangeSQL != nil
    }

    private var numberingStarted = false

    /// Queues the dialect's `startNextChangesSQL` before the transaction's first
    /// statement-numbered append (`seqByStatement`).
    func startNumbering() throws {
        guard !numberingStarted else { return }
        numberingStarted = true
        if let sql = dialect.startNextChangesSQL { try write(sql, []) }
    }

    /// Numbers `events` from the newest seq read after the statements that appended them:
    /// each appended one entry, in order, so they hold the last `events.count` numbers.
    /// False when `newest` is not a seq that covers them.
    func numberEvents(newest: SQLValue?) -> Bool {
        guard case let .int(last)? = newest, last >= Int64(events.count) else { return false }
        let first = last - Int64(events.count) + 1
        for i in events.indices { events[i].seq = first + Int64(i) }
        return true
    }

    /// Runs a statement whose result is not needed (queued when `batching`). Its failure
    /// may surface later, from the call that sends the queue, when batching.
    package func write(_ sql: String, _ params: [SQLValue]) throws {
        if batching { try connection.enqueue(sql, params) } else { try connection.execute(sql, params, wantRows: false) }
    }

    /// What a savepoint restores besides the store's own state.
    struct Mark {
        fileprivate var events: Int
        fileprivate var endedSessions: Int
        fileprivate var written: [String: JSONValue?]
        fileprivate var lastSeq: Int64?
    }

    func savepoint(_ name: String) throws -> Mark {
        try connection.execute("SAVEPOINT \(name)", wantRows: false)
        return Mark(events: events.count, endedSessions: endedSessions.count, written: written, lastSeq: lastSeq)
    }

    func release(_ name: String) throws {
        try connection.execute("RELEASE \(name)", wantRows: false)
    }

    /// Undoes everything since `savepoint(name)`: the store's changes, the job's events and
    /// ended sessions, the remembered rows and seq numbers.
    func rollback(to name: String, _ mark: Mark) throws {
        if events.count > mark.events { events.removeSubrange(mark.events...) }
        if endedSessions.count > mark.endedSessions { endedSessions.removeSubrange(mark.endedSessions...) }
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

    /// The next change-log seq, on a deferred-write store or a dialect without
    /// `appendChangeSQL`.
    func nextSeq() throws -> Int64 {
        if lastSeq == nil {
            let r = try connection.execute(Self.newestSeqSQL)
            guard case let .int(max)? = r.rows.first?.first else {
                throw HostError(status: 500, code: "CHANGELOG_FAILED", message: "the store did not return the newest change-log seq")
            }
            lastSeq = max
        }
        lastSeq! += 1
        return lastSeq!
    }
}
