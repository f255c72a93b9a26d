import CSQLite
import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// The SQLite store plugin: `pylon.store/1`, dialect "sqlite", over the system libsqlite3.
/// WAL journal, busy timeout, one writer plus readers (the host opens them, sized by
/// `max_readers`), a prepared-statement cache per connection, typed binding both ways.
/// Every call completes on the calling thread and may block, so the host calls it from its
/// store threads — except reads on a PYLON_STORE_OPEN_READ_BOUNDED connection (no busy
/// timeout: a lock held elsewhere fails at once with BUSY), which are [bounded]
/// (PYLON_STORE_FLAG_LOCAL_READS) and may run on an event loop.

/// The plugin instance behind `pylon_instance *`. Created by `create`, freed by `destroy`.
final class SQLiteInstance {
    let config: SQLiteConfig
    let host: UnsafePointer<pylon_host_v1>

    init(config: SQLiteConfig, host: UnsafePointer<pylon_host_v1>) {
        self.config = config
        self.host = host
    }

    func log(_ level: Int32, _ message: String) {
        var m = message
        m.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { c in
                host.pointee.log?(host.pointee.host_ctx, level, c.baseAddress, c.count)
            }
        }
    }
}

struct ConfigError: Error {
    var message: String
    init(_ m: String) { message = m }
}

private func parseConfig(_ bytes: [UInt8]) -> Result<SQLiteConfig, ConfigError> {
    var config = SQLiteConfig()
    guard let obj = configObject(bytes) else {
        return .failure(ConfigError("store config is not a JSON object"))
    }
    if let v = obj["path"] {
        guard let s = v.stringValue, !s.isEmpty else { return .failure(ConfigError("\"path\" must be a non-empty string (the SQLite file)")) }
        config.path = s
    }
    func int(_ key: String, _ range: ClosedRange<Int>) -> Result<Int?, ConfigError> {
        guard let v = obj[key] else { return .success(nil) }
        guard let n = v.intValue.map(Int.init), range.contains(n) else {
            return .failure(ConfigError("\"\(key)\" must be an integer in \(range.lowerBound)...\(range.upperBound)"))
        }
        return .success(n)
    }
    switch int("busy_timeout_ms", 0...600_000) {
    case let .success(v): if let v { config.busyTimeoutMs = v }
    case let .failure(m): return .failure(m)
    }
    switch int("read_timeout_ms", 0...3_600_000) {
    case let .success(v): if let v { config.readTimeoutMs = v }
    case let .failure(m): return .failure(m)
    }
    switch int("readers", 1...64) {
    case let .success(v): if let v { config.readers = v }
    case let .failure(m): return .failure(m)
    }
    switch int("statement_cache", 1...10_000) {
    case let .success(v): if let v { config.statementCache = v }
    case let .failure(m): return .failure(m)
    }
    if let v = obj["synchronous"] {
        guard let s = v.stringValue?.uppercased(), ["OFF", "NORMAL", "FULL", "EXTRA"].contains(s) else {
            return .failure(ConfigError("\"synchronous\" must be one of off, normal, full, extra"))
        }
        config.synchronous = s
    }
    return .success(config)
}

// MARK: - Static descriptor and tables

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.store.sqlite", version: "0.1.0",
    description: "SQLite store (libsqlite3 \(String(cString: sqlite3_libversion())), WAL)",
    capabilities: [PYLON_CAP_STORE],
    create: sqliteCreate, destroy: sqliteDestroy, getInterface: sqliteGetInterface)

nonisolated(unsafe) private let storeTable = makeStoreTable(
    flags: PYLON_STORE_FLAG_LOCAL_READS, dialect: "sqlite", maxReaders: 4,
    open: sqliteOpen, close: sqliteClose, execute: sqliteExecute, transaction: sqliteTransaction,
    backup: sqliteBackup, restore: sqliteRestore)

/// The one exported symbol. Cheap and side-effect free apart from building the static
/// descriptor on first call.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func sqliteCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<SQLiteInstance, StoreFailure> in
        switch parseConfig(bytes) {
        case let .failure(problem):
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.store.sqlite: \(problem.message)"))
        case let .success(cfg):
            let instance = SQLiteInstance(config: cfg, host: host)
            instance.log(PYLON_LOG_DEBUG, "sqlite store at \(cfg.path), synchronous=\(cfg.synchronous)")
            return .success(instance)
        }
    }
}

