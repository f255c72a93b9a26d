import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// Manifest JSON builders, so each case states only what it is about.
enum ManifestJSON {
    static func field(_ name: String, _ type: String = "string", optional: Bool = false, unique: Bool = false,
                      crdt: String? = nil) -> String {
        let c = crdt.map { #", "crdt": "\#($0)""# } ?? ""
        return #"{"name": "\#(name)", "type": "\#(type)", "optional": \#(optional), "unique": \#(unique)\#(c)}"#
    }

    static func index(_ name: String, _ fields: [String], unique: Bool = false) -> String {
        let list = fields.map { "\"\($0)\"" }.joined(separator: ", ")
        return #"{"name": "\#(name)", "fields": [\#(list)], "unique": \#(unique)}"#
    }

    static func relation(_ name: String, target: String, field: String) -> String {
        #"{"name": "\#(name)", "target": "\#(target)", "field": "\#(field)", "many": false}"#
    }

    static func entity(_ name: String, _ fields: [String], indexes: [String] = [], relations: [String] = []) -> String {
        #"{"name": "\#(name)", "fields": [\#(fields.joined(separator: ", "))], "indexes": [\#(indexes.joined(separator: ", "))], "relations": [\#(relations.joined(separator: ", "))]}"#
    }

    static func named(_ name: String, _ inputs: [String] = []) -> String {
        #"{"name": "\#(name)", "input": [\#(inputs.joined(separator: ", "))]}"#
    }

    static func route(_ path: String, query: String? = nil, auth: String? = nil) -> String {
        var s = #"{"path": "\#(path)", "mode": "live""#
        if let query { s += #", "query": "\#(query)""# }
        if let auth { s += #", "auth": "\#(auth)""# }
        return s + "}"
    }

    /// A `Todo{title}` entity, the background of most cases.
    static let todo = entity("Todo", [field("title")])

    static func manifest(entities: [String] = [todo], routes: [String] = [], queries: [String] = [],
                         actions: [String] = [], policies: [String] = [], manifestVersion: String = "1",
                         extra: String = "") -> String {
        func list(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }
        return """
            {"manifest_version": \(manifestVersion), "name": "t", "version": "1",\(extra)
             "entities": \(list(entities)), "routes": \(list(routes)), "queries": \(list(queries)),
             "actions": \(list(actions)), "policies": \(list(policies))}
            """
    }

    static func decode(_ text: String) throws -> Manifest {
        try Manifest.decode(Array(text.utf8))
    }

    static func problems(_ text: String) throws -> [ManifestError] {
        ManifestValidator.validate(try decode(text))
    }
}

/// pylon-core.md §1.13, verbatim.
let completeManifestExample = #"""
{
  "manifest_version": 1,
  "name": "notes",
  "version": "0.1.0",
  "entities": [
    {
      "name": "User",
      "fields": [
        {"name": "email", "type": "string", "optional": false, "unique": true},
        {"name": "displayName", "type": "string", "optional": false, "unique": false}
      ],
      "indexes": []
    },
    {
      "name": "Note",
      "fields": [
        {"name": "authorId", "type": "id(User)", "optional": false, "unique": false},
        {"name": "title", "type": "string", "optional": false, "unique": false},
        {"name": "body", "type": "richtext", "optional": true, "unique": false},
        {"name": "summary", "type": "string", "optional": true, "unique": false, "crdt": "text"},
        {"name": "pinned", "type": "bool", "optional": false, "unique": false},
        {"name": "score", "type": "float", "optional": true, "unique": false},
        {"name": "createdAt", "type": "datetime", "optional": false, "unique": false}
      ],
      "indexes": [{"name": "note_by_author", "fields": ["authorId", "createdAt"], "unique": false}],
      "relations": [{"name": "author", "target": "User", "field": "authorId", "many": false}],
      "search": {"text": ["title", "body"], "facets": ["pinned"], "sortable": ["createdAt"]},
      "crdt": true
    },
    {
      "name": "AuditEntry",
      "fields": [{"name": "message", "type": "string", "optional": false, "unique": false}],
      "indexes": [],
      "crdt": false
    }
  ],
  "routes": [
    {"path": "/notes/:authorId", "mode": "live", "query": "notesByAuthor", "auth": "user"}
  ],
  "queries": [
    {"name": "notesByAuthor",
     "input": [{"name": "authorId", "type": "id(User)", "optional": false, "unique": false}]}
  ],
  "actions": [
    {"name": "archiveNote",
     "input": [{"name": "noteId", "type": "id(Note)", "optional": false, "unique": false}]}
  ],
  "policies": [
    {"name": "notes_rw", "entity": "Note",
     "allowRead": "auth.userId != null",
     "allowInsert": "auth.userId == data.authorId",
     "allowWrite": "auth.userId == data.authorId || auth.hasRole(\"editor\")"},
    {"name": "audit_admin", "entity": "AuditEntry", "allow": "auth.isAdmin"},
    {"name": "archive_gate", "action": "archiveNote", "allow": "auth.userId != null"}
  ],
  "auth": {"user": {"entity": "User", "expose": [], "hide": []},
           "session": {"expires_in": 604800,
                       "cookie_cache": {"enabled": false, "max_age": 300, "claims": ["is_admin", "tenant_id"]}},
           "trusted_origins": ["https://app.example.com"]}
}
"""#

/// One manifest with exactly one problem, and that problem in full.
struct ProblemCase: Sendable, CustomTestStringConvertible {
    var label: String
    var manifest: String
    var code: String
    var path: String
    var message: String
    var testDescription: String { label }
}

private let longName = String(repeating: "a", count: 64)

let problemCases: [ProblemCase] = [
    // Entities
    ProblemCase(
        label: "ENTITY_NAME_EMPTY", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("", [ManifestJSON.field("a")])]),
        code: "ENTITY_NAME_EMPTY", path: "$.entities[0]",
        message: #"entity #0 has an empty name; give it a name such as "Todo""#),
    ProblemCase(
        label: "ENTITY_DUPLICATE", manifest: ManifestJSON.manifest(entities: [ManifestJSON.todo, ManifestJSON.todo]),
        code: "ENTITY_DUPLICATE", path: "$.entities[1](Todo)",
        message: #"entity "Todo" is declared twice (entities[0] and entities[1]); merge the two declarations or rename one"#),
    ProblemCase(
        label: "ENTITY_NAME_CASE_DUPLICATE",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.todo, ManifestJSON.entity("TODO", [ManifestJSON.field("a")])]),
        code: "ENTITY_NAME_CASE_DUPLICATE", path: "$.entities[1](TODO)",
        message: #"entity "TODO" differs from entity "Todo" (entities[0]) only in letter case, and table names collide on stores that ignore case (SQLite); rename one of them"#),
    ProblemCase(
        label: "NAME_INVALID entity", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("my-todo", [ManifestJSON.field("a")])]),
        code: "NAME_INVALID", path: "$.entities[0](my-todo)",
        message: #"entity name "my-todo" is not a valid identifier; names become SQL identifiers, so use only letters, digits and _, not starting with a digit (e.g. "my_todo")"#),
    ProblemCase(
        label: "NAME_INVALID entity too long", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity(longName, [ManifestJSON.field("a")])]),
        code: "NAME_INVALID", path: "$.entities[0](\(longName))",
        message: #"entity name "\#(longName)" is 64 characters long; names become SQL identifiers, which are limited to 63 characters, so shorten it"#),
    ProblemCase(
        label: "NAME_RESERVED entity", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("_pylon_changes", [ManifestJSON.field("a")])]),
        code: "NAME_RESERVED", path: "$.entities[0](_pylon_changes)",
        message: #"entity name "_pylon_changes" starts with "_pylon", which is reserved for the host's own tables; rename the entity"#),
    ProblemCase(
        label: "NAME_RESERVED sqlite_ entity", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Sqlite_stat1", [ManifestJSON.field("a")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Sqlite_stat1)",
        message: #"entity name "Sqlite_stat1" starts with "sqlite_", which SQLite keeps for its own tables; rename the entity"#),

    // Fields
    ProblemCase(
        label: "FIELD_NAME_EMPTY", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("")])]),
        code: "FIELD_NAME_EMPTY", path: "$.entities[0](Todo).fields[0]",
        message: #"field #0 of entity "Todo" has an empty name; give it a name such as "title""#),
    ProblemCase(
        label: "FIELD_DUPLICATE", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title"), ManifestJSON.field("title", "int")])]),
        code: "FIELD_DUPLICATE", path: "$.entities[0](Todo).fields[1](title)",
        message: #"entity "Todo" declares field "title" twice (fields[0] and fields[1]); remove one or rename it"#),
    ProblemCase(
        label: "FIELD_DUPLICATE by case", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title"), ManifestJSON.field("Title")])]),
        code: "FIELD_DUPLICATE", path: "$.entities[0](Todo).fields[1](Title)",
        message: #"field "Title" of entity "Todo" differs from field "title" (fields[0]) only in letter case, and column names collide on stores that ignore case (SQLite); rename one of them"#),
    ProblemCase(
        label: "FIELD_TYPE_UNKNOWN", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("User", [ManifestJSON.field("a")]), ManifestJSON.entity("Todo", [ManifestJSON.field("title"), ManifestJSON.field("x"), ManifestJSON.field("done", "boolen")])]),
        code: "FIELD_TYPE_UNKNOWN", path: "$.entities[1](Todo).fields[2](done)",
        message: #"field "done" of entity "Todo" has unknown type "boolen"; use one of string, int, float, bool, datetime, richtext, id(<Entity>) (did you mean "bool"?)"#),
    ProblemCase(
        label: "FIELD_TYPE_UNKNOWN without suggestion", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("tags", "array")])]),
        code: "FIELD_TYPE_UNKNOWN", path: "$.entities[0](Todo).fields[0](tags)",
        message: #"field "tags" of entity "Todo" has unknown type "array"; use one of string, int, float, bool, datetime, richtext, id(<Entity>)"#),
    ProblemCase(
        label: "FIELD_ID_TARGET_NOT_FOUND", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("User", [ManifestJSON.field("a")]), ManifestJSON.entity("Todo", [ManifestJSON.field("ownerId", "id(Usr)")])]),
        code: "FIELD_ID_TARGET_NOT_FOUND", path: "$.entities[1](Todo).fields[0](ownerId)",
        message: #"field "ownerId" of entity "Todo" has type "id(Usr)", but no entity "Usr" is declared (did you mean "User"?); declare entity "Usr" or reference an existing one (declared entities: User, Todo)"#),
    ProblemCase(
        label: "NAME_INVALID field", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("2fast")])]),
        code: "NAME_INVALID", path: "$.entities[0](Todo).fields[0](2fast)",
        message: #"field name "2fast" is not a valid identifier; names become SQL identifiers, so use only letters, digits and _, not starting with a digit (e.g. "_2fast")"#),
    ProblemCase(
        label: "NAME_RESERVED id", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("id")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).fields[0](id)",
        message: #"entity "Todo" declares a field "id", but every entity has an implicit "id" (text primary key); remove this field"#),
    ProblemCase(
        label: "NAME_RESERVED ID in capitals", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("ID")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).fields[0](ID)",
        message: #"entity "Todo" declares a field "ID", but every entity has an implicit "id" (text primary key); remove this field"#),
    ProblemCase(
        label: "NAME_RESERVED field prefix", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("_PYLON_seq")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).fields[0](_PYLON_seq)",
        message: #"field name "_PYLON_seq" of entity "Todo" starts with "_pylon", which is reserved for the host; rename the field"#),
    ProblemCase(
        label: "NAME_RESERVED PostgreSQL system column", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("xmin")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).fields[0](xmin)",
        message: #"field name "xmin" of entity "Todo" is a column name the stores keep for themselves (_rowid_, cmax, cmin, ctid, oid, rowid, tableoid, xmax, xmin); rename the field"#),
    ProblemCase(
        label: "NAME_RESERVED SQLite rowid in capitals", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("ROWID")])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).fields[0](ROWID)",
        message: #"field name "ROWID" of entity "Todo" is a column name the stores keep for themselves (_rowid_, cmax, cmin, ctid, oid, rowid, tableoid, xmax, xmin); rename the field"#),
    ProblemCase(
        label: "FIELD_CRDT_INVALID unknown kind", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title", crdt: "lwww")])]),
        code: "FIELD_CRDT_INVALID", path: "$.entities[0](Todo).fields[0](title)",
        message: #"field "title" of entity "Todo" has crdt "lwww", which is not a CRDT kind; use one of lww, text, counter, list, movable-list, tree, or remove "crdt" for the default (did you mean "lww"?)"#),
    ProblemCase(
        label: "FIELD_CRDT_INVALID text on int", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("n", "int", crdt: "text")])]),
        code: "FIELD_CRDT_INVALID", path: "$.entities[0](Todo).fields[0](n)",
        message: #"field "n" of entity "Todo" has crdt "text", but text CRDTs work only on string and richtext fields, and this one is "int"; remove "crdt" or use "lww""#),
    ProblemCase(
        label: "FIELD_CRDT_INVALID counter on string", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title", crdt: "counter")])]),
        code: "FIELD_CRDT_INVALID", path: "$.entities[0](Todo).fields[0](title)",
        message: #"field "title" of entity "Todo" has crdt "counter", but counters work only on int and float fields, and this one is "string"; remove "crdt" or use "lww""#),

    // Indexes
    ProblemCase(
        label: "INDEX_NAME_EMPTY", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("", ["title"])])]),
        code: "INDEX_NAME_EMPTY", path: "$.entities[0](Todo).indexes[0]",
        message: #"index #0 of entity "Todo" has an empty name; name it, e.g. "Todo_by_title""#),
    ProblemCase(
        label: "INDEX_NAME_DUPLICATE within an entity",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("by_title", ["title"]), ManifestJSON.index("by_title", ["id"])])]),
        code: "INDEX_NAME_DUPLICATE", path: "$.entities[0](Todo).indexes[1](by_title)",
        message: #"index "by_title" of entity "Todo" has the same name as another index of "Todo", "by_title"; rename one"#),
    ProblemCase(
        label: "INDEX_NAME_DUPLICATE by case",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("by_title", ["title"]), ManifestJSON.index("BY_TITLE", ["title"], unique: true)])]),
        code: "INDEX_NAME_DUPLICATE", path: "$.entities[0](Todo).indexes[1](BY_TITLE)",
        message: #"index "BY_TITLE" of entity "Todo" has a name that differs only in letter case from another index of "Todo", "by_title"; rename one"#),
    ProblemCase(
        label: "INDEX_NAME_DUPLICATE: two indexes that would have one database name",
        manifest: ManifestJSON.manifest(entities: [
            ManifestJSON.entity("A", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("b_c", ["title"])]),
            ManifestJSON.entity("A_b", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("c", ["title"])]),
        ]),
        code: "INDEX_NAME_DUPLICATE", path: "$.entities[1](A_b).indexes[0](c)",
        message: #"index "c" of entity "A_b" and index "b_c" of entity "A" would both be the database index "A_b_c" (<Entity>_<index>); rename one"#),
    ProblemCase(
        label: "INDEX_NAME_DUPLICATE with an entity name",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Note", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("todo", ["title"])]), ManifestJSON.entity("Note_todo", [ManifestJSON.field("title")])]),
        code: "INDEX_NAME_DUPLICATE", path: "$.entities[0](Note).indexes[0](todo)",
        message: #"index "todo" of entity "Note" would be the database index "Note_todo" (<Entity>_<index>), which is the name of entity "Note_todo"; tables and indexes share one namespace in the database, so rename the index"#),
    ProblemCase(
        label: "INDEX_FIELDS_EMPTY", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("by_nothing", [])])]),
        code: "INDEX_FIELDS_EMPTY", path: "$.entities[0](Todo).indexes[0](by_nothing)",
        message: #"index "by_nothing" of entity "Todo" lists no fields; list the fields to index, e.g. ["title"], or remove the index"#),
    ProblemCase(
        label: "INDEX_FIELD_NOT_FOUND", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("by_title", ["id", "titel"])])]),
        code: "INDEX_FIELD_NOT_FOUND", path: "$.entities[0](Todo).indexes[0](by_title).fields[1](titel)",
        message: #"index "by_title" of entity "Todo" uses field "titel", which entity "Todo" does not have (did you mean "title"?); use one of its fields (id, title)"#),
    ProblemCase(
        label: "NAME_INVALID index", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("by title", ["title"])])]),
        code: "NAME_INVALID", path: "$.entities[0](Todo).indexes[0](by title)",
        message: #"index name "by title" is not a valid identifier; names become SQL identifiers, so use only letters, digits and _, not starting with a digit (e.g. "by_title")"#),
    ProblemCase(
        label: "NAME_RESERVED index", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("_pylon_uq_Todo_title", ["title"])])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).indexes[0](_pylon_uq_Todo_title)",
        message: #"index name "_pylon_uq_Todo_title" of entity "Todo" starts with "_pylon", which is reserved for the host's own indexes; rename the index"#),

    // Relations
    ProblemCase(
        label: "NAME_RESERVED sqlite_ index", manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("title")], indexes: [ManifestJSON.index("sqlite_autoindex_Todo_1", ["title"])])]),
        code: "NAME_RESERVED", path: "$.entities[0](Todo).indexes[0](sqlite_autoindex_Todo_1)",
        message: #"index name "sqlite_autoindex_Todo_1" of entity "Todo" starts with "sqlite_", which SQLite keeps for its own indexes; rename the index"#),
    ProblemCase(
        label: "RELATION_TARGET_NOT_FOUND",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("ownerId")], relations: [ManifestJSON.relation("owner", target: "User", field: "ownerId")])]),
        code: "RELATION_TARGET_NOT_FOUND", path: "$.entities[0](Todo).relations[0](owner)",
        message: #"relation "owner" of entity "Todo" targets entity "User", which is not declared; set "target" to a declared entity (declared entities: Todo)"#),
    ProblemCase(
        label: "RELATION_FIELD_NOT_FOUND",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("User", [ManifestJSON.field("email")]), ManifestJSON.entity("Todo", [ManifestJSON.field("ownerId")], relations: [ManifestJSON.relation("owner", target: "User", field: "owner_id")])]),
        code: "RELATION_FIELD_NOT_FOUND", path: "$.entities[1](Todo).relations[0](owner)",
        message: #"relation "owner" of entity "Todo" uses field "owner_id", which entity "Todo" does not have (did you mean "ownerId"?); set "field" to the field of "Todo" that holds the key (id, ownerId)"#),
    ProblemCase(
        label: "RELATION_FIELD_NOT_FOUND on a has-many",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("User", [ManifestJSON.field("email")], relations: [#"{"name": "todos", "target": "Todo", "field": "userId", "many": true}"#]), ManifestJSON.todo]),
        code: "RELATION_FIELD_NOT_FOUND", path: "$.entities[0](User).relations[0](todos)",
        message: #"relation "todos" of entity "User" uses field "userId", which neither entity "User" nor its target "Todo" has; set "field" to the field that holds the key (on "User": id, email; on "Todo": id, title)"#),
    ProblemCase(
        label: "RELATION_DUPLICATE",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("parentId")], relations: [ManifestJSON.relation("parent", target: "Todo", field: "parentId"), ManifestJSON.relation("parent", target: "Todo", field: "id")])]),
        code: "RELATION_DUPLICATE", path: "$.entities[0](Todo).relations[1](parent)",
        message: #"entity "Todo" declares relation "parent" twice (relations[0] and relations[1]); remove one or rename it"#),
    ProblemCase(
        label: "NAME_INVALID relation",
        manifest: ManifestJSON.manifest(entities: [ManifestJSON.entity("Todo", [ManifestJSON.field("parentId")], relations: [ManifestJSON.relation("parent.todo", target: "Todo", field: "parentId")])]),
        code: "NAME_INVALID", path: "$.entities[0](Todo).relations[0](parent.todo)",
        message: #"relation name "parent.todo" is not a valid identifier; names become SQL identifiers, so use only letters, digits and _, not starting with a digit (e.g. "parent_todo")"#),

    // Queries and actions
    ProblemCase(
        label: "QUERY_NAME_EMPTY", manifest: ManifestJSON.manifest(queries: [ManifestJSON.named("")]),
        code: "QUERY_NAME_EMPTY", path: "$.queries[0]", message: "query #0 has an empty name; give it a name"),
    ProblemCase(
        label: "QUERY_DUPLICATE", manifest: ManifestJSON.manifest(queries: [ManifestJSON.named("list"), ManifestJSON.named("list")]),
        code: "QUERY_DUPLICATE", path: "$.queries[1](list)",
        message: #"query "list" is declared twice (queries[0] and queries[1]); remove one or rename it"#),
    ProblemCase(
        label: "ACTION_NAME_EMPTY", manifest: ManifestJSON.manifest(actions: [ManifestJSON.named("")]),
        code: "ACTION_NAME_EMPTY", path: "$.actions[0]", message: "action #0 has an empty name; give it a name"),
    ProblemCase(
        label: "ACTION_DUPLICATE", manifest: ManifestJSON.manifest(actions: [ManifestJSON.named("archive"), ManifestJSON.named("archive")]),
        code: "ACTION_DUPLICATE", path: "$.actions[1](archive)",
        message: #"action "archive" is declared twice (actions[0] and actions[1]); remove one or rename it"#),
    ProblemCase(
        label: "INPUT_FIELD_NAME_EMPTY", manifest: ManifestJSON.manifest(queries: [ManifestJSON.named("search", [ManifestJSON.field("")])]),
        code: "INPUT_FIELD_NAME_EMPTY", path: "$.queries[0](search).input[0]",
        message: #"input #0 of query "search" has an empty name; give it a name"#),
    ProblemCase(
        label: "INPUT_FIELD_DUPLICATE", manifest: ManifestJSON.manifest(actions: [ManifestJSON.named("archive", [ManifestJSON.field("noteId"), ManifestJSON.field("noteId")])]),
        code: "INPUT_FIELD_DUPLICATE", path: "$.actions[0](archive).input[1](noteId)",
        message: #"action "archive" declares input "noteId" twice (input[0] and input[1]); remove one or rename it"#),
    ProblemCase(
        label: "INPUT_FIELD_TYPE_UNKNOWN", manifest: ManifestJSON.manifest(queries: [ManifestJSON.named("search", [ManifestJSON.field("q", "text")])]),
        code: "INPUT_FIELD_TYPE_UNKNOWN", path: "$.queries[0](search).input[0](q)",
        message: #"input "q" of query "search" has unknown type "text"; use one of string, int, float, bool, datetime, richtext, id(<Entity>)"#),
    ProblemCase(
        label: "FIELD_ID_TARGET_NOT_FOUND in an input", manifest: ManifestJSON.manifest(actions: [ManifestJSON.named("archive", [ManifestJSON.field("noteId", "id(Note)")])]),
        code: "FIELD_ID_TARGET_NOT_FOUND", path: "$.actions[0](archive).input[0](noteId)",
        message: #"input "noteId" of action "archive" has type "id(Note)", but no entity "Note" is declared; declare entity "Note" or reference an existing one (declared entities: Todo)"#),

    // Search
    ProblemCase(
        label: "SEARCH_FIELD_NOT_FOUND",
        manifest: ManifestJSON.manifest(entities: [#"{"name": "Todo", "fields": [\#(ManifestJSON.field("title"))], "search": {"text": ["titel"]}}"#]),
        code: "SEARCH_FIELD_NOT_FOUND", path: "$.entities[0](Todo).search.text[0](titel)",
        message: #"search.text of entity "Todo" names field "titel", which entity "Todo" does not have (did you mean "title"?); use one of its fields (id, title)"#),
    ProblemCase(
        label: "SEARCH_TEXT_FIELD_TYPE",
        manifest: ManifestJSON.manifest(entities: [#"{"name": "Todo", "fields": [\#(ManifestJSON.field("title")), \#(ManifestJSON.field("done", "bool"))], "search": {"text": ["title", "done"], "facets": ["done"]}}"#]),
        code: "SEARCH_TEXT_FIELD_TYPE", path: "$.entities[0](Todo).search.text[1](done)",
        message: #"search.text of entity "Todo" lists "done", a bool field; full-text search indexes text only, so list string or richtext fields there (use facets or sortable for "done")"#),
    ProblemCase(
        label: "SEARCH_FIELD_DUPLICATE",
        manifest: ManifestJSON.manifest(entities: [#"{"name": "Todo", "fields": [\#(ManifestJSON.field("title"))], "search": {"sortable": ["title", "title"]}}"#]),
        code: "SEARCH_FIELD_DUPLICATE", path: "$.entities[0](Todo).search.sortable[1](title)",
        message: #"search.sortable of entity "Todo" lists "title" twice; remove one"#),
    ProblemCase(
        label: "SEARCH_LANGUAGE_INVALID",
        manifest: ManifestJSON.manifest(entities: [#"{"name": "Todo", "fields": [\#(ManifestJSON.field("title"))], "search": {"text": ["title"], "language": "english'); drop"}}"#]),
        code: "SEARCH_LANGUAGE_INVALID", path: "$.entities[0](Todo).search.language",
        message: #"search.language of entity "Todo" is "english'); drop"; use a text-search configuration name in lower case, such as "english", "simple" or "german""#),

    // Policies
    ProblemCase(
        label: "POLICY_NAME_EMPTY", manifest: ManifestJSON.manifest(policies: [#"{"name": "", "entity": "Todo", "allow": "true"}"#]),
        code: "POLICY_NAME_EMPTY", path: "$.policies[0]",
        message: "policy #0 has an empty name; give it a name (it is shown in logs)"),
    ProblemCase(
        label: "POLICY_DUPLICATE",
        manifest: ManifestJSON.manifest(policies: [#"{"name": "p", "entity": "Todo", "allow": "true"}"#, #"{"name": "p", "entity": "Todo", "allowRead": "true"}"#]),
        code: "POLICY_DUPLICATE", path: "$.policies[1](p)",
        message: #"policy "p" is declared twice (policies[0] and policies[1]); rename one, or merge their rules"#),
    ProblemCase(
        label: "POLICY_ALLOW_EMPTY", manifest: ManifestJSON.manifest(policies: [#"{"name": "todo_rw", "entity": "Todo", "allow": "  ", "allowRead": ""}"#]),
        code: "POLICY_ALLOW_EMPTY", path: "$.policies[0](todo_rw)",
        message: #"policy "todo_rw" has no rule; set "allow" (or allowRead / allowInsert / allowUpdate / allowDelete / allowWrite) to an expression such as "auth.userId != null""#),
    ProblemCase(
        label: "POLICY_NO_TARGET", manifest: ManifestJSON.manifest(policies: [#"{"name": "todo_rw", "allow": "true"}"#]),
        code: "POLICY_NO_TARGET", path: "$.policies[0](todo_rw)",
        message: #"policy "todo_rw" applies to nothing; set "entity" to an entity name or "action" to an action name"#),
    ProblemCase(
        label: "POLICY_ENTITY_NOT_FOUND", manifest: ManifestJSON.manifest(policies: [#"{"name": "todo_rw", "entity": "Todos", "allow": "true"}"#]),
        code: "POLICY_ENTITY_NOT_FOUND", path: "$.policies[0](todo_rw)",
        message: #"policy "todo_rw" targets entity "Todos", which is not declared (did you mean "Todo"?); set "entity" to a declared entity (declared entities: Todo)"#),
    ProblemCase(
        label: "POLICY_ACTION_NOT_FOUND", manifest: ManifestJSON.manifest(policies: [#"{"name": "gate", "action": "archive", "allow": "true"}"#]),
        code: "POLICY_ACTION_NOT_FOUND", path: "$.policies[0](gate)",
        message: #"policy "gate" targets action "archive", which is not declared; set "action" to a declared action (the manifest declares no actions) or declare it under "actions""#),

    // Routes
    ProblemCase(
        label: "ROUTE_PATH_EMPTY", manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("")]),
        code: "ROUTE_PATH_EMPTY", path: "$.routes[0]",
        message: #"route #0 has an empty path; set "path", e.g. "/" or "/notes/:id""#),
    ProblemCase(
        label: "ROUTE_PATH_NO_SLASH", manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("notes")]),
        code: "ROUTE_PATH_NO_SLASH", path: "$.routes[0](notes)",
        message: #"route path "notes" does not start with "/"; write it as "/notes""#),
    ProblemCase(
        label: "ROUTE_PATH_DUPLICATE", manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("/notes"), ManifestJSON.route("/notes", auth: "user")]),
        code: "ROUTE_PATH_DUPLICATE", path: "$.routes[1](/notes)",
        message: #"route path "/notes" is declared twice (routes[0] and routes[1]); remove one or change its path"#),
    ProblemCase(
        label: "ROUTE_QUERY_NOT_FOUND", manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("/notes", query: "notesByAuthr")], queries: [ManifestJSON.named("notesByAuthor")]),
        code: "ROUTE_QUERY_NOT_FOUND", path: "$.routes[0](/notes)",
        message: #"route "/notes" uses query "notesByAuthr", which is not declared (did you mean "notesByAuthor"?); declare it under "queries" or use a declared one (declared queries: notesByAuthor)"#),
    ProblemCase(
        label: "ROUTE_PARAM_NOT_IN_QUERY",
        manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("/notes/:author/:id", query: "notesByAuthor")], queries: [ManifestJSON.named("notesByAuthor", [ManifestJSON.field("id")])]),
        code: "ROUTE_PARAM_NOT_IN_QUERY", path: "$.routes[0](/notes/:author/:id)",
        message: #"route "/notes/:author/:id" has parameter ":author", but query "notesByAuthor" has no input "author" (its inputs: id); add an input "author" to the query or rename the parameter"#),
    ProblemCase(
        label: "ROUTE_AUTH_INVALID", manifest: ManifestJSON.manifest(routes: [ManifestJSON.route("/", auth: "admin")]),
        code: "ROUTE_AUTH_INVALID", path: "$.routes[0](/)",
        message: #"route "/" has auth "admin"; use "public" or "user" (or leave it out)"#),    ProblemCase(
        label: "CRON_SCHEDULE_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "61 * * * *"}],"#),
        code: "CRON_SCHEDULE_INVALID", path: "$.cron[0](t).schedule",
        message: #"minute field: "61" is not a number from 0 to 59"#),
    ProblemCase(
        label: "CRON_NEVER_FIRES", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "0 0 30 2 *"}],"#),
        code: "CRON_NEVER_FIRES", path: "$.cron[0](t).schedule",
        message: #""0 0 30 2 *" matches no date (e.g. the 30th of February); fix the day or month"#),
    ProblemCase(
        label: "CRON_TIMEZONE_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "@daily", "timezone": "Mars/Base"}],"#),
        code: "CRON_TIMEZONE_INVALID", path: "$.cron[0](t).timezone",
        message: #""Mars/Base" is not an IANA time zone; use a name such as "UTC", "Europe/Berlin" or "America/New_York""#),
    ProblemCase(
        label: "CRON_DUPLICATE", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "@daily"}, {"name": "t", "schedule": "@hourly"}],"#),
        code: "CRON_DUPLICATE", path: "$.cron[1](t)",
        message: #"two cron tasks are named "t"; give each its own name"#),
    ProblemCase(
        label: "CRON_NAME_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "", "schedule": "@daily", "function": "f"}],"#),
        code: "CRON_NAME_INVALID", path: "$.cron[0]()",
        message: #"a cron task needs a name of 1 to 200 bytes"#),
    ProblemCase(
        label: "CRON_FUNCTION_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "@daily", "function": ""}],"#),
        code: "CRON_FUNCTION_INVALID", path: "$.cron[0](t).function",
        message: #"name the function (mutation or action) the task runs"#),
    ProblemCase(
        label: "CRON_PRIORITY_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "@daily", "priority": "urgent"}],"#),
        code: "CRON_PRIORITY_INVALID", path: "$.cron[0](t).priority",
        message: #"priority must be low, normal, high or critical"#),
    ProblemCase(
        label: "CRON_RETRIES_INVALID", manifest: ManifestJSON.manifest(extra: #" "cron": [{"name": "t", "schedule": "@daily", "max_retries": 99}],"#),
        code: "CRON_RETRIES_INVALID", path: "$.cron[0](t).max_retries",
        message: #"max_retries must be from 0 to 25"#),
]

@Suite("Manifest validation")
struct ManifestValidatorTests {
    @Test func completeExampleValidatesClean() throws {
        let m = try ManifestJSON.decode(completeManifestExample)
        #expect(m.entities.map(\.name) == ["User", "Note", "AuditEntry"])
        #expect(m.entity(named: "Note")?.field(named: "summary")?.crdt == "text")
        #expect(m.auth.sessionExpiresIn == 604_800)
        #expect(ManifestValidator.validate(m).isEmpty)
    }

    @Test func todoShapedManifestsAndZeroEntitiesAreValid() throws {
        #expect(try ManifestJSON.problems(ManifestJSON.manifest()).isEmpty)
        // SCHEMA_EMPTY is not an error for us: an app may have no entities.
        #expect(try ManifestJSON.problems(ManifestJSON.manifest(entities: [])).isEmpty)
        // Aliases, `id` in indexes and relations, every allowed CRDT pairing.
        let ok = ManifestJSON.manifest(entities: [
            ManifestJSON.entity("Todo", [
                ManifestJSON.field("title", crdt: "text"), ManifestJSON.field("notes", "richtext", crdt: "text"),
                ManifestJSON.field("votes", "int", crdt: "counter"), ManifestJSON.field("weight", "number", crdt: "counter"),
                ManifestJSON.field("done", "boolean", crdt: "lww"), ManifestJSON.field("parentId", "id(Todo)", optional: true, crdt: "tree"),
                ManifestJSON.field("\(String(repeating: "b", count: 63))", "int", optional: true),
            ], indexes: [ManifestJSON.index("todo_by_parent", ["parentId", "id"], unique: true)],
            relations: [ManifestJSON.relation("parent", target: "Todo", field: "parentId"), ManifestJSON.relation("self", target: "Todo", field: "id"),
                        #"{"name": "notes", "target": "Note", "field": "todoId", "many": true}"#]),
            ManifestJSON.entity("Note", [ManifestJSON.field("todoId", "id(Todo)")]),
        ], routes: [ManifestJSON.route("/", auth: "public"), ManifestJSON.route("/t/:q", query: "find", auth: "user")],
           queries: [ManifestJSON.named("find", [ManifestJSON.field("q")])])
        let problems = try ManifestJSON.problems(ok)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test(arguments: problemCases)
    func eachProblemHasItsCodePathAndMessage(_ c: ProblemCase) throws {
        let problems = try ManifestJSON.problems(c.manifest)
        #expect(problems.count == 1, "\(problems)")
        let p = try #require(problems.first)
        #expect(p.code == c.code)
        #expect(p.path == c.path)
        #expect(p.message == c.message)
    }

    @Test func everyCodeIsCovered() {
        let codes = Set(problemCases.map(\.code))
        let expected: Set<String> = [
            "ENTITY_NAME_EMPTY", "ENTITY_DUPLICATE", "FIELD_NAME_EMPTY", "FIELD_DUPLICATE", "INDEX_NAME_EMPTY",
            "INDEX_NAME_DUPLICATE", "INDEX_FIELDS_EMPTY", "INDEX_FIELD_NOT_FOUND", "FIELD_ID_TARGET_NOT_FOUND",
            "FIELD_TYPE_UNKNOWN", "INPUT_FIELD_TYPE_UNKNOWN", "INPUT_FIELD_NAME_EMPTY", "INPUT_FIELD_DUPLICATE",
            "QUERY_NAME_EMPTY", "QUERY_DUPLICATE", "ACTION_NAME_EMPTY", "ACTION_DUPLICATE", "POLICY_NAME_EMPTY",
            "POLICY_DUPLICATE", "POLICY_ALLOW_EMPTY", "POLICY_NO_TARGET", "POLICY_ENTITY_NOT_FOUND",
            "POLICY_ACTION_NOT_FOUND", "ROUTE_PATH_EMPTY", "ROUTE_PATH_NO_SLASH", "ROUTE_PATH_DUPLICATE",
            "ROUTE_QUERY_NOT_FOUND", "ROUTE_PARAM_NOT_IN_QUERY", "ROUTE_AUTH_INVALID", "NAME_INVALID",
            "NAME_RESERVED", "FIELD_CRDT_INVALID", "RELATION_TARGET_NOT_FOUND", "RELATION_FIELD_NOT_FOUND",
            "ENTITY_NAME_CASE_DUPLICATE", "RELATION_DUPLICATE", "SEARCH_FIELD_NOT_FOUND", "SEARCH_TEXT_FIELD_TYPE",
            "SEARCH_FIELD_DUPLICATE", "SEARCH_LANGUAGE_INVALID",
            "CRON_SCHEDULE_INVALID", "CRON_NEVER_FIRES", "CRON_TIMEZONE_INVALID", "CRON_DUPLICATE", "CRON_NAME_INVALID",
            "CRON_FUNCTION_INVALID", "CRON_PRIORITY_INVALID", "CRON_RETRIES_INVALID",
        ]
        #expect(codes == expected)
    }

    @Test func everyProblemIsReportedInDocumentOrder() throws {
        let text = ManifestJSON.manifest(
            entities: [
                ManifestJSON.entity("Todo", [ManifestJSON.field("done", "boolen"), ManifestJSON.field("ownerId", "id(Nobody)")],
                         indexes: [ManifestJSON.index("by_x", ["x"])]),
                ManifestJSON.todo,
            ],
            routes: [ManifestJSON.route("x", auth: "nobody")],
            policies: [#"{"name": "p"}"#])
        let problems = try ManifestJSON.problems(text)
        #expect(problems.map(\.code) == [
            "FIELD_TYPE_UNKNOWN", "FIELD_ID_TARGET_NOT_FOUND", "INDEX_FIELD_NOT_FOUND", "ENTITY_DUPLICATE",
            "POLICY_ALLOW_EMPTY", "POLICY_NO_TARGET", "ROUTE_PATH_NO_SLASH", "ROUTE_AUTH_INVALID",
        ])
        #expect(problems.map(\.path) == [
            "$.entities[0](Todo).fields[0](done)", "$.entities[0](Todo).fields[1](ownerId)",
            "$.entities[0](Todo).indexes[0](by_x).fields[0](x)", "$.entities[1](Todo)",
            "$.policies[0](p)", "$.policies[0](p)", "$.routes[0](x)", "$.routes[0](x)",
        ])
    }

    @Test func descriptionNamesCodePathAndMessage() {
        let e = ManifestError(code: "FIELD_DUPLICATE", path: "$.entities[0](Todo)", message: "fix it")
        #expect(e.description == "FIELD_DUPLICATE at $.entities[0](Todo): fix it")
    }
}

@Suite("Manifest decoding")
struct ManifestDecodeTests {
    func decodeError(_ text: String) -> ManifestError? {
        #expect(throws: ManifestError.self) { try Manifest.decode(Array(text.utf8)) }
    }

    @Test func badJSON() throws {
        let e = try #require(decodeError(#"{"manifest_version": 1,"#))
        #expect(e.code == "MANIFEST_INVALID_JSON")
        #expect(e.path == "$")
        #expect(e.message.hasPrefix("the manifest is not valid JSON ("))
        #expect(e.message.hasSuffix("); fix the syntax"))
    }

    @Test func rootMustBeAnObject() throws {
        let e = try #require(decodeError("[]"))
        #expect(e.code == "MANIFEST_SHAPE")
        #expect(e.path == "$")
        #expect(e.message == "expected an object, found array")
    }

    @Test func manifestVersionMissingWrongOrUnsupported() throws {
        let missing = try #require(decodeError(#"{"name": "t", "version": "1", "entities": []}"#))
        #expect(missing.code == "MANIFEST_SHAPE")
        #expect(missing.path == "$.manifest_version")
        #expect(missing.message == #"required key "manifest_version" is missing; set it to 1"#)

        let text = try #require(decodeError(#"{"manifest_version": "1", "name": "t", "version": "1", "entities": []}"#))
        #expect(text.path == "$.manifest_version")
        #expect(text.message == "expected the number 1, found string")

        let two = try #require(decodeError(ManifestJSON.manifest(manifestVersion: "2")))
        #expect(two.code == "MANIFEST_VERSION_UNSUPPORTED")
        #expect(two.path == "$.manifest_version")
        #expect(two.message == "manifest_version 2 is not supported; this host reads version 1")
    }

    @Test func missingKeysNameTheirPath() throws {
        let noEntities = try #require(decodeError(#"{"manifest_version": 1, "name": "t", "version": "1"}"#))
        #expect(noEntities.path == "$.entities")
        #expect(noEntities.message == #"required key "entities" is missing (use [] for none)"#)

        let noName = try #require(decodeError(#"{"manifest_version": 1, "version": "1", "entities": []}"#))
        #expect(noName.path == "$.name")
        #expect(noName.message == #"required key "name" is missing"#)

        let noType = try #require(decodeError(ManifestJSON.manifest(entities: [
            ManifestJSON.todo, #"{"name": "Note", "fields": [{"name": "a", "type": "int"}, {"name": "body", "optional": true}], "indexes": []}"#,
        ])))
        #expect(noType.code == "MANIFEST_SHAPE")
        #expect(noType.path == "$.entities[1](Note).fields[1](body).type")
        #expect(noType.message == #"required key "type" is missing"#)

        let noIndexName = try #require(decodeError(ManifestJSON.manifest(entities: [
            #"{"name": "Note", "fields": [], "indexes": [{"fields": ["a"]}]}"#,
        ])))
        #expect(noIndexName.path == "$.entities[0](Note).indexes[0].name")
    }

    @Test func wrongTypesNameTheirPath() throws {
        let optional = try #require(decodeError(ManifestJSON.manifest(entities: [
            #"{"name": "Todo", "fields": [{"name": "done", "type": "bool", "optional": "no", "unique": false}], "indexes": []}"#,
        ])))
        #expect(optional.path == "$.entities[0](Todo).fields[0](done).optional")
        #expect(optional.message == "expected true or false, found string")

        let entities = try #require(decodeError(#"{"manifest_version": 1, "name": "t", "version": "1", "entities": {}}"#))
        #expect(entities.path == "$.entities")
        #expect(entities.message == "expected an array, found object")

        let fields = try #require(decodeError(ManifestJSON.manifest(entities: [#"{"name": "Todo", "fields": [7], "indexes": []}"#])))
        #expect(fields.path == "$.entities[0](Todo).fields[0]")
        #expect(fields.message == "expected an object, found number")

        let indexField = try #require(decodeError(ManifestJSON.manifest(entities: [
            #"{"name": "Todo", "fields": [], "indexes": [{"name": "i", "fields": ["a", 1], "unique": false}]}"#,
        ])))
        #expect(indexField.path == "$.entities[0](Todo).indexes[0].fields[1]")

        let policy = try #require(decodeError(ManifestJSON.manifest(policies: [#"{"name": "p", "entity": "Todo", "allowRead": true}"#])))
        #expect(policy.path == "$.policies[0].allowRead")
        #expect(policy.message == "expected a string, found boolean")
    }

    @Test func unknownKeysAreIgnoredAndPluginsAreRead() throws {
        let text = ManifestJSON.manifest(extra: #" "future": {"x": 1}, "plugins": {"store": {"use": "sqlite", "path": "a.db"}},"#)
        let m = try ManifestJSON.decode(text)
        #expect(m.plugins["store"]?.use == "sqlite")
        #expect(m.plugins["store"]?.config == ["path": "a.db"])
        #expect(m.entities.first?.crdt == true)
    }
}
