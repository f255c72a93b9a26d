import Dispatch
import PylonPluginABI
import PylonCore

/// Gathers the callbacks of one `execute`/`transaction` call: its rows (row sink context)
/// and its error (`errors`). Lives for the call, which is synchronous.
private final class CallState {
    let errors = PluginErrorCapture()
    var result = QueryResult()
    var error: StoreError?
    /// A broken promise of the plugin seen in the sink (rows wider or narrower than the
    /// columns, NULL arrays): the call fails with PLUGIN_CONTRACT instead of trusting it.
    var contractViolation: String?
    var sawColumns = false
    /// Takes each row as it arrives, instead of `result` (`execute(_:_:each:)`).
    var each: (([SQLValue]) -> RowVerdict)?
    /// `each` asked to stop: the plugin's ABORTED is then the host's own doing.
    var stopped = false

    /// Records the call's outcome from the status the plugin returned.
    func finish(_ status: pylon_status) {
        if stopped && status == PYLON_ERR_ABORTED { return }
        if status != PYLON_OK {
            let e = errors.failure(status, code: "STORE_ERROR", message: "store call failed with status \(status)")
            error = StoreError(status: status, code: e.code, message: e.message)
        } else if let contractViolation {
            error = StoreError(status: PYLON_ERR_GENERIC, code: "PLUGIN_CONTRACT", message: "the store plugin \(contractViolation); fix the plugin")
        }
    }
}

private func text(_ p: UnsafePointer<UInt8>?, _ n: Int) -> String {
    guard let p, n > 0 else { return "" }
    return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
}

private let sinkColumns: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<pylon_str>?, Int) -> pylon_status = {
    ctx, names, count in
    let state = Unmanaged<CallState>.fromOpaque(ctx!).takeUnretainedValue()
    state.sawColumns = true
    guard count <= 32_767, count == 0 || names != nil else {
        state.contractViolation = "passed \(count) column names \(names == nil ? "as NULL" : "(more than SQLite allows)")"
        return PYLON_ERR_ABORTED
    }
    var cols: [String] = []
    cols.reserveCapacity(count)
    for i in 0..<count {
        let s = names![i]
        cols.append(s.ptr.map { p in p.withMemoryRebound(to: UInt8.self, capacity: s.len) { text($0, s.len) } } ?? "")
    }
    state.result.columns = cols
    return PYLON_OK
}

private let sinkRow: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<pylon_value>?, Int) -> pylon_status = {
    ctx, values, count in
    let state = Unmanaged<CallState>.fromOpaque(ctx!).takeUnretainedValue()
    guard count == 0 || values != nil, !state.sawColumns || count == state.result.columns.count else {
        state.contractViolation = "sent a row of \(count) values\(values == nil ? " as NULL" : "") for \(state.result.columns.count) columns"
        return PYLON_ERR_ABORTED
    }
    var row: [SQLValue] = []
    row.reserveCapacity(count)
    for i in 0..<count {
        let v = values![i]
        switch v.type {
        case PYLON_VALUE_INT: row.append(.int(v.as.i))
        case PYLON_VALUE_DOUBLE: row.append(.double(v.as.d))
        case PYLON_VALUE_TEXT: row.append(.text(text(v.as.bytes.ptr, v.as.bytes.len)))
        case PYLON_VALUE_BLOB:
            let b = v.as.bytes
            row.append(.blob(b.ptr.map { Array(UnsafeBufferPointer(start: $0, count: b.len)) } ?? []))
        case PYLON_VALUE_NULL: row.append(.null)
        default:
            state.contractViolation = "sent a value of unknown type \(v.type)"
            return PYLON_ERR_ABORTED
        }
    }
    guard let each = state.each else {
        state.result.rows.append(row)
        return PYLON_OK
    }
    switch each(row) {
    case .next: return PYLON_OK
    case .stop:
        state.stopped = true
        return PYLON_ERR_ABORTED
    }
}

/// What `StoreConnection.execute(_:_:each:)` does after a row.
public enum RowVerdict: Sendable {
    /// Go on to the next row.
    case next
    /// Read no more.
    case stop
}

/// One connection of a store plugin. Not thread-safe: owned by exactly one host store
/// thread (`StoreThreads`) or quick-read slot (`QuickReaders`), matching the ABI's
/// [one-thread-at-a-time] rule. Every call is synchronous (ABI 2).
public final class StoreConnection: @unchecked Sendable {
    let table: UnsafePointer<pylon_store_v1>
    let handle: OpaquePointer
    /// PYLON_STORE_FLAG_DEFERRED_WRITES: writes in a transaction apply at COMMIT.
    let defersWrites: Bool
    /// Counts this connection's calls into the plugin (`pylon_plugin_calls_total`); nil: none.
    let calls: PluginCallCounters?

