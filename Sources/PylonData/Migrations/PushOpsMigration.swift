import Foundation
import PylonCore

/// The one-time migration of `_pylon_push_ops` from its unscoped shape (op ids global) to
/// the scoped one (`PushScope`), run by `SchemaApplier` inside the bootstrap's transaction.
enum PushOpsMigration {
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
            SELECT '\(PushScope.legacy)', op_id, client_id, row_id, pending_id, created_at FROM _pylon_push_ops_unscoped
            """, wantRows: false)
        try conn.execute("DROP TABLE _pylon_push_ops_unscoped", wantRows: false)
    }
}
