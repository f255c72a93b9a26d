import Foundation

/// Every difference between SQL dialects lives behind this protocol: identifier quoting,
/// placeholders, column types, booleans, null-safe comparison, DDL, and the host's own
/// tables. Routes and the data service only ever talk to `SQLDialect`, so a new store
/// (Postgres) adds one conforming type and nothing else.
public protocol SQLDialect: Sendable {
    /// The name a store plugin declares in `pylon_store_v1.dialect`.
    var name: String { get }
    /// Parameter placeholder number `n` (1-based).
    func placeholder(_ n: Int) -> String
    func columnType(_ storage: StorageClass) -> String
    /// How a boolean is bound as a parameter.
    func bind(_ b: Bool) -> SQLValue
    /// `lhs IS NOT DISTINCT FROM rhs` in this dialect (NULL equals NULL).
    func nullSafeEqual(_ lhs: String, _ rhs: String) -> String
    /// `lhs IS DISTINCT FROM rhs` in this dialect.
    func nullSafeNotEqual(_ lhs: String, _ rhs: String) -> String
    /// Case-insensitive LIKE with `\` as escape character.
    func likeInsensitive(_ lhs: String, _ rhs: String) -> String
    /// LIMIT/OFFSET clause (either may be nil).
    func limitOffset(limit: String?, offset: String?) -> String
    /// DDL for the host's own tables (change log, meta, sessions, push ops).
    var bootstrap: [String] { get }
    /// `INSERT` of one change-log entry returning its `seq`. Parameters in order:
    /// entity, row_id, kind, data, before, ts.
    var appendChangeSQL: String { get }
    /// `INSERT` of one change-log entry with a seq chosen by the host (deferred-write
    /// stores). Parameters in order: seq, entity, row_id, kind, data, before, ts.
    var appendChangeWithSeqSQL: String { get }
    func createTable(_ entity: Entity) -> [String]
    func addColumn(_ entity: String, _ field: Field) -> [String]
    func createIndex(_ entity: String, _ index: Index) -> String
    func dropIndex(_ name: String) -> String
    /// An expression truncating ISO-8601 datetime text in `column` to `unit`
    /// (hour, day, week, month, year), or nil for an unknown unit.
    func timeBucket(_ column: String, _ unit: String) -> String?
    /// A query returning one row per column name of the table named by parameter 1
    /// (no rows when the table does not exist).
    var columnNamesSQL: String { get }
}

extension SQLDialect {
    /// Double-quoted identifier. Names are validated by the manifest validator
    /// (`^[A-Za-z_][A-Za-z0-9_]*$`); quotes are still escaped as a second line of defence.
    public func quote(_ ident: String) -> String {
        "\"" + ident.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Name of the unique index backing a `unique: true` field.
    public func uniqueIndexName(_ entity: String, _ field: String) -> String {
        SchemaDiff.uniqueIndexName(entity, field)
    }
}

/// SQLite 3.35+ (RETURNING).
public struct SQLiteDialect: SQLDialect {
    public init() {}
    public var name: String { "sqlite" }
    public func placeholder(_ n: Int) -> String { "?" }
    public func columnType(_ storage: StorageClass) -> String {
        switch storage {
        case .text: return "TEXT"
        case .integer, .boolean: return "INTEGER"
        case .real: return "REAL"
        }
    }
    public func bind(_ b: Bool) -> SQLValue { .int(b ? 1 : 0) }
    public func nullSafeEqual(_ lhs: String, _ rhs: String) -> String { "\(lhs) IS \(rhs)" }
    public func nullSafeNotEqual(_ lhs: String, _ rhs: String) -> String { "\(lhs) IS NOT \(rhs)" }
    public func likeInsensitive(_ lhs: String, _ rhs: String) -> String { "\(lhs) LIKE \(rhs) ESCAPE '\\'" }
    public func limitOffset(limit: String?, offset: String?) -> String {
        switch (limit, offset) {
        case (nil, nil): return ""
        case let (l?, nil): return " LIMIT \(l)"
        case let (nil, o?): return " LIMIT -1 OFFSET \(o)"
        case let (l?, o?): return " LIMIT \(l) OFFSET \(o)"
        }
    }

