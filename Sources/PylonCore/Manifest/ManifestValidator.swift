import Foundation

/// Semantic checks on a decoded manifest: names, duplicates, unknown types, dangling
/// references. `Manifest.decode` has already checked the shapes; this finds everything
/// that is well-formed JSON but cannot be served.
///
/// Codes are Pylon's (pylon-core.md §1.11) where Pylon has one, so tooling written for
/// Pylon recognises them. `SCHEMA_EMPTY` is deliberately not reported: an app may start
/// with no entities (functions only, or auth only). Our own codes cover what Pylon leaves
/// to the database to discover at runtime, because here names become SQL identifiers on
/// more than one store:
///
/// - `NAME_INVALID`: entity, field, index and relation names must match
///   `^[A-Za-z_][A-Za-z0-9_]*$` and be at most 63 characters (Postgres truncates longer
///   identifiers silently).
/// - `NAME_RESERVED`: a declared field `id` (implicit primary key), and any entity, field
///   or index name starting with `_pylon` (the host's own tables and indexes).
/// - `FIELD_CRDT_INVALID`: not one of lww, text, counter, list, movable-list, tree; `text`
///   on a non-string/richtext field; `counter` on a non-int/float field.
/// - `RELATION_TARGET_NOT_FOUND`, `RELATION_FIELD_NOT_FOUND` (the key must be a field of
///   the entity or `id`; a `many: true` relation may also name a field of its target, so
///   conventional has-many manifests written for Pylon still load), `RELATION_DUPLICATE`.
/// - `ENTITY_NAME_CASE_DUPLICATE`: table names that differ only in case.
///
/// `id(Entity)` targets are checked for query and action inputs too
/// (`FIELD_ID_TARGET_NOT_FOUND`).
///
/// SQLite compares identifiers case-insensitively, so two fields, or two indexes of one
/// entity, whose names differ only in case are reported as duplicates too. Index names are
/// per entity, as in Pylon; the database's name (`IndexNames`, `<Entity>_<index>`) may not
/// clash with another index's or an entity's (tables and indexes live in one namespace on
/// SQLite and Postgres), which only contrived names do (`A`'s `b_c` and `A_b`'s `c`).
///
/// Every problem carries a path in the style of `Manifest.decode`
/// (`$.entities[1](Todo).fields[2](done)`) and a message that says what to change.
public enum ManifestValidator {
    /// Every semantic problem in `m`, in document order; empty when the manifest is valid.
    public static func validate(_ m: Manifest) -> [ManifestError] {
        var v = ValidationRun(manifest: m)
        v.run()
        return v.problems
    }

    /// The type names `FieldType(parsing:)` accepts, for messages.
    static let typeList = "string, int, float, bool, datetime, richtext, id(<Entity>)"
    /// The values of a field's `crdt` annotation (pylon-core.md §1.3).
    static let crdtKinds = ["lww", "text", "counter", "list", "movable-list", "tree"]
    /// Longest identifier Postgres keeps without truncating (NAMEDATALEN - 1).
    static let maxNameLength = 63

    /// Whether `name` can be used as an SQL identifier on every store we support.
    static func isIdentifier(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= maxNameLength else { return false }
        func letter(_ c: UInt8) -> Bool {
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || c == UInt8(ascii: "_")
        }
        func digit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        return letter(first) && bytes.dropFirst().allSatisfy { letter($0) || digit($0) }
    }

    /// Names starting with `_pylon` (any case) belong to the host.
    static func isReservedPrefix(_ name: String) -> Bool {
        name.lowercased().hasPrefix("_pylon")
    }

    /// Table and index names starting with `sqlite_` (any case) are SQLite's own: it
    /// refuses to create them, so such a manifest passed `check` and then stopped the host.
    static func isStoreReservedPrefix(_ name: String) -> Bool {
        name.lowercased().hasPrefix("sqlite_")
    }

