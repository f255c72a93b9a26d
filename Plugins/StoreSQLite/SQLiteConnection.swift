import CSQLite
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// One libsqlite3 connection with a prepared-statement cache.
/// Threads: used by one thread at a time (the ABI's [one-thread-at-a-time] rule), so it
/// needs no lock; SQLite is opened with NOMUTEX for that reason.
final class SQLiteConnection {
    let db: OpaquePointer
    let writable: Bool
    private var cache: [String: OpaquePointer] = [:]
    private var cacheOrder: [String] = []
    private let cacheCapacity: Int
    /// A statement on this connection is stopped once it has run this long (0: never); see
    /// `limitReads`.
    let readTimeoutMs: Int
    /// When the running statement must stop (`CLOCK_MONOTONIC_COARSE` ns; 0: no statement).
    private var deadline: UInt64 = 0

    init(db: OpaquePointer, writable: Bool, cacheCapacity: Int, readTimeoutMs: Int = 0) {
        self.db = db
        self.writable = writable
        self.cacheCapacity = cacheCapacity
        self.readTimeoutMs = readTimeoutMs
    }

    /// Stops any statement of this reader that runs past `readTimeoutMs`: SQLite calls the
    /// handler every 100 virtual-machine steps (a coarse clock read; a scan takes about ten
    /// steps a row, and one step can be long: a substring match over a large value is one
    /// function call), and a non-zero answer interrupts the statement (SQLITE_INTERRUPT,
    /// reported as QUERY_TIMEOUT). One request's filter can cost far more than its size (a
    /// substring match over megabytes of its own rows), and a reader held for a minute
    /// stalls every list and pull behind it. Readers only: the writer also runs migrations
    /// and backfills, which may rightly take long.
    private func limitReads() {
        guard readTimeoutMs > 0 else { return }
        sqlite3_progress_handler(db, 100, { ctx in
            guard let ctx else { return 0 }
            let conn = Unmanaged<SQLiteConnection>.fromOpaque(ctx).takeUnretainedValue()
            return conn.deadline != 0 && SQLiteConnection.now() > conn.deadline ? 1 : 0
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Starts the running statement's clock (a no-op without a read timeout).
    func startStatement() {
        deadline = readTimeoutMs > 0 ? Self.now() + UInt64(readTimeoutMs) * 1_000_000 : 0
    }

    /// The statement has finished.
    func endStatement() { deadline = 0 }

    /// The message of a statement `limitReads` stopped.
    var timeoutMessage: String {
        "the query ran longer than the store's read_timeout_ms (\(readTimeoutMs) ms) and was stopped; narrow the filter (a $like over large text costs its length times the pattern's), or raise read_timeout_ms in the store's config"
    }

    /// Milliseconds matter here, so the coarse clock (a few ns to read, ticks of 1–4 ms).
    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Opens `path` and applies the durability and concurrency settings. A `bounded`
    /// connection (PYLON_STORE_OPEN_READ_BOUNDED) gets no busy timeout: its reads may run on
    /// an event loop, so a lock held by another connection fails at once with BUSY and the
    /// host retries on a reader connection, which keeps the configured timeout.
    static func open(config: SQLiteConfig, writable: Bool, bounded: Bool = false) -> Result<SQLiteConnection, SQLiteFailure> {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        createPrivately(config.path)
        let rc = sqlite3_open_v2(config.path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            return .failure(SQLiteFailure(rc: rc, message: "cannot open SQLite database at \(config.path): \(msg); check that the folder exists and is writable"))
        }
        sqlite3_extended_result_codes(handle, 1)
        // A double-quoted identifier that names no column must be an error, never the
        // string literal SQLite's legacy fallback would make of it.
        _ = pylon_sqlite_disable_dqs(handle)
        sqlite3_busy_timeout(handle, bounded ? 0 : Int32(config.busyTimeoutMs))
        let conn = SQLiteConnection(db: handle, writable: writable, cacheCapacity: config.statementCache,
                                    readTimeoutMs: writable || bounded ? 0 : config.readTimeoutMs)
        conn.limitReads()
        // Readers sort in temporary files once a sort outgrows the page cache: in memory
        // (`temp_store=MEMORY`), one list ordered by an unindexed field held a copy of every
        // row it sorted, 50 MB per request over a 40 MB table, as many times as requests ran.
        // Smaller sorts stay in memory either way.
        var pragmas = ["PRAGMA foreign_keys=OFF", "PRAGMA temp_store=\(writable ? "MEMORY" : "FILE")", "PRAGMA cache_size=-16000"]
        if writable {
            pragmas.insert("PRAGMA journal_mode=WAL", at: 0)
            pragmas.append("PRAGMA synchronous=\(config.synchronous)")
        } else {
            pragmas.append("PRAGMA query_only=1")
        }
        for p in pragmas {
            if let failure = conn.exec(p) {
                conn.close()
                return .failure(failure)
            }
        }
        if writable {
            // A database that is not in WAL mode after the pragma (e.g. a read-only medium)
            // would break the reader/writer split: refuse rather than silently degrade.
            var mode = ""
            _ = conn.query("PRAGMA journal_mode") { stmt in
                mode = String(cString: sqlite3_column_text(stmt, 0))
            }
            if mode.lowercased() != "wal" {
                conn.close()
                return .failure(SQLiteFailure(rc: SQLITE_ERROR, message: "SQLite database at \(config.path) could not switch to WAL mode (got \(mode)); use a file on a local, writable disk"))
            }
        }
        return .success(conn)
    }

    /// Runs a statement without parameters or results; returns a failure or nil.
    func exec(_ sql: String) -> SQLiteFailure? {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let m = errmsg.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(errmsg)
            return SQLiteFailure(rc: rc, message: m)
        }
        return nil
    }

    private func query(_ sql: String, _ row: (OpaquePointer) -> Void) -> SQLiteFailure? {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            return SQLiteFailure(rc: sqlite3_errcode(db), message: String(cString: sqlite3_errmsg(db)))
        }
        defer { sqlite3_finalize(stmt) }
        while sqlite3_step(stmt) == SQLITE_ROW { row(stmt) }
        return nil
    }

    /// A cached prepared statement for `sql`, reset and with bindings cleared.
    func prepare(_ sql: String) -> Result<OpaquePointer, SQLiteFailure> {
        if let stmt = cache[sql] { return .success(stmt) }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            return .failure(SQLiteFailure(rc: rc, message: String(cString: sqlite3_errmsg(db))))
        }
        if cache.count >= cacheCapacity, let oldest = cacheOrder.first {
            cacheOrder.removeFirst()
            if let old = cache.removeValue(forKey: oldest) { sqlite3_finalize(old) }
        }
        cache[sql] = stmt
        cacheOrder.append(sql)
        return .success(stmt)
    }

