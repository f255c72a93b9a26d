import CLibPQ
import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// The PostgreSQL store plugin: `pylon.store/1`, dialect "postgres", over the system
/// libpq. Each `open` is one server session (the host opens a writer and a pool of
/// readers); prepared statements are cached per session; a lost session is re-established
/// on the next call. Every call is synchronous and [may-block], so the host calls it from
/// its store threads only.
/// Several hosts may share one database (PYLON_STORE_FLAG_CONCURRENT_WRITERS): the host's
/// postgres dialect serializes change-log appends with an advisory lock.
///
/// Config (`plugins.store` in the manifest): `url` — a libpq connection string or
/// `postgres://user:pass@host:port/db?sslmode=...` URI; when absent, the `DATABASE_URL`
/// environment variable. `readers` (1...64), `statement_cache` (prepared statements kept
/// per session).

/// The plugin instance behind `pylon_instance *`. Created by `create`, freed by `destroy`.
final class PostgresInstance {
    let config: PostgresConfig
    let log: HostLog
    /// Its sessions' server processes: their notifications are this host's own commits.
    let sessions = OwnSessions()

    init(config: PostgresConfig, log: HostLog) {
        self.config = config
        self.log = log
    }
}

private func parseConfig(_ ptr: UnsafePointer<CChar>?, _ len: Int) -> Result<PostgresConfig, StoreFailure> {
    func bad(_ m: String) -> Result<PostgresConfig, StoreFailure> {
        .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.store.postgres: \(m)"))
    }
    var config = PostgresConfig()
    let bytes = ptr.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    guard let obj = configObject(bytes) else { return bad("store config is not a JSON object") }
    if let v = obj["url"] {
        guard let s = v.stringValue, !s.isEmpty else { return bad("\"url\" must be a non-empty connection string") }
        config.conninfo = s
    } else if let env = ProcessInfo.processInfo.environment["DATABASE_URL"], !env.isEmpty {
        config.conninfo = env
    } else {
        return bad("no database given: set \"url\" in plugins.store (e.g. \"postgres://user:pass@127.0.0.1:5432/app\") or the DATABASE_URL environment variable")
    }
    var parseError: UnsafeMutablePointer<CChar>?
    if let opts = PQconninfoParse(config.conninfo, &parseError) {
        PQconninfoFree(opts)
    } else {
        let why = parseError.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "unreadable"
        if let parseError { PQfreemem(parseError) }
        return bad("the connection string is not valid: \(why)")
    }
    if let v = obj["statement_cache"] {
        guard let n = v.intValue, (1...10_000).contains(n) else { return bad("\"statement_cache\" must be an integer in 1...10000") }
        config.statementCache = Int(n)
    }
    if let v = obj["read_timeout_ms"] {
        guard let n = v.intValue, (0...3_600_000).contains(n) else { return bad("\"read_timeout_ms\" must be an integer in 0...3600000") }
        config.readTimeoutMs = Int(n)
    }
    if let v = obj["readers"] {
        guard let n = v.intValue, (1...64).contains(n) else { return bad("\"readers\" must be an integer in 1...64") }
        config.readers = UInt32(n)
    }
    return .success(config)
}

// MARK: - Static descriptor and table

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.store.postgres", version: "0.1.0",
    description: "PostgreSQL store (libpq \(PQlibVersion() / 10000).\(PQlibVersion() % 10000))",
    capabilities: [PYLON_CAP_STORE],
    create: pgCreate, destroy: pgDestroy, getInterface: pgGetInterface)

nonisolated(unsafe) private let storeTable = makeStoreTable(
    flags: PYLON_STORE_FLAG_CONCURRENT_WRITERS | PYLON_STORE_FLAG_BATCHES, dialect: "postgres", maxReaders: 4,
    open: pgOpen, close: pgClose, execute: pgExecute, transaction: pgTransaction,
    waitNotify: pgWaitNotify, describe: pgDescribe, backup: pgBackup, restore: pgRestore)

/// The one exported symbol. Cheap and side-effect free apart from building the static
/// descriptor on first call.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func pgCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<PostgresInstance, StoreFailure> in
        bytes.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { parseConfig($0.baseAddress, $0.count) }
        }.map { cfg in
            let instance = PostgresInstance(config: cfg, log: HostLog(host))
            instance.log(PYLON_LOG_DEBUG, "postgres store at \(cfg.redactedTarget)")
            return instance
        }
    }
}

private func pgDestroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    _ = Handle.release(instance, as: PostgresInstance.self)
}

private func pgGetInterface(_ instance: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard let id, strcmp(id, PYLON_CAP_STORE) == 0 else { return nil }
    return UnsafeRawPointer(storeTable)
}

/// `describe`: where the data lives, without the password.
private func pgDescribe(_ instance: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int {
    guard let instance else { return 0 }
    return writeDescription("PostgreSQL " + Handle.borrow(instance, as: PostgresInstance.self).config.redactedTarget,
                            into: buf, capacity: cap)
}

// MARK: - pylon.store/1

private func pgOpen(
    _ instance: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    openConnection(instance, mode, out, err, as: PostgresInstance.self) { inst, mode in
        PostgresConnection.open(config: inst.config, writable: mode == PYLON_STORE_OPEN_WRITE, sessions: inst.sessions)
    }
}

private func pgClose(_ conn: OpaquePointer?) {
    guard let conn else { return }
    Handle.release(conn, as: PostgresConnection.self).close()
}

/// One statement alone goes as it is; several, or any with PYLON_EXEC_COMMIT, go as one
/// pipeline (COMMIT at its end): one round trip.
private func pgExecute(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int, _ flags: UInt32,
    _ sink: UnsafePointer<pylon_row_sink>?, _ result: UnsafeMutablePointer<pylon_exec_result>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let connPtr, statements != nil || count == 0 else {
        return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without connection or statements"), err)
    }
    let conn = Handle.borrow(connPtr, as: PostgresConnection.self)
    let commit = flags & PYLON_EXEC_COMMIT != 0
    let outcome: Result<Int64, StoreFailure>
    if count == 1, !commit, let s = statements?.pointee {
        guard s.sql != nil else {
            return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without SQL"), err)
        }
        outcome = conn.execute(statementSQL(s), UnsafeBufferPointer(start: s.params, count: s.params == nil ? 0 : s.param_count), sink: sink)
    } else {
        outcome = conn.executeBatch(UnsafeBufferPointer(start: statements, count: count), sink: sink, commit: commit)
    }
    switch outcome {
    case let .failure(f): return storeOutcome(f, err)
    case let .success(affected): return storeOutcome(nil, err, result: result, rowsAffected: affected)
    }
}

private func pgTransaction(_ connPtr: OpaquePointer?, _ op: Int32, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let connPtr else {
        return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "transaction called without connection"), err)
    }
    return storeOutcome(Handle.borrow(connPtr, as: PostgresConnection.self).transaction(op), err)
}

private func pgWaitNotify(
    _ connPtr: OpaquePointer?, _ channel: UnsafePointer<CChar>?, _ timeoutMs: Int32, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let connPtr, let channel else {
        fillError(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "wait_notify called without connection or channel")
        return PYLON_ERR_INVALID_ARGUMENT
    }
    switch Handle.borrow(connPtr, as: PostgresConnection.self).waitNotify(channel: String(cString: channel), timeoutMs: timeoutMs) {
    case .success(true): return PYLON_OK
    case .success(false): return PYLON_ERR_BUSY
    case let .failure(f):
        fillError(err, f.status, f.code, f.message)
        return f.status
    }
}