    /// Column names a store keeps for itself: PostgreSQL's system columns (it refuses a
    /// column so named) and SQLite's row id aliases (a column so named hides the row id the
    /// search index's triggers rely on).
    static let storeColumns: Set<String> = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid", "rowid", "_rowid_"]

    /// `[n](name)`, or `[n]` when the name is empty.
    static func element(_ list: String, _ n: Int, _ name: String) -> String {
        name.isEmpty ? "\(list)[\(n)]" : "\(list)[\(n)](\(name))"
    }

    /// ` (did you mean "x"?)` for the closest candidate within a small edit distance.
    static func suggestion(for word: String, among candidates: [String]) -> String {
        let lower = word.lowercased()
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(lower, c.lowercased())
            if d <= max(1, min(2, word.count / 3)), d < word.count, d < (best?.1 ?? Int.max) { best = (c, d) }
        }
        guard let best else { return "" }
        return " (did you mean \"\(best.0)\"?)"
    }

    /// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}

/// One validation run: the manifest, the problems found so far, and lookup tables.
private struct ValidationRun {
    let manifest: Manifest
    var problems: [ManifestError] = []
    let entityNames: Set<String>
    let queryNames: Set<String>
    let actionNames: Set<String>

    init(manifest: Manifest) {
        self.manifest = manifest
        entityNames = Set(manifest.entities.map(\.name))
        queryNames = Set(manifest.queries.map(\.name))
        actionNames = Set(manifest.actions.map(\.name))
    }

    mutating func add(_ code: String, _ path: String, _ message: String) {
        problems.append(ManifestError(code: code, path: path, message: message))
    }

    mutating func run() {
        checkEntities()
        checkNamedInputs(manifest.queries, list: "queries", kind: "query", codePrefix: "QUERY")
        checkNamedInputs(manifest.actions, list: "actions", kind: "action", codePrefix: "ACTION")
        checkPolicies()
        checkRoutes()
        checkFunctionsPolicies()
        checkCron()
    }

    /// Each cron task: a unique name, an expression that parses and fires, a known IANA
    /// zone, a job priority and retry count the queue accepts.
    mutating func checkCron() {
        var seen: Set<String> = []
        for (n, t) in manifest.cron.enumerated() {
            let p = "$.cron[\(n)](\(t.name))"
            if t.name.isEmpty || t.name.utf8.count > 200 {
                add("CRON_NAME_INVALID", p, "a cron task needs a name of 1 to 200 bytes")
            } else if !seen.insert(t.name).inserted {
                add("CRON_DUPLICATE", p, "two cron tasks are named \"\(t.name)\"; give each its own name")
            }
            do {
                let expr = try CronExpression(t.schedule)
                if let zone = TimeZone(identifier: t.timezone), expr.next(after: Date(), in: zone) == nil {
                    add("CRON_NEVER_FIRES", "\(p).schedule", "\"\(t.schedule)\" matches no date (e.g. the 30th of February); fix the day or month")
                }
            } catch {
                add("CRON_SCHEDULE_INVALID", "\(p).schedule", "\(error)")
            }
            if TimeZone(identifier: t.timezone) == nil {
                add("CRON_TIMEZONE_INVALID", "\(p).timezone", "\"\(t.timezone)\" is not an IANA time zone; use a name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\"")
            }
            if let pr = t.priority, !["low", "normal", "high", "critical"].contains(pr) {
                add("CRON_PRIORITY_INVALID", "\(p).priority", "priority must be low, normal, high or critical")
            }
            if let m = t.maxRetries, m < 0 || m > 25 {
                add("CRON_RETRIES_INVALID", "\(p).max_retries", "max_retries must be from 0 to 25")
            }
            if t.function.isEmpty {
                add("CRON_FUNCTION_INVALID", "\(p).function", "name the function (mutation or action) the task runs")
            }
        }
    }

