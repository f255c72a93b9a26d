import CLibPQ
import Foundation
import PylonPluginABI
import PylonPluginKit

#if canImport(Glibc)
import Glibc
#endif

/// PostgreSQL ↔ ABI values and errors. Results come in text format and are typed by the
/// column's type OID: bool → int 0/1, int2/4/8 → int, float4/8 → double, numeric → int
/// when integral (SUM of bigints) else double, bytea → blob, timestamptz/timestamp →
/// RFC 3339 text in UTC, json/jsonb and everything else → text.
enum PostgresValues {
    // Type OIDs (pg_type.h; stable across server versions).
    static let boolOID: Oid = 16, byteaOID: Oid = 17, int8OID: Oid = 20, int2OID: Oid = 21, int4OID: Oid = 23
    static let float4OID: Oid = 700, float8OID: Oid = 701, numericOID: Oid = 1700
    static let timestampOID: Oid = 1114, timestamptzOID: Oid = 1184

    /// The value at (row, col). Borrowed bytes point into the result or into `scratch`,
    /// both alive until the row callback returns.
    static func value(_ r: OpaquePointer?, _ row: Int32, _ col: Int32, type: Oid, scratch: inout [UInt8]) -> pylon_value {
        var v = pylon_value()
        if PQgetisnull(r, row, col) != 0 { v.type = PYLON_VALUE_NULL; return v }
        let raw = PQgetvalue(r, row, col)!
        let len = Int(PQgetlength(r, row, col))
        switch type {
        case boolOID:
            v.type = PYLON_VALUE_INT
            v.as.i = raw.pointee == CChar(UInt8(ascii: "t")) ? 1 : 0
        case int2OID, int4OID, int8OID:
            v.type = PYLON_VALUE_INT
            v.as.i = strtoll(raw, nil, 10)
        case float4OID, float8OID:
            v.type = PYLON_VALUE_DOUBLE
            v.as.d = parseDouble(raw)
        case numericOID:
            let text = String(cString: raw)
            if let i = Int64(text) {
                v.type = PYLON_VALUE_INT
                v.as.i = i
            } else {
                v.type = PYLON_VALUE_DOUBLE
                v.as.d = parseDouble(raw)
            }
        case byteaOID:
            var n = 0
            let decoded = PQunescapeBytea(UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), &n)
            scratch = decoded.map { Array(UnsafeBufferPointer(start: $0, count: n)) } ?? []
            if let decoded { PQfreemem(decoded) }
            v.type = PYLON_VALUE_BLOB
            scratch.withUnsafeBufferPointer { v.as.bytes.ptr = $0.baseAddress }
            v.as.bytes.len = scratch.count
        case timestamptzOID, timestampOID:
            scratch = Array(rfc3339(String(cString: raw), zoned: type == timestamptzOID).utf8)
            v.type = PYLON_VALUE_TEXT
            scratch.withUnsafeBufferPointer { v.as.bytes.ptr = $0.baseAddress }
            v.as.bytes.len = scratch.count
        default:
            v.type = PYLON_VALUE_TEXT
            v.as.bytes.ptr = UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self)
            v.as.bytes.len = len
        }
        return v
    }

    static func parseDouble(_ raw: UnsafePointer<CChar>) -> Double {
        switch String(cString: raw) {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return strtod(raw, nil)
        }
    }

    /// "2026-11-23 14:05:06.123+00" → "2026-11-23T14:05:06.123Z" (sessions run in UTC).
    static func rfc3339(_ text: String, zoned: Bool) -> String {
        var s = text.replacingOccurrences(of: " ", with: "T")
        if s.hasSuffix("+00") { s.removeLast(3); s += "Z" } else if !zoned { s += "Z" }
        return s
    }

    /// SQLSTATE → ABI status and the host's stable codes.
    static func failure(sqlState: String?, message: String) -> StoreFailure {
        let state = sqlState ?? ""
        switch state {
        case "23505": return StoreFailure(PYLON_ERR_CONSTRAINT, "UNIQUE_VIOLATION", message)
        case "23502": return StoreFailure(PYLON_ERR_CONSTRAINT, "NOT_NULL_VIOLATION", message)
        case "23503": return StoreFailure(PYLON_ERR_CONSTRAINT, "FOREIGN_KEY_VIOLATION", message)
        case "23514": return StoreFailure(PYLON_ERR_CONSTRAINT, "CHECK_VIOLATION", message)
        case "40001", "40P01", "55P03": return StoreFailure(PYLON_ERR_BUSY, "BUSY", message)
        case "53100": return StoreFailure(PYLON_ERR_IO, "DISK_FULL", message)
        case "53200": return StoreFailure(PYLON_ERR_NO_MEMORY, "NO_MEMORY", message)
        // A reader's `statement_timeout` (`PostgresConfig.readTimeoutMs`), or a cancel.
        case "57014": return StoreFailure(PYLON_ERR_ABORTED, "QUERY_TIMEOUT", message + "; narrow the filter, or raise read_timeout_ms in the store's config")
        case "XX001", "XX002": return StoreFailure(PYLON_ERR_CORRUPT, "CORRUPT", message)
        default: break
        }
        switch state.prefix(2) {
        case "23": return StoreFailure(PYLON_ERR_CONSTRAINT, "CONSTRAINT_VIOLATION", message)
        case "08", "57": return StoreFailure(PYLON_ERR_CONNECTION, "CONNECTION_LOST", message)
        // Class 22: a value the statement cannot use (bad date-time text, out of range); the
        // host answers 400 INVALID_VALUE. Class 42: the statement itself is wrong.
        case "22": return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "INVALID_VALUE", message)
        case "42": return StoreFailure(PYLON_ERR_INVALID_ARGUMENT, "SQL_ERROR", message)
        case "58": return StoreFailure(PYLON_ERR_IO, "IO_ERROR", message)
        default: return StoreFailure(PYLON_ERR_GENERIC, "SQL_ERROR", message)
        }
    }
}
