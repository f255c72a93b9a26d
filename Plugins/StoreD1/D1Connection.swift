#if canImport(Glibc)
import Glibc
#endif
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// One host connection over D1, and how host transactions map onto an API that has none.
///
/// D1 runs one statement per request, or a *batch* of statements as one transaction that is
/// applied entirely or not at all. There is no BEGIN ... COMMIT spanning requests. So:
///
/// - Outside a transaction every statement is sent at once (a write as a batch of its own).
/// - Inside a write transaction (`PYLON_TX_BEGIN`) statements that change data are buffered
///   and answered at once with no rows; reads are sent at once and see committed data only.
///   SAVEPOINT / RELEASE / ROLLBACK TO work on the buffer (a rollback drops the statements
///   buffered since the savepoint). COMMIT sends the buffer as one batch; ROLLBACK drops it.
///   The store declares PYLON_STORE_FLAG_DEFERRED_WRITES, so the host never expects rows
///   from RETURNING or its own writes back inside a transaction (it numbers change-log
///   entries itself and remembers the rows it wrote) and gives each write job its own
///   transaction, so a constraint violation reported for the whole batch at COMMIT belongs
///   to exactly one request.
/// - Every batch starts with `INSERT INTO _pylon_d1_commits (id)` of a fresh random id. If the
///   COMMIT request fails in a way that leaves its outcome unknown (timeout, dropped
///   connection), the connection asks D1 whether that id exists: the batch was applied
///   exactly when it does. A batch that reaches D1 twice fails the second time on the id's
///   primary key and is rolled back whole, so nothing is ever applied twice.
///
/// Threads: one host thread at a time (the ABI's rule), so no locks.
final class D1Connection {
    let http: D1HTTP
    let writable: Bool
    private var inTransaction = false
    private var buffer: [JSONValue] = []
    private var savepoints: [(name: String, mark: Int)] = []

    static let commitsTable = "_pylon_d1_commits"
    static let createCommitsTable = "CREATE TABLE IF NOT EXISTS \(commitsTable) (id TEXT PRIMARY KEY NOT NULL, at INTEGER NOT NULL)"
    /// Commit markers older than this are deleted by later commits.
    static let markerRetentionSeconds: Int64 = 7 * 24 * 3600

    init(http: D1HTTP, writable: Bool) {
        self.http = http
        self.writable = writable
    }

    /// What `execute` did with a statement.
    enum Executed {
        case ran(D1Wire.StatementResult)
        case buffered
    }