    /// `plugins.functions.policies` is "enforce" or "trusted" when given.
    mutating func checkFunctionsPolicies() {
        guard let v = manifest.plugins["functions"]?.config["policies"], !v.isNull else { return }
        if v.stringValue != "enforce" && v.stringValue != "trusted" {
            add("FUNCTIONS_POLICIES_INVALID", "$.plugins.functions.policies",
                "\"policies\" must be \"trusted\" (functions bypass entity policies, as in Pylon; the default) or \"enforce\" (their ctx.db obeys the caller's policies)")
        }
    }

    /// `declared entities: A, B` (or a note that there are none), for "not found" messages.
    var declaredEntities: String {
        manifest.entities.isEmpty
            ? "the manifest declares no entities"
            : "declared entities: " + manifest.entities.map(\.name).joined(separator: ", ")
    }

    // MARK: Entities

    mutating func checkEntities() {
        var firstByName: [String: Int] = [:]
        var firstByLowerName: [String: Int] = [:]
        // Database index names (`IndexNames`), lowercased → (entity, index) of first use.
        var indexOwners: [String: (entity: String, index: String)] = [:]
        let tableNames = Dictionary(manifest.entities.map { ($0.name.lowercased(), $0.name) },
                                    uniquingKeysWith: { first, _ in first })

        for (i, e) in manifest.entities.enumerated() {
            let ep = "$." + ManifestValidator.element("entities", i, e.name)
            if e.name.isEmpty {
                add("ENTITY_NAME_EMPTY", ep, "entity #\(i) has an empty name; give it a name such as \"Todo\"")
            } else {
                checkIdentifier(e.name, what: "entity", path: ep)
                if ManifestValidator.isReservedPrefix(e.name) {
                    add("NAME_RESERVED", ep,
                        "entity name \"\(e.name)\" starts with \"_pylon\", which is reserved for the host's own tables; rename the entity")
                } else if ManifestValidator.isStoreReservedPrefix(e.name) {
                    add("NAME_RESERVED", ep,
                        "entity name \"\(e.name)\" starts with \"sqlite_\", which SQLite keeps for its own tables; rename the entity")
                }
                if let first = firstByName[e.name] {
                    add("ENTITY_DUPLICATE", ep,
                        "entity \"\(e.name)\" is declared twice (entities[\(first)] and entities[\(i)]); merge the two declarations or rename one")
                } else if let first = firstByLowerName[e.name.lowercased()] {
                    let other = manifest.entities[first].name
                    add("ENTITY_NAME_CASE_DUPLICATE", ep,
                        "entity \"\(e.name)\" differs from entity \"\(other)\" (entities[\(first)]) only in letter case, and table names collide on stores that ignore case (SQLite); rename one of them")
                }
                if firstByName[e.name] == nil { firstByName[e.name] = i }
                if firstByLowerName[e.name.lowercased()] == nil { firstByLowerName[e.name.lowercased()] = i }
            }
            checkFields(e, path: ep)
            checkIndexes(e, path: ep, owners: &indexOwners, tableNames: tableNames)
            checkRelations(e, path: ep)
            checkSearch(e, path: ep)
        }
    }

    /// `search`: every listed field exists; text fields hold text; the language is a plain
    /// name (it becomes part of Postgres DDL, so it is checked rather than quoted).
    mutating func checkSearch(_ e: Entity, path ep: String) {
        guard let search = e.search else { return }
        let sp = ep + ".search"
        for (list, names) in [("text", search.text), ("facets", search.facets), ("sortable", search.sortable)] {
            var seen: Set<String> = []
            for (n, name) in names.enumerated() {
                let p = sp + "." + ManifestValidator.element(list, n, name)
                if !seen.insert(name).inserted {
                    add("SEARCH_FIELD_DUPLICATE", p, "search.\(list) of entity \"\(e.name)\" lists \"\(name)\" twice; remove one")
                    continue
                }
                if name == "id" && list != "text" { continue }
                guard let f = e.field(named: name) else {
                    let hint = ManifestValidator.suggestion(for: name, among: e.fields.map(\.name))
                    add("SEARCH_FIELD_NOT_FOUND", p,
                        "search.\(list) of entity \"\(e.name)\" names field \"\(name)\", which entity \"\(e.name)\" does not have\(hint); use one of its fields (\(fieldList(e)))")
                    continue
                }
                if list == "text", let t = f.type, t.storage != .text {
                    add("SEARCH_TEXT_FIELD_TYPE", p,
                        "search.text of entity \"\(e.name)\" lists \"\(name)\", a \(f.typeName) field; full-text search indexes text only, so list string or richtext fields there (use facets or sortable for \"\(name)\")")
                }
            }
        }
        let lang = search.language.utf8
        if lang.isEmpty || lang.count > 63 || !lang.allSatisfy({ ($0 >= 97 && $0 <= 122) || $0 == 95 }) {
            add("SEARCH_LANGUAGE_INVALID", sp + ".language",
                "search.language of entity \"\(e.name)\" is \"\(search.language)\"; use a text-search configuration name in lower case, such as \"english\", \"simple\" or \"german\"")
        }
    }

