import CCurl
import Foundation
import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The D1 store plugin: `pylon.store/1`, dialect "sqlite", executing over HTTP against
/// Cloudflare D1's query API (or anything that speaks its shape). How transactions map onto
/// D1 is explained on `D1Connection`. Every call is synchronous and may block on the
/// network ([may-block]), so the host calls it from its store threads.
///
/// NOTE: tested against the local D1-compatible server in Tests/Fixtures/d1, never against
/// Cloudflare's service itself.

/// The instance behind `pylon_instance *`: the config, read-only after `create`.
final class D1Instance {
    let config: D1Config
    let log: HostLog

    init(config: D1Config, log: HostLog) {
        self.config = config
        self.log = log
    }
}

// MARK: - Static descriptor and tables

nonisolated(unsafe) private let descriptor = makeDescriptor(
    id: "pylon.store.d1", version: "0.1.0",
    description: "Cloudflare D1 store over the HTTP query API (SQLite dialect, libcurl)",
    capabilities: [PYLON_CAP_STORE],
    create: d1Create, destroy: d1Destroy, getInterface: d1GetInterface)

nonisolated(unsafe) private let storeTable = makeStoreTable(
    flags: PYLON_STORE_FLAG_DEFERRED_WRITES, dialect: "sqlite", maxReaders: 4,
    open: d1Open, close: d1Close, execute: d1Execute, transaction: d1Transaction, describe: d1Describe,
    backup: d1Backup, restore: d1Restore)

/// The one exported symbol.
@_cdecl("pylon_plugin_entry")
public func pylonPluginEntry() -> UnsafePointer<pylon_plugin_descriptor> {
    UnsafePointer(descriptor)
}

// MARK: - Lifecycle

private func d1Create(
    _ host: UnsafePointer<pylon_host_v1>?, _ config: UnsafePointer<CChar>?, _ len: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    createInstance(host, config, len, out, err) { host, bytes -> Result<D1Instance, StoreFailure> in
        switch D1Config.parse(bytes) {
        case let .failure(problem):
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_CONFIG", "pylon.store.d1: \(problem.message)"))
        case let .success(cfg):
            guard pylon_curl_global_once() != 0 else {
                return .failure(StoreFailure(PYLON_ERR_GENERIC, "CURL_INIT_FAILED", "pylon.store.d1: curl_global_init failed"))
            }
            storeTable.pointee.max_readers = UInt32(cfg.maxReaders)
            let instance = D1Instance(config: cfg, log: HostLog(host))
            instance.log(PYLON_LOG_DEBUG, "d1 store for database \(cfg.databaseID) via \(cfg.baseURL)")
            return .success(instance)
        }
    }
}

private func d1Destroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    _ = Handle.release(instance, as: D1Instance.self)
}

private func d1GetInterface(_ instance: OpaquePointer?, _ id: UnsafePointer<CChar>?) -> UnsafeRawPointer? {
    guard instance != nil, let id, strcmp(id, PYLON_CAP_STORE) == 0 else { return nil }
    return UnsafeRawPointer(storeTable)
}