    func execute(_ sql: String, _ params: [JSONValue]) -> Result<Executed, StoreFailure> {
        switch StatementKind.of(sql) {
        case .transactionControl:
            return .failure(StoreFailure(PYLON_ERR_UNSUPPORTED, "UNSUPPORTED",
                                         "D1 has no BEGIN/COMMIT statements; the host uses the transaction call"))
        case let .savepoint(name):
            guard inTransaction else { return .failure(outsideTransaction("SAVEPOINT")) }
            savepoints.append((name, buffer.count))
            return .success(.buffered)
        case let .release(name):
            guard inTransaction else { return .failure(outsideTransaction("RELEASE")) }
            guard let i = savepoints.lastIndex(where: { $0.name == name }) else { return .failure(noSavepoint(name)) }
            savepoints.removeSubrange(i...)
            return .success(.buffered)
        case let .rollbackTo(name):
            guard inTransaction else { return .failure(outsideTransaction("ROLLBACK TO")) }
            guard let i = savepoints.lastIndex(where: { $0.name == name }) else { return .failure(noSavepoint(name)) }
            buffer.removeSubrange(savepoints[i].mark...)
            savepoints.removeSubrange((i + 1)...)
            return .success(.buffered)
        case .write where inTransaction:
            buffer.append(D1Wire.statement(sql, params))
            return .success(.buffered)
        case .write where !writable:
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "READ_ONLY", "this is a read connection; writes go through the write connection"))
        case .write:
            // Outside a transaction a write is a transaction of its own, with a commit
            // marker like any other, so a re-sent request cannot apply it twice either.
            return applyAtomically([D1Wire.statement(sql, params)]).map { .ran($0?.first ?? D1Wire.StatementResult()) }
        case .read:
            return send([D1Wire.statement(sql, params)], batch: false).map { .ran($0[0]) }
        }
    }

    /// Creates the table of commit markers (idempotent); once per write connection, before
    /// any write.
    func prepareWriter() -> StoreFailure? {
        if case let .failure(f) = send([D1Wire.statement(Self.createCommitsTable, [])], batch: false) { return f }
        return nil
    }

    func transaction(_ op: Int32) -> StoreFailure? {
        switch op {
        case PYLON_TX_BEGIN:
            guard writable else {
                return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "READ_ONLY", "a write transaction needs the write connection")
            }
            guard !inTransaction else { return StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", "a transaction is already open") }
            inTransaction = true
            return nil
        case PYLON_TX_BEGIN_READ:
            // D1 has no read snapshots: each read sees the latest committed data.
            return nil
        case PYLON_TX_ROLLBACK:
            reset()
            return nil
        case PYLON_TX_COMMIT:
            guard inTransaction else { return nil }
            defer { reset() }
            return commit()
        default:
            return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "unknown transaction op \(op)")
        }
    }

    private func reset() {
        inTransaction = false
        buffer.removeAll()
        savepoints.removeAll()
    }

    private func commit() -> StoreFailure? {
        if buffer.isEmpty { return nil }
        if case let .failure(f) = applyAtomically(buffer) { return f }
        return nil
    }

    /// Sends `statements` as one batch behind a fresh commit marker. Returns each
    /// statement's result, or nil when the batch is known to be applied but its answer was
    /// lost (settled through the marker).
    private func applyAtomically(_ statements: [JSONValue]) -> Result<[D1Wire.StatementResult]?, StoreFailure> {
        let id = Self.randomID()
        let now = Int64(time(nil))
        // The marker goes first: a batch that reaches D1 a second time (libcurl silently
        // re-sends a request whose reused connection died) fails on it before anything else
        // and is rolled back whole, and that failure is recognizable as "already applied".
        var batch = [D1Wire.statement("INSERT INTO \(Self.commitsTable) (id, at) VALUES (?, ?)", [.string(id), .int(now)])]
        batch += statements
        batch.append(D1Wire.statement("DELETE FROM \(Self.commitsTable) WHERE at < ?", [.int(now - Self.markerRetentionSeconds)]))
        switch http.post(D1Wire.body(batch, batch: true)) {
        case let .answered(status, body):
            switch D1Wire.decode(status: status, body: body, expected: batch.count) {
            case let .success(results): return .success(Array(results.dropFirst().dropLast()))
            case let .failure(f):
                // Our own marker already there: an earlier send of this very batch was applied.
                if f.code == "UNIQUE_VIOLATION" && f.message.contains(Self.commitsTable) { return .success(nil) }
                return .failure(f)
            }
        case let .notSent(why):
            return .failure(StoreFailure(PYLON_ERR_CONNECTION, "D1_UNREACHABLE", "cannot reach D1 (\(why)); nothing was applied; retry"))
        case let .unknown(why):
            if let f = settle(id, why) { return .failure(f) }
            return .success(nil)
        }
    }

    /// After a COMMIT whose answer was lost: applied exactly when its marker exists.
    private func settle(_ id: String, _ why: String) -> StoreFailure? {
        let probe = D1Wire.statement("SELECT 1 AS applied FROM \(Self.commitsTable) WHERE id = ?", [.string(id)])
        switch send([probe], batch: false) {
        case let .success(results) where !results[0].rows.isEmpty:
            return nil
        case .success:
            return StoreFailure(PYLON_ERR_CONNECTION, "D1_COMMIT_NOT_APPLIED",
                                "the COMMIT request to D1 failed (\(why)) and D1 has no record of it, so it was not applied; retry")
        case let .failure(f):
            return StoreFailure(PYLON_ERR_CONNECTION, "D1_COMMIT_OUTCOME_UNKNOWN",
                                "the COMMIT request to D1 failed (\(why)) and asking D1 whether it was applied failed too (\(f.message)); read the data back before retrying")
        }
    }

    private func send(_ statements: [JSONValue], batch: Bool) -> Result<[D1Wire.StatementResult], StoreFailure> {
        switch http.post(D1Wire.body(statements, batch: batch)) {
        case let .answered(status, body):
            return D1Wire.decode(status: status, body: body, expected: statements.count)
        case let .notSent(why):
            return .failure(StoreFailure(PYLON_ERR_CONNECTION, "D1_UNREACHABLE", "cannot reach D1 (\(why)); nothing was sent"))
        case let .unknown(why):
            return .failure(StoreFailure(PYLON_ERR_CONNECTION, "D1_NO_ANSWER", "D1 did not answer (\(why))"))
        }
    }

    private func outsideTransaction(_ what: String) -> StoreFailure {
        StoreFailure(PYLON_ERR_UNSUPPORTED, "UNSUPPORTED", "\(what) outside a transaction is not supported by the D1 store")
    }

    private func noSavepoint(_ name: String) -> StoreFailure {
        StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", "no such savepoint: \(name)")
    }

    private static func randomID() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let v = rng.next() as UInt64
            let h = String(v, radix: 16)
            return String(repeating: "0", count: 16 - h.count) + h
        }.joined()
    }
}

