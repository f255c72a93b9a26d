import Foundation
import PylonCore
import PylonJSON

/// One uploaded file's row in `_pylon_files` (`SystemTables.files`).
package struct FileRecord: Sendable {
    package let id: String
    /// The files plugin's key for the bytes; never leaves the host.
    package let storageKey: String
    /// The uploader's user id; nil when uploaded with the admin token.
    package let owner: String?
    package let name: String
    package let type: String
    package let size: Int64
    /// Lowercase hex SHA-256 of the bytes.
    package let sha256: String
    /// Milliseconds since 1970.
    package let createdAt: Int64

    package init(id: String, storageKey: String, owner: String?, name: String, type: String, size: Int64, sha256: String, createdAt: Int64) {
        self.id = id
        self.storageKey = storageKey
        self.owner = owner
        self.name = name
        self.type = type
        self.size = size
        self.sha256 = sha256
        self.createdAt = createdAt
    }

    /// The row as clients see it (answers and change-log entries): no storage key.
    package var json: JSONValue {
        .object([("id", .string(id)), ("owner", owner.map { .string($0) } ?? .null), ("name", .string(name)),
                 ("type", .string(type)), ("size", .int(size)), ("sha256", .string(sha256)),
                 ("created_at", .string(ISOTime.string(millis: createdAt)))])
    }

    /// A new file id: "file_" and 32 base64url characters from 24 bytes of the system's
    /// CSPRNG, so ids cannot be guessed or enumerated (Pylon's were a timestamp and the name).
    package static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &g) }
        return "file_" + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    /// Whether `id` has the shape `newID` makes; anything else names no file (and never
    /// reaches a query or the plugin).
    package static func isID(_ id: String) -> Bool {
        let u = id.utf8
        return u.count == 37 && id.hasPrefix("file_") && u.dropFirst(5).allSatisfy { c in
            (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 45 || c == 95
        }
    }
}

