/// Brings the database up to the manifest at startup: creates the host's own tables, then
/// plans additive changes against the schema recorded at the last start (`_pylon_meta`
/// key `schema`) and applies them in one transaction. A destructive change is refused
/// with a message saying what to do; nothing is applied in that case.
enum SchemaApplier {
    static func apply(_ entities: [Entity], on conn: StoreConnection, dialect: SQLDialect) throws -> [String] {
        try conn.begin()
        do {
            let log = try applyInTransaction(entities, conn, dialect)
            try conn.commit()
            return log
        } catch {
            try? conn.rollback()
            throw error
        }
    }

    private static func applyInTransaction(_ entities: [Entity], _ conn: StoreConnection, _ d: SQLDialect) throws -> [String] {
        for ddl in d.bootstrap { try conn.execute(ddl, wantRows: false) }
        let r = try conn.execute("SELECT value FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("schema")])
        var log: [String] = []
        var changes: [SchemaChange] = []
        if case let .text(json)? = r.rows.first?.first {
            let old = try SchemaSnapshot.decode(try JSONParser.parse(json))
            switch SchemaDiff.plan(from: old, to: entities) {
            case let .success(c): changes = c
            case let .failure(e):
                throw HostError(status: 500, code: "SCHEMA_DESTRUCTIVE_CHANGE",
                                message: "the manifest would destroy data, so nothing was migrated:\n  " + e.problems.map(\.description).joined(separator: "\n  "))
            }
        } else {
            changes = entities.map { .createEntity($0) }
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
            }
        }
        let snapshot = JSONWriter.string(SchemaSnapshot.encode(entities))
        try conn.execute("DELETE FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("schema")], wantRows: false)
        try conn.execute("INSERT INTO _pylon_meta (key, value) VALUES (\(d.placeholder(1)), \(d.placeholder(2)))",
                         [.text("schema"), .text(snapshot)], wantRows: false)
        return log
    }

    /// The database's epoch id, created on first start.
    static func epoch(_ conn: StoreConnection, _ d: SQLDialect) throws -> String {
        let r = try conn.execute("SELECT value FROM _pylon_meta WHERE key = \(d.placeholder(1))", [.text("epoch")])
        if case let .text(e)? = r.rows.first?.first { return e }
        var rng = SystemRandomNumberGenerator()
        let e = RowID.hex(rng.next(), 16)
        try conn.execute("INSERT INTO _pylon_meta (key, value) VALUES (\(d.placeholder(1)), \(d.placeholder(2)))",
                         [.text("epoch"), .text(e)], wantRows: false)
        return e
    }
}
