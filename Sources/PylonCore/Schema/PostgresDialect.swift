/// PostgreSQL 12+ (generated columns, websearch-free tsquery, RETURNING).
///
/// Several hosts may share one database. The change log's `seq` must then be gapless and
/// visible in order: no reader may see seq N+1 before N is committed, or a tailer that
/// moved past N would never deliver it. Every write transaction therefore takes one
/// transaction-scoped advisory lock right after BEGIN (`writeLockSQL`), before it reads
/// `MAX(seq)` to number its entries (`WriteTransaction.nextSeq`, READ COMMITTED: the read
/// sees every commit made before the lock was granted); the lock is released only after
/// the commit is visible, so commits happen one at a time in seq order, across all hosts. The cost is what SQLite
/// has anyway (one writer at a time); each host still batches many requests per
/// transaction (group commit), so the lock is taken once per batch, not per request.
public struct PostgresDialect: SQLDialect {
    /// The advisory lock key ("pylon" in ASCII) shared by every host on a database.
    public static let writeLockKey: Int64 = 0x70796C6F6E

    public init() {}
    public var name: String { "postgres" }
    public func placeholder(_ n: Int) -> String { "$\(n)" }
    public func columnType(_ storage: StorageClass) -> String {
        switch storage {
        case .text: return "TEXT"
        case .integer: return "BIGINT"
        case .boolean: return "BOOLEAN"
        case .real: return "DOUBLE PRECISION"
        }
    }
    /// Sent as text; the server types the parameter from the boolean column it meets.
    public func bind(_ b: Bool) -> SQLValue { .text(b ? "true" : "false") }
    public func nullSafeEqual(_ lhs: String, _ rhs: String) -> String { "\(lhs) IS NOT DISTINCT FROM \(rhs)" }
    public func nullSafeNotEqual(_ lhs: String, _ rhs: String) -> String { "\(lhs) IS DISTINCT FROM \(rhs)" }
    public func likeInsensitive(_ lhs: String, _ rhs: String) -> String { "\(lhs) ILIKE \(rhs) ESCAPE '\\'" }
    public func textSize(_ column: String) -> String { "octet_length(\(column))" }
    /// The database's collation may order by locale; "C" orders by bytes.
    public func binaryOrder(_ column: String) -> String { "\(column) COLLATE \"C\"" }
    public func limitOffset(limit: String?, offset: String?) -> String {
        (limit.map { " LIMIT \($0)" } ?? "") + (offset.map { " OFFSET \($0)" } ?? "")
    }

    public var writeLockSQL: String? { "SELECT pg_advisory_xact_lock(\(Self.writeLockKey))" }
    /// Wakes every host's change tailer (which LISTENs on the channel) when the commit lands.
    public var notifyChangesSQL: String? { "NOTIFY \(Self.changesChannel)" }
    public var notifyChannel: String? { Self.changesChannel }
    static let changesChannel = "pylon_changes"

    public var bootstrap: [String] {
        SystemTables.bootstrap.flatMap(createSystemTable) + [
            // Numbers a write batch's change-log entries in SQL (see `appendNextChangeSQL`).
            "CREATE SEQUENCE IF NOT EXISTS _pylon_seq",
            // The session change log's writer (see `SystemTables.sessionChanges`).
            """
            CREATE OR REPLACE FUNCTION _pylon_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
            INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, EXTRACT(EPOCH FROM now())::BIGINT); \
            RETURN NULL; END $$
            """,
            // CREATE OR REPLACE TRIGGER needs PostgreSQL 14; bootstrap runs under the write lock.
            """
            DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '_pylon_sessions_changed' \
            AND tgrelid = '_pylon_sessions'::regclass) THEN \
            CREATE TRIGGER _pylon_sessions_changed AFTER UPDATE OR DELETE ON _pylon_sessions \
            FOR EACH ROW EXECUTE FUNCTION _pylon_session_changed(); END IF; END $$
            """,
        ]
    }

    public var serialPrimaryKey: String { "BIGSERIAL PRIMARY KEY" }

    /// The host numbers entries: MAX(seq) read once per transaction, under the write lock.
    public var appendChangeSQL: String? { nil }

    public var hasWritableWith: Bool { true }

    /// A data-modifying WITH: the row write runs exactly once, before the log insert, in
    /// one statement (and one failure: a violated constraint fails both).
    public func chainedChangeSQL(_ rowSQL: String, rowParameters n: Int) -> String? {
        let ps = (1...7).map { "$\(n + $0)" }.joined(separator: ", ")
        return "WITH pylon_row AS (\(rowSQL)) INSERT INTO _pylon_changes (seq, entity, row_id, kind, data, before, ts) VALUES (\(ps))"
    }

    /// Numbers from `_pylon_seq`, which `startNextChangesSQL` sets to the newest seq plus
    /// one at the transaction's first append. The transaction holds the write lock
    /// (`writeLockSQL`) from before that until COMMIT, so no other writer on any host
    /// touches the log or the sequence meanwhile, and READ COMMITTED lets that statement
    /// see every entry committed before the lock was granted. A sequence is not
    /// transactional, but it never outlives a transaction's use of it: a rolled-back
    /// transaction's numbers are handed out again by the next one's reset, so `seq` stays
    /// gapless. (Cheaper for the server than reading MAX(seq) in every statement.)
    public var appendNextChangeSQL: String? { appendNextChange(parametersFrom: 0) }

