import CLibPQ
import Foundation
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// One libpq connection with a prepared-statement cache.
/// Threads: used by one thread at a time (the ABI's [one-thread-at-a-time] rule), so it
/// needs no lock. A lost connection is reset on the next call outside a transaction; work
/// in flight when it broke fails with PYLON_ERR_CONNECTION ("CONNECTION_LOST").
final class PostgresConnection {
    private var pg: OpaquePointer?
    let config: PostgresConfig
    let writable: Bool
    /// SQL text → prepared statement name, on this session.
    private var prepared: [String: String] = [:]
    private var nextName = 0
    private(set) var inTransaction = false
    /// BEGIN is not sent on its own: it goes out in front of the transaction's first
    /// statement (same round trip). Set between `transaction(BEGIN)` and that statement.
    private var deferredBegin: String?
    /// Channels this session LISTENs on (forgotten with a lost session).
    private var listening: Set<String> = []
    /// The server processes of the instance's sessions, this one's among them while it lives.
    private let sessions: OwnSessions
    /// This session's server process id (0: none).
    private var backendPID: Int32 = 0

    private init(pg: OpaquePointer, config: PostgresConfig, writable: Bool, sessions: OwnSessions) {
        self.pg = pg
        self.config = config
        self.writable = writable
        self.sessions = sessions
        adopt(pg)
    }

    static func open(config: PostgresConfig, writable: Bool, sessions: OwnSessions) -> Result<PostgresConnection, StoreFailure> {
        switch connect(config, writable: writable) {
        case let .failure(f): return .failure(f)
        case let .success(pg): return .success(PostgresConnection(pg: pg, config: config, writable: writable, sessions: sessions))
        }
    }

    /// `pg` is now this connection's session: its server process counts as the instance's own.
    private func adopt(_ pg: OpaquePointer) {
        backendPID = PQbackendPID(pg)
        sessions.insert(backendPID)
    }

    /// The session is gone (closed, lost or replaced): a notification from its server
    /// process id, which the server may give to another client, is no longer this instance's.
    private func forgetSession() {
        sessions.remove(backendPID)
        backendPID = 0
    }

    private static func connect(_ config: PostgresConfig, writable: Bool) -> Result<OpaquePointer, StoreFailure> {
        guard let pg = config.connect(application: PostgresConfig.hostApplicationName) else {
            return .failure(StoreFailure(PYLON_ERR_NO_MEMORY, "NO_MEMORY", "libpq could not allocate a connection"))
        }
        guard PQstatus(pg) == CONNECTION_OK else {
            let msg = errorText(pg)
            PQfinish(pg)
            return .failure(StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_FAILED",
                                         "cannot connect to PostgreSQL (\(config.redactedTarget)): \(msg); check the url / DATABASE_URL, that the server runs and accepts this user"))
        }
        // UTC timestamps, no notices on stderr, ISO dates: the same text on every host.
        var setups = ["SET TIME ZONE 'UTC'", "SET client_min_messages TO warning", "SET DateStyle TO ISO"]
        if !writable, config.readTimeoutMs > 0 { setups.append("SET statement_timeout = \(config.readTimeoutMs)") }
        for setup in setups {
            let r = PQexec(pg, setup)
            let ok = PQresultStatus(r) == PGRES_COMMAND_OK
            PQclear(r)
            if !ok {
                let msg = errorText(pg)
                PQfinish(pg)
                return .failure(StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_FAILED", "PostgreSQL session setup failed: \(msg)"))
            }
        }
        return .success(pg)
    }