    package init(table: UnsafePointer<pylon_store_v1>, handle: OpaquePointer, calls: PluginCallCounters? = nil) {
        self.table = table
        self.handle = handle
        self.calls = calls
        defersWrites = table.pointee.flags & PYLON_STORE_FLAG_DEFERRED_WRITES != 0
    }

    /// Statements queued by `enqueue` (only on a store with PYLON_STORE_FLAG_BATCHES), sent
    /// before the next call on this connection does anything else.
    private var pending: [(sql: String, params: [SQLValue])] = []

    /// Whether several statements in one `execute` save round trips (PYLON_STORE_FLAG_BATCHES).
    var canBatch: Bool { table.pointee.flags & PYLON_STORE_FLAG_BATCHES != 0 }

    /// Runs a statement whose result is not needed — later, together with the next ones,
    /// when the store can batch (its error then surfaces from whichever call sends the
    /// queue: `flush`, the next `execute`, SAVEPOINT or COMMIT); at once otherwise. Inside a
    /// write transaction only; ROLLBACK drops what is still queued.
    public func enqueue(_ sql: String, _ params: [SQLValue]) throws(StoreError) {
        guard canBatch else {
            try execute(sql, params, wantRows: false)
            return
        }
        pending.append((sql, params))
        // Bounded, so the replies of one batch always fit the socket's buffers.
        if pending.count >= Self.maxPending { try flush() }
    }

    /// Statements queued before `enqueue` sends them.
    static let maxPending = 256

    /// Sends the queued statements (one `execute` call). The queue is empty afterwards,
    /// also when a statement failed.
    public func flush() throws(StoreError) {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        _ = try executeBatch(batch, wantRows: false)
    }

    /// Sends what is queued, then `sql` when given (its rows are the result), then COMMIT,
    /// all in one `execute` call (PYLON_EXEC_COMMIT), after which no transaction is open
    /// whether it succeeded or not.
    public func commit(after sql: String?) throws(StoreError) -> QueryResult {
        var batch = pending
        pending.removeAll(keepingCapacity: true)
        if let sql { batch.append((sql, [])) }
        if batch.isEmpty {
            try commit()
            return QueryResult()
        }
        return try executeBatch(batch, wantRows: sql != nil, commit: true)
    }

    /// One `execute` call for `batch` (with PYLON_EXEC_COMMIT when `commit`); the result
    /// (rows when `wantRows`, rows affected, last insert id) is the last statement's.
    private func executeBatch(_ batch: [(sql: String, params: [SQLValue])], wantRows: Bool,
                              commit: Bool = false, each: (([SQLValue]) -> RowVerdict)? = nil) throws(StoreError) -> QueryResult {
        guard !batch.isEmpty else { return QueryResult() }
        (commit ? calls?.storeCommitBatch : batch.count == 1 ? calls?.storeExecute : calls?.storeExecuteBatch)?.increment()
        let state = CallState()
        state.each = each
        let ctx = Unmanaged.passUnretained(state).toOpaque()
        var sink = pylon_row_sink()
        sink.struct_size = UInt32(MemoryLayout<pylon_row_sink>.size)
        sink.ctx = ctx
        sink.columns = wantRows ? sinkColumns : nil
        sink.row = wantRows ? sinkRow : nil
        // One arena holds every statement's SQL (NUL-terminated) and parameter bytes, one
        // array every statement's values; both live for the whole (synchronous) call.
        var arena: [UInt8] = []
        var sqlOffsets: [Int] = []
        var paramOffsets: [Int] = []
        var paramCount = 0
        for (sql, params) in batch {
            sqlOffsets.append(arena.count)
            arena.append(contentsOf: sql.utf8)
            arena.append(0)
            for p in params { paramOffsets.append(arena.count); Self.appendBytes(p, to: &arena) }
            paramCount += params.count
        }
        arena.withUnsafeBufferPointer { arenaBuf in
            let base = arenaBuf.baseAddress!
            var values = [pylon_value](repeating: pylon_value(), count: paramCount)
            var k = 0
            for (_, params) in batch {
                for p in params {
                    values[k] = Self.value(p, at: base + paramOffsets[k])
                    k += 1
                }
            }
            values.withUnsafeBufferPointer { valueBuf in
                var statements: [pylon_statement] = []
                statements.reserveCapacity(batch.count)
                var first = 0
                for (i, (sql, params)) in batch.enumerated() {
                    let sqlPtr = UnsafeRawPointer(base + sqlOffsets[i]).assumingMemoryBound(to: CChar.self)
                    statements.append(pylon_statement(sql: sqlPtr, sql_len: sql.utf8.count,
                                                      params: params.isEmpty ? nil : valueBuf.baseAddress! + first,
                                                      param_count: params.count))
                    first += params.count
                }
                var summary = pylon_exec_result()
                summary.struct_size = UInt32(MemoryLayout<pylon_exec_result>.size)
                let status = statements.withUnsafeBufferPointer { stmts in
                    withUnsafePointer(to: &sink) { sinkPtr in
                        state.errors.withSink { err in
                            table.pointee.execute(handle, stmts.baseAddress, stmts.count, commit ? PYLON_EXEC_COMMIT : 0,
                                                  sinkPtr, &summary, err)
                        }
                    }
                }
                state.result.rowsAffected = summary.rows_affected
                state.result.lastInsertID = summary.last_insert_id
                state.finish(status)
            }
        }
        if let e = state.error { throw e }
        return state.result
    }