private func sqliteDestroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    Unmanaged<SQLiteInstance>.fromOpaque(UnsafeRawPointer(instance)).release()
}

private func sqliteGetInterface(_ instance: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_STORE) == 0 else { return nil }
    return UnsafeRawPointer(storeTable)
}

// MARK: - pylon.store/1

private func sqliteOpen(
    _ instance: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    openConnection(instance, mode, out, err, as: SQLiteInstance.self) { inst, mode in
        SQLiteConnection.open(config: inst.config, writable: mode == PYLON_STORE_OPEN_WRITE,
                              bounded: mode == PYLON_STORE_OPEN_READ_BOUNDED).mapError { StoreFailure($0.status, $0.code, $0.message) }
    }
}

private func sqliteClose(_ conn: OpaquePointer?) {
    guard let conn else { return }
    let c = Unmanaged<SQLiteConnection>.fromOpaque(UnsafeRawPointer(conn))
    c.takeUnretainedValue().close()
    c.release()
}

private func failure(_ f: SQLiteFailure) -> StoreFailure { StoreFailure(f.status, f.code, f.message) }

private func sqliteExecute(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int, _ flags: UInt32,
    _ sink: UnsafePointer<pylon_row_sink>?, _ result: UnsafeMutablePointer<pylon_exec_result>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let connPtr else {
        return storeOutcome(failure(SQLiteFailure(rc: SQLITE_MISUSE, message: "execute called without connection")), err)
    }
    let conn = Unmanaged<SQLiteConnection>.fromOpaque(UnsafeRawPointer(connPtr)).takeUnretainedValue()
    return executeEach(statements, count, flags, sink, result, err,
                       one: { s, sink in runStatement(conn, s, sink).mapError(failure) },
                       commit: { runTransaction(conn, PYLON_TX_COMMIT).map(failure) })
}

