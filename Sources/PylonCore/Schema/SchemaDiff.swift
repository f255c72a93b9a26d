import PylonJSON

/// The applied schema as the host records it in the database (`_pylon_meta`, key `schema`)
/// after each migration, so the next start can diff the manifest against what the tables
/// really hold rather than against the previous manifest file, which may be gone.
///
/// The format is the manifest's own entity shape wrapped in a version:
/// `{"snapshot_version": 1, "entities": [{"name", "fields", "indexes", "relations", "crdt"}]}`,
/// so a person can read it and `Manifest.decode`'s entity decoder reads it back.
public enum SchemaSnapshot {
    /// The snapshot format this host writes and reads. Version 2: the database names of the
    /// recorded indexes are per entity (`IndexNames`); in version 1 they were the manifest's
    /// names (`SchemaApplier.renameLegacyIndexes` moves them).
    public static let version: Int64 = 2

    public static func encode(_ entities: [Entity]) -> JSONValue {
        .object([
            ("snapshot_version", .int(version)),
            ("entities", .array(entities.map(encode(entity:)))),
        ])
    }

    /// Reads a snapshot written by `encode`. Throws a `ManifestError` with code
    /// `SCHEMA_SNAPSHOT_INVALID` and the JSON path of the problem.
    public static func decode(_ v: JSONValue) throws -> [Entity] {
        guard case .object = v else {
            throw invalid("$", "expected an object with \"snapshot_version\" and \"entities\", found \(v.typeName)")
        }
        guard let sv = v["snapshot_version"]?.intValue else {
            throw invalid("$.snapshot_version", "\"snapshot_version\" is missing or not a number")
        }
        guard sv == version || sv == 1 else {
            throw invalid("$.snapshot_version",
                          "the schema was recorded by a host that writes snapshot version \(sv); this host reads version \(version), so run a newer pylon-host")
        }
        guard let items = v["entities"]?.arrayValue else {
            throw invalid("$.entities", "\"entities\" is missing or not an array")
        }
        let decoder = ManifestDecoder()
        var out: [Entity] = []
        for (n, item) in items.enumerated() {
            do throws(ManifestError) {
                out.append(try decoder.entity(item, "$.entities[\(n)]"))
            } catch {
                throw invalid(error.path, error.message)
            }
        }
        return out
    }

    /// Whether the snapshot was written when index names were database-wide (version 1).
    package static func hasLegacyIndexNames(_ v: JSONValue) -> Bool { v["snapshot_version"]?.intValue == 1 }

    static func invalid(_ path: String, _ detail: String) -> ManifestError {
        ManifestError(code: "SCHEMA_SNAPSHOT_INVALID", path: path,
                      message: "the schema recorded in the database (_pylon_meta key \"schema\") cannot be read: \(detail); restore it from a backup, or start with an empty database")
    }

    static func encode(entity e: Entity) -> JSONValue {
        .object([
            ("name", .string(e.name)),
            ("fields", .array(e.fields.map { f in
                var pairs: [(String, JSONValue)] = [
                    ("name", .string(f.name)), ("type", .string(f.typeName)),
                    ("optional", .bool(f.optional)), ("unique", .bool(f.unique)),
                ]
                if let crdt = f.crdt { pairs.append(("crdt", .string(crdt))) }
                return .object(pairs)
            })),
            ("indexes", .array(e.indexes.map { x in
                .object([("name", .string(x.name)), ("fields", .array(x.fields.map { .string($0) })),
                         ("unique", .bool(x.unique))])
            })),
            ("relations", .array(e.relations.map { r in
                .object([("name", .string(r.name)), ("target", .string(r.target)),
                         ("field", .string(r.field)), ("many", .bool(r.many))])
            })),
            ("crdt", .bool(e.crdt)),
        ] + (e.search.map { c in
            [("search", JSONValue.object([
                ("text", .array(c.text.map { .string($0) })), ("facets", .array(c.facets.map { .string($0) })),
                ("sortable", .array(c.sortable.map { .string($0) })), ("language", .string(c.language)),
            ]))]
        } ?? []))
    }
}

