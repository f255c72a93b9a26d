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
    /// The stored size of a text `column`, read without loading the value where the store
    /// can (PostgreSQL's `octet_length` reads the TOAST header; SQLite's `length` counts
    /// characters, loading one value at a time).
    func textSize(_ column: String) -> String
    /// `column` ordered by the bytes of its UTF-8 text (how policy rules order strings),
    /// for `<`, `<=`, `>`, `>=`.
    func binaryOrder(_ column: String) -> String
    /// LIMIT/OFFSET clause (either may be nil).
    func limitOffset(limit: String?, offset: String?) -> String
    /// A statement every write transaction runs right after BEGIN, or nil. Stores that
    /// several hosts write at once (Postgres) serialize writers with it, so change-log
    /// seqs commit in order (see `PostgresDialect`).
    var writeLockSQL: String? { get }
    /// A statement a write transaction that appended to the change log runs before
    /// COMMIT, signalling other hosts (delivered at commit), or nil.
    var notifyChangesSQL: String? { get }
    /// The channel `notifyChangesSQL` signals and every host's `ChangeTailer` waits on
    /// (Postgres LISTEN/NOTIFY), or nil when the database has none.
    var notifyChannel: String? { get }
    /// DDL for the host's own tables (change log, meta, sessions, push ops): the tables of
    /// `SystemTables.bootstrap`, then what the dialect adds to them (triggers, a sequence).
    var bootstrap: [String] { get }
    /// The type and key clause of a `SystemTable.ColumnType.serial` column.
    var serialPrimaryKey: String { get }
    /// `INSERT` of one change-log entry returning the `seq` the store chose, or nil when
    /// the host numbers entries itself (see `WriteTransaction.nextSeq`). Parameters in
    /// order: entity, row_id, kind, data, before, ts.
    var appendChangeSQL: String? { get }
    /// `INSERT` of one change-log entry with a seq chosen by the host (dialects without
    /// `appendChangeSQL`, deferred-write stores). Parameters in order: seq, entity, row_id,
    /// kind, data, before, ts.
    var appendChangeWithSeqSQL: String { get }
    /// One statement doing `rowSQL` (an INSERT/UPDATE/DELETE with `rowParameters`
    /// parameters) and then `appendChangeWithSeqSQL` (its parameters numbered after the
    /// row's), or nil when the dialect cannot chain them. Saves a statement per write.
    func chainedChangeSQL(_ rowSQL: String, rowParameters: Int) -> String?
    /// Whether a WITH may hold an UPDATE … RETURNING whose rows the main statement reads
    /// (Postgres); SQLite's WITH holds SELECTs only.
    var hasWritableWith: Bool { get }
    /// `INSERT` of one change-log entry numbered by the statement itself (counting on from
    /// where `startNextChangesSQL` put the numbering, under the dialect's write lock), for
    /// a writer that sends a batch without waiting for answers
    /// (`WriteTransaction.seqByStatement`); nil when the dialect cannot. Parameters in
    /// order: entity, row_id, kind, data, before, ts.
    var appendNextChangeSQL: String? { get }
    /// `chainedChangeSQL` with `appendNextChangeSQL` as its second half, or nil.
    func chainedNextChangeSQL(_ rowSQL: String, rowParameters: Int) -> String?
    /// Run once in a transaction, under the write lock, before its first
    /// `appendNextChangeSQL`: picks up numbering after the newest entry. Nil: not needed.
    var startNextChangesSQL: String? { get }
    /// One column's definition (name, type, NOT NULL; with `forAdd`, the default that
    /// fills existing rows of a required column added later).
    func columnDefinition(_ f: Field, forAdd: Bool) -> String
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

    // Full-text search (see `SearchIndex`).

    /// DDL that builds `entity`'s full-text index over its `search.text` fields, fills it
    /// from the rows already stored, and keeps it current inside every later write's own
    /// transaction, whichever path the write takes. `hasDocColumn`: the table already has
    /// `SearchIndex.docColumn` (search was enabled before). Empty when there are no text fields.
    func enableSearch(_ entity: Entity, hasDocColumn: Bool) -> [String]
    /// DDL that drops the full-text index of `entity` (no user data).
    func disableSearch(_ entity: String) -> [String]
    /// How a SELECT over `entity` keeps only rows matching the full-text query bound at
    /// `placeholder` (a value from `searchQuery`, or the caller's raw `$search` text).
    /// Matches in fields listed earlier in `search.text` rank higher. `raw`: the value is
    /// the caller's own query text (`$search`) in the engine's user syntax, not `searchQuery` output.
    /// `words`: the query's words (`SearchIndex.words`), for a dialect that ranks by them.
    /// The rank depends on the row alone, never on other rows of the index: the caller may
    /// not be allowed to read those, and their words must not move its hits.
    func searchMatch(_ entity: String, _ search: SearchConfig, placeholder: String, raw: Bool, words: [String]) -> SearchMatch
    /// A user's free text as this dialect's full-text query: every word must match, the
    /// last one as a prefix (search as you type); syntax characters match nothing special.
    /// Nil when the text has no word to search for.
    func searchQuery(_ text: String) -> String?
}