private func d1Describe(_ instance: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int {
    guard let instance else { return 0 }
    let inst = Handle.borrow(instance, as: D1Instance.self)
    return writeDescription("D1 database \(inst.config.databaseID) (account \(inst.config.accountID)) via \(inst.config.baseURL)",
                            into: buf, capacity: cap)
}

// MARK: - pylon.store/1

private func d1Open(
    _ instance: OpaquePointer?, _ mode: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    openConnection(instance, mode, out, err, as: D1Instance.self) { inst, mode -> Result<D1Connection, StoreFailure> in
        let writable = mode == PYLON_STORE_OPEN_WRITE
        return D1HTTP.make(inst.config).flatMap { http -> Result<D1Connection, StoreFailure> in
            let conn = D1Connection(http: http, writable: writable)
            // A writer reaches D1 once at startup (so a wrong token or id stops the host with
            // a clear message) and creates the table of commit markers.
            if writable, let f = conn.prepareWriter() {
                return .failure(StoreFailure(f.status, f.code, "pylon.store.d1: \(f.message)"))
            }
            return .success(conn)
        }
    }
}

private func d1Close(_ conn: OpaquePointer?) {
    guard let conn else { return }
    _ = Handle.release(conn, as: D1Connection.self).transaction(PYLON_TX_ROLLBACK)
}

/// Statements one at a time: inside a write transaction writes are buffered anyway
/// (PYLON_STORE_FLAG_DEFERRED_WRITES) and go to D1 as one batch at COMMIT.
private func d1Execute(
    _ connPtr: OpaquePointer?, _ statements: UnsafePointer<pylon_statement>?, _ count: Int, _ flags: UInt32,
    _ sink: UnsafePointer<pylon_row_sink>?, _ result: UnsafeMutablePointer<pylon_exec_result>?,
    _ err: UnsafePointer<pylon_error_sink>?
) -> pylon_status {
    guard let connPtr else {
        return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without connection"), err)
    }
    let conn = Handle.borrow(connPtr, as: D1Connection.self)
    return executeEach(statements, count, flags, sink, result, err,
                       one: { s, sink in runStatement(conn, s, sink) },
                       commit: { conn.transaction(PYLON_TX_COMMIT) })
}

/// One statement, its rows to `sink`.
private func runStatement(_ conn: D1Connection, _ s: pylon_statement, _ sink: UnsafePointer<pylon_row_sink>?) -> StatementOutcome {
    guard s.sql != nil, s.param_count == 0 || s.params != nil else {
        return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute called without SQL or parameters"))
    }
    var values: [JSONValue] = []
    values.reserveCapacity(s.param_count)
    for i in 0..<s.param_count {
        switch D1Wire.param(s.params![i]) {
        case let .success(v): values.append(v)
        case let .failure(f): return .failure(f)
        }
    }
    let result: D1Wire.StatementResult
    switch conn.execute(statementSQL(s), values) {
    case let .failure(f): return .failure(f)
    case .success(.buffered): result = D1Wire.StatementResult()
    case let .success(.ran(r)): result = r
    }
    if let failure = deliver(result, to: sink?.pointee) { return .failure(failure) }
    return .success((result.changes, result.lastRowID))
}

/// Streams a result to the host's sink: column names once, then each row. Text and blob
/// bytes are packed into one arena per call, so every pointer handed over stays valid until
/// the callback returns (the ABI's rule) and no pointer escapes its buffer's scope.
private func deliver(_ result: D1Wire.StatementResult, to sink: pylon_row_sink?) -> StoreFailure? {
    guard let sink else { return nil }
    let stopped = StoreFailure(PYLON_ERR_ABORTED, "ABORTED", "the row sink stopped the statement")
    if let columns = sink.columns {
        let status = withArena(result.columns.map { Array($0.utf8) }) { base, spans in
            let names = spans.map { pylon_str(ptr: UnsafeRawPointer(base + $0.offset).assumingMemoryBound(to: CChar.self), len: $0.count) }
            return columns(sink.ctx, names, names.count)
        }
        if status != PYLON_OK { return stopped }
    }
    guard let rowFn = sink.row else { return nil }
    for row in result.rows {
        let bytes: [[UInt8]] = row.map { v in
            switch v {
            case let .string(s): return Array(s.utf8)
            case let .array(items): return items.map { UInt8(truncatingIfNeeded: $0.intValue ?? 0) }
            default: return []
            }
        }
        let status = withArena(bytes) { base, spans in
            var vals = [pylon_value](repeating: pylon_value(), count: row.count)
            for (i, v) in row.enumerated() {
                switch v {
                case .null, .object: vals[i].type = PYLON_VALUE_NULL
                case let .bool(b): vals[i].type = PYLON_VALUE_INT; vals[i].as.i = b ? 1 : 0
                case let .int(n): vals[i].type = PYLON_VALUE_INT; vals[i].as.i = n
                case let .double(d): vals[i].type = PYLON_VALUE_DOUBLE; vals[i].as.d = d
                case .string, .array:
                    if case .string = v { vals[i].type = PYLON_VALUE_TEXT } else { vals[i].type = PYLON_VALUE_BLOB }
                    vals[i].as.bytes.ptr = UnsafePointer(base + spans[i].offset)
                    vals[i].as.bytes.len = spans[i].count
                }
            }
            return rowFn(sink.ctx, vals, vals.count)
        }
        if status != PYLON_OK { return stopped }
    }
    return nil
}

/// Packs `parts` into one NUL-separated buffer and calls `body` with its base address and
/// each part's span (valid during the call only).
private func withArena<R>(_ parts: [[UInt8]], _ body: (UnsafeMutablePointer<UInt8>, [(offset: Int, count: Int)]) -> R) -> R {
    var arena: [UInt8] = []
    var spans: [(offset: Int, count: Int)] = []
    for p in parts {
        spans.append((arena.count, p.count))
        arena += p
        arena.append(0)
    }
    arena.append(0)
    return arena.withUnsafeMutableBufferPointer { body($0.baseAddress!, spans) }
}

private func d1Transaction(_ connPtr: OpaquePointer?, _ op: Int32, _ err: UnsafePointer<pylon_error_sink>?) -> pylon_status {
    guard let connPtr else {
        return storeOutcome(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "transaction called without connection"), err)
    }
    return storeOutcome(Handle.borrow(connPtr, as: D1Connection.self).transaction(op), err)
}
