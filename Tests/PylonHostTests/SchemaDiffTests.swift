import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

private func f(_ name: String, _ type: String = "string", optional: Bool = false, unique: Bool = false,
               crdt: String? = nil) -> Field {
    Field(name: name, typeName: type, optional: optional, unique: unique, crdt: crdt)
}

private func e(_ name: String, _ fields: [Field], indexes: [Index] = [], relations: [Relation] = [],
               crdt: Bool = true) -> Entity {
    Entity(name: name, fields: fields, indexes: indexes, relations: relations, crdt: crdt)
}

extension Entity {
    fileprivate func with(fields: [Field]) -> Entity {
        var copy = self
        copy.fields = fields
        return copy
    }
}

private func ix(_ name: String, _ fields: [String], unique: Bool = false) -> Index {
    Index(name: name, fields: fields, unique: unique)
}

private let todo = e("Todo", [f("title"), f("done", "bool")], indexes: [ix("todo_by_done", ["done"])])

@Suite("Schema snapshot")
struct SchemaSnapshotTests {
    @Test func completeExampleRoundTripsThroughText() throws {
        let entities = try Manifest.decode(Array(completeManifestExample.utf8)).entities
        let text = JSONWriter.string(SchemaSnapshot.encode(entities))
        let back = try SchemaSnapshot.decode(try JSONParser.parse(text))
        #expect(back == entities)
        #expect(back[1].field(named: "summary")?.crdt == "text")
        #expect(back[1].relations == [Relation(name: "author", target: "User", field: "authorId", many: false)])
        #expect(back[2].crdt == false)
    }