extension SQLDialect {
    /// Double-quoted identifier. Names are validated by the manifest validator
    /// (`^[A-Za-z_][A-Za-z0-9_]*$`); quotes are still escaped as a second line of defence.
    /// On every statement's hot path: plain Swift, no Foundation bridging.
    public func quote(_ ident: String) -> String {
        guard ident.utf8.contains(UInt8(ascii: "\"")) else { return "\"" + ident + "\"" }
        var out = "\""
        for ch in ident {
            if ch == "\"" { out.append("\"\"") } else { out.append(ch) }
        }
        out.append("\"")
        return out
    }

    /// The table with its columns, unique-field indexes and declared indexes.
    public func createTable(_ entity: Entity) -> [String] {
        var cols = ["\"id\" TEXT PRIMARY KEY NOT NULL"]
        cols += entity.fields.map { columnDefinition($0, forAdd: false) }
        var out = ["CREATE TABLE IF NOT EXISTS \(quote(entity.name)) (\(cols.joined(separator: ", ")))"]
        for f in entity.fields where f.unique { out.append(uniqueIndex(entity.name, f.name)) }
        for i in entity.indexes { out.append(createIndex(entity.name, i)) }
        return out
    }

    public func addColumn(_ entity: String, _ field: Field) -> [String] {
        ["ALTER TABLE \(quote(entity)) ADD COLUMN \(columnDefinition(field, forAdd: true))"]
            + (field.unique ? [uniqueIndex(entity, field.name)] : [])
    }

    public func createIndex(_ entity: String, _ index: Index) -> String {
        let cols = index.fields.map { quote($0) }.joined(separator: ", ")
        return "CREATE \(index.unique ? "UNIQUE " : "")INDEX IF NOT EXISTS \(quote(IndexNames.declared(entity, index.name))) ON \(quote(entity)) (\(cols))"
    }

    public func dropIndex(_ name: String) -> String { "DROP INDEX IF EXISTS \(quote(name))" }