    mutating func checkIdentifier(_ name: String, what: String, path: String) {
        if name.utf8.count > ManifestValidator.maxNameLength {
            add("NAME_INVALID", path,
                "\(what) name \"\(name)\" is \(name.utf8.count) characters long; names become SQL identifiers, which are limited to \(ManifestValidator.maxNameLength) characters, so shorten it")
        } else if !ManifestValidator.isIdentifier(name) {
            add("NAME_INVALID", path,
                "\(what) name \"\(name)\" is not a valid identifier; names become SQL identifiers, so use only letters, digits and _, not starting with a digit (e.g. \"\(suggestedIdentifier(name))\")")
        }
    }

    /// `name` with every invalid character replaced by `_` (and a leading `_` before a digit).
    func suggestedIdentifier(_ name: String) -> String {
        var out = ""
        for u in name.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "_"
            out.unicodeScalars.append(ok ? u : "_")
        }
        if let f = out.unicodeScalars.first, f >= "0" && f <= "9" { out = "_" + out }
        if out.isEmpty { out = "name" }
        return String(out.prefix(ManifestValidator.maxNameLength))
    }

    mutating func checkFields(_ e: Entity, path ep: String) {
        var firstByLowerName: [String: Int] = [:]
        for (j, f) in e.fields.enumerated() {
            let fp = ep + "." + ManifestValidator.element("fields", j, f.name)
            if f.name.isEmpty {
                add("FIELD_NAME_EMPTY", fp,
                    "field #\(j) of entity \"\(e.name)\" has an empty name; give it a name such as \"title\"")
            } else {
                checkIdentifier(f.name, what: "field", path: fp)
                if f.name.lowercased() == "id" {
                    add("NAME_RESERVED", fp,
                        "entity \"\(e.name)\" declares a field \"\(f.name)\", but every entity has an implicit \"id\" (text primary key); remove this field")
                } else if ManifestValidator.isReservedPrefix(f.name) {
                    add("NAME_RESERVED", fp,
                        "field name \"\(f.name)\" of entity \"\(e.name)\" starts with \"_pylon\", which is reserved for the host; rename the field")
                } else if ManifestValidator.storeColumns.contains(f.name.lowercased()) {
                    add("NAME_RESERVED", fp,
                        "field name \"\(f.name)\" of entity \"\(e.name)\" is a column name the stores keep for themselves (\(ManifestValidator.storeColumns.sorted().joined(separator: ", "))); rename the field")
                }
                let lower = f.name.lowercased()
                if let first = firstByLowerName[lower] {
                    let other = e.fields[first].name
                    if other == f.name {
                        add("FIELD_DUPLICATE", fp,
                            "entity \"\(e.name)\" declares field \"\(f.name)\" twice (fields[\(first)] and fields[\(j)]); remove one or rename it")
                    } else {
                        add("FIELD_DUPLICATE", fp,
                            "field \"\(f.name)\" of entity \"\(e.name)\" differs from field \"\(other)\" (fields[\(first)]) only in letter case, and column names collide on stores that ignore case (SQLite); rename one of them")
                    }
                } else {
                    firstByLowerName[lower] = j
                }
            }
            let type = checkType(f, owner: "field \"\(f.name)\" of entity \"\(e.name)\"", path: fp,
                                 unknownCode: "FIELD_TYPE_UNKNOWN")
            checkCrdt(f, type: type, entity: e.name, path: fp)
        }
    }

    /// Checks a field's type and its `id(Entity)` target; returns the parsed type.
    mutating func checkType(_ f: Field, owner: String, path: String, unknownCode: String) -> FieldType? {
        guard let type = f.type else {
            let candidates = ["string", "int", "float", "bool", "datetime", "richtext"]
                + manifest.entities.map { "id(\($0.name))" }
            add(unknownCode, path,
                "\(owner) has unknown type \"\(f.typeName)\"; use one of \(ManifestValidator.typeList)"
                    + ManifestValidator.suggestion(for: f.typeName, among: candidates))
            return nil
        }
        if case let .id(target) = type, !entityNames.contains(target) {
            let hint = ManifestValidator.suggestion(for: target, among: manifest.entities.map(\.name))
            add("FIELD_ID_TARGET_NOT_FOUND", path,
                "\(owner) has type \"\(f.typeName)\", but no entity \"\(target)\" is declared\(hint); declare entity \"\(target)\" or reference an existing one (\(declaredEntities))")
        }
        return type
    }

    mutating func checkCrdt(_ f: Field, type: FieldType?, entity: String, path: String) {
        guard let crdt = f.crdt else { return }
        let owner = "field \"\(f.name)\" of entity \"\(entity)\""
        guard ManifestValidator.crdtKinds.contains(crdt) else {
            add("FIELD_CRDT_INVALID", path,
                "\(owner) has crdt \"\(crdt)\", which is not a CRDT kind; use one of \(ManifestValidator.crdtKinds.joined(separator: ", ")), or remove \"crdt\" for the default"
                    + ManifestValidator.suggestion(for: crdt, among: ManifestValidator.crdtKinds))
            return
        }
        guard let type else { return }  // unknown type: already reported
        switch (crdt, type) {
        case ("text", .string), ("text", .richtext), ("counter", .int), ("counter", .float): break
        case ("text", _):
            add("FIELD_CRDT_INVALID", path,
                "\(owner) has crdt \"text\", but text CRDTs work only on string and richtext fields, and this one is \"\(f.typeName)\"; remove \"crdt\" or use \"lww\"")
        case ("counter", _):
            add("FIELD_CRDT_INVALID", path,
                "\(owner) has crdt \"counter\", but counters work only on int and float fields, and this one is \"\(f.typeName)\"; remove \"crdt\" or use \"lww\"")
        default: break
        }
    }

    mutating func checkIndexes(_ e: Entity, path ep: String,
                               owners: inout [String: (entity: String, index: String)],
                               tableNames: [String: String]) {
        let columns = Set(e.fields.map(\.name) + ["id"])
        // This entity's index names, lowercased → as declared first.
        var mine: [String: String] = [:]
        for (k, x) in e.indexes.enumerated() {
            let ip = ep + "." + ManifestValidator.element("indexes", k, x.name)
            if x.name.isEmpty {
                add("INDEX_NAME_EMPTY", ip,
                    "index #\(k) of entity \"\(e.name)\" has an empty name; name it, e.g. \"\(e.name)_by_\(x.fields.first ?? "field")\"")
            } else {
                checkIdentifier(x.name, what: "index", path: ip)
                if ManifestValidator.isReservedPrefix(x.name) {
                    add("NAME_RESERVED", ip,
                        "index name \"\(x.name)\" of entity \"\(e.name)\" starts with \"_pylon\", which is reserved for the host's own indexes; rename the index")
                } else if ManifestValidator.isStoreReservedPrefix(x.name) {
                    add("NAME_RESERVED", ip,
                        "index name \"\(x.name)\" of entity \"\(e.name)\" starts with \"sqlite_\", which SQLite keeps for its own indexes; rename the index")
                }
                // Names are per entity (as in Pylon); the database's name is `<Entity>_<name>`.
                let physical = IndexNames.declared(e.name, x.name)
                if let first = mine[x.name.lowercased()] {
                    let same = first == x.name ? "the same name as" : "a name that differs only in letter case from"
                    add("INDEX_NAME_DUPLICATE", ip,
                        "index \"\(x.name)\" of entity \"\(e.name)\" has \(same) another index of \"\(e.name)\", \"\(first)\"; rename one")
                } else if let first = owners[physical.lowercased()] {
                    add("INDEX_NAME_DUPLICATE", ip,
                        "index \"\(x.name)\" of entity \"\(e.name)\" and index \"\(first.index)\" of entity \"\(first.entity)\" would both be the database index \"\(physical)\" (<Entity>_<index>); rename one")
                } else if let table = tableNames[physical.lowercased()] {
                    add("INDEX_NAME_DUPLICATE", ip,
                        "index \"\(x.name)\" of entity \"\(e.name)\" would be the database index \"\(physical)\" (<Entity>_<index>), which is the name of entity \"\(table)\"; tables and indexes share one namespace in the database, so rename the index")
                }
                mine[x.name.lowercased()] = mine[x.name.lowercased()] ?? x.name
                owners[physical.lowercased()] = owners[physical.lowercased()] ?? (e.name, x.name)
            }
            if x.fields.isEmpty {
                add("INDEX_FIELDS_EMPTY", ip,
                    "index \"\(x.name)\" of entity \"\(e.name)\" lists no fields; list the fields to index, e.g. [\"\(e.fields.first?.name ?? "field")\"], or remove the index")
            }
            for (n, name) in x.fields.enumerated() where !columns.contains(name) {
                let hint = ManifestValidator.suggestion(for: name, among: e.fields.map(\.name))
                add("INDEX_FIELD_NOT_FOUND", ip + "." + ManifestValidator.element("fields", n, name),
                    "index \"\(x.name)\" of entity \"\(e.name)\" uses field \"\(name)\", which entity \"\(e.name)\" does not have\(hint); use one of its fields (\(fieldList(e)))")
            }
        }
    }

    func fieldList(_ e: Entity) -> String {
        (["id"] + e.fields.map(\.name)).joined(separator: ", ")
    }

    mutating func checkRelations(_ e: Entity, path ep: String) {
        var seen: [String: Int] = [:]
        let columns = Set(e.fields.map(\.name) + ["id"])
        for (r, rel) in e.relations.enumerated() {
            let rp = ep + "." + ManifestValidator.element("relations", r, rel.name)
            if rel.name.isEmpty {
                add("NAME_INVALID", rp,
                    "relation #\(r) of entity \"\(e.name)\" has an empty name; name it after what it points to, e.g. \"\(rel.target.isEmpty ? "owner" : rel.target.lowercased())\"")
            } else {
                checkIdentifier(rel.name, what: "relation", path: rp)
                if let first = seen[rel.name] {
                    add("RELATION_DUPLICATE", rp,
                        "entity \"\(e.name)\" declares relation \"\(rel.name)\" twice (relations[\(first)] and relations[\(r)]); remove one or rename it")
                } else {
                    seen[rel.name] = r
                }
            }
            if !entityNames.contains(rel.target) {
                let hint = ManifestValidator.suggestion(for: rel.target, among: manifest.entities.map(\.name))
                add("RELATION_TARGET_NOT_FOUND", rp,
                    "relation \"\(rel.name)\" of entity \"\(e.name)\" targets entity \"\(rel.target)\", which is not declared\(hint); set \"target\" to a declared entity (\(declaredEntities))")
            }
            // A has-many may name the key on either side: Pylon reads it from this entity
            // (a quirk, pylon-core.md §6.3), a conventional has-many names the target's column.
            let targetColumns = rel.many ? Set((manifest.entity(named: rel.target)?.fields.map(\.name) ?? []) + ["id"]) : []
            if !columns.contains(rel.field) && !targetColumns.contains(rel.field) {
                if rel.many, let target = manifest.entity(named: rel.target) {
                    let hint = ManifestValidator.suggestion(for: rel.field, among: e.fields.map(\.name) + target.fields.map(\.name))
                    add("RELATION_FIELD_NOT_FOUND", rp,
                        "relation \"\(rel.name)\" of entity \"\(e.name)\" uses field \"\(rel.field)\", which neither entity \"\(e.name)\" nor its target \"\(target.name)\" has\(hint); set \"field\" to the field that holds the key (on \"\(e.name)\": \(fieldList(e)); on \"\(target.name)\": \(fieldList(target)))")
                } else {
                    let hint = ManifestValidator.suggestion(for: rel.field, among: e.fields.map(\.name))
                    add("RELATION_FIELD_NOT_FOUND", rp,
                        "relation \"\(rel.name)\" of entity \"\(e.name)\" uses field \"\(rel.field)\", which entity \"\(e.name)\" does not have\(hint); set \"field\" to the field of \"\(e.name)\" that holds the key (\(fieldList(e)))")
                }
            }
        }
    }

    // MARK: Queries and actions

    mutating func checkNamedInputs(_ items: [NamedInput], list: String, kind: String, codePrefix: String) {
        var first: [String: Int] = [:]
        for (n, q) in items.enumerated() {
            let qp = "$." + ManifestValidator.element(list, n, q.name)
            if q.name.isEmpty {
                add("\(codePrefix)_NAME_EMPTY", qp, "\(kind) #\(n) has an empty name; give it a name")
            } else if let f = first[q.name] {
                add("\(codePrefix)_DUPLICATE", qp,
                    "\(kind) \"\(q.name)\" is declared twice (\(list)[\(f)] and \(list)[\(n)]); remove one or rename it")
            } else {
                first[q.name] = n
            }
            var seen: [String: Int] = [:]
            for (k, f) in q.input.enumerated() {
                let fp = qp + "." + ManifestValidator.element("input", k, f.name)
                if f.name.isEmpty {
                    add("INPUT_FIELD_NAME_EMPTY", fp,
                        "input #\(k) of \(kind) \"\(q.name)\" has an empty name; give it a name")
                } else if let s = seen[f.name] {
                    add("INPUT_FIELD_DUPLICATE", fp,
                        "\(kind) \"\(q.name)\" declares input \"\(f.name)\" twice (input[\(s)] and input[\(k)]); remove one or rename it")
                } else {
                    seen[f.name] = k
                }
                _ = checkType(f, owner: "input \"\(f.name)\" of \(kind) \"\(q.name)\"", path: fp,
                              unknownCode: "INPUT_FIELD_TYPE_UNKNOWN")
            }
        }
    }

    // MARK: Policies

    mutating func checkPolicies() {
        var first: [String: Int] = [:]
        for (n, p) in manifest.policies.enumerated() {
            let pp = "$." + ManifestValidator.element("policies", n, p.name)
            let label = p.name.isEmpty ? "policy #\(n)" : "policy \"\(p.name)\""
            if p.name.isEmpty {
                add("POLICY_NAME_EMPTY", pp, "policy #\(n) has an empty name; give it a name (it is shown in logs)")
            } else if let f = first[p.name] {
                add("POLICY_DUPLICATE", pp,
                    "policy \"\(p.name)\" is declared twice (policies[\(f)] and policies[\(n)]); rename one, or merge their rules")
            } else {
                first[p.name] = n
            }
            let rules = [p.allow, p.allowRead, p.allowInsert, p.allowUpdate, p.allowDelete, p.allowWrite]
            if rules.allSatisfy({ ($0 ?? "").allSatisfy(\.isWhitespace) }) {
                add("POLICY_ALLOW_EMPTY", pp,
                    "\(label) has no rule; set \"allow\" (or allowRead / allowInsert / allowUpdate / allowDelete / allowWrite) to an expression such as \"auth.userId != null\"")
            }
            let entity = p.entity.flatMap { $0.isEmpty ? nil : $0 }
            let action = p.action.flatMap { $0.isEmpty ? nil : $0 }
            if entity == nil && action == nil {
                add("POLICY_NO_TARGET", pp,
                    "\(label) applies to nothing; set \"entity\" to an entity name or \"action\" to an action name")
            }
            if let entity, !entityNames.contains(entity) {
                let hint = ManifestValidator.suggestion(for: entity, among: manifest.entities.map(\.name))
                add("POLICY_ENTITY_NOT_FOUND", pp,
                    "\(label) targets entity \"\(entity)\", which is not declared\(hint); set \"entity\" to a declared entity (\(declaredEntities))")
            }
            if let action, !actionNames.contains(action) {
                let names = manifest.actions.map(\.name)
                let hint = ManifestValidator.suggestion(for: action, among: names)
                let known = names.isEmpty ? "the manifest declares no actions" : "declared actions: " + names.joined(separator: ", ")
                add("POLICY_ACTION_NOT_FOUND", pp,
                    "\(label) targets action \"\(action)\", which is not declared\(hint); set \"action\" to a declared action (\(known)) or declare it under \"actions\"")
            }
        }
    }

    // MARK: Routes

    mutating func checkRoutes() {
        var first: [String: Int] = [:]
        for (n, r) in manifest.routes.enumerated() {
            let rp = "$." + ManifestValidator.element("routes", n, r.path)
            if r.path.isEmpty {
                add("ROUTE_PATH_EMPTY", rp, "route #\(n) has an empty path; set \"path\", e.g. \"/\" or \"/notes/:id\"")
            } else if !r.path.hasPrefix("/") {
                add("ROUTE_PATH_NO_SLASH", rp,
                    "route path \"\(r.path)\" does not start with \"/\"; write it as \"/\(r.path)\"")
            }
            if !r.path.isEmpty {
                if let f = first[r.path] {
                    add("ROUTE_PATH_DUPLICATE", rp,
                        "route path \"\(r.path)\" is declared twice (routes[\(f)] and routes[\(n)]); remove one or change its path")
                } else {
                    first[r.path] = n
                }
            }
            let query = r.query.flatMap { $0.isEmpty ? nil : $0 }
            if let query {
                if let q = manifest.queries.first(where: { $0.name == query }) {
                    let inputs = Set(q.input.map(\.name))
                    for segment in r.path.split(separator: "/") where segment.hasPrefix(":") {
                        let param = String(segment.dropFirst())
                        if !inputs.contains(param) {
                            let known = q.input.isEmpty ? "it has no inputs" : "its inputs: " + q.input.map(\.name).joined(separator: ", ")
                            add("ROUTE_PARAM_NOT_IN_QUERY", rp,
                                "route \"\(r.path)\" has parameter \":\(param)\", but query \"\(query)\" has no input \"\(param)\" (\(known)); add an input \"\(param)\" to the query or rename the parameter")
                        }
                    }
                } else {
                    let names = manifest.queries.map(\.name)
                    let hint = ManifestValidator.suggestion(for: query, among: names)
                    let known = names.isEmpty ? "the manifest declares no queries" : "declared queries: " + names.joined(separator: ", ")
                    add("ROUTE_QUERY_NOT_FOUND", rp,
                        "route \"\(r.path)\" uses query \"\(query)\", which is not declared\(hint); declare it under \"queries\" or use a declared one (\(known))")
                }
            }
            if let auth = r.auth, auth != "public", auth != "user" {
                add("ROUTE_AUTH_INVALID", rp,
                    "route \"\(r.path)\" has auth \"\(auth)\"; use \"public\" or \"user\" (or leave it out)")
            }
        }
    }
}