    var inTransaction: Bool { sqlite3_get_autocommit(db) == 0 }

    func close() {
        for (_, stmt) in cache { sqlite3_finalize(stmt) }
        cache.removeAll()
        cacheOrder.removeAll()
        if inTransaction { _ = exec("ROLLBACK") }
        sqlite3_close_v2(db)
    }
}

/// An SQLite result code and message, mapped to the ABI's status and stable code.
struct SQLiteFailure: Error {
    var rc: Int32
    var message: String

    var status: pylon_status {
        switch rc & 0xFF {
        case SQLITE_CONSTRAINT: return PYLON_ERR_CONSTRAINT
        case SQLITE_BUSY, SQLITE_LOCKED: return PYLON_ERR_BUSY
        case SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_READONLY: return PYLON_ERR_IO
        case SQLITE_CORRUPT, SQLITE_NOTADB: return PYLON_ERR_CORRUPT
        case SQLITE_NOMEM: return PYLON_ERR_NO_MEMORY
        case SQLITE_MISUSE, SQLITE_RANGE, SQLITE_MISMATCH, SQLITE_TOOBIG: return PYLON_ERR_INVALID_ARGUMENT
        case SQLITE_INTERRUPT, SQLITE_ABORT: return PYLON_ERR_ABORTED
        default: return PYLON_ERR_GENERIC
        }
    }

    var code: String {
        switch rc {
        case 2067 /* SQLITE_CONSTRAINT_UNIQUE */, 1555 /* SQLITE_CONSTRAINT_PRIMARYKEY */: return "UNIQUE_VIOLATION"
        case 1299 /* SQLITE_CONSTRAINT_NOTNULL */: return "NOT_NULL_VIOLATION"
        case 787 /* SQLITE_CONSTRAINT_FOREIGNKEY */: return "FOREIGN_KEY_VIOLATION"
        case 275 /* SQLITE_CONSTRAINT_CHECK */: return "CHECK_VIOLATION"
        // Only a reader's time limit interrupts (`SQLiteConnection.limitReads`).
        case SQLITE_INTERRUPT: return "QUERY_TIMEOUT"
        default:
            switch rc & 0xFF {
            case SQLITE_CONSTRAINT: return "CONSTRAINT_VIOLATION"
            case SQLITE_BUSY, SQLITE_LOCKED: return "BUSY"
            case SQLITE_CORRUPT, SQLITE_NOTADB: return "CORRUPT"
            case SQLITE_FULL: return "DISK_FULL"
            case SQLITE_IOERR: return "IO_ERROR"
            default: return "SQL_ERROR"
            }
        }
    }
}

/// The plugin's config object from the manifest (`plugins.store`).
struct SQLiteConfig {
    var path = "pylon.db"
    var busyTimeoutMs = 5000
    /// `read_timeout_ms`: see `SQLiteConnection.limitReads`.
    var readTimeoutMs = 10_000
    var readers = 4
    var synchronous = "NORMAL"
    var statementCache = 128
}

/// Creates the database file at `path`, owner-only (0600), when it does not exist yet:
/// it holds session, API-key and password hashes, which the default umask would leave
/// world-readable (0644). SQLite gives its -wal and -shm files the database file's mode.
/// An existing file keeps its mode (an operator's choice); special names (`:memory:`,
/// `file:` URIs) are SQLite's to open.
func createPrivately(_ path: String) {
    guard !path.isEmpty, !path.hasPrefix(":"), !path.hasPrefix("file:") else { return }
    _ = BackupFiles.createOwnerOnly(path)
}