/// One statement: bind, step, stream the rows to `sink`.
private func runStatement(_ conn: SQLiteConnection, _ s: pylon_statement, _ sink: UnsafePointer<pylon_row_sink>?)
    -> Result<(rowsAffected: Int64, lastID: Int64), SQLiteFailure> {
    guard s.sql != nil else { return .failure(SQLiteFailure(rc: SQLITE_MISUSE, message: "execute called without SQL")) }
    let params = s.params
    let paramCount = s.param_count
    let stmt: OpaquePointer
    switch conn.prepare(statementSQL(s)) {
    case let .failure(f): return .failure(f)
    case let .success(s): stmt = s
    }
    defer {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }
    let expected = Int(sqlite3_bind_parameter_count(stmt))
    if expected != paramCount {
        return .failure(SQLiteFailure(rc: SQLITE_RANGE, message: "statement expects \(expected) parameters, got \(paramCount)"))
    }
    for i in 0..<paramCount {
        let v = params![i]
        let idx = Int32(i + 1)
        let rc: Int32
        switch v.type {
        case PYLON_VALUE_NULL: rc = sqlite3_bind_null(stmt, idx)
        case PYLON_VALUE_INT: rc = sqlite3_bind_int64(stmt, idx, v.as.i)
        case PYLON_VALUE_DOUBLE: rc = sqlite3_bind_double(stmt, idx, v.as.d)
        case PYLON_VALUE_TEXT:
            // SQLITE_STATIC (nil): the host keeps the bytes alive for the call, and the
            // bindings are cleared before this function returns.
            rc = v.as.bytes.ptr.withMemoryRebound(to: CChar.self, capacity: max(v.as.bytes.len, 1)) {
                sqlite3_bind_text(stmt, idx, $0, Int32(v.as.bytes.len), nil)
            }
        case PYLON_VALUE_BLOB:
            rc = sqlite3_bind_blob(stmt, idx, v.as.bytes.ptr, Int32(v.as.bytes.len), nil)
        default:
            return .failure(SQLiteFailure(rc: SQLITE_MISMATCH, message: "parameter \(i + 1) has unknown value type \(v.type)"))
        }
        if rc != SQLITE_OK {
            return .failure(SQLiteFailure(rc: rc, message: String(cString: sqlite3_errmsg(conn.db))))
        }
    }
    let ncols = Int(sqlite3_column_count(stmt))
    let sinkRef = sink?.pointee
    if let sinkRef, let columns = sinkRef.columns {
        var names = [pylon_str](repeating: pylon_str(), count: ncols)
        for c in 0..<ncols {
            let name = sqlite3_column_name(stmt, Int32(c))!
            names[c] = pylon_str(ptr: name, len: strlen(name))
        }
        if columns(sinkRef.ctx, names, ncols) != PYLON_OK {
            return .failure(SQLiteFailure(rc: SQLITE_ABORT, message: "row sink stopped the statement"))
        }
    }
    var values = [pylon_value](repeating: pylon_value(), count: ncols)
    conn.startStatement()
    defer { conn.endStatement() }
    while true {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_DONE { break }
        guard rc == SQLITE_ROW else {
            if rc == SQLITE_INTERRUPT { return .failure(SQLiteFailure(rc: rc, message: conn.timeoutMessage)) }
            return .failure(SQLiteFailure(rc: sqlite3_extended_errcode(conn.db), message: String(cString: sqlite3_errmsg(conn.db))))
        }
        guard let sinkRef, let rowFn = sinkRef.row else { continue }
        for c in 0..<ncols {
            let ci = Int32(c)
            var v = pylon_value()
            switch sqlite3_column_type(stmt, ci) {
            case SQLITE_INTEGER:
                v.type = PYLON_VALUE_INT
                v.as.i = sqlite3_column_int64(stmt, ci)
            case SQLITE_FLOAT:
                v.type = PYLON_VALUE_DOUBLE
                v.as.d = sqlite3_column_double(stmt, ci)
            case SQLITE_TEXT:
                v.type = PYLON_VALUE_TEXT
                let p = sqlite3_column_text(stmt, ci)
                v.as.bytes.len = Int(sqlite3_column_bytes(stmt, ci))
                v.as.bytes.ptr = p.map { UnsafePointer($0) }
            case SQLITE_BLOB:
                v.type = PYLON_VALUE_BLOB
                let p = sqlite3_column_blob(stmt, ci)
                v.as.bytes.len = Int(sqlite3_column_bytes(stmt, ci))
                v.as.bytes.ptr = p?.assumingMemoryBound(to: UInt8.self)
            default:
                v.type = PYLON_VALUE_NULL
            }
            values[c] = v
        }
        if rowFn(sinkRef.ctx, values, ncols) != PYLON_OK {
            return .failure(SQLiteFailure(rc: SQLITE_ABORT, message: "row sink stopped the statement"))
        }
    }
    let changed = sqlite3_stmt_readonly(stmt) != 0 ? 0 : Int64(sqlite3_changes64(conn.db))
    return .success((changed, sqlite3_last_insert_rowid(conn.db)))
}

private func sqliteTransaction(_ connPtr: OpaquePointer?, _ op: Int32, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let connPtr else {
        return storeOutcome(failure(SQLiteFailure(rc: SQLITE_MISUSE, message: "transaction called without connection")), err)
    }
    let conn = Unmanaged<SQLiteConnection>.fromOpaque(UnsafeRawPointer(connPtr)).takeUnretainedValue()
    return storeOutcome(runTransaction(conn, op).map(failure), err)
}

/// BEGIN / COMMIT / ROLLBACK; a failed COMMIT leaves no transaction open (ABI rule).
private func runTransaction(_ conn: SQLiteConnection, _ op: Int32) -> SQLiteFailure? {
    let sql: String
    switch op {
    case PYLON_TX_BEGIN: sql = "BEGIN IMMEDIATE"
    case PYLON_TX_BEGIN_READ: sql = "BEGIN DEFERRED"
    case PYLON_TX_COMMIT: sql = "COMMIT"
    case PYLON_TX_ROLLBACK: sql = "ROLLBACK"
    default: return SQLiteFailure(rc: SQLITE_MISUSE, message: "unknown transaction op \(op)")
    }
    let stmt: OpaquePointer
    switch conn.prepare(sql) {
    case let .failure(f): return f
    case let .success(s): stmt = s
    }
    let rc = sqlite3_step(stmt)
    sqlite3_reset(stmt)
    if rc != SQLITE_DONE {
        let failure = SQLiteFailure(rc: sqlite3_extended_errcode(conn.db), message: String(cString: sqlite3_errmsg(conn.db)))
        if op == PYLON_TX_COMMIT, conn.inTransaction { _ = conn.exec("ROLLBACK") }
        return failure
    }
    return nil
}
