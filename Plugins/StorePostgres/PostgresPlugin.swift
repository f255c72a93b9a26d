import CLibPQ
import Foundation
import PylonPluginABI
import PylonJSON
import PylonPluginKit

/// The PostgreSQL store plugin: `pylon.store/1`, dialect "postgres", over the system
/// libpq. Each `open` is one server session (the host opens a writer and a pool of
/// readers); prepared statements are cached per session; a lost session is re-established
/// on the next call. Every call completes inline and may block
/// (PYLON_STORE_FLAG_COMPLETES_INLINE), so the host calls it from its store threads only.
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
    flags: PYLON_STORE_FLAG_COMPLETES_INLINE | PYLON_STORE_FLAG_CONCURRENT_WRITERS, dialect: "postgres", maxReaders: 4,
    open: pgOpen, close: pgClose, execute: pgExecute, transaction: pgTransaction,
    waitNotify: pgWaitNotify, describe: pgDescribe, executeBatch: pgExecuteBatch, commitBatch: pgCommitBatch,
    backup: pgBackup, restore: pgRestore)

/// The one exported symbol. Cheap and side-effect free apart from building the static
/// descriptor on first call.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func pgCreate(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafeMutablePointer<pylon_error>?
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
    _ err: UnsafeMutablePointer<pylon_error>?
) -> pylon_status {
    openConnection(instance, mode, out, err, as: PostgresInstance.self) { inst, writable in
        PostgresConnection.open(config: inst.config, writable: writable)
    }
}

private func pgClose(_ conn: OpaquePointer?) {
    guard let conn else { return }
    Handle.release(conn, as: PostgresConnection.self).close()
}

private func pgExecute(
    _ connPtr: OpaquePointer?, _ sql: UnsafePointer<CChar>?, _ sqlLen: Int,
    _ params: UnsafePointer<pylon_value>?, _ paramCount: Int,
    _ sink: UnsafePointer<pylon_row_sink>?, _ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?
) {
    guard let connPtr, let sql else {
        completeStoreCall(done, ctx, StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without connection or SQL"))
        return
    }
    let conn = Handle.borrow(connPtr, as: PostgresConnection.self)
    let text = String(decoding: UnsafeRawBufferPointer(start: sql, count: sqlLen), as: UTF8.self)
    switch conn.execute(text, UnsafeBufferPointer(start: params, count: params == nil ? 0 : paramCount), sink: sink) {
    case let .failure(f): completeStoreCall(done, ctx, f)
    case let .success(affected): completeStoreCall(done, ctx, nil, rowsAffected: affected)
    }
}

private func pgExecuteBatch(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int,
    _ sink: UnsafePointer<pylon_row_sink>?, _ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?
) {
    runBatch(connPtr, statements, count, sink, done, ctx, commit: false)
}

/// `commit_batch` (ABI 1.5): the batch and COMMIT in one pipeline.
private func pgCommitBatch(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int,
    _ sink: UnsafePointer<pylon_row_sink>?, _ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?
) {
    runBatch(connPtr, statements, count, sink, done, ctx, commit: true)
}

private func runBatch(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int,
    _ sink: UnsafePointer<pylon_row_sink>?, _ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?, commit: Bool
) {
    guard let connPtr, statements != nil || count == 0 else {
        let slot = commit ? "commit_batch" : "execute_batch"
        completeStoreCall(done, ctx, StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "\(slot) called without connection or statements"))
        return
    }
    let conn = Handle.borrow(connPtr, as: PostgresConnection.self)
    switch conn.executeBatch(UnsafeBufferPointer(start: statements, count: count), sink: sink, commit: commit) {
    case let .failure(f): completeStoreCall(done, ctx, f)
    case let .success(affected): completeStoreCall(done, ctx, nil, rowsAffected: affected)
    }
}

private func pgTransaction(
    _ connPtr: OpaquePointer?, _ op: Int32, _ done: pylon_store_done_fn?, _ ctx: UnsafeMutableRawPointer?
) {
    guard let connPtr else {
        completeStoreCall(done, ctx, StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "transaction called without connection"))
        return
    }
    completeStoreCall(done, ctx, Handle.borrow(connPtr, as: PostgresConnection.self).transaction(op))
}

private func pgWaitNotify(
    _ connPtr: OpaquePointer?, _ channel: UnsafePointer<CChar>?, _ timeoutMs: Int32, _ err: UnsafeMutablePointer<pylon_error>?
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