    public var bootstrap: [String] {
        [
            "CREATE TABLE IF NOT EXISTS _pylon_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
            // seq: INTEGER PRIMARY KEY takes max(seq)+1 inside the writer's transaction, so it
            // is gapless (a rolled-back write gives its number back) and ordered by commit.
            // Retention never deletes the newest entry, so numbers are never reused.
            """
            CREATE TABLE IF NOT EXISTS _pylon_changes (seq INTEGER PRIMARY KEY, entity TEXT NOT NULL, \
            row_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT, before TEXT, ts INTEGER NOT NULL)
            """,
            """
            CREATE TABLE IF NOT EXISTS _pylon_sessions (token_hash TEXT PRIMARY KEY NOT NULL, \
            user_id TEXT NOT NULL, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL, \
            device TEXT, tenant_id TEXT)
            """,
            "CREATE INDEX IF NOT EXISTS _pylon_sessions_user ON _pylon_sessions (user_id)",
            """
            CREATE TABLE IF NOT EXISTS _pylon_push_ops (op_id TEXT PRIMARY KEY NOT NULL, \
            client_id TEXT, row_id TEXT, pending_id TEXT, created_at INTEGER NOT NULL)
            """,
            "CREATE INDEX IF NOT EXISTS _pylon_push_ops_pending ON _pylon_push_ops (pending_id)",
        ]
    }

    public var appendChangeSQL: String {
        "INSERT INTO _pylon_changes (entity, row_id, kind, data, before, ts) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq"
    }

    public var appendChangeWithSeqSQL: String {
        "INSERT INTO _pylon_changes (seq, entity, row_id, kind, data, before, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
    }

    private func columnDef(_ f: Field, forAdd: Bool) -> String {
        let storage = f.type?.storage ?? .text
        var def = "\(quote(f.name)) \(columnType(storage))"
        if !f.optional {
            def += " NOT NULL"
            // ALTER TABLE ADD COLUMN ... NOT NULL needs a default for the existing rows.
            if forAdd { def += storage == .text ? " DEFAULT ''" : " DEFAULT 0" }
        }
        return def
    }

    public func createTable(_ entity: Entity) -> [String] {
        var cols = ["\"id\" TEXT PRIMARY KEY NOT NULL"]
        cols += entity.fields.map { columnDef($0, forAdd: false) }
        var out = ["CREATE TABLE IF NOT EXISTS \(quote(entity.name)) (\(cols.joined(separator: ", ")))"]
        for f in entity.fields where f.unique {
            out.append("CREATE UNIQUE INDEX IF NOT EXISTS \(quote(uniqueIndexName(entity.name, f.name))) ON \(quote(entity.name)) (\(quote(f.name)))")
        }
        for i in entity.indexes { out.append(createIndex(entity.name, i)) }
        return out
    }

    public func addColumn(_ entity: String, _ field: Field) -> [String] {
        var out = ["ALTER TABLE \(quote(entity)) ADD COLUMN \(columnDef(field, forAdd: true))"]
        if field.unique {
            out.append("CREATE UNIQUE INDEX IF NOT EXISTS \(quote(uniqueIndexName(entity, field.name))) ON \(quote(entity)) (\(quote(field.name)))")
        }
        return out
    }

    public func createIndex(_ entity: String, _ index: Index) -> String {
        let cols = index.fields.map { quote($0) }.joined(separator: ", ")
        return "CREATE \(index.unique ? "UNIQUE " : "")INDEX IF NOT EXISTS \(quote(index.name)) ON \(quote(entity)) (\(cols))"
    }

    public func dropIndex(_ name: String) -> String { "DROP INDEX IF EXISTS \(quote(name))" }

    public var columnNamesSQL: String { "SELECT name FROM pragma_table_info(?)" }

    public func timeBucket(_ column: String, _ unit: String) -> String? {
        let format: String
        switch unit {
        case "hour": format = "%Y-%m-%dT%H:00"
        case "day": format = "%Y-%m-%d"
        case "week": format = "%Y-W%W"
        case "month": format = "%Y-%m"
        case "year": format = "%Y"
        default: return nil
        }
        return "strftime('\(format)', \(column))"
    }
}
