import Crypto
import Foundation
import PylonCore
import PylonJSON

/// API keys (pylon-aux.md §1.9): long-lived credentials a signed-in user makes for scripts
/// and servers. The token is `pk.key_<32 base64url>.<43 base64url>` — a 24-byte id and a
/// 32-byte secret; the host keeps the id, the first 16 characters (to show) and an
/// HMAC-SHA256 of the secret under the pepper, so a copy of the database signs nobody in.
/// A request with a key acts as its user, with `api_key_id` and `api_key_scopes` set, and
/// with the user's verified address as `auth.email` (read with the key, so always current).
package final class ApiKeys: Sendable {
    /// One stored key, without its secret.
    package struct Key: Sendable {
        package let id: String
        package let userID: String
        package let name: String
        package let prefix: String
        package let scopes: String?
        package let expiresAt: Int64?
        package let lastUsedAt: Int64?
        package let createdAt: Int64

        package var json: JSONValue {
            .object([("id", .string(id)), ("prefix", .string(prefix)), ("name", .string(name)),
                     ("scopes", scopes.map { .string($0) } ?? .null), ("expires_at", expiresAt.map { .int($0) } ?? .null),
                     ("last_used_at", lastUsedAt.map { .int($0) } ?? .null), ("created_at", .int(createdAt))])
        }
    }

    /// Keys one user may hold at once.
    package static let maxPerUser = 100
    /// `last_used_at` is written at most this often per key (seconds).
    static let touchInterval: Int64 = 60

    private let store: StoreThreads
    private let dialect: SQLDialect
    private let pepper: Data
    private let verifiedEmail: VerifiedEmail

    package init(store: StoreThreads, dialect: SQLDialect, pepper: String, verifiedEmail: VerifiedEmail) {
        self.store = store
        self.dialect = dialect
        self.pepper = Data(pepper.utf8)
        self.verifiedEmail = verifiedEmail
    }

    /// A new key for `userID`; returns the token (shown once) and the stored key.
    package func create(userID: String, name: String, scopes: String?, expiresAt: Int64?) async throws -> (token: String, key: Key) {
        let id = "key_" + Self.base64url(Self.random(24))
        let secret = Self.base64url(Self.random(32))
        let token = "pk.\(id).\(secret)"
        let now = Int64(Date().timeIntervalSince1970)
        let key = Key(id: id, userID: userID, name: name, prefix: String(token.prefix(16)), scopes: scopes,
                      expiresAt: expiresAt, lastUsedAt: nil, createdAt: now)
        let d = dialect, hash = digest(secret)
        try await store.write { tx in
            let held = try tx.connection.execute("SELECT COUNT(*) FROM \(d.quote("_pylon_api_keys")) WHERE \(d.quote("user_id")) = \(d.placeholder(1))",
                                                 [.text(userID)]).rows.first?.at(0).intValue ?? 0
            guard held < Int64(Self.maxPerUser) else {
                throw HostError.badRequest("API_KEY_LIMIT", "a user may hold at most \(Self.maxPerUser) API keys; revoke one first")
            }
            let columns = ["id", "user_id", "name", "prefix", "secret_hash", "scopes", "expires_at", "created_at"]
            try tx.write("INSERT INTO \(d.quote("_pylon_api_keys")) (\(columns.map(d.quote).joined(separator: ", "))) VALUES (\((1...columns.count).map(d.placeholder).joined(separator: ", ")))",
                         [.text(id), .text(userID), .text(name), .text(key.prefix), .text(hash),
                          scopes.map { .text($0) } ?? .null, expiresAt.map { .int($0) } ?? .null, .int(now)])
        }
        return (token, key)
    }

    /// `userID`'s keys, newest first.
    package func list(userID: String) async throws -> [Key] {
        let d = dialect
        let sql = "SELECT \(Self.columns.map(d.quote).joined(separator: ", ")) FROM \(d.quote("_pylon_api_keys")) WHERE \(d.quote("user_id")) = \(d.placeholder(1)) ORDER BY \(d.quote("created_at")) DESC, \(d.quote("id"))"
        return try await store.read { conn in try conn.execute(sql, [.text(userID)]).rows.compactMap(Self.key) }
    }

    /// Deletes key `id` if it is `userID`'s; false when there is no such key of theirs.
    package func revoke(id: String, userID: String) async throws -> Bool {
        let d = dialect
        let match = "FROM \(d.quote("_pylon_api_keys")) WHERE \(d.quote("id")) = \(d.placeholder(1)) AND \(d.quote("user_id")) = \(d.placeholder(2))"
        return try await store.write { tx in
            // Asked before deleting: a deferred-write store (D1) reports no row counts until commit.
            guard !(try tx.connection.execute("SELECT 1 \(match)", [.text(id), .text(userID)]).rows.isEmpty) else { return false }
            try tx.write("DELETE \(match)", [.text(id), .text(userID)])
            try Self.endStreams(tx, [id])
            return true
        }
    }

    /// Deletes every key of `userID`; returns how many there were.
    package func revokeAll(userID: String) async throws -> Int {
        let d = dialect
        let table = d.quote("_pylon_api_keys"), user = d.quote("user_id")
        return try await store.write { tx in
            // Counted before deleting: a deferred-write store reports no row counts until commit.
            let ids = try tx.connection.execute("SELECT \(d.quote("id")) FROM \(table) WHERE \(user) = \(d.placeholder(1))", [.text(userID)])
                .rows.compactMap { $0.at(0).textValue }
            try tx.write("DELETE FROM \(table) WHERE \(user) = \(d.placeholder(1))", [.text(userID)])
            try Self.endStreams(tx, ids)
            return ids.count
        }
    }

    /// Logs the revoked keys' stream names in `_pylon_session_changes`, in the revoking
    /// transaction: every host's `SessionWatcher` then ends the streams they opened.
    static func endStreams(_ tx: WriteTransaction, _ ids: [String]) throws {
        let d = tx.dialect, now = SessionStore.now()
        for id in ids {
            try tx.write("INSERT INTO \(d.quote("_pylon_session_changes")) (\(d.quote("token_hash")), \(d.quote("ts"))) VALUES (\(d.placeholder(1)), \(d.placeholder(2)))",
                         [.text(SessionStore.apiKeyStream(id)), .int(now)])
        }
    }

    /// The key a `pk.` token names and its user's verified address, when the token is well
    /// formed, its secret matches in constant time and it has not expired; nil otherwise.
    package func resolve(_ token: String) async throws -> (key: Key, email: String?)? {
        guard let (id, secret) = Self.parse(token) else { return nil }
        // The MAC first, whether or not the key exists: a missing key costs what a wrong secret does.
        let presented = digest(secret)
        let d = dialect
        let sql = "SELECT \((Self.columns + ["secret_hash"]).map { "k." + d.quote($0) }.joined(separator: ", ")), \(verifiedEmail.columns) "
            + "FROM \(d.quote("_pylon_api_keys")) k\(verifiedEmail.join(on: "k." + d.quote("user_id"))) WHERE k.\(d.quote("id")) = \(d.placeholder(1))"
        let n = Self.columns.count
        guard let row = try await store.read(quick: true, { conn in try conn.execute(sql, [.text(id)]).rows.first }),
              let key = Self.key(row), row.count == n + 3, let stored = row[n].textValue else { return nil }
        let now = Int64(Date().timeIntervalSince1970)
        guard ConstantTime.equal(presented, stored), key.expiresAt.map({ now < $0 }) ?? true else { return nil }
        if now - (key.lastUsedAt ?? 0) >= Self.touchInterval { touch(id, now) }
        return (key, verifiedEmail.value(email: row[n + 1], verified: row[n + 2]))
    }

    /// Records a use; nobody waits for it, and a failure only leaves the time older.
    private func touch(_ id: String, _ now: Int64) {
        let d = dialect
        let sql = "UPDATE \(d.quote("_pylon_api_keys")) SET \(d.quote("last_used_at")) = \(d.placeholder(1)) WHERE \(d.quote("id")) = \(d.placeholder(2))"
        store.write({ tx in try tx.write(sql, [.int(now), .text(id)]) }, done: { _ in })
    }

    /// `pk.key_<32>.<43>`, base64url only; anything else is nil.
    static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "pk", parts[1].hasPrefix("key_"), parts[1].count == 36, parts[2].count == 43,
              (parts[1].dropFirst(4) + parts[2]).allSatisfy(Self.isBase64URL) else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    private func digest(_ secret: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(secret.utf8), using: SymmetricKey(data: pepper)).map { String(format: "%02x", $0) }.joined()
    }

    private static let columns = ["id", "user_id", "name", "prefix", "scopes", "expires_at", "last_used_at", "created_at"]

    private static func key(_ row: [SQLValue]) -> Key? {
        guard row.count >= columns.count, let id = row[0].textValue, let user = row[1].textValue, let name = row[2].textValue,
              let prefix = row[3].textValue, let created = row[7].intValue else { return nil }
        return Key(id: id, userID: user, name: name, prefix: prefix, scopes: row[4].textValue, expiresAt: row[5].intValue,
                   lastUsedAt: row[6].intValue, createdAt: created)
    }

    private static func isBase64URL(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_")
    }

    private static func random(_ n: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    private static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
