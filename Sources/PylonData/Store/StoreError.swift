import PylonPluginABI
import PylonCore

/// An error reported by a store plugin, with the ABI status and the plugin's stable code.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var status: Int32
    public var code: String
    public var message: String

    public var description: String { "\(code): \(message)" }

    public var isConstraint: Bool { status == PYLON_ERR_CONSTRAINT }
    public var isUniqueViolation: Bool { code == "UNIQUE_VIOLATION" }
    /// The statement itself was rejected (syntax, bad argument), not the store.
    public var isStatementError: Bool { status == PYLON_ERR_GENERIC || status == PYLON_ERR_INVALID_ARGUMENT }
    /// The database could not take or read a value (PostgreSQL: a NUL character in text,
    /// class 22 data exceptions such as text that is not a date-time where one is needed):
    /// the request's fault, not the host's.
    public var isBadValue: Bool { status == PYLON_ERR_INVALID_ARGUMENT && (code == "INVALID_ARGUMENT" || code == "INVALID_VALUE") }

    /// The wire error for a store failure that reached a route (one mapping for every
    /// path): a unique violation reported at COMMIT (deferred-write stores) as the 409 a
    /// statement's would be; a bad value 400; a read stopped by the store's
    /// `read_timeout_ms` 503 `QUERY_TIMEOUT`; a busy store 503, anything else 500
    /// `STORE_ERROR`.
    package var answer: HostError {
        if isUniqueViolation { return HostError.uniqueViolation(nil) }
        if isBadValue { return Self.badValueAnswer }
        if code == "QUERY_TIMEOUT" { return HostError(status: 503, code: "QUERY_TIMEOUT", message: message) }
        return HostError(status: status == PYLON_ERR_BUSY ? 503 : 500, code: "STORE_ERROR", message: message)
    }

    /// The 400 for `isBadValue`. The database's own text is left out: it can quote a
    /// stored value the caller may not read.
    package static let badValueAnswer = HostError(
        status: 400, code: "INVALID_VALUE",
        message: "the database cannot use a value of this request or of the rows it reads (text with a NUL character, or a field bucketed as a date-time that holds text that is not one); change the value")
}

/// Result rows of one statement, copied out of the plugin's buffers.
public struct QueryResult: Sendable {
    public var columns: [String] = []
    public var rows: [[SQLValue]] = []
    public var rowsAffected: Int64 = 0
    public var lastInsertID: Int64 = 0
}