/// One additive step that brings the database from one schema to the next. Dialect-neutral:
/// `SQLDialect` turns each step into SQL.
public enum SchemaChange: Sendable, Equatable {
    /// A new table with its columns, unique-field indexes and declared indexes.
    case createEntity(Entity)
    /// A new column on an existing table (a required one gets a zero default in the dialect).
    case addColumn(entity: String, field: Field)
    case createIndex(entity: String, index: Index)
    /// Loses no data: used when an index is removed or changed, and when a field stops
    /// being unique (its backing index is dropped).
    /// `name` is the database's name (`IndexNames`).
    case dropIndex(entity: String, name: String)
    /// Builds the entity's full-text index from its `search.text` fields, fills it from the
    /// rows already stored, and keeps it current from then on, inside every write's own
    /// transaction (the dialect decides how: triggers on SQLite).
    case enableSearch(Entity)
    /// Drops the full-text index (never user data); also the first half of a rebuild when
    /// the indexed fields or the language change.
    case disableSearch(entity: String)
}

/// The manifest asks for changes that would destroy or reject existing data. Every such
/// change is listed, each with code `SCHEMA_DESTRUCTIVE_CHANGE` and what to do instead.
public struct SchemaDiffError: Error, Sendable, CustomStringConvertible {
    public var problems: [ManifestError]