/// The file rows, written through the store's writer with a change-log entry in the same
/// transaction (entity `_pylon_files`), so uploads and deletions reach the change log on
/// every store. The change log's readers see these entries as they see any entity the
/// manifest does not declare: admins only (everyone in --dev).
package final class FileRecords: Sendable {
    package static let entity = SystemTables.files.name
    private let store: StoreThreads
    private let dialect: SQLDialect

    package init(store: StoreThreads, dialect: SQLDialect) {
        self.store = store
        self.dialect = dialect
    }

    package static func createSQL(_ d: SQLDialect) -> [String] { d.createSystemTable(SystemTables.files) }

    private static let columns = ["id", "storage_key", "owner", "name", "type", "size", "sha256", "created_at"]

    /// Records `r`; with an owner, only when `quota` admits it and, with `ownerHoldsAccess`,
    /// only while the owner still holds a session or an API key. Both are checked in the
    /// same write transaction: concurrent uploads cannot pass the quota together, and an
    /// upload in flight while its account is deleted or purged leaves no row
    /// (`ownerGone`): the account's end revokes every session and key before it deletes
    /// the files, and write transactions run one at a time (SQLite's one writer,
    /// PostgreSQL's shared write lock), so this insert runs either before the revocation
    /// (and the file purge after it finds the row) or after it (and is refused).
    package func insert(_ r: FileRecord, quota: FileQuota = FileQuota(maxBytes: 0, maxFiles: 0), ownerHoldsAccess: Bool = false) async throws {
        let d = dialect
        let sql = "INSERT INTO \(d.quote(Self.entity)) (\(Self.columns.map(d.quote).joined(separator: ", "))) VALUES (\((1...Self.columns.count).map(d.placeholder).joined(separator: ", ")))"
        let params: [SQLValue] = [.text(r.id), .text(r.storageKey), r.owner.map { .text($0) } ?? .null, .text(r.name), .text(r.type),
                                  .int(r.size), .text(r.sha256), .int(r.createdAt)]
        let usageSQL = usageSQL, accessSQL = accessSQL
        try await store.write { tx in
            if let owner = r.owner, ownerHoldsAccess,
               try accessSQL.allSatisfy({ try tx.connection.execute($0, [.text(owner)]).rows.isEmpty }) {
                throw Self.ownerGone
            }
            if let owner = r.owner, !quota.unlimited {
                try quota.check(try Self.usage(tx.connection, usageSQL, owner), adding: r.size)
            }
            try ChangeLog.write(tx, sql, params, mapError: { $0 }, entity: Self.entity, rowID: r.id, kind: .insert, data: r.json, before: nil)
        }
    }

    /// 401 UPLOAD_OWNER_GONE: the uploader's account ended (deleted, purged, or signed out
    /// of every session with no API key left) before the upload was recorded.
    package static let ownerGone = HostError(
        status: 401, code: "UPLOAD_OWNER_GONE",
        message: "the account this upload belongs to was deleted or signed out everywhere while the upload was in flight; nothing was kept: sign in and upload again")

    /// One row of the owner's sessions, then of their API keys (each by its user index); any
    /// row will do: an account's end deletes them all, expired ones too.
    private var accessSQL: [String] {
        let d = dialect
        return [SystemTables.sessions.name, SystemTables.apiKeys.name].map { table in
            "SELECT 1 FROM \(d.quote(table)) WHERE \(d.quote("user_id")) = \(d.placeholder(1))\(d.limitOffset(limit: "1", offset: nil))"
        }
    }

    /// How many files `owner` has and their bytes (owner nil: the admin's unowned files).
    package func usage(owner: String?) async throws -> FileQuota.Usage {
        let sql = owner == nil ? usageSQL.replacingOccurrences(of: " = \(dialect.placeholder(1))", with: " IS NULL") : usageSQL
        return try await store.read { conn in try Self.usage(conn, sql, owner) }
    }

    private var usageSQL: String {
        "SELECT COUNT(*), CAST(COALESCE(SUM(\(dialect.quote("size"))), 0) AS BIGINT) FROM \(dialect.quote(Self.entity)) WHERE \(dialect.quote("owner")) = \(dialect.placeholder(1))"
    }

    private static func usage(_ conn: StoreConnection, _ sql: String, _ owner: String?) throws -> FileQuota.Usage {
        let row = try conn.execute(sql, owner.map { [.text($0)] } ?? []).rows.first
        return FileQuota.Usage(files: row?[0].intValue ?? 0, bytes: row.flatMap { $0.count > 1 ? $0[1].intValue : nil } ?? 0)
    }

    /// Which of `keys` (storage keys) some file row names: the sweep deletes bytes only
    /// when no row does.
    package func namedKeys(_ keys: [String]) async throws -> Set<String> {
        guard !keys.isEmpty else { return [] }
        let d = dialect
        let sql = "SELECT \(d.quote("storage_key")) FROM \(d.quote(Self.entity)) WHERE \(d.quote("storage_key")) IN (\((1...keys.count).map(d.placeholder).joined(separator: ", ")))"
        return try await store.read { conn in
            Set(try conn.execute(sql, keys.map { .text($0) }).rows.compactMap { $0.first?.textValue })
        }
    }

    package func get(_ id: String) async throws -> FileRecord? {
        guard FileRecord.isID(id) else { return nil }
        let sql = select("id")
        return try await store.read { conn in try conn.execute(sql, [.text(id)]).rows.first.flatMap(Self.record) }
    }

    /// Deletes the row `id` (with its change-log entry); returns it, or nil when there was none.
    package func delete(_ id: String) async throws -> FileRecord? {
        guard FileRecord.isID(id) else { return nil }
        return try await deleteWhere("id", id).first
    }

    /// `owner`'s files, oldest first (the GDPR export).
    package func list(owner: String) async throws -> [FileRecord] {
        let sql = select("owner") + " ORDER BY \(dialect.quote("created_at")), \(dialect.quote("id"))"
        return try await store.read { conn in try conn.execute(sql, [.text(owner)]).rows.compactMap(Self.record) }
    }

    /// Deletes every file row of `owner` in one transaction (the GDPR purge); returns them,
    /// so their bytes can be removed.
    package func deleteAll(owner: String) async throws -> [FileRecord] {
        try await deleteWhere("owner", owner)
    }

    private func select(_ column: String) -> String {
        let d = dialect
        return "SELECT \(Self.columns.map(d.quote).joined(separator: ", ")) FROM \(d.quote(Self.entity)) WHERE \(d.quote(column)) = \(d.placeholder(1))"
    }

    /// Deletes the rows whose `column` is `value`, each with its change-log entry.
    private func deleteWhere(_ column: String, _ value: String) async throws -> [FileRecord] {
        let d = dialect, select = select(column)
        let delete = "DELETE FROM \(d.quote(Self.entity)) WHERE \(d.quote("id")) = \(d.placeholder(1))"
        return try await store.write { tx in
            // Read before deleting: a deferred-write store (D1) reports no row counts until commit.
            let rows = try tx.connection.execute(select, [.text(value)]).rows.compactMap(Self.record)
            for r in rows {
                try ChangeLog.write(tx, delete, [.text(r.id)], mapError: { $0 },
                                    entity: Self.entity, rowID: r.id, kind: .delete, data: nil, before: r.json)
            }
            return rows
        }
    }

    private static func record(_ row: [SQLValue]) -> FileRecord? {
        guard row.count >= columns.count, let id = row[0].textValue, let key = row[1].textValue, let name = row[3].textValue,
              let type = row[4].textValue, let size = row[5].intValue, let sha = row[6].textValue, let created = row[7].intValue else { return nil }
        return FileRecord(id: id, storageKey: key, owner: row[2].textValue, name: name, type: type, size: size, sha256: sha, createdAt: created)
    }
}