/// What a statement is, from its first words (comments and case ignored).
enum StatementKind: Equatable {
    case read
    case write
    case savepoint(String)
    case release(String)
    case rollbackTo(String)
    case transactionControl

    static func of(_ sql: String) -> StatementKind {
        let words = leadingWords(sql, max: 5)
        guard let first = words.first else { return .read }
        switch first {
        case "SELECT", "WITH", "PRAGMA", "EXPLAIN", "VALUES": return .read
        case "SAVEPOINT": return words.count > 1 ? .savepoint(words[1]) : .write
        case "RELEASE":
            let rest = words.dropFirst().filter { $0 != "SAVEPOINT" }
            return rest.first.map { .release($0) } ?? .write
        case "ROLLBACK":
            guard let to = words.firstIndex(of: "TO") else { return .transactionControl }
            let rest = words[(to + 1)...].filter { $0 != "SAVEPOINT" }
            return rest.first.map { .rollbackTo($0) } ?? .transactionControl
        case "BEGIN", "COMMIT", "END": return .transactionControl
        default: return .write
        }
    }

    /// Up to `max` leading words, upper-cased, skipping whitespace and SQL comments.
    private static func leadingWords(_ sql: String, max: Int) -> [String] {
        var words: [String] = []
        var current: [UInt8] = []
        let b = Array(sql.utf8)
        var i = 0
        func flush() {
            if !current.isEmpty { words.append(String(decoding: current, as: UTF8.self).uppercased()); current.removeAll() }
        }
        while i < b.count && words.count < max {
            let c = b[i]
            if c == UInt8(ascii: "-"), i + 1 < b.count, b[i + 1] == UInt8(ascii: "-") {
                flush()
                while i < b.count && b[i] != 0x0A { i += 1 }
            } else if c == UInt8(ascii: "/"), i + 1 < b.count, b[i + 1] == UInt8(ascii: "*") {
                flush()
                i += 2
                while i + 1 < b.count && !(b[i] == UInt8(ascii: "*") && b[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 2
            } else if (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "_") {
                current.append(c)
                i += 1
            } else {
                flush()
                if c != 0x20 && c != 0x09 && c != 0x0A && c != 0x0D && c != UInt8(ascii: "\"") && c != UInt8(ascii: "`") { break }
                i += 1
            }
        }
        flush()
        return words
    }
}