    static func errorText(_ pg: OpaquePointer?) -> String {
        guard let pg, let m = PQerrorMessage(pg) else { return "unknown error" }
        return String(cString: m).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A usable session: resets a broken one, unless a transaction was open on it (then
    /// the transaction is gone, which the caller must hear about).
    private func ensureConnected() -> StoreFailure? {
        if let pg, PQstatus(pg) == CONNECTION_OK { return nil }
        if inTransaction {
            inTransaction = false
            deferredBegin = nil
            return StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST",
                                "the connection to PostgreSQL was lost inside a transaction, which was rolled back; retry the request")
        }
        if let pg { PQfinish(pg) }
        pg = nil
        forgetSession()
        prepared.removeAll()
        listening.removeAll()
        switch Self.connect(config, writable: writable) {
        case let .failure(f): return f
        case let .success(c):
            pg = c
            adopt(c)
            return nil
        }
    }

    /// After a failed call: a dead socket means the session is gone.
    private func lostFailure(_ sqlState: String?) -> StoreFailure? {
        guard let pg, PQstatus(pg) != CONNECTION_OK else { return nil }
        let wasInTransaction = inTransaction
        inTransaction = false
        deferredBegin = nil
        prepared.removeAll()
        forgetSession()
        return StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST",
                            "the connection to PostgreSQL was lost\(wasInTransaction ? " inside a transaction, which was rolled back" : ""): \(Self.errorText(pg)); retry the request")
    }

    /// Bumped by every DEALLOCATE ALL (statement names handed out before it are gone).
    private var deallocations = 0

    /// The name of `sql` prepared on this session, preparing it now if needed.
    private func preparedName(_ sql: String, parameterCount: Int) -> Result<String, StoreFailure> {
        if let n = prepared[sql] { return .success(n) }
        if prepared.count >= config.statementCache {
            let r = PQexec(pg, "DEALLOCATE ALL")
            PQclear(r)
            prepared.removeAll()
            deallocations += 1
        }
        nextName += 1
        let name = "pylon_\(nextName)"
        let r = PQprepare(pg, name, sql, Int32(parameterCount), nil)
        defer { PQclear(r) }
        guard PQresultStatus(r) == PGRES_COMMAND_OK else { return .failure(failure(r)) }
        prepared[sql] = name
        return .success(name)
    }

    /// Runs one statement (with a deferred BEGIN in front of it, in one round trip). Text
    /// parameters go as untyped text (the server infers each parameter's type from the
    /// statement), blobs in binary as bytea.
    func execute(_ sql: String, _ params: UnsafeBufferPointer<pylon_value>, sink: UnsafePointer<pylon_row_sink>?)
        -> Result<Int64, StoreFailure>
    {
        if let f = ensureConnected() { return .failure(f) }
        if deferredBegin != nil {
            return sql.withCString { c in
                let one = pylon_statement(sql: c, sql_len: sql.utf8.count, params: params.baseAddress, param_count: params.count)
                return withUnsafePointer(to: one) { executeBatch(UnsafeBufferPointer(start: $0, count: 1), sink: sink) }
            }
        }
        return runPrepared(sql, params, sink: sink)
    }