    /// Appends a parameter's text/blob bytes (nothing for other types).
    private static func appendBytes(_ p: SQLValue, to arena: inout [UInt8]) {
        switch p {
        case let .text(s): arena.append(contentsOf: s.utf8)
        case let .blob(b): arena.append(contentsOf: b)
        default: break
        }
    }

    /// The ABI value of a parameter whose bytes (if any) start at `bytes`.
    private static func value(_ p: SQLValue, at bytes: UnsafePointer<UInt8>) -> pylon_value {
        var v = pylon_value()
        switch p {
        case .null: v.type = PYLON_VALUE_NULL
        case let .int(i): v.type = PYLON_VALUE_INT; v.as.i = i
        case let .double(d): v.type = PYLON_VALUE_DOUBLE; v.as.d = d
        case let .text(s):
            v.type = PYLON_VALUE_TEXT
            v.as.bytes.ptr = bytes
            v.as.bytes.len = s.utf8.count
        case let .blob(b):
            v.type = PYLON_VALUE_BLOB
            v.as.bytes.ptr = bytes
            v.as.bytes.len = b.count
        }
        return v
    }

    /// Runs one statement (after anything `enqueue`d, in the same call). `wantRows: false`
    /// skips copying result rows.
    @discardableResult
    public func execute(_ sql: String, _ params: [SQLValue] = [], wantRows: Bool = true) throws(StoreError) -> QueryResult {
        try executeBatch(takingPending(sql, params), wantRows: wantRows)
    }

    /// What `enqueue` queued, then this statement: one call sends them all.
    private func takingPending(_ sql: String, _ params: [SQLValue]) -> [(sql: String, params: [SQLValue])] {
        var batch = pending
        pending.removeAll(keepingCapacity: true)
        batch.append((sql, params))
        return batch
    }

    /// Runs one statement handing each row to `each` as the store sends it, none kept
    /// here, so a scan holds only what `each` keeps and stops where it says (the store is
    /// told to stop; that is no error). For reads checked row by row (`ReadPlan`).
    public func execute(_ sql: String, _ params: [SQLValue], each: @escaping ([SQLValue]) -> RowVerdict) throws(StoreError) {
        _ = try executeBatch(takingPending(sql, params), wantRows: true, each: each)
    }

    /// BEGIN / COMMIT / ROLLBACK. COMMIT sends what is queued first; ROLLBACK drops it.
    public func transaction(_ op: Int32) throws(StoreError) {
        if op == PYLON_TX_ROLLBACK { pending.removeAll() } else if !pending.isEmpty { try flush() }
        let state = CallState()
        calls?.storeTransaction.increment()
        state.finish(state.errors.withSink { table.pointee.transaction(handle, op, $0) })
        if let e = state.error { throw e }
    }

    public func begin() throws(StoreError) { try transaction(PYLON_TX_BEGIN) }
    /// Starts a read snapshot (end it with `rollback`), so several SELECTs see one state.
    public func beginRead() throws(StoreError) { try transaction(PYLON_TX_BEGIN_READ) }
    public func commit() throws(StoreError) { try transaction(PYLON_TX_COMMIT) }
    public func rollback() throws(StoreError) { try transaction(PYLON_TX_ROLLBACK) }

    package func close() { table.pointee.close(handle) }

    /// Whether this store can wait for database signals (`wait_notify`, optional).
    var canWaitForNotify: Bool { table.pointee.wait_notify != nil }

    /// Outcome of `waitForNotify`.
    enum NotifyWait { case signalled, timedOut }

    /// Blocks until the database signals `channel` or `timeoutMs` passes (see
    /// `pylon_store_v1.wait_notify`). Only call when `canWaitForNotify`.
    func waitForNotify(_ channel: String, timeoutMs: Int32) throws(StoreError) -> NotifyWait {
        guard canWaitForNotify, let wait = table.pointee.wait_notify else {
            throw StoreError(status: PYLON_ERR_UNSUPPORTED, code: "UNSUPPORTED", message: "the store cannot wait for notifications")
        }
        let capture = PluginErrorCapture()
        let status = capture.withSink { wait(handle, channel, timeoutMs, $0) }
        switch status {
        case PYLON_OK: return .signalled
        case PYLON_ERR_BUSY: return .timedOut
        default:
            let e = capture.failure(status, code: "NOTIFY_FAILED", message: "waiting for notifications failed with status \(status)")
            throw StoreError(status: status, code: e.code, message: e.message)
        }
    }
}
