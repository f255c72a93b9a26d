import Foundation
import PylonCore
import PylonData
import PylonJSON
import PylonPluginABI

/// One-time codes and links: the plugin (`AuthCodePlugin`) makes and checks the secrets, the
/// host keeps each one's opaque state in `_pylon_auth_codes`, so every host on one database
/// sees the same codes. A record is read, checked and replaced inside one write
/// transaction (the write lock, across hosts on Postgres), so two checks of one code never
/// both count as its last attempt or both use it.
package final class AuthCodes: Sendable {
    /// What a secret is for (the plugin picks its lifetime by it).
    package enum Purpose: String, Sendable {
        case magicCode = "magic_code"
        case emailVerification = "email_verification"
        case magicLink = "magic_link"
        case passwordReset = "password_reset"
        /// A link to a user's new address; confirming it makes it their email.
        case emailChange = "email_change"

        var kind: Int32 { self == .magicCode || self == .emailVerification ? Int32(PYLON_CODE_KIND_CODE) : Int32(PYLON_CODE_KIND_LINK) }
    }

    /// A new secret, or how long to wait before asking again.
    package enum Issued: Sendable {
        case issued(secret: String, expiresAt: Int64)
        case throttled(retryAfter: Int)
    }

    /// What checking a presented secret found.
    package enum Verdict: Sendable {
        /// It matched and is used up: the address it was sent to, and the user it was for.
        case accepted(email: String, userID: String?)
        case wrong, exhausted, expired, unknown
    }

    package let plugin: AuthCodePlugin
    private let store: StoreThreads
    private let dialect: SQLDialect

    /// A state for no record (issued for the far future, never stored), checked when a
    /// subject has none.
    private let decoyState: String

    package init(plugin: AuthCodePlugin, store: StoreThreads, dialect: SQLDialect) {
        self.plugin = plugin
        self.store = store
        self.dialect = dialect
        let never = Int64(Int32.max) * 4
        decoyState = (try? plugin.call(\.issue, kind: Int32(PYLON_CODE_KIND_CODE), purpose: "decoy", state: "", now: never))?["state"]?.stringValue ?? ""
    }

    /// The table's DDL (created at startup when the plugin is served).
    package static func createSQL(_ d: SQLDialect) -> [String] { d.createSystemTable(SystemTables.authCodes) }

    private var table: String { dialect.quote(SystemTables.authCodes.name) }
    private func p(_ n: Int) -> String { dialect.placeholder(n) }

    /// A new code for `subject` (replacing any earlier one), unless one was issued less
    /// than the plugin's cooldown ago. Lapsed records of every purpose are swept here.
    package func issueCode(_ purpose: Purpose, subject: String, email: String, userID: String? = nil) async throws -> Issued {
        let plugin = plugin, table = table, now = Int64(Date().timeIntervalSince1970)
        let select = "SELECT state FROM \(table) WHERE purpose = \(p(1)) AND subject = \(p(2))"
        let upsert = upsertSQL
        let sweep = "DELETE FROM \(table) WHERE expires_at < \(p(1))"
        return try await store.write { tx in
            let prior = try tx.connection.execute(select, [.text(purpose.rawValue), .text(subject)]).rows.first?.first?.textValue ?? ""
            let answer = try plugin.call(\.issue, kind: purpose.kind, purpose: purpose.rawValue, state: prior, now: now)
            guard answer["issued"]?.boolValue == true else {
                return .throttled(retryAfter: Int(max(1, answer["retry_after"]?.intValue ?? 1)))
            }
            let (secret, state, expires) = try Self.issuedParts(answer, plugin)
            try tx.write(sweep, [.int(now)])
            try tx.write(upsert, [.text(purpose.rawValue), .text(subject), .text(email), userID.map { .text($0) } ?? .null,
                                  .text(state), .int(expires), .int(now)])
            return .issued(secret: secret, expiresAt: expires)
        }
    }

    /// A new link token for `email`; earlier links of the same purpose for that address stop
    /// working (one live link per address and purpose).
    /// `key` is the record's subject (for `discard`).
    package func issueLink(_ purpose: Purpose, email: String, userID: String? = nil) async throws -> (token: String, key: String, expiresAt: Int64) {
        let plugin = plugin, table = table, now = Int64(Date().timeIntervalSince1970)
        let upsert = upsertSQL
        let clear = "DELETE FROM \(table) WHERE (purpose = \(p(1)) AND email = \(p(2))) OR expires_at < \(p(3))"
        return try await store.write { tx in
            let answer = try plugin.call(\.issue, kind: purpose.kind, purpose: purpose.rawValue, state: "", now: now)
            let (secret, state, expires) = try Self.issuedParts(answer, plugin)
            guard let key = answer["key"]?.stringValue, !key.isEmpty else {
                throw HostError(status: 500, code: "AUTH_CODE_FAILED", message: "plugin \(plugin.plugin.id) issued a link without its lookup key; the plugin is broken")
            }
            try tx.write(clear, [.text(purpose.rawValue), .text(email), .int(now)])
            try tx.write(upsert, [.text(purpose.rawValue), .text(key), .text(email), userID.map { .text($0) } ?? .null,
                                  .text(state), .int(expires), .int(now)])
            return (secret, key, expires)
        }
    }

    /// Checks `presented` against `subject`'s record and keeps what the plugin says to keep.
    package func verifyCode(_ purpose: Purpose, subject: String, presented: String) async throws -> Verdict {
        let plugin = plugin, table = table, now = Int64(Date().timeIntervalSince1970)
        let select = "SELECT state, email, user_id FROM \(table) WHERE purpose = \(p(1)) AND subject = \(p(2))"
        let update = "UPDATE \(table) SET state = \(p(1)) WHERE purpose = \(p(2)) AND subject = \(p(3))"
        let delete = "DELETE FROM \(table) WHERE purpose = \(p(1)) AND subject = \(p(2))"
        let decoy = decoyState
        return try await store.write { tx in
            let row = try tx.connection.execute(select, [.text(purpose.rawValue), .text(subject)]).rows.first
            guard let row, let state = row.first?.textValue, let email = row.at(1).textValue else {
                // No code for this subject: the same check and write against a decoy, so an
                // unknown email costs what a wrong code does.
                _ = try? plugin.call(\.check, kind: purpose.kind, purpose: purpose.rawValue, state: decoy, presented: presented, now: now)
                try tx.write(update, [.text(decoy), .text(purpose.rawValue), .text(subject)])
                return .unknown
            }
            let answer = try plugin.call(\.check, kind: purpose.kind, purpose: purpose.rawValue, state: state,
                                         presented: presented, now: now)
            if let next = answer["state"]?.stringValue {
                try tx.write(update, [.text(next), .text(purpose.rawValue), .text(subject)])
            } else {
                try tx.write(delete, [.text(purpose.rawValue), .text(subject)])
            }
            switch answer["verdict"]?.stringValue {
            case "accepted": return .accepted(email: email, userID: row.at(2).textValue)
            case "wrong": return .wrong
            case "exhausted": return .exhausted
            case "expired": return .expired
            default: return .unknown
            }
        }
    }

    /// Checks a link token (its record is found through the plugin's lookup key).
    package func verifyLink(_ purpose: Purpose, token: String) async throws -> Verdict {
        guard let key = try plugin.locate(token) else { return .unknown }
        return try await verifyCode(purpose, subject: key, presented: token)
    }

    /// Removes `subject`'s record (its email could not be sent: nothing is left half-done,
    /// and no cooldown holds the user back from asking again).
    package func discard(_ purpose: Purpose, subject: String) async throws {
        let sql = "DELETE FROM \(table) WHERE purpose = \(p(1)) AND subject = \(p(2))"
        try await store.write { tx in try tx.write(sql, [.text(purpose.rawValue), .text(subject)]) }
    }

    /// Removes `userID`'s records of `purpose` (pending email-change links, when a new one
    /// is asked for or the user's credentials change).
    package func drop(_ purpose: Purpose, userID: String) async throws {
        let sql = "DELETE FROM \(table) WHERE purpose = \(p(1)) AND user_id = \(p(2))"
        try await store.write { tx in try tx.write(sql, [.text(purpose.rawValue), .text(userID)]) }
    }

    /// Removes every record for `email` or `userID` (the account is being deleted).
    package func forget(email: String?, userID: String) async throws {
        let sql = "DELETE FROM \(table) WHERE user_id = \(p(1)) OR email = \(p(2))"
        try await store.write { tx in try tx.write(sql, [.text(userID), email.map { .text($0) } ?? .null]) }
    }

    /// The live records, newest first (at most 1000), for the studio's listing
    /// (`/api/admin/auth/magic_codes`): what each is for, where it went, for whom and until
    /// when — never a secret (the host has none) nor the plugin's state.
    package func pending() async throws -> JSONValue {
        let sql = "SELECT purpose, email, user_id, expires_at, created_at FROM \(table) WHERE expires_at > \(p(1)) "
            + "ORDER BY created_at DESC\(dialect.limitOffset(limit: "1000", offset: nil))"
        let rows = try await store.read { conn in try conn.execute(sql, [.int(Int64(Date().timeIntervalSince1970))]).rows }
        return .array(rows.map { row in
            .object([("purpose", row.at(0).json), ("email", row.at(1).json), ("user_id", row.at(2).json),
                     ("expires_at", row.at(3).json), ("created_at", row.at(4).json)])
        })
    }

    /// Sends `template` with `vars`; any failure is 500 EMAIL_SEND_FAILED (Pylon's code),
    /// with the transport's reason.
    package func send(_ template: String, to: String, vars: [(String, JSONValue)]) async throws {
        do {
            try await plugin.send(template: template, to: to, vars: vars)
        } catch let e as HostError {
            throw HostError(status: 500, code: "EMAIL_SEND_FAILED", message: "the email to \(to) could not be sent (\(e.message)); try again later")
        }
    }

    private var upsertSQL: String {
        "INSERT INTO \(table) (purpose, subject, email, user_id, state, expires_at, created_at) VALUES (\((1...7).map(p).joined(separator: ", "))) "
            + "ON CONFLICT (purpose, subject) DO UPDATE SET email = excluded.email, user_id = excluded.user_id, state = excluded.state, "
            + "expires_at = excluded.expires_at, created_at = excluded.created_at"
    }

    private static func issuedParts(_ answer: JSONValue, _ plugin: AuthCodePlugin) throws(HostError) -> (String, String, Int64) {
        guard let secret = answer["secret"]?.stringValue, !secret.isEmpty, let state = answer["state"]?.stringValue,
              let expires = answer["expires_at"]?.intValue else {
            throw HostError(status: 500, code: "AUTH_CODE_FAILED", message: "plugin \(plugin.plugin.id) answered issue without secret, state and expires_at; the plugin is broken")
        }
        return (secret, state, expires)
    }
}
