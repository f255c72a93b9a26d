/// Whose push records (`_pylon_push_ops`) a push sees: op ids are deduplicated, and
/// `_pending_` ids resolved, only among the records of the same scope — one per user, one
/// for the admin token, and one shared by all anonymous callers (who cannot be told apart;
/// an app that lets visitors push gives them guest sessions, and each guest is a user).
enum PushScope {
    static func of(_ auth: AuthContext) -> String {
        if auth.isAdmin { return "admin" }
        if let user = auth.userID { return "user:" + user }
        return "anonymous"
    }

    /// The scope of records made before ops were scoped (they did not record who pushed
    /// them). No caller is in it: such a record no longer dedupes a retry or resolves a
    /// pending id — one retried insert from before the upgrade may be applied a second time,
    /// which is safer than letting any user match (and learn the row of) any old op id. The
    /// records are kept.
    static let legacy = "legacy"

    /// Called before the host's tables are created: a `_pylon_push_ops` of the unscoped shape
    /// (`op_id` its primary key) is copied aside and dropped, so the scoped table can be
    /// created in its place; `adoptSetAside` then moves its records in. Copied rather than
    /// renamed because PostgreSQL would keep the old primary key's index name, which the new
    /// table's needs. Runs in the bootstrap's transaction: all or nothing. True when there was
    /// such a table.
    static func setAsideUnscoped(_ conn: StoreConnection, _ d: SQLDialect) throws -> Bool {
        let columns = try SchemaApplier.columnNames("_pylon_push_ops", conn, d)
        guard !columns.isEmpty, !columns.contains("scope") else { return false }
        try conn.execute("CREATE TABLE _pylon_push_ops_unscoped AS SELECT op_id, client_id, row_id, pending_id, created_at FROM _pylon_push_ops",
                         wantRows: false)
        try conn.execute("DROP TABLE _pylon_push_ops", wantRows: false)
        return true
    }

    /// Moves the records `setAsideUnscoped` kept into the scoped table, in the `legacy` scope.
    static func adoptSetAside(_ conn: StoreConnection) throws {
        try conn.execute("""
            INSERT INTO _pylon_push_ops (scope, op_id, client_id, row_id, pending_id, created_at) \
            SELECT '\(legacy)', op_id, client_id, row_id, pending_id, created_at FROM _pylon_push_ops_unscoped
            """, wantRows: false)
        try conn.execute("DROP TABLE _pylon_push_ops_unscoped", wantRows: false)
    }
}