    private func runPrepared(_ sql: String, _ params: UnsafeBufferPointer<pylon_value>, sink: UnsafePointer<pylon_row_sink>?)
        -> Result<Int64, StoreFailure>
    {
        let name: String
        switch preparedName(sql, parameterCount: params.count) {
        case let .failure(f): return .failure(f)
        case let .success(n): name = n
        }
        let buffers: ParameterBuffers
        switch ParameterBuffers.make(params) {
        case let .failure(f): return .failure(f)
        case let .success(b): buffers = b
        }
        let r = PQexecPrepared(pg, name, Int32(params.count), buffers.values, buffers.lengths, buffers.formats, 0)
        defer { PQclear(r) }
        let status = PQresultStatus(r)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let f = failure(r)
            // A statement whose plan went stale (e.g. the table changed) is prepared anew next time.
            if f.code == "SQL_ERROR" { prepared.removeValue(forKey: sql) }
            return .failure(f)
        }
        if status == PGRES_TUPLES_OK, let sink, let stop = Self.deliver(r, sink) { return .failure(stop) }
        if status == PGRES_COMMAND_OK, let sink, let columns = sink.pointee.columns {
            if columns(sink.pointee.ctx, nil, 0) != PYLON_OK {
                return .failure(StoreFailure(PYLON_ERR_ABORTED, "ABORTED", "row sink stopped the statement"))
            }
        }
        return .success(Self.affectedRows(r))
    }

    private static func affectedRows(_ r: OpaquePointer?) -> Int64 {
        PQcmdTuples(r).map { Int64(String(cString: $0)) ?? 0 } ?? 0
    }

    /// Several statements (`execute` with a list): the statements in one pipeline (one round trip; a deferred BEGIN
    /// goes first in it), results read in order, the last one's rows to `sink`; the first
    /// failure is returned (the server skips the rest of the pipeline and the transaction
    /// is then failed). Falls back to one `execute` at a time when the statements do not
    /// all fit in the prepared-statement cache.
    /// `commit` (PYLON_EXEC_COMMIT): COMMIT ends the pipeline; on any failure the transaction
    /// is rolled back before returning, so none is left open.
    func executeBatch(_ statements: UnsafeBufferPointer<pylon_statement>, sink: UnsafePointer<pylon_row_sink>?,
                      commit: Bool = false) -> Result<Int64, StoreFailure>
    {
        guard commit else { return runBatch(statements, sink: sink, commit: false) }
        let outcome = runBatch(statements, sink: sink, commit: true)
        if case .failure = outcome { abandonTransaction() }
        return outcome
    }

    /// After a failed commit: rolls back whatever is still open on the server.
    private func abandonTransaction() {
        deferredBegin = nil
        inTransaction = false
        guard let pg, PQstatus(pg) == CONNECTION_OK else { return }
        let state = PQtransactionStatus(pg)
        if state == PQTRANS_INTRANS || state == PQTRANS_INERROR {
            PQclear(PQexec(pg, "ROLLBACK"))
        }
    }

    private func runBatch(_ statements: UnsafeBufferPointer<pylon_statement>, sink: UnsafePointer<pylon_row_sink>?,
                          commit: Bool) -> Result<Int64, StoreFailure>
    {
        if let f = ensureConnected() { return .failure(f) }
        func text(_ s: pylon_statement) -> String {
            String(decoding: UnsafeRawBufferPointer(start: s.sql, count: s.sql == nil ? 0 : s.sql_len), as: UTF8.self)
        }
        func params(_ s: pylon_statement) -> UnsafeBufferPointer<pylon_value> {
            UnsafeBufferPointer(start: s.params, count: s.params == nil ? 0 : s.param_count)
        }
        guard !statements.isEmpty else {
            if commit, let f = transaction(PYLON_TX_COMMIT) { return .failure(f) }
            return .success(0)
        }
        let generation = deallocations
        var names: [String] = []
        names.reserveCapacity(statements.count)
        for s in statements {
            guard s.sql != nil else {
                return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "execute: a statement without SQL"))
            }
            switch preparedName(text(s), parameterCount: params(s).count) {
            case let .failure(f): return .failure(f)
            case let .success(n): names.append(n)
            }
        }
        guard generation == deallocations, PQenterPipelineMode(pg) == 1 else {
            if let f = sendDeferredBegin() { return .failure(f) }
            var last: Int64 = 0
            for (i, s) in statements.enumerated() {
                switch runPrepared(text(s), params(s), sink: i == statements.count - 1 ? sink : nil) {
                case let .failure(f): return .failure(f)
                case let .success(n): last = n
                }
            }
            if commit, let f = transaction(PYLON_TX_COMMIT) { return .failure(f) }
            return .success(last)
        }
        defer { PQexitPipelineMode(pg) }
        var failed: StoreFailure?
        // The deferred BEGIN counts as statement -1.
        var expected = 0
        if let begin = deferredBegin {
            deferredBegin = nil
            if PQsendQueryParams(pg, begin, 0, nil, nil, nil, nil, 0) != 1 {
                failed = lostFailure(nil) ?? StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", Self.errorText(pg))
            } else {
                expected += 1
            }
        }
        let hasBegin = expected == 1
        var sent = 0
        if failed == nil {
            for (i, s) in statements.enumerated() {
                switch ParameterBuffers.make(params(s)) {
                case let .failure(f): failed = f
                case let .success(b):
                    if PQsendQueryPrepared(pg, names[i], Int32(params(s).count), b.values, b.lengths, b.formats, 0) != 1 {
                        failed = lostFailure(nil) ?? StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", Self.errorText(pg))
                    }
                }
                if failed != nil { break }
                sent += 1
            }
        }
        expected += sent
        // COMMIT rides at the end (statement index `statements.count`).
        var commitSent = false
        if commit, failed == nil {
            if PQsendQueryParams(pg, "COMMIT", 0, nil, nil, nil, nil, 0) != 1 {
                failed = lostFailure(nil) ?? StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", Self.errorText(pg))
            } else {
                commitSent = true
                expected += 1
            }
        }
        if PQpipelineSync(pg) != 1 {
            return .failure(lostFailure(nil) ?? StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST", Self.errorText(pg)))
        }
        var last: Int64 = 0
        for k in 0..<expected {
            let i = hasBegin ? k - 1 : k  // index into `statements`; -1 = BEGIN
            guard let r = PQgetResult(pg) else {
                return .failure(lostFailure(nil) ?? StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST", "no result for statement \(i + 1) of the pipeline: \(Self.errorText(pg))"))
            }
            let status = PQresultStatus(r)
            if commitSent, i == statements.count {
                // A COMMIT of a failed transaction answers ROLLBACK.
                if failed == nil {
                    if status != PGRES_COMMAND_OK {
                        if status != PGRES_PIPELINE_ABORTED { failed = failure(r) }
                    } else if let tag = PQcmdStatus(r), String(cString: tag) == "ROLLBACK" {
                        failed = StoreFailure(PYLON_ERR_ABORTED, "TRANSACTION_ABORTED",
                                              "PostgreSQL rolled the transaction back at COMMIT because a statement in it had failed")
                    }
                }
            } else if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
                if i == statements.count - 1, failed == nil {
                    last = Self.affectedRows(r)
                    if let sink {
                        if status == PGRES_TUPLES_OK {
                            failed = Self.deliver(r, sink)
                        } else if let columns = sink.pointee.columns, columns(sink.pointee.ctx, nil, 0) != PYLON_OK {
                            failed = StoreFailure(PYLON_ERR_ABORTED, "ABORTED", "row sink stopped the statement")
                        }
                    }
                }
            } else if failed == nil, status != PGRES_PIPELINE_ABORTED {
                let f = failure(r)
                if f.code == "SQL_ERROR", i >= 0 { prepared.removeValue(forKey: text(statements[i])) }
                failed = f
            }
            PQclear(r)
            // Each statement's results end with a NULL.
            while let extra = PQgetResult(pg) { PQclear(extra) }
        }
        // The sync point ends the pipeline.
        while true {
            guard let r = PQgetResult(pg) else {
                if PQstatus(pg) != CONNECTION_OK {
                    return .failure(lostFailure(nil) ?? StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST", Self.errorText(pg)))
                }
                continue
            }
            let status = PQresultStatus(r)
            PQclear(r)
            if status == PGRES_PIPELINE_SYNC { break }
        }
        if let failed { return .failure(failed) }
        if commitSent { inTransaction = false }
        return .success(last)
    }

    /// Sends a deferred BEGIN on its own (when a statement cannot ride in a pipeline).
    private func sendDeferredBegin() -> StoreFailure? {
        guard let begin = deferredBegin else { return nil }
        deferredBegin = nil
        let r = PQexec(pg, begin)
        defer { PQclear(r) }
        return PQresultStatus(r) == PGRES_COMMAND_OK ? nil : failure(r)
    }

    /// Streams a result's columns and rows to the sink, typed by column OID.
    private static func deliver(_ r: OpaquePointer?, _ sink: UnsafePointer<pylon_row_sink>) -> StoreFailure? {
        let s = sink.pointee
        let ncols = Int(PQnfields(r))
        let nrows = Int(PQntuples(r))
        if let columns = s.columns {
            var names = [pylon_str](repeating: pylon_str(), count: ncols)
            for c in 0..<ncols {
                let n = PQfname(r, Int32(c))!
                names[c] = pylon_str(ptr: n, len: strlen(n))
            }
            if columns(s.ctx, names, ncols) != PYLON_OK {
                return StoreFailure(PYLON_ERR_ABORTED, "ABORTED", "row sink stopped the statement")
            }
        }
        guard let rowFn = s.row else { return nil }
        let types = (0..<ncols).map { PQftype(r, Int32($0)) }
        var values = [pylon_value](repeating: pylon_value(), count: ncols)
        // Converted text (timestamps, bytea) must outlive the row callback.
        var scratch: [[UInt8]] = Array(repeating: [], count: ncols)
        for row in 0..<nrows {
            for c in 0..<ncols {
                values[c] = PostgresValues.value(r, Int32(row), Int32(c), type: types[c], scratch: &scratch[c])
            }
            let rc = scratch.withUnsafeBufferPointer { _ in
                values.withUnsafeBufferPointer { rowFn(s.ctx, $0.baseAddress, ncols) }
            }
            if rc != PYLON_OK { return StoreFailure(PYLON_ERR_ABORTED, "ABORTED", "row sink stopped the statement") }
        }
        return nil
    }

    static func doubleText(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return "\(d)"
    }

    /// `wait_notify`: LISTEN on first use, then wait on the session's socket for a
    /// notification (several collapse into one) until `timeoutMs`. `.success(true)` when
    /// notified, `.success(false)` on timeout. Notifications sent by the instance's own
    /// sessions are left out, as the ABI allows: they are this host's commits, which it
    /// publishes itself, and reading the log back for each cost the server a query and two
    /// wake-ups per write transaction.
    func waitNotify(channel: String, timeoutMs: Int32) -> Result<Bool, StoreFailure> {
        if let f = ensureConnected() { return .failure(f) }
        if !listening.contains(channel) {
            let r = PQexec(pg, "LISTEN \"" + channel.replacingOccurrences(of: "\"", with: "\"\"") + "\"")
            defer { PQclear(r) }
            guard PQresultStatus(r) == PGRES_COMMAND_OK else { return .failure(failure(r)) }
            listening.insert(channel)
        }
        let deadline = monotonicMillis() + Int64(max(timeoutMs, 0))
        while true {
            guard PQconsumeInput(pg) == 1 else {
                return .failure(lostFailure(nil) ?? StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST", Self.errorText(pg)))
            }
            var notified = false
            while let n = PQnotifies(pg) {
                if !sessions.contains(n.pointee.be_pid) { notified = true }
                PQfreemem(n)
            }
            if notified { return .success(true) }
            let left = deadline - monotonicMillis()
            if left <= 0 { return .success(false) }
            var fds = pollfd(fd: PQsocket(pg), events: Int16(POLLIN), revents: 0)
            let rc = poll(&fds, 1, Int32(min(left, Int64(Int32.max))))
            if rc < 0 && errno != EINTR {
                return .failure(StoreFailure(PYLON_ERR_IO, "IO_ERROR", "poll on the PostgreSQL socket failed: errno \(errno)"))
            }
        }
    }

    private func monotonicMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// BEGIN / COMMIT / ROLLBACK. BEGIN is deferred to the first statement (one round trip
    /// less per transaction). A COMMIT the server turned into a ROLLBACK (the transaction
    /// had failed) is reported as a failure, as the ABI requires.
    func transaction(_ op: Int32) -> StoreFailure? {
        let sql: String
        switch op {
        case PYLON_TX_BEGIN: sql = "BEGIN"
        case PYLON_TX_BEGIN_READ: sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        case PYLON_TX_COMMIT: sql = "COMMIT"
        case PYLON_TX_ROLLBACK: sql = "ROLLBACK"
        default: return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "unknown transaction op \(op)")
        }
        if op == PYLON_TX_BEGIN || op == PYLON_TX_BEGIN_READ {
            if let f = ensureConnected() { return f }
            // Sent with the transaction's first statement (see `deferredBegin`).
            deferredBegin = sql
            inTransaction = true
            return nil
        }
        // Nothing open (e.g. a failed `commit_batch` already rolled back): nothing to end.
        if op == PYLON_TX_ROLLBACK && !inTransaction { return nil }
        if deferredBegin != nil {
            // Nothing was sent: there is no transaction on the server to end.
            deferredBegin = nil
            inTransaction = false
            return nil
        }
        if pg == nil || PQstatus(pg) != CONNECTION_OK {
            let was = inTransaction
            inTransaction = false
            if op == PYLON_TX_ROLLBACK { return nil }  // the server rolled it back with the session
            return StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST",
                                "the connection to PostgreSQL was lost\(was ? " before COMMIT; the transaction was rolled back" : ""); retry the request")
        }
        let r = PQexec(pg, sql)
        defer { PQclear(r) }
        guard PQresultStatus(r) == PGRES_COMMAND_OK else {
            let f = failure(r)
            if op == PYLON_TX_COMMIT {
                let x = PQexec(pg, "ROLLBACK")
                PQclear(x)
                inTransaction = false
            }
            return f
        }
        inTransaction = false
        if op == PYLON_TX_COMMIT, let tag = PQcmdStatus(r), String(cString: tag) == "ROLLBACK" {
            return StoreFailure(PYLON_ERR_ABORTED, "TRANSACTION_ABORTED",
                                "PostgreSQL rolled the transaction back at COMMIT because a statement in it had failed")
        }
        return nil
    }

    /// The error of a failed result (or of the session), mapped by SQLSTATE.
    private func failure(_ r: OpaquePointer?) -> StoreFailure {
        let state = r.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) }
        if let lost = lostFailure(state) { return lost }
        let message = r.flatMap { PQresultErrorMessage($0) }.map { String(cString: $0) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .flatMap { $0.isEmpty ? nil : $0 } ?? Self.errorText(pg)
        return PostgresValues.failure(sqlState: state, message: message)
    }

    func close() {
        if let pg {
            if inTransaction && deferredBegin == nil {
                let r = PQexec(pg, "ROLLBACK")
                PQclear(r)
            }
            PQfinish(pg)
        }
        pg = nil
        forgetSession()
    }
}