    package func uniqueIndex(_ entity: String, _ field: String) -> String {
        "CREATE UNIQUE INDEX IF NOT EXISTS \(quote(IndexNames.unique(entity, field))) ON \(quote(entity)) (\(quote(field)))"
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
    public func textSize(_ column: String) -> String { "length(\(column))" }
    /// Columns use SQLite's default BINARY collation (memcmp of UTF-8).
    public func binaryOrder(_ column: String) -> String { column }
    public func limitOffset(limit: String?, offset: String?) -> String {
        switch (limit, offset) {
        case (nil, nil): return ""
        case let (l?, nil): return " LIMIT \(l)"
        case let (nil, o?): return " LIMIT -1 OFFSET \(o)"
        case let (l?, o?): return " LIMIT \(l) OFFSET \(o)"
        }
    }

    /// One SQLite file has one writer: `BEGIN IMMEDIATE` already serializes.
    public var writeLockSQL: String? { nil }
    public var notifyChangesSQL: String? { nil }
    public var notifyChannel: String? { nil }

    public var bootstrap: [String] {
        SystemTables.bootstrap.flatMap(createSystemTable) + [
            // The session change log's writers (see `SystemTables.sessionChanges`).
            """
            CREATE TRIGGER IF NOT EXISTS _pylon_sessions_deleted AFTER DELETE ON _pylon_sessions BEGIN \
            INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER)); END
            """,
            """
            CREATE TRIGGER IF NOT EXISTS _pylon_sessions_updated AFTER UPDATE ON _pylon_sessions BEGIN \
            INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER)); END
            """,
        ]
    }

    /// AUTOINCREMENT: a number is never handed out again, even after the newest row is deleted.
    public var serialPrimaryKey: String { "INTEGER PRIMARY KEY AUTOINCREMENT" }

    public var appendChangeSQL: String? {
        "INSERT INTO _pylon_changes (entity, row_id, kind, data, before, ts) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq"
    }

    public var appendChangeWithSeqSQL: String {
        "INSERT INTO _pylon_changes (seq, entity, row_id, kind, data, before, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
    }

    /// SQLite has no data-modifying WITH; two statements in-process cost little.
    public func chainedChangeSQL(_ rowSQL: String, rowParameters: Int) -> String? { nil }
    public var hasWritableWith: Bool { false }

    /// The store numbers entries already (`appendChangeSQL`), with no round trip to save.
    public var appendNextChangeSQL: String? { nil }
    public func chainedNextChangeSQL(_ rowSQL: String, rowParameters: Int) -> String? { nil }
    public var startNextChangesSQL: String? { nil }

    public func columnDefinition(_ f: Field, forAdd: Bool) -> String {
        let storage = f.type?.storage ?? .text
        var def = "\(quote(f.name)) \(columnType(storage))"
        if !f.optional {
            def += " NOT NULL"
            // ALTER TABLE ADD COLUMN ... NOT NULL needs a default for the existing rows.
            if forAdd { def += storage == .text ? " DEFAULT ''" : " DEFAULT 0" }
        }
        return def
    }


    public var columnNamesSQL: String { "SELECT name FROM pragma_table_info(?)" }

    // MARK: Full-text search: FTS5
    //
    // One contentless FTS5 table per searchable entity (`_pylon_fts_<E>`, columns c0, c1...
    // so no field name can clash with FTS5's own `rank`/`rowid`), keyed by a stable
    // integer `_pylon_docid` column on the entity table. Not the table's rowid: VACUUM and
    // dump/restore may renumber rowids of tables without an INTEGER PRIMARY KEY, a stored
    // column survives both. Triggers keep the index in step inside the writing
    // transaction, so every path (CRUD, batch, transact, push, functions) is covered and a
    // rollback rolls the index back too.

    public func enableSearch(_ entity: Entity, hasDocColumn: Bool) -> [String] {
        guard let text = entity.search?.text, !text.isEmpty else { return [] }
        let t = quote(entity.name)
        let fts = quote(SearchIndex.table(entity.name))
        let doc = quote(SearchIndex.docColumn)
        let slotList = text.indices.map { "c\($0)" }.joined(separator: ", ")
        let columns = text.map { quote($0) }.joined(separator: ", ")
        func values(_ row: String) -> String { text.map { "\(row).\(quote($0))" }.joined(separator: ", ") }
        func trigger(_ suffix: String) -> String { quote(SearchIndex.table(entity.name) + "_" + suffix) }
        let removeOld = "INSERT INTO \(fts) (\(fts), rowid, \(slotList)) VALUES ('delete', old.\(doc), \(values("old")));"
        return [
            hasDocColumn ? "UPDATE \(t) SET \(doc) = NULL" : "ALTER TABLE \(t) ADD COLUMN \(doc) INTEGER",
            "CREATE UNIQUE INDEX IF NOT EXISTS \(quote(SearchIndex.docIndex(entity.name))) ON \(t) (\(doc))",
            "UPDATE \(t) SET \(doc) = rowid",
            "CREATE VIRTUAL TABLE \(fts) USING fts5(\(slotList), content='', tokenize='unicode61 remove_diacritics 2')",
            "INSERT INTO \(fts) (rowid, \(slotList)) SELECT \(doc), \(columns) FROM \(t)",
            "CREATE TRIGGER \(trigger("ai")) AFTER INSERT ON \(t) BEGIN "
                + "UPDATE \(t) SET \(doc) = (SELECT COALESCE(MAX(\(doc)), 0) + 1 FROM \(t)) WHERE rowid = new.rowid; "
                + "INSERT INTO \(fts) (rowid, \(slotList)) SELECT \(doc), \(columns) FROM \(t) WHERE rowid = new.rowid; END",
            "CREATE TRIGGER \(trigger("au")) AFTER UPDATE OF \(columns) ON \(t) BEGIN \(removeOld) "
                + "INSERT INTO \(fts) (rowid, \(slotList)) VALUES (new.\(doc), \(values("new"))); END",
            "CREATE TRIGGER \(trigger("ad")) AFTER DELETE ON \(t) BEGIN \(removeOld) END",
        ]
    }

    public func disableSearch(_ entity: String) -> [String] {
        ["ai", "au", "ad"].map { "DROP TRIGGER IF EXISTS \(quote(SearchIndex.table(entity) + "_" + $0))" }
            + ["DROP TABLE IF EXISTS \(quote(SearchIndex.table(entity)))"]
    }

    /// FTS5 query syntax either way (`raw` changes nothing). FTS5's own `bm25` is not the
    /// rank: its inverse document frequency and average length count every row of the
    /// index, so the order of a caller's own hits told whether rows it may not read held a
    /// word, letter by letter through prefix queries (outside probe `dataplane`, HIGH).
    /// The rank is `SearchIndex.rowScore` instead, from the row's own text.
    public func searchMatch(_ entity: String, _ search: SearchConfig, placeholder: String, raw: Bool, words: [String]) -> SearchMatch {
        let fts = quote(SearchIndex.table(entity))
        let join = " JOIN (SELECT rowid AS _pylon_d FROM \(fts) WHERE \(fts) MATCH \(placeholder)) AS _pylon_s"
            + " ON _pylon_s._pylon_d = \(quote(entity)).\(quote(SearchIndex.docColumn))"
        let score = SearchIndex.rowScore(fields: search.text.map { "\(quote(entity)).\(quote($0))" }, words: words)
        return SearchMatch(join: join, condition: nil, rank: "(-\(score))")
    }

    public func searchQuery(_ text: String) -> String? {
        let words = SearchIndex.words(text)
        guard !words.isEmpty else { return nil }
        // Each word as an FTS5 string, so AND/OR/NEAR/-/: in the text are plain words.
        var parts = words.map { "\"" + $0 + "\"" }
        parts[parts.count - 1] += "*"
        return parts.joined(separator: " ")
    }

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
