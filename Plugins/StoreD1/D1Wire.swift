import PylonJSON
import PylonPluginABI
import PylonPluginKit

/// The D1 query API's request and response shapes (Cloudflare's REST form):
///
///     POST …/query  {"sql": "...", "params": [...]}            one statement
///     POST …/query  {"batch": [{"sql", "params"}, ...]}        one transaction
///     → {"result": [{"results": [{col: value, ...}], "success", "meta": {"changes", "last_row_id", ...}}],
///        "success", "errors": [{"code", "message"}], "messages"}
///
/// Parameters go as JSON values: integers, doubles, strings, null; a blob as an array of
/// byte values (JSON has no bytes; the host binds no blobs today).
enum D1Wire {
    /// One statement's outcome.
    struct StatementResult {
        var columns: [String] = []
        var rows: [[JSONValue]] = []
        var changes: Int64 = 0
        var lastRowID: Int64 = 0
    }

    static func statement(_ sql: String, _ params: [JSONValue]) -> JSONValue {
        .object([("sql", .string(sql)), ("params", .array(params))])
    }

    static func body(_ statements: [JSONValue], batch: Bool) -> [UInt8] {
        JSONWriter.encode(batch ? .object([("batch", .array(statements))]) : statements[0])
    }

    /// A host parameter as JSON. Bytes are owned by the host and valid for the call.
    static func param(_ v: pylon_value) -> Result<JSONValue, StoreFailure> {
        switch v.type {
        case PYLON_VALUE_NULL: return .success(.null)
        case PYLON_VALUE_INT: return .success(.int(v.as.i))
        case PYLON_VALUE_DOUBLE: return .success(.double(v.as.d))
        case PYLON_VALUE_TEXT:
            let b = v.as.bytes
            guard let p = b.ptr else { return .success(.string("")) }
            return .success(.string(String(decoding: UnsafeBufferPointer(start: p, count: b.len), as: UTF8.self)))
        case PYLON_VALUE_BLOB:
            let b = v.as.bytes
            guard let p = b.ptr else { return .success(.array([])) }
            return .success(.array(UnsafeBufferPointer(start: p, count: b.len).map { .int(Int64($0)) }))
        default:
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "parameter of unknown value type \(v.type)"))
        }
    }

    /// Turns an HTTP answer into one result per statement, or a store failure that says
    /// what went wrong and what to do.
    static func decode(status: Int, body: [UInt8], expected: Int) -> Result<[StatementResult], StoreFailure> {
        let json = try? JSONParser.parse(body)
        let d1Message = json?["errors"]?.arrayValue?.compactMap { $0["message"]?.stringValue }.joined(separator: "; ")
        switch status {
        case 200..<300: break
        case 401, 403:
            return .failure(StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "D1_AUTH",
                                         "D1 refused the API token (HTTP \(status)\(d1Message.map { ": \($0)" } ?? "")); check api_token_env and that the token has D1 edit permission"))
        case 404:
            return .failure(StoreFailure(PYLON_ERR_NOT_FOUND, "D1_NOT_FOUND",
                                         "D1 has no such account or database (HTTP 404\(d1Message.map { ": \($0)" } ?? "")); check account_id and database_id"))
        case 429:
            return .failure(StoreFailure(PYLON_ERR_BUSY, "D1_RATE_LIMITED", "D1 is rate limiting this token (HTTP 429); retry later"))
        case 500...:
            return .failure(StoreFailure(PYLON_ERR_IO, "D1_UNAVAILABLE",
                                         "D1 answered HTTP \(status)\(d1Message.map { ": \($0)" } ?? ""); nothing was applied; retry later"))
        default:
            if let d1Message, !d1Message.isEmpty { return .failure(sqlFailure(d1Message)) }
            return .failure(StoreFailure(PYLON_ERR_GENERIC, "D1_HTTP_\(status)", "D1 answered HTTP \(status): \(snippet(body))"))
        }
        guard let json else {
            return .failure(StoreFailure(PYLON_ERR_IO, "D1_BAD_RESPONSE", "D1 answered HTTP \(status) with a body that is not JSON: \(snippet(body))"))
        }
        if json["success"]?.boolValue != true {
            return .failure(sqlFailure(d1Message.flatMap { $0.isEmpty ? nil : $0 } ?? "the request failed without an error message"))
        }
        guard let items = json["result"]?.arrayValue, items.count == expected else {
            return .failure(StoreFailure(PYLON_ERR_IO, "D1_BAD_RESPONSE", "D1 answered without one result per statement (expected \(expected)): \(snippet(body))"))
        }
        var out: [StatementResult] = []
        for item in items {
            var r = StatementResult()
            if item["success"]?.boolValue == false {
                return .failure(sqlFailure(item["error"]?.stringValue ?? "a statement failed"))
            }
            if let rows = item["results"]?.arrayValue {
                for row in rows {
                    guard case let .object(pairs) = row else {
                        return .failure(StoreFailure(PYLON_ERR_IO, "D1_BAD_RESPONSE", "a result row is not an object: \(snippet(body))"))
                    }
                    if r.rows.isEmpty { r.columns = pairs.map(\.0) }
                    guard pairs.count == r.columns.count else {
                        return .failure(StoreFailure(PYLON_ERR_IO, "D1_BAD_RESPONSE", "result rows have different columns"))
                    }
                    r.rows.append(pairs.map(\.1))
                }
            }
            r.changes = item["meta"]?["changes"]?.intValue ?? 0
            r.lastRowID = item["meta"]?["last_row_id"]?.intValue ?? 0
            out.append(r)
        }
        return .success(out)
    }

    /// D1 error messages end in the SQLite result name (e.g. "UNIQUE constraint failed:
    /// User.email: SQLITE_CONSTRAINT"); map them to the ABI's status and stable codes.
    static func sqlFailure(_ message: String) -> StoreFailure {
        let m = "D1: " + message
        if message.contains("UNIQUE constraint failed") || message.contains("PRIMARY KEY constraint failed") {
            return StoreFailure(PYLON_ERR_CONSTRAINT, "UNIQUE_VIOLATION", m)
        }
        if message.contains("NOT NULL constraint failed") { return StoreFailure(PYLON_ERR_CONSTRAINT, "NOT_NULL_VIOLATION", m) }
        if message.contains("CHECK constraint failed") { return StoreFailure(PYLON_ERR_CONSTRAINT, "CHECK_VIOLATION", m) }
        if message.contains("FOREIGN KEY constraint failed") { return StoreFailure(PYLON_ERR_CONSTRAINT, "FOREIGN_KEY_VIOLATION", m) }
        if message.contains("SQLITE_CONSTRAINT") { return StoreFailure(PYLON_ERR_CONSTRAINT, "CONSTRAINT_VIOLATION", m) }
        if message.contains("SQLITE_BUSY") || message.contains("SQLITE_LOCKED") { return StoreFailure(PYLON_ERR_BUSY, "BUSY", m) }
        if message.contains("SQLITE_TOOBIG") || message.contains("too big") { return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "TOO_BIG", m) }
        return StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", m)
    }

    /// The start of a body for an error message, printable.
    static func snippet(_ body: [UInt8]) -> String {
        let s = String(decoding: body.prefix(200), as: UTF8.self)
        return String(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0xFFFD ? "?" : Character($0) }) + (body.count > 200 ? "…" : "")
    }
}
