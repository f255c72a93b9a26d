import Foundation
import Testing

/// The host's own tables (`_pylon_*`) are declared once (`SystemTables`) and each dialect
/// writes their DDL from that. A database whose tables were made by the DDL text hosts wrote
/// before (kept below, as it was) opens unchanged, and has the tables a new database gets.
@Suite("System tables: one definition, older databases open unchanged (black-box, real pylon-host, SQLite and Postgres)")
struct SystemTablesTests {
    static let manifest = """
    {"manifest_version": 1, "name": "system-tables", "version": "0.1.0",
     "entities": [
       {"name": "Note", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [], "policies": [],
     "plugins": {"functions": {}}}
    """

    /// With functions served, the host also creates `_pylon_schedules`.
    static let files = ["functions/ping.ts": """
        import { query } from "@pylon/functions";
        export default query({ args: {}, handler: async () => "pong" });
        """]

    /// The DDL of the host's tables as hosts wrote it before `SystemTables` (SQLite).
    static let sqliteDDL = [
        "CREATE TABLE IF NOT EXISTS _pylon_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
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
        CREATE TABLE IF NOT EXISTS _pylon_session_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
        token_hash TEXT NOT NULL, ts INTEGER NOT NULL)
        """,
        """
        CREATE TRIGGER IF NOT EXISTS _pylon_sessions_deleted AFTER DELETE ON _pylon_sessions BEGIN \
        INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER)); END
        """,
        """
        CREATE TRIGGER IF NOT EXISTS _pylon_sessions_updated AFTER UPDATE ON _pylon_sessions BEGIN \
        INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER)); END
        """,
        """
        CREATE TABLE IF NOT EXISTS _pylon_push_ops (scope TEXT NOT NULL, op_id TEXT NOT NULL, \
        client_id TEXT, row_id TEXT, pending_id TEXT, created_at INTEGER NOT NULL, PRIMARY KEY (scope, op_id))
        """,
        "CREATE INDEX IF NOT EXISTS _pylon_push_ops_scope_pending ON _pylon_push_ops (scope, pending_id)",
        #"CREATE TABLE IF NOT EXISTS "_pylon_schedules" ("id" TEXT PRIMARY KEY, "fn_name" TEXT NOT NULL, "args" TEXT NOT NULL, "run_at" BIGINT NOT NULL, "attempts" BIGINT NOT NULL)"#,
    ]

    /// The same for PostgreSQL.
    static let postgresDDL = [
        "CREATE TABLE IF NOT EXISTS _pylon_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS _pylon_changes (seq BIGINT PRIMARY KEY, entity TEXT NOT NULL, \
        row_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT, before TEXT, ts BIGINT NOT NULL)
        """,
        "CREATE SEQUENCE IF NOT EXISTS _pylon_seq",
        """
        CREATE TABLE IF NOT EXISTS _pylon_sessions (token_hash TEXT PRIMARY KEY NOT NULL, \
        user_id TEXT NOT NULL, expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, \
        device TEXT, tenant_id TEXT)
        """,
        "CREATE INDEX IF NOT EXISTS _pylon_sessions_user ON _pylon_sessions (user_id)",
        """
        CREATE TABLE IF NOT EXISTS _pylon_session_changes (seq BIGSERIAL PRIMARY KEY, \
        token_hash TEXT NOT NULL, ts BIGINT NOT NULL)
        """,
        """
        CREATE OR REPLACE FUNCTION _pylon_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
        INSERT INTO _pylon_session_changes (token_hash, ts) VALUES (OLD.token_hash, EXTRACT(EPOCH FROM now())::BIGINT); \
        RETURN NULL; END $$
        """,
        """
        DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '_pylon_sessions_changed' \
        AND tgrelid = '_pylon_sessions'::regclass) THEN \
        CREATE TRIGGER _pylon_sessions_changed AFTER UPDATE OR DELETE ON _pylon_sessions \
        FOR EACH ROW EXECUTE FUNCTION _pylon_session_changed(); END IF; END $$
        """,
        """
        CREATE TABLE IF NOT EXISTS _pylon_push_ops (scope TEXT NOT NULL, op_id TEXT NOT NULL, \
        client_id TEXT, row_id TEXT, pending_id TEXT, created_at BIGINT NOT NULL, PRIMARY KEY (scope, op_id))
        """,
        "CREATE INDEX IF NOT EXISTS _pylon_push_ops_scope_pending ON _pylon_push_ops (scope, pending_id)",
        #"CREATE TABLE IF NOT EXISTS "_pylon_schedules" ("id" TEXT PRIMARY KEY, "fn_name" TEXT NOT NULL, "args" TEXT NOT NULL, "run_at" BIGINT NOT NULL, "attempts" BIGINT NOT NULL)"#,
    ]

    /// The shape of every `_pylon*` table, index, trigger and sequence, one line each, as the
    /// database reports it.
    static func shape(_ host: HostProcess) async throws -> [String] {
        let queries = host.storeURL != nil ? [
            """
            SELECT 'column', table_name, ordinal_position, column_name, data_type, is_nullable, coalesce(column_default, '') \
            FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE '\\_pylon%'
            """,
            "SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename LIKE '\\_pylon%'",
            "SELECT 'trigger', tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE '\\_pylon%'",
            "SELECT 'sequence', sequencename FROM pg_sequences WHERE schemaname = current_schema() AND sequencename LIKE '\\_pylon%'",
            "SELECT 'function', proname FROM pg_proc WHERE proname LIKE '\\_pylon%'",
        ] : [
            """
            SELECT 'column', m.name, p.cid, p.name, p.type, p."notnull", p.pk FROM sqlite_master m, pragma_table_info(m.name) p \
            WHERE m.type = 'table' AND m.name LIKE '\\_pylon%' ESCAPE '\\'
            """,
            """
            SELECT 'index', m.name, l.name, l."unique", l.origin, i.seqno, i.name FROM sqlite_master m, pragma_index_list(m.name) l, \
            pragma_index_info(l.name) i WHERE m.type = 'table' AND m.name LIKE '\\_pylon%' ESCAPE '\\'
            """,
            "SELECT 'trigger', tbl_name, name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_pylon%' ESCAPE '\\'",
            """
            SELECT 'autoincrement', name FROM sqlite_master \
            WHERE type = 'table' AND name LIKE '\\_pylon%' ESCAPE '\\' AND sql LIKE '%AUTOINCREMENT%'
            """,
        ]
        var lines: [String] = []
        for q in queries { lines += try await host.sql(q).split(whereSeparator: \.isNewline).map(String.init) }
        return lines.sorted()
    }

    /// Two shapes describe the same tables. On SQLite a column's declared type matters only by
    /// its affinity (BIGINT and INTEGER are both INTEGER), and a primary-key column never holds
    /// NULL whether or not NOT NULL was spelled out (the host never writes one): older
    /// `_pylon_schedules` tables say `BIGINT` and a bare `TEXT PRIMARY KEY`.
    /// On PostgreSQL the shapes must be the same line for line.
    static func equivalent(_ line: String, sqlite: Bool) -> String {
        var f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard sqlite, f.count == 7, f[0] == "column" else { return line }
        let type = f[4].uppercased()
        f[4] = type.contains("INT") ? "INTEGER" : type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") ? "TEXT" : type
        if f[6] != "0" { f[5] = "1" }
        return f.joined(separator: "|")
    }

    /// Tables hosts made after the older DDL above: opening an older database adds them.
    static let newerTables = ["_pylon_passwords", "_pylon_api_keys", "_pylon_jobs", "_pylon_job_queues", "_pylon_cron", "_pylon_cron_tasks", "_pylon_workflows", "_pylon_oauth_state", "_pylon_accounts",
                              "_pylon_files", "_pylon_auth_codes", "_pylon_orgs", "_pylon_org_members", "_pylon_org_invites"]

    /// Indexes hosts added to the older tables since: opening an older database adds them.
    static let newerIndexes = ["_pylon_push_ops_created"]

    /// Removes everything the host made, leaving an empty database.
    static func wipe(_ host: HostProcess) async throws {
        if host.storeURL != nil {
            try await host.sql("DROP SCHEMA public CASCADE")
            try await host.sql("CREATE SCHEMA public")
        } else {
            let file = try #require(host.storeFile)
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
        }
    }

    @Test("A database made with the older DDL opens unchanged and has the tables a new one gets", arguments: [TestStore.sqlite, TestStore.postgres])
    func olderDatabaseOpensUnchanged(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store, files: Self.files)
        defer { host.stop() }
        let fresh = try await Self.shape(host)
        #expect(fresh.contains { $0.hasPrefix("column|_pylon_schedules|") }, "\(fresh)")
        #expect(fresh.contains { $0.contains("_pylon_push_ops_scope_pending") }, "\(fresh)")

        await host.stopAndWait()
        try await Self.wipe(host)
        for ddl in host.storeURL != nil ? Self.postgresDDL : Self.sqliteDDL { try await host.sql(ddl) }
        let older = try await Self.shape(host)
        try await host.restart()
        let opened = try await Self.shape(host)
        let added = opened.filter { line in
            Self.newerTables.contains { line.contains("|\($0)|") } || Self.newerIndexes.contains { line.contains("|\($0)|") }
        }
        #expect(opened.filter { !added.contains($0) } == older, "the host changed an older database's tables")
        #expect(Self.newerTables.allSatisfy { t in added.contains { $0.hasPrefix("column|\(t)|") } }, "newer tables are added: \(added)")
        #expect(Self.newerIndexes.allSatisfy { i in added.contains { $0.contains("|\(i)|") } }, "newer indexes are added: \(added)")
        let sqlite = host.storeURL == nil
        #expect(opened.map { Self.equivalent($0, sqlite: sqlite) } == fresh.map { Self.equivalent($0, sqlite: sqlite) })

        // And it works on them: a row (change log), a session, a revocation (its trigger).
        let id = try await host.create("Note", #"{"title":"on older tables"}"#)
        let token = try await host.mintSession("alice")
        #expect(try await host.me(token) == "alice")
        let changes = try await host.request("GET", "/api/sync/pull?since=0", token: HostProcess.adminToken)
        #expect(changes.status == 200 && changes.body.contains(id), "\(changes.body)")
        try await host.sql("DELETE FROM _pylon_sessions")
        #expect(try await host.sql("SELECT count(*) FROM _pylon_session_changes").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }
}