    @Test func formatIsTheManifestEntityShapeWithAVersion() {
        let entity = e("Todo", [f("title", crdt: "text"), f("n", "int", optional: true, unique: true)],
                       indexes: [ix("todo_by_n", ["n", "title"], unique: true)],
                       relations: [Relation(name: "self", target: "Todo", field: "id", many: true)], crdt: false)
        #expect(JSONWriter.string(SchemaSnapshot.encode([entity])) == """
            {"snapshot_version":2,"entities":[{"name":"Todo","fields":[\
            {"name":"title","type":"string","optional":false,"unique":false,"crdt":"text"},\
            {"name":"n","type":"int","optional":true,"unique":true}],\
            "indexes":[{"name":"todo_by_n","fields":["n","title"],"unique":true}],\
            "relations":[{"name":"self","target":"Todo","field":"id","many":true}],"crdt":false}]}
            """)
        #expect(JSONWriter.string(SchemaSnapshot.encode([])) == #"{"snapshot_version":2,"entities":[]}"#)
    }

    @Test func emptyAndHandBuiltSnapshotsDecode() throws {
        #expect(try SchemaSnapshot.decode(SchemaSnapshot.encode([])) == [])
        #expect(try SchemaSnapshot.decode(SchemaSnapshot.encode([todo])) == [todo])
    }

    func snapshotError(_ text: String) throws -> ManifestError? {
        let v = try JSONParser.parse(text)
        let error = #expect(throws: ManifestError.self) { try SchemaSnapshot.decode(v) }
        #expect(error?.code == "SCHEMA_SNAPSHOT_INVALID")
        #expect(error?.message.hasPrefix(#"the schema recorded in the database (_pylon_meta key "schema") cannot be read: "#) == true)
        return error
    }

    @Test func unreadableSnapshotsNameThePlace() throws {
        let array = try #require(try snapshotError("[]"))
        #expect(array.path == "$")
        #expect(array.message.contains(#"expected an object with "snapshot_version" and "entities", found array"#))

        let newer = try #require(try snapshotError(#"{"snapshot_version": 3, "entities": []}"#))
        #expect(newer.path == "$.snapshot_version")
        #expect(newer.message.contains("snapshot version 3; this host reads version 2, so run a newer pylon-host"))

        let noEntities = try #require(try snapshotError(#"{"snapshot_version": 1}"#))
        #expect(noEntities.path == "$.entities")

        let badField = try #require(try snapshotError(
            #"{"snapshot_version": 1, "entities": [{"name": "Todo", "fields": [{"name": "a"}], "indexes": []}]}"#))
        #expect(badField.path == "$.entities[0](Todo).fields[0](a).type")
        #expect(badField.message.hasSuffix(#"required key "type" is missing; restore it from a backup, or start with an empty database"#))
    }
}

/// A destructive change and the one problem it must produce.
struct DestructiveCase: Sendable, CustomTestStringConvertible {
    var label: String
    var old: [Entity]
    var new: [Entity]
    var path: String
    var message: String
    var testDescription: String { label }
}

private let user = e("User", [f("email", unique: true)])

let destructiveCases: [DestructiveCase] = [
    DestructiveCase(
        label: "dropped entity", old: [user, todo], new: [todo],
        path: "$.entities(User)",
        message: #"entity "User" exists in the database but not in the manifest (a rename counts as dropping the table); put it back, or export its rows and drop the table yourself"#),
    DestructiveCase(
        label: "entity renamed by case", old: [todo], new: [e("TODO", todo.fields)],
        path: "$.entities(Todo)",
        message: #"entity "Todo" exists in the database but not in the manifest (the manifest has "TODO"; names are matched exactly, and a rename counts as dropping the table); put it back, or export its rows and drop the table yourself"#),
    DestructiveCase(
        label: "dropped column", old: [user, todo], new: [user, e("Todo", [f("title")], indexes: [])],
        path: "$.entities[1](Todo).fields(done)",
        message: #"field "done" of entity "Todo" exists in the database but not in the manifest (a rename counts as dropping the column); put it back, or export its values and drop the column yourself"#),
    DestructiveCase(
        label: "renamed column", old: [todo], new: [e("Todo", [f("title"), f("isDone", "bool")])],
        path: "$.entities[0](Todo).fields(done)",
        message: #"field "done" of entity "Todo" exists in the database but not in the manifest (a rename counts as dropping the column); put it back, or export its values and drop the column yourself"#),
    DestructiveCase(
        label: "type bool to int", old: [todo], new: [e("Todo", [f("title"), f("done", "int")], indexes: todo.indexes)],
        path: "$.entities[0](Todo).fields[1](done)",
        message: #"field "done" of entity "Todo" changed type from bool to int, which changes how the column is stored; put back type "bool", or add a new field with type "int" and copy the values over"#),
    DestructiveCase(
        label: "type int to float", old: [e("Todo", [f("n", "int")])], new: [e("Todo", [f("n", "float")])],
        path: "$.entities[0](Todo).fields[0](n)",
        message: #"field "n" of entity "Todo" changed type from int to float, which changes how the column is stored; put back type "int", or add a new field with type "float" and copy the values over"#),
    DestructiveCase(
        label: "optional to required", old: [e("Todo", [f("title", optional: true)])], new: [e("Todo", [f("title")])],
        path: "$.entities[0](Todo).fields[0](title)",
        message: #"field "title" of entity "Todo" was optional and is now required, but existing rows may hold nulls; keep "optional": true (and require the value in a policy or function), or add a new required field and copy the values over"#),
    DestructiveCase(
        label: "required to optional", old: [e("Todo", [f("title")])], new: [e("Todo", [f("title", optional: true)])],
        path: "$.entities[0](Todo).fields[0](title)",
        message: #"field "title" of entity "Todo" was required and is now optional, but the column is NOT NULL and SQLite cannot relax that in place; keep "optional": false, or add a new optional field and copy the values over"#),
    DestructiveCase(
        label: "unique false to true", old: [e("User", [f("email")])], new: [e("User", [f("email", unique: true)])],
        path: "$.entities[0](User).fields[0](email)",
        message: #"field "email" of entity "User" was not unique and is now unique, which would fail if existing rows already hold duplicate values; keep "unique": false and add a unique index instead ({"name": "User_email_unique", "fields": ["email"], "unique": true}) after removing any duplicates"#),
    DestructiveCase(
        label: "new required unique field", old: [e("User", [f("email")])], new: [e("User", [f("email"), f("handle", unique: true)])],
        path: "$.entities[0](User).fields[1](handle)",
        message: #"new field "handle" of entity "User" is required and unique, but every existing row would get the same default value, which breaks uniqueness as soon as the table has two rows; make it optional (nulls do not clash), or add it without unique and add a unique index once the values are filled in"#),
]

@Suite("Schema diff")
struct SchemaDiffTests {
    func planned(_ old: [Entity], _ new: [Entity]) throws -> [SchemaChange] {
        switch SchemaDiff.plan(from: old, to: new) {
        case let .success(changes): return changes
        case let .failure(error):
            Issue.record("unexpected refusal: \(error)")
            return []
        }
    }

    func refused(_ old: [Entity], _ new: [Entity]) -> [ManifestError] {
        switch SchemaDiff.plan(from: old, to: new) {
        case let .success(changes):
            Issue.record("unexpectedly planned: \(changes)")
            return []
        case let .failure(error): return error.problems
        }
    }

    @Test func firstStartCreatesEveryEntityInManifestOrder() throws {
        let note = e("Note", [f("body", "richtext", optional: true)])
        #expect(try planned([], [user, todo, note]) == [.createEntity(user), .createEntity(todo), .createEntity(note)])
    }

    @Test func searchIsBuiltAfterColumnsRebuiltOnTextChangesAndDroppedWhenRemoved() throws {
        var plain = e("Doc", [f("title")])
        var searchable = plain
        searchable.search = SearchConfig(text: ["title"], facets: [], sortable: [])
        // A new searchable entity: the table first, then its index.
        #expect(try planned([], [searchable]) == [.createEntity(searchable), .enableSearch(searchable)])
        // Search added to an existing table, together with a new text field it indexes.
        var wider = searchable
        wider.fields.append(f("body", "richtext", optional: true))
        wider.search?.text = ["title", "body"]
        #expect(try planned([plain], [wider]) == [.addColumn(entity: "Doc", field: f("body", "richtext", optional: true)), .enableSearch(wider)])
        // Text fields or language change: drop and rebuild.
        plain.fields = wider.fields
        #expect(try planned([searchable.with(fields: wider.fields)], [wider]) == [.disableSearch(entity: "Doc"), .enableSearch(wider)])
        var german = wider
        german.search?.language = "german"
        #expect(try planned([wider], [german]) == [.disableSearch(entity: "Doc"), .enableSearch(german)])
        // Facets and sortable are query-time only.
        var faceted = wider
        faceted.search?.facets = ["title"]
        faceted.search?.sortable = ["title"]
        #expect(try planned([wider], [faceted]) == [])
        // Removed: the index goes, the data stays.
        #expect(try planned([wider], [plain]) == [.disableSearch(entity: "Doc")])
    }

    @Test func unchangedSchemaPlansNothing() throws {
        let entities = try Manifest.decode(Array(completeManifestExample.utf8)).entities
        #expect(try planned(entities, entities) == [])
    }

    @Test func additiveChangesArePlannedInOrder() throws {
        let old = [
            e("Todo", [f("title"), f("done", "bool")],
              indexes: [ix("todo_by_done", ["done"]), ix("todo_by_title", ["title"]), ix("todo_old", ["title", "done"])]),
            e("Tag", [f("label")], indexes: [ix("tag_by_label", ["label"])]),
        ]
        let priority = f("priority", "int", optional: true)
        let estimate = f("estimate", "float")  // required: the dialect adds it with a zero default
        let color = f("color", optional: true, unique: true)  // optional and unique: nulls do not clash
        let user = e("User", [f("email", unique: true)], indexes: [ix("user_by_email", ["email"])])
        let note = e("Note", [f("body")])
        let new = [
            user,
            e("Todo", [f("title"), f("done", "bool"), priority, estimate],
              indexes: [ix("todo_by_done", ["done"], unique: true), ix("todo_by_title", ["title"]),
                        ix("todo_by_priority", ["priority", "done"])]),
            e("Tag", [f("label"), color], indexes: [ix("tag_by_label", ["label", "color"])]),
            note,
        ]
        #expect(try planned(old, new) == [
            .createEntity(user),
            .createEntity(note),
            .addColumn(entity: "Todo", field: priority),
            .addColumn(entity: "Todo", field: estimate),
            .addColumn(entity: "Tag", field: color),
            .dropIndex(entity: "Todo", name: "Todo_todo_by_done"),
            .dropIndex(entity: "Todo", name: "Todo_todo_old"),
            .dropIndex(entity: "Tag", name: "Tag_tag_by_label"),
            .createIndex(entity: "Todo", index: ix("todo_by_done", ["done"], unique: true)),
            .createIndex(entity: "Todo", index: ix("todo_by_priority", ["priority", "done"])),
            .createIndex(entity: "Tag", index: ix("tag_by_label", ["label", "color"])),
        ])
    }

    @Test func indexWithChangedFieldOrderIsRecreated() throws {
        let old = [e("Todo", [f("a"), f("b")], indexes: [ix("todo_ab", ["a", "b"])])]
        let new = [e("Todo", [f("a"), f("b")], indexes: [ix("todo_ab", ["b", "a"])])]
        #expect(try planned(old, new) == [
            .dropIndex(entity: "Todo", name: "Todo_todo_ab"),
            .createIndex(entity: "Todo", index: ix("todo_ab", ["b", "a"])),
        ])
    }

    @Test func fieldThatStopsBeingUniqueDropsItsBackingIndex() throws {
        let old = [e("User", [f("email", unique: true), f("name")])]
        let new = [e("User", [f("email"), f("name")])]
        #expect(try planned(old, new) == [.dropIndex(entity: "User", name: "_pylon_uq_User_email")])
    }

    /// Index names are per entity: a new entity may reuse an existing entity's index name
    /// (Pylon's manifests do), and each becomes its own database index.
    @Test func anIndexNameReusedByANewEntityIsItsOwnIndex() throws {
        let old = [e("Address", [f("userId")], indexes: [ix("by_user", ["userId"])])]
        let cart = e("CartItem", [f("userId")], indexes: [ix("by_user", ["userId"])])
        let new = [old[0], cart]
        #expect(try planned(old, new) == [.createEntity(cart)])
        #expect(IndexNames.declared("Address", "by_user") != IndexNames.declared("CartItem", "by_user"))
    }

    /// Where two indexes would have one database name (`A`'s `b_c`, `A_b`'s `c`; the
    /// validator refuses both at once, but one may replace the other), the new one is
    /// created after the old one is dropped, not with its table.
    @Test func aDatabaseIndexNamePassedToANewEntityIsCreatedAfterTheDrop() throws {
        let old = [e("A", [f("x")], indexes: [ix("b_c", ["x"])])]
        let ab = e("A_b", [f("x"), f("title")], indexes: [ix("c", ["x"]), ix("by_title", ["title"])])
        let new = [e("A", [f("x")]), ab]
        var table = ab
        table.indexes = [ix("by_title", ["title"])]
        #expect(try planned(old, new) == [
            .createEntity(table),
            .dropIndex(entity: "A", name: "A_b_c"),
            .createIndex(entity: "A_b", index: ix("c", ["x"])),
        ])
    }

    @Test func indexMovedBetweenExistingEntitiesIsDroppedAndCreated() throws {
        let old = [e("A", [f("x")], indexes: [ix("by_x", ["x"])]), e("B", [f("x")])]
        let new = [e("A", [f("x")]), e("B", [f("x")], indexes: [ix("by_x", ["x"])])]
        #expect(try planned(old, new) == [
            .dropIndex(entity: "A", name: "A_by_x"),
            .createIndex(entity: "B", index: ix("by_x", ["x"])),
        ])
    }

    /// Database index names stay within PostgreSQL's 63 bytes, and two long names that
    /// share their first 63 bytes stay two names.
    @Test func longIndexNamesAreCutWithADigest() {
        let entity = String(repeating: "E", count: 40)
        let a = IndexNames.declared(entity, "by_" + String(repeating: "x", count: 30) + "_a")
        let b = IndexNames.declared(entity, "by_" + String(repeating: "x", count: 30) + "_b")
        #expect(a.utf8.count == 63 && b.utf8.count == 63 && a != b)
        #expect(a == IndexNames.declared(entity, "by_" + String(repeating: "x", count: 30) + "_a"), "stable")
        let u1 = IndexNames.unique(String(repeating: "U", count: 50), String(repeating: "f", count: 20) + "1")
        let u2 = IndexNames.unique(String(repeating: "U", count: 50), String(repeating: "f", count: 20) + "2")
        #expect(u1.utf8.count == 63 && u1 != u2 && u1.hasPrefix("_pylon_uq_"))
        #expect(IndexNames.declared("Todo", "by_title") == "Todo_by_title")
    }

    @Test func changesThatAreNotStorageArePlannedAsNothing() throws {
        let old = [
            e("User", [f("name")]),
            e("Note", [f("body"), f("authorId", "id(User)"), f("score", "float", optional: true), f("at"), f("done", "bool")],
              relations: [Relation(name: "author", target: "User", field: "authorId", many: false)], crdt: true),
        ]
        let new = [
            e("User", [f("name", crdt: "text")]),
            e("Note", [f("body", "richtext"), f("authorId"), f("score", "number", optional: true), f("at", "datetime"),
                       f("done", "boolean", crdt: "lww")],
              relations: [], crdt: false),
        ]
        #expect(try planned(old, new) == [])
    }

    @Test(arguments: destructiveCases)
    func destructiveChangeIsRefusedWithItsMessage(_ c: DestructiveCase) {
        let problems = refused(c.old, c.new)
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.code == "SCHEMA_DESTRUCTIVE_CHANGE")
        #expect(problems.first?.path == c.path)
        #expect(problems.first?.message == c.message)
    }

    @Test func everyDestructiveChangeIsListedAndNothingIsPlanned() throws {
        let old = [user, todo, e("Note", [f("body")])]
        let new = [
            e("Todo", [f("title", optional: true), f("done", "int"), f("extra", optional: true)]),
            e("Note", [f("body", unique: true)]),
            e("Fresh", [f("x")]),
        ]
        let problems = refused(old, new)
        #expect(problems.map(\.path) == [
            "$.entities(User)",
            "$.entities[0](Todo).fields[0](title)",
            "$.entities[0](Todo).fields[1](done)",
            "$.entities[1](Note).fields[0](body)",
        ])
        #expect(problems.allSatisfy { $0.code == "SCHEMA_DESTRUCTIVE_CHANGE" })
    }

    @Test func oneFieldCanHaveSeveralProblems() throws {
        let problems = refused([e("Todo", [f("n", "int")])], [e("Todo", [f("n", "bool", optional: true, unique: true)])])
        #expect(problems.count == 3)
        #expect(problems.map { $0.message.prefix(40) } == [
            #"field "n" of entity "Todo" changed type "#,
            #"field "n" of entity "Todo" was required "#,
            #"field "n" of entity "Todo" was not uniqu"#,
        ])
    }

    @Test func errorDescriptionListsEveryProblem() {
        let error = SchemaDiffError(problems: [
            ManifestError(code: "SCHEMA_DESTRUCTIVE_CHANGE", path: "$.entities(A)", message: "a"),
            ManifestError(code: "SCHEMA_DESTRUCTIVE_CHANGE", path: "$.entities(B)", message: "b"),
        ])
        #expect(error.description == "SCHEMA_DESTRUCTIVE_CHANGE at $.entities(A): a\nSCHEMA_DESTRUCTIVE_CHANGE at $.entities(B): b")
    }

    @Test func uniqueIndexNameMatchesTheDialectConvention() {
        #expect(IndexNames.unique("User", "email") == "_pylon_uq_User_email")
    }
}