    public init(problems: [ManifestError]) { self.problems = problems }

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Plans the additive migration from the recorded schema to the manifest's.
///
/// Allowed: new entities, new fields (optional, or required: the dialect fills existing
/// rows with a zero default), new, removed or changed indexes, a field that stops being
/// unique, a type change that keeps the storage class (e.g. string → datetime, both text),
/// any change to `crdt` annotations or relations, which are not storage, and any change to
/// `search` (the full-text index is derived data: it is dropped and rebuilt from the rows).
///
/// Refused, all at once: a removed entity or field (a rename is a removal plus an
/// addition), a type change across storage classes, any change of `optional` (SQLite
/// cannot change NOT NULL in place), a field that becomes unique, and a new field that is
/// both required and unique on an existing entity (every existing row would get the same
/// default value). The error lists every refused change, so one edit fixes them all.
public enum SchemaDiff {
    public static func plan(from old: [Entity], to new: [Entity]) -> Result<[SchemaChange], SchemaDiffError> {
        var problems: [ManifestError] = []
        func refuse(_ path: String, _ message: String) {
            problems.append(ManifestError(code: "SCHEMA_DESTRUCTIVE_CHANGE", path: path, message: message))
        }

        let oldByName = Dictionary(old.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let newNames = Set(new.map(\.name))

        for e in old where !newNames.contains(e.name) {
            let caseTwin = new.first { $0.name.lowercased() == e.name.lowercased() }
            let note = caseTwin.map { " (the manifest has \"\($0.name)\"; names are matched exactly, and a rename counts as dropping the table)" }
                ?? " (a rename counts as dropping the table)"
            refuse("$.entities(\(e.name))",
                   "entity \"\(e.name)\" exists in the database but not in the manifest\(note); put it back, or export its rows and drop the table yourself")
        }

        var creates: [SchemaChange] = []
        var columns: [SchemaChange] = []
        var drops: [SchemaChange] = []
        var indexCreates: [SchemaChange] = []
        /// Full-text indexes to build, after every column they read exists.
        var searches: [SchemaChange] = []
        /// New entities whose declared indexes are created separately (see below).
        var deferredIndexes: [(entity: String, index: Index)] = []

        for (i, e) in new.enumerated() {
            let ep = "$.entities[\(i)](\(e.name))"
            guard let was = oldByName[e.name] else { continue }

            let newFieldNames = Set(e.fields.map(\.name))
            for f in was.fields where !newFieldNames.contains(f.name) {
                refuse("\(ep).fields(\(f.name))",
                       "field \"\(f.name)\" of entity \"\(e.name)\" exists in the database but not in the manifest (a rename counts as dropping the column); put it back, or export its values and drop the column yourself")
            }

            for (j, f) in e.fields.enumerated() {
                let fp = "\(ep).fields[\(j)](\(f.name))"
                guard let before = was.field(named: f.name) else {
                    if f.unique && !f.optional {
                        refuse(fp,
                               "new field \"\(f.name)\" of entity \"\(e.name)\" is required and unique, but every existing row would get the same default value, which breaks uniqueness as soon as the table has two rows; make it optional (nulls do not clash), or add it without unique and add a unique index once the values are filled in")
                    } else {
                        columns.append(.addColumn(entity: e.name, field: f))
                    }
                    continue
                }
                if !sameStorage(before, f) {
                    refuse(fp,
                           "field \"\(f.name)\" of entity \"\(e.name)\" changed type from \(before.typeName) to \(f.typeName), which changes how the column is stored; put back type \"\(before.typeName)\", or add a new field with type \"\(f.typeName)\" and copy the values over")
                }
                if before.optional && !f.optional {
                    refuse(fp,
                           "field \"\(f.name)\" of entity \"\(e.name)\" was optional and is now required, but existing rows may hold nulls; keep \"optional\": true (and require the value in a policy or function), or add a new required field and copy the values over")
                } else if !before.optional && f.optional {
                    refuse(fp,
                           "field \"\(f.name)\" of entity \"\(e.name)\" was required and is now optional, but the column is NOT NULL and SQLite cannot relax that in place; keep \"optional\": false, or add a new optional field and copy the values over")
                }
                if !before.unique && f.unique {
                    refuse(fp,
                           "field \"\(f.name)\" of entity \"\(e.name)\" was not unique and is now unique, which would fail if existing rows already hold duplicate values; keep \"unique\": false and add a unique index instead ({\"name\": \"\(e.name)_\(f.name)_unique\", \"fields\": [\"\(f.name)\"], \"unique\": true}) after removing any duplicates")
                } else if before.unique && !f.unique {
                    drops.append(.dropIndex(entity: e.name, name: IndexNames.unique(e.name, f.name)))
                }
            }

            let newIndexes = Dictionary(e.indexes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            let oldIndexes = Dictionary(was.indexes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for x in was.indexes where newIndexes[x.name] != x {
                drops.append(.dropIndex(entity: e.name, name: IndexNames.declared(e.name, x.name)))
            }
            for x in e.indexes where oldIndexes[x.name] != x {
                indexCreates.append(.createIndex(entity: e.name, index: x))
            }

            switch (was.search, e.search) {
            case (nil, _?): searches.append(.enableSearch(e))
            case (_?, nil): drops.append(.disableSearch(entity: e.name))
            case let (a?, b?) where !a.sameIndex(as: b):
                drops.append(.disableSearch(entity: e.name))
                searches.append(.enableSearch(e))
            default: break
            }
        }

        // A database index name may pass from a dropped index to a new entity's (only where
        // `IndexNames` makes one name of two, e.g. `A`'s `b_c` and `A_b`'s `c`). Names are per
        // database and creation is `IF NOT EXISTS`, so the new entity's index must be created
        // after the old one is dropped, not with the table.
        let droppedNames = Set(drops.compactMap { change -> String? in
            if case let .dropIndex(_, name) = change { return name.lowercased() }
            return nil
        })
        for e in new where oldByName[e.name] == nil {
            var table = e
            table.indexes = e.indexes.filter { x in
                guard droppedNames.contains(IndexNames.declared(e.name, x.name).lowercased()) else { return true }
                deferredIndexes.append((e.name, x))
                return false
            }
            creates.append(.createEntity(table))
            if e.search != nil { searches.append(.enableSearch(e)) }
        }
        indexCreates += deferredIndexes.map { .createIndex(entity: $0.entity, index: $0.index) }

        if !problems.isEmpty { return .failure(SchemaDiffError(problems: problems)) }
        return .success(creates + columns + drops + indexCreates + searches)
    }

    /// Whether a field's column keeps its storage class (so no data or DDL change is needed).
    static func sameStorage(_ a: Field, _ b: Field) -> Bool {
        if let ta = a.type, let tb = b.type { return ta.storage == tb.storage }
        return a.typeName == b.typeName
    }
}