/// C parameter arrays for one prepared statement: NUL-terminated text for text format,
/// raw bytes for bytea. Frees its buffers when released.
private final class ParameterBuffers {
    private var storage: [UnsafeMutablePointer<CChar>?] = []
    var values: [UnsafePointer<CChar>?] = []
    var lengths: [Int32] = []
    var formats: [Int32] = []

    deinit { for p in storage { free(p) } }

    static func make(_ params: UnsafeBufferPointer<pylon_value>) -> Result<ParameterBuffers, StoreFailure> {
        let b = ParameterBuffers()
        b.storage.reserveCapacity(params.count)
        b.values.reserveCapacity(params.count)
        for i in 0..<params.count {
            let v = params[i]
            var text: String?
            var bytes: UnsafeRawBufferPointer?
            var binary = false
            switch v.type {
            case PYLON_VALUE_NULL: break
            case PYLON_VALUE_INT: text = String(v.as.i)
            case PYLON_VALUE_DOUBLE: text = PostgresConnection.doubleText(v.as.d)
            case PYLON_VALUE_TEXT: bytes = UnsafeRawBufferPointer(start: v.as.bytes.ptr, count: v.as.bytes.len)
            case PYLON_VALUE_BLOB:
                bytes = UnsafeRawBufferPointer(start: v.as.bytes.ptr, count: v.as.bytes.len)
                binary = true
            default:
                return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "parameter \(i + 1) has unknown value type \(v.type)"))
            }
            if let text { bytes = nil; b.storage.append(strdup(text)) } else if let bytes {
                if !binary, bytes.contains(0) {
                    return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "parameter \(i + 1): PostgreSQL text cannot contain a NUL character"))
                }
                let p = malloc(bytes.count + 1)!.assumingMemoryBound(to: CChar.self)
                if let base = bytes.baseAddress, bytes.count > 0 {
                    UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: bytes.count)
                }
                p[bytes.count] = 0
                b.storage.append(p)
            } else {
                b.storage.append(nil)
            }
            b.values.append(b.storage.last!.map { UnsafePointer($0) })
            b.lengths.append(Int32(bytes?.count ?? 0))
            b.formats.append(binary ? 1 : 0)
        }
        return .success(b)
    }
}
