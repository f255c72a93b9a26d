import PylonJSON

/// The host's one error type. `code` is stable and goes on the wire as
/// `{"error":{"code","message",...}}` with `status` as the HTTP status; messages say what
/// to do next.
public struct HostError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var hint: String?
    /// Extra keys inside `error`, e.g. `oldest_seq` on RESYNC_REQUIRED.
    public var extra: [(String, JSONValue)] = []
    /// Seconds to send as `Retry-After` (a 429's).
    public var retryAfter: Int?

    public init(status: Int, code: String, message: String, hint: String? = nil, extra: [(String, JSONValue)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.extra = extra
    }

    public var description: String { "\(status) \(code): \(message)" }

    public static func badRequest(_ code: String, _ message: String) -> HostError {
        HostError(status: 400, code: code, message: message)
    }
    /// A write hit a unique field or index. The store's own text is left out: it names the
    /// index and (on Postgres) echoes the key, and the answer should say no more than that
    /// the value is taken — which a unique constraint unavoidably tells any writer.
    public static func uniqueViolation(_ entity: String?) -> HostError {
        HostError(status: 409, code: "UNIQUE_VIOLATION",
                  message: "a \(entity ?? "row") with the same value in a unique field already exists; use another value")
    }
    public static func notFound(_ message: String) -> HostError {
        HostError(status: 404, code: "NOT_FOUND", message: message)
    }
    public static func forbidden(_ message: String) -> HostError {
        HostError(status: 403, code: "FORBIDDEN", message: message)
    }
    public static func unavailable(_ message: String) -> HostError {
        HostError(status: 503, code: "UNAVAILABLE", message: message)
    }
    public static func entityNotFound(_ name: String) -> HostError {
        HostError(status: 400, code: "ENTITY_NOT_FOUND",
                  message: "entity \"\(name)\" is not in the manifest; check the name (it is case-sensitive)")
    }

    /// 429 `RATE_LIMITED` with `Retry-After` (and `retry_after_secs` in the body, as Pylon's
    /// function limiter sends it).
    public static func rateLimited(retryAfter: Int, _ message: String) -> HostError {
        var e = HostError(status: 429, code: "RATE_LIMITED", message: message, extra: [("retry_after_secs", .int(Int64(retryAfter)))])
        e.retryAfter = retryAfter
        return e
    }

    public static func policyDenied(_ op: String, _ entity: String) -> HostError {
        HostError(status: 403, code: "POLICY_DENIED", message: "Access denied by policy (\(op) \(entity))",
                  hint: "Check your auth token or the policy rules in your schema")
    }

    /// The wire body.
    public var body: JSONValue {
        var inner: [(String, JSONValue)] = [("code", .string(code)), ("message", .string(message))]
        if let hint { inner.append(("hint", .string(hint))) }
        inner.append(contentsOf: extra)
        return .object([("error", .object(inner))])
    }
}