    public func chainedNextChangeSQL(_ rowSQL: String, rowParameters n: Int) -> String? {
        "WITH pylon_row AS (\(rowSQL)) " + appendNextChange(parametersFrom: n)
    }

    public var startNextChangesSQL: String? {
        "SELECT setval('_pylon_seq', (SELECT COALESCE(MAX(seq), 0) FROM _pylon_changes) + 1, false)"
    }

    private func appendNextChange(parametersFrom n: Int) -> String {
        let ps = (1...6).map { "$\(n + $0)" }.joined(separator: ", ")
        return "INSERT INTO _pylon_changes (seq, entity, row_id, kind, data, before, ts) VALUES (nextval('_pylon_seq'), \(ps))"
    }

    public var appendChangeWithSeqSQL: String {
        "INSERT INTO _pylon_changes (seq, entity, row_id, kind, data, before, ts) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    }

    public func columnDefinition(_ f: Field, forAdd: Bool) -> String {
        let storage = f.type?.storage ?? .text
        var def = "\(quote(f.name)) \(columnType(storage))"
        if !f.optional {
            def += " NOT NULL"
            if forAdd {
                switch storage {
                case .text: def += " DEFAULT ''"
                case .boolean: def += " DEFAULT false"
                case .integer, .real: def += " DEFAULT 0"
                }
            }
        }
        return def
    }


    public var columnNamesSQL: String {
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
    }

    /// The same bucket labels as SQLite's strftime formats, so both stores group alike.
    public func timeBucket(_ column: String, _ unit: String) -> String? {
        let t = "(\(column))::timestamptz AT TIME ZONE 'UTC'"
        switch unit {
        case "hour": return "to_char(\(t), 'YYYY-MM-DD\"T\"HH24:00')"
        case "day": return "to_char(\(t), 'YYYY-MM-DD')"
        case "month": return "to_char(\(t), 'YYYY-MM')"
        case "year": return "to_char(\(t), 'YYYY')"
        case "week":
            // SQLite's %W: weeks start on Monday; days before the year's first Monday are week 00.
            let week = "((EXTRACT(DOY FROM \(t))::int + 6 - ((EXTRACT(DOW FROM \(t))::int + 6) % 7)) / 7)"
            return "to_char(\(t), 'YYYY') || '-W' || lpad(\(week)::text, 2, '0')"
        default: return nil
        }
    }

    // MARK: Full-text search: a generated tsvector column with a GIN index
    //
    // `_pylon_tsv` is computed by the server from the text fields on every write, in the
    // writing transaction; earlier fields get higher weights (A, B, C, then D).

    static let tsvColumn = "_pylon_tsv"

    public func enableSearch(_ entity: Entity, hasDocColumn: Bool) -> [String] {
        guard let search = entity.search, !search.text.isEmpty else { return [] }
        let lang = "'\(search.language)'::regconfig"
        let weights = ["A", "B", "C"]
        let vector = search.text.enumerated().map { i, f in
            "setweight(to_tsvector(\(lang), coalesce(\(quote(f)), '')), '\(i < weights.count ? weights[i] : "D")')"
        }.joined(separator: " || ")
        return [
            "ALTER TABLE \(quote(entity.name)) ADD COLUMN \(quote(Self.tsvColumn)) tsvector GENERATED ALWAYS AS (\(vector)) STORED",
            "CREATE INDEX IF NOT EXISTS \(quote(SearchIndex.table(entity.name))) ON \(quote(entity.name)) USING GIN (\(quote(Self.tsvColumn)))",
        ]
    }

    public func disableSearch(_ entity: String) -> [String] {
        ["DROP INDEX IF EXISTS \(quote(SearchIndex.table(entity)))",
         "ALTER TABLE \(quote(entity)) DROP COLUMN IF EXISTS \(quote(Self.tsvColumn))"]
    }

    /// `raw` (`$search`): web-search syntax (words, "quoted phrases", or, -word), which
    /// never fails to parse; otherwise the tsquery `searchQuery` built.
    /// `ts_rank` reads the row's own vector only (no corpus statistics), so `words` are not needed.
    public func searchMatch(_ entity: String, _ search: SearchConfig, placeholder: String, raw: Bool, words: [String]) -> SearchMatch {
        let vector = "\(quote(entity)).\(quote(Self.tsvColumn))"
        let query = "\(raw ? "websearch_to_tsquery" : "to_tsquery")('\(search.language)'::regconfig, \(placeholder)::text)"
        return SearchMatch(join: "", condition: "\(vector) @@ \(query)", rank: "(-ts_rank(\(vector), \(query)))")
    }

    public func searchQuery(_ text: String) -> String? {
        let words = SearchIndex.words(text)
        guard !words.isEmpty else { return nil }
        var parts = words
        parts[parts.count - 1] += ":*"
        return parts.joined(separator: " & ")
    }
}
