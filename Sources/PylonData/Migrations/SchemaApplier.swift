import PylonCore
import PylonJSON

/// Brings the database up to the manifest at startup: creates the host's own tables, then
/// plans additive changes against the schema recorded at the last start (`_pylon_meta`
/// key `schema`) and applies them in one transaction. A destructive change is refused
/// with a message saying what to do; nothing is applied in that case.
package enum SchemaApplier {
    package static func apply(_ entities: [Entity], on conn: StoreConnection, dialect: SQLDialect) throws -> [String] {
        // The host's own tables first, committed on their own: the plan below reads
        // `_pylon_meta`, which a deferred-write store (D1) would not have created yet if the
        // CREATE were still buffered in the same transaction. Every statement is idempotent.
        try conn.begin()
        do {
            // Under the same lock as the migration: concurrent CREATE ... IF NOT EXISTS can
            // collide on PostgreSQL when hosts start together.
            if let lock = dialect.writeLockSQL { try conn.execute(lock, wantRows: false) }
            let unscopedOps = try PushOpsMigration.setAsideUnscoped(conn, dialect)
            for ddl in dialect.bootstrap { try conn.execute(ddl, wantRows: false) }
            if unscopedOps { try PushOpsMigration.adoptSetAside(conn) }
            try conn.commit()
        } catch {
            try? conn.rollback()
            throw error
        }
        try conn.begin()
        do {
            // Hosts starting together on one database migrate one after the other.
            if let lock = dialect.writeLockSQL { try conn.execute(lock, wantRows: false) }
            let log = try applyInTransaction(entities, conn, dialect)
            try conn.commit()
            return log
        } catch {
            try? conn.rollback()
            throw error
        }
    }

    private static func applyInTransaction(_ entities: [Entity], _ conn: StoreConnection, _ d: SQLDialect) throws -> [String] {
        let r = try conn.execute("SELECT value FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("schema")])
        var log: [String] = []
        var old: [Entity] = []
        if case let .text(json)? = r.rows.first?.first {
            let snapshot = try JSONParser.parse(json)
            var recorded = try SchemaSnapshot.decode(snapshot)
            if SchemaSnapshot.hasLegacyIndexNames(snapshot) { log += try renameLegacyIndexes(&recorded, conn, d) }
            old = try reconcile(recorded, with: entities, conn, d)
        }
        let changes: [SchemaChange]
        switch SchemaDiff.plan(from: old, to: entities) {
        case let .success(c): changes = c
        case let .failure(e):
            throw HostError(status: 500, code: "SCHEMA_DESTRUCTIVE_CHANGE",
                            message: "the manifest would destroy data, so nothing was migrated:\n  " + e.problems.map(\.description).joined(separator: "\n  "))
        }
        for change in changes {
            switch change {
            case let .createEntity(e):
                for s in d.createTable(e) { try conn.execute(s, wantRows: false) }
                log.append("created entity \(e.name)")
            case let .addColumn(entity, field):
                for s in d.addColumn(entity, field) { try conn.execute(s, wantRows: false) }
                log.append("added field \(entity).\(field.name)")
            case let .createIndex(entity, index):
                try conn.execute(d.createIndex(entity, index), wantRows: false)
                log.append("created index \(index.name) on \(entity)")
            case let .dropIndex(entity, name):
                try conn.execute(d.dropIndex(name), wantRows: false)
                log.append("dropped index \(name) on \(entity)")
            case let .enableSearch(e):
                let columns = try columnNames(e.name, conn, d)
                for s in d.enableSearch(e, hasDocColumn: columns.contains(SearchIndex.docColumn)) {
                    try conn.execute(s, wantRows: false)
                }
                log.append("built search index on \(e.name) (\(e.search?.text.joined(separator: ", ") ?? ""))")
            case let .disableSearch(entity):
                for s in d.disableSearch(entity) { try conn.execute(s, wantRows: false) }
                log.append("dropped search index on \(entity)")
            }
        }
        let snapshot = JSONWriter.string(SchemaSnapshot.encode(entities))
        try conn.execute("DELETE FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("schema")], wantRows: false)
        try conn.execute("INSERT INTO _pylon_meta (key, value) VALUES (\(d.placeholder(1)), \(d.placeholder(2)))",
                         [.text("schema"), .text(snapshot)], wantRows: false)
        return log
    }

    /// A database from before per-entity index names (`IndexNames`): its declared indexes
    /// carry the manifest's names and a long unique-field index name may have been cut by
    /// PostgreSQL. Each declared index is dropped and forgotten, so the plan creates the
    /// manifest's indexes again under their new names; a unique-field index whose name
    /// changed is rebuilt at once. Rows are untouched; the indexes are rebuilt from them in
    /// the same transaction as the rest of the migration.
    static func renameLegacyIndexes(_ recorded: inout [Entity], _ conn: StoreConnection, _ d: SQLDialect) throws -> [String] {
        var log: [String] = []
        for i in recorded.indices {
            let e = recorded[i]
            for x in e.indexes {
                try conn.execute(d.dropIndex(x.name), wantRows: false)
                log.append("dropped index \(x.name) on \(e.name) (index names are now per entity; it is created again as \(IndexNames.declared(e.name, x.name)))")
            }
            recorded[i].indexes = []
            let columns = try columnNames(e.name, conn, d)
            for f in e.fields where f.unique && columns.contains(f.name) {
                let legacy = "_pylon_uq_\(e.name)_\(f.name)"
                guard legacy != IndexNames.unique(e.name, f.name) else { continue }
                try conn.execute(d.dropIndex(legacy), wantRows: false)
                try conn.execute(d.uniqueIndex(e.name, f.name), wantRows: false)
                log.append("renamed the unique index of \(e.name).\(f.name) to \(IndexNames.unique(e.name, f.name))")
            }
        }
        return log
    }

    /// Forgets recorded tables and columns that the user has dropped by hand (as the
    /// destructive-change message tells them to), so the next start can proceed. Only
    /// things the new manifest no longer declares are forgotten; anything else missing is
    /// left for the diff (and the store) to report.
    static func reconcile(_ recorded: [Entity], with manifest: [Entity], _ conn: StoreConnection, _ d: SQLDialect) throws -> [Entity] {
        var out: [Entity] = []
        for var e in recorded {
            let cols = try columnNames(e.name, conn, d)
            let wanted = manifest.first { $0.name == e.name }
            if cols.isEmpty {
                if wanted == nil { continue }  // table dropped by hand, and gone from the manifest
                out.append(e)
                continue
            }
            e.fields.removeAll { f in !cols.contains(f.name) && wanted?.field(named: f.name) == nil }
            out.append(e)
        }
        return out
    }

    /// The columns the store reports for `table` (empty when the table does not exist).
    static func columnNames(_ table: String, _ conn: StoreConnection, _ d: SQLDialect) throws -> Set<String> {
        Set(try conn.execute(d.columnNamesSQL, [.text(table)]).rows.compactMap { row -> String? in
            if case let .text(n) = row.at(0) { return n }
            return nil
        })
    }

    /// The database's epoch id, created on first start (by exactly one host).
    package static func epoch(_ conn: StoreConnection, _ d: SQLDialect) throws -> String {
        try conn.begin()
        do {
            if let lock = d.writeLockSQL { try conn.execute(lock, wantRows: false) }
            let e = try epochInTransaction(conn, d)
            try conn.commit()
            return e
        } catch {
            try? conn.rollback()
            throw error
        }
    }

    private static func epochInTransaction(_ conn: StoreConnection, _ d: SQLDialect) throws -> String {
        let r = try conn.execute("SELECT value FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("epoch")])
        if case let .text(e)? = r.rows.first?.first { return e }
        let e = freshEpoch()
        try conn.execute("INSERT INTO _pylon_meta (key, value) VALUES (\(d.placeholder(1)), \(d.placeholder(2)))",
                         [.text("epoch"), .text(e)], wantRows: false)
        return e
    }

    /// A new random epoch id.
    package static func freshEpoch() -> String {
        var rng = SystemRandomNumberGenerator()
        return RowID.hex(rng.next(), 16)
    }

    /// SQL (both dialects, no parameters: `epoch` is hex) giving the database the epoch
    /// `epoch`: run by `restore` on the restored data, so cursors from before the restore
    /// are answered 410 RESYNC_REQUIRED. It fails on a database without `_pylon_meta`,
    /// which is how a restore tells a foreign database from a Pylon backup.
    package static func renewEpochSQL(_ epoch: String) -> String {
        precondition(epoch.allSatisfy(\.isHexDigit), "epoch ids are hex")
        return "UPDATE _pylon_meta SET value = '\(epoch)' WHERE key = 'epoch'"
    }
}
