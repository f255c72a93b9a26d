import CLibPQ
import Foundation

/// The plugin's config object from the manifest (`plugins.store`).
struct PostgresConfig {
    /// What every host session is called in `pg_stat_activity`.
    static let hostApplicationName = "pylon-host"

    /// A libpq connection string or `postgres://` URI (sslmode and every other libpq
    /// option go in it).
    var conninfo = ""
    var statementCache = 256
    var readers: UInt32 = 4
    /// `read_timeout_ms`: a reader session's `statement_timeout` (0: none). One request's
    /// filter can cost far more than its size (a substring match over megabytes of its
    /// own rows), and a reader held for a minute stalls every list and pull behind it. The
    /// writer has none: it also runs migrations and backfills, which may rightly take long.
    var readTimeoutMs = 10_000

    /// The options the connection string sets (no defaults filled in), each with the
    /// environment variable libpq reads it from when it has one; nil when it does not parse.
    var options: [(keyword: String, envvar: String?, value: String)]? {
        guard let opts = PQconninfoParse(conninfo, nil) else { return nil }
        defer { PQconninfoFree(opts) }
        var out: [(keyword: String, envvar: String?, value: String)] = []
        var p = opts
        while let kw = p.pointee.keyword {
            if let v = p.pointee.val { out.append((String(cString: kw), p.pointee.envvar.map { String(cString: $0) }, String(cString: v))) }
            p += 1
        }
        return out
    }

    /// A new session to the database, named `application` in `pg_stat_activity` unless the
    /// connection string names it (so `restore` can tell serving hosts apart). Check
    /// `PQstatus`; nil only when libpq cannot allocate.
    func connect(application: String) -> OpaquePointer? {
        let keywords = ["dbname", "fallback_application_name"]
        let values = [conninfo, application]
        return withArrayOfCStrings(keywords) { k in withArrayOfCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
    }

    /// Host/port/database for messages, never the password.
    var redactedTarget: String {
        guard let opts = options else { return "invalid connection string" }
        var parts: [String: String] = [:]
        for o in opts { parts[o.keyword] = o.value }
        let host = parts["host"] ?? parts["hostaddr"] ?? "localhost"
        return "host \(host) port \(parts["port"] ?? "5432") database \(parts["dbname"] ?? parts["user"] ?? "(default)") user \(parts["user"] ?? "(default)")"
    }
}

/// `body` with a NULL-terminated C array of copies of `strings`, freed afterwards.
private func withArrayOfCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { UnsafePointer(strdup($0)) } + [nil]
    defer { for c in copies { free(UnsafeMutablePointer(mutating: c)) } }
    return copies.withUnsafeBufferPointer { body($0.baseAddress!) }
}
