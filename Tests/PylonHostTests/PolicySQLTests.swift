import Foundation
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// Read rules in SQL (issue 16 item 5, DESIGN.md §4): a rule that compares fields with
/// `auth.*` values or literals runs as a WHERE predicate, and must give exactly the per-row
/// evaluator's answer for every row. Each rule below gets its own entity holding the same
/// rows (NULLs, missing fields, wrong types, numbers as strings, booleans, byte-ordered
/// strings, extreme numbers); every caller lists every entity through the host, and the
/// result must equal the evaluator's verdict on the admin's copy of the rows — on every
/// store. The host's own `PolicyEngine` (built in-process from the same manifest) says
/// which rules compiled, so the test knows both paths ran.
@Suite("Read rules in SQL: the same rows as the per-row evaluator, every store (black-box, real pylon-host)")
struct PolicySQLEquivalenceTests {
    /// One entity's read rules (ANDed, one policy each) and whether they compile to SQL
    /// for a signed-in caller (nil: not asserted, for the generated rules).
    struct Rule: Sendable {
        var rules: [String]
        var compiles: Bool?
    }

    static let handWritten: [Rule] = [
        ("auth.userId == data.ownerId", true), ("data.ownerId == auth.userId", true),
        ("auth.userId != data.ownerId", true), ("!(auth.userId == data.ownerId)", true),
        ("auth.userId != null && data.ownerId == auth.userId", true),
        ("data.ownerId == null", true), ("data.ownerId != null", true),
        (#"data.s == "5""#, true), ("data.n == 5", true), (#"data.n == "5""#, true), ("data.s == 5", true),
        ("data.f == 5", true), ("data.f == 5.0", true), ("data.n == 5.0", true),
        ("data.n < 5", true), ("data.n <= 5", true), ("data.n > 5", true), ("data.n >= 5", true), ("!(data.n < 5)", true),
        ("data.f < 5", true), ("data.f > 2.25", true), ("data.n > -1", true), ("data.f <= -0.5", true), ("5 > data.n", true),
        (#"data.s < "b""#, true), (#"data.s >= "a""#, true), (#"data.s > "Z""#, true), (#"!(data.s < "b")"#, true),
        (#"data.s > "e""#, true), (#""e" >= data.s"#, true),
        ("data.s < 5", true), (#"data.n < "5""#, true), ("data.n >= null", true), ("!(data.n >= null)", true),
        ("data.b", true), ("!data.b", true), ("data.b == true", true), ("data.b == false", true),
        ("data.b != true", true), ("data.b != false", true), ("data.b == 1", true), ("data.b < true", true),
        ("!(data.b >= false)", true), ("data.b == null", true),
        ("data.s", true), ("!data.s", true), ("data.n", true), ("!data.n", true), ("data.f", true), ("!data.f", true),
        (#"data.s in ["5", "alice", "é"]"#, true), (#"data.n in [0, 5, "9", null]"#, true), ("!(data.n in [0, 5])", true),
        (#"!(data.s in ["bob", null])"#, true), ("data.b in [true]", true), ("data.f in [2.5, 5]", true),
        (#"data.ownerId in [auth.userId, "bob"]"#, true), ("auth.userId in [data.ownerId, data.s]", true),
        ("!(auth.userId in [data.ownerId, data.s])", true),
        (#""x" in data.s"#, true), (#"data.s in "abc""#, true), ("data.s in []", true),
        ("data.nope == null", true), ("data.nope != null", true), ("data.s.x == null", true), ("!data.nope", true),
        ("existing.ownerId == null", true), ("data.id != null", true), ("data.id == auth.userId", true),
        (#"(data.n > 0 && data.n < 10) || data.s == "bob""#, true),
        (#"!((data.n > 0 && data.n < 10) || data.s == "bob")"#, true),
        ("data.b && data.n >= 5 || !data.s", true),
        (#"auth.userId == "alice" || data.ownerId == "bob""#, true),
        ("auth.isAdmin || data.ownerId == auth.userId", true),
        (#"auth.hasRole("x") || data.n == 0"#, true),
        ("data.n == 9223372036854775807", true), ("data.n < -9223372036854775807", true),
        // Not compiled: the per-row filter must still answer (and the SQL path stay unused).
        ("data.f >= 9223372036854775807", false), ("data.n == 1.5", false), ("data.n < 2.5", false),
        ("data.s == data.ownerId", false), ("data == null", false), ("(data.n == 5) == true", false),
        ("data.s in [data.ownerId]", false),
    ].map { Rule(rules: [$0.0], compiles: $0.1) } + [
        Rule(rules: ["auth.userId == data.ownerId", "data.n > 0"], compiles: true),
        Rule(rules: ["data.b", "data.s == data.ownerId"], compiles: false),
    ]

    /// Random rules from `atoms` joined with `&&`, `||` and `!`, from a fixed seed.
    static let generated: [Rule] = {
        let atoms = [
            "data.ownerId == auth.userId", "auth.userId != data.ownerId", #"data.s == "5""#, "data.n == 5", "data.n < 5",
            "data.f >= 2.5", "data.b", "!data.b", #"data.s < "b""#, "data.s", "data.n", "data.ownerId == null",
            #"data.s in ["alice", "", "5"]"#, "data.n in [0, 10, null]", "data.b == false", "data.f == 5", #"data.s > "Z""#,
            "data.n != 0", "data.f < 0", #"auth.userId == "alice""#, "data.id != null", "auth.userId == null",
            "data.s == data.ownerId",
        ]
        var rng = SeededGenerator(state: 16)
        func expr(_ depth: Int) -> String {
            if depth == 0 || rng.next() % 3 == 0 { return atoms[Int(rng.next() % UInt64(atoms.count))] }
            switch rng.next() % 3 {
            case 0: return "!(\(expr(depth - 1)))"
            case 1: return "(\(expr(depth - 1)) && \(expr(depth - 1)))"
            default: return "(\(expr(depth - 1)) || \(expr(depth - 1)))"
            }
        }
        return (0..<40).map { _ in Rule(rules: [expr(3)], compiles: nil) }
    }()

    static let rules = handWritten + generated

    /// The same rows in every entity; `label` tells them apart across entities.
    static let rows: [String] = [
        #"{"label":"r00"}"#,
        #"{"label":"r01","s":"alice","ownerId":"alice","n":1,"f":1.5,"b":true}"#,
        #"{"label":"r02","s":"bob","ownerId":"bob","n":2,"f":2.5,"b":false}"#,
        #"{"label":"r03","s":"","n":0,"f":0.0,"b":false,"ownerId":""}"#,
        #"{"label":"r04","s":"5","n":5,"f":5.0,"b":true,"ownerId":"5"}"#,
        #"{"label":"r05","s":"05","n":-1,"f":-0.5}"#,
        #"{"label":"r06","s":"Zed","n":100,"f":5.5,"b":true,"ownerId":"alice"}"#,
        #"{"label":"r07","s":"zed","n":9223372036854775807,"f":100000000000000000000.0,"ownerId":"Alice"}"#,
        #"{"label":"r08","s":"é","n":-9223372036854775808,"f":-100000000000000000000.0}"#,
        #"{"label":"r09","s":"e\u0301","n":3}"#,
        #"{"label":"r10","s":"a b","n":2,"f":2.5,"ownerId":"bob"}"#,
        #"{"label":"r11","s":"true","b":false,"ownerId":"alice"}"#,
        #"{"label":"r12","s":"null","n":10,"f":10.0}"#,
        #"{"label":"r13","s":"Alice","ownerId":"Alice","b":true}"#,
        #"{"label":"r14","s":"10","n":9,"f":9.75}"#,
        #"{"label":"r15","s":"9","n":5,"f":4.999}"#,
        #"{"label":"r16","s":"😀","n":3,"f":3.0,"ownerId":"5"}"#,
        #"{"label":"r17","s":"b","n":4,"f":-0.0,"b":true}"#,
        #"{"label":"r18","s":"ab","f":2.5,"ownerId":"bob"}"#,
        #"{"label":"r19","s":" alice","n":1,"ownerId":"alice "}"#,
    ]

    /// Signed-in callers (user ids); anonymous is tried too.
    static let users = ["alice", "bob", "5", "Alice"]

    static var manifest: String {
        let fields = """
        [{"name":"label","type":"string","optional":false,"unique":false},
         {"name":"s","type":"string","optional":true,"unique":false},
         {"name":"n","type":"int","optional":true,"unique":false},
         {"name":"f","type":"float","optional":true,"unique":false},
         {"name":"b","type":"bool","optional":true,"unique":false},
         {"name":"ownerId","type":"string","optional":true,"unique":false}]
        """
        let entities = rules.indices.map { #"{"name":"R\#($0)","fields":\#(fields),"indexes":[]}"# }
        var policies: [String] = []
        for (i, r) in rules.enumerated() {
            for (j, text) in r.rules.enumerated() {
                policies.append(#"{"name":"r\#(i)-\#(j)","entity":"R\#(i)","allowRead":\#(TestJSON.quote(text))}"#)
            }
        }
        return """
        {"manifest_version":1,"name":"policy-sql","version":"1","routes":[],
         "entities":[\(entities.joined(separator: ","))],
         "policies":[\(policies.joined(separator: ","))]}
        """
    }

    @Test("Every rule, every caller: list, paged list, cursor walk and count equal the evaluator's rows", arguments: TestStore.all)
    func equivalence(_ store: TestStore) async throws {
        let text = Self.manifest
        let decoded = try Manifest.decode(Array(text.utf8))
        let engine = try PolicyEngine(manifest: decoded, dev: false)
        let host = try await HostProcess.start(manifest: text, dev: false, store: store)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        var tokens: [(AuthContext, String?)] = [(.anonymous, nil)]
        for u in Self.users {
            tokens.append((AuthContext(userID: u, isAdmin: false, isGuest: false, roles: [], tenantID: nil), try await host.mintSession(u)))
        }
        let dialect: SQLDialect = store.name == TestStore.postgres.name ? PostgresDialect() : SQLiteDialect()

        for i in Self.rules.indices {
            let entity = "R\(i)"
            let ops = Self.rows.map { #"{"op":"insert","entity":"\#(entity)","data":\#($0)}"# }.joined(separator: ",")
            let batch = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(ops)]}"#, token: admin)
            #expect(batch.status == 200 && batch.json["failed"].int == 0, "\(entity): \(batch.body)")
        }
        for (i, rule) in Self.rules.enumerated() {
            let entity = "R\(i)"
            let what = "\(entity) \(rule.rules)"
            let all = try await host.rawRequest("GET", "/api/entities/\(entity)", token: admin)
            let stored = try #require(try JSONParser.parse(all.body)["data"]?.arrayValue, "\(what): \(all.body)")
            #expect(stored.count == Self.rows.count)
            let expressions = try rule.rules.map { try PolicyExpression($0) }
            let schema = try #require(decoded.entities.first { $0.name == entity })
            for (auth, token) in tokens {
                let who = "\(what) as \(auth.userID ?? "anonymous")"
                let readable = stored.filter { row in expressions.allSatisfy { $0.evaluate(PolicyInput(auth: auth, data: row)) } }
                let expected = readable.compactMap { $0["label"]?.stringValue }
                let filter = engine.readFilter(entity: schema, auth: auth, dialect: dialect)
                if let compiles = rule.compiles, auth.userID != nil {
                    let compiled: Bool
                    switch filter {
                    case .perRow: compiled = false
                    default: compiled = true
                    }
                    #expect(compiled == compiles, "\(who): compiled to SQL: \(filter)")
                }

                let list = try await host.request("GET", "/api/entities/\(entity)", token: token)
                if filter == .denyAll {
                    #expect(list.status == 403 && expected.isEmpty, "\(who): \(list.body)")
                    continue
                }
                #expect(list.status == 200, "\(who): \(list.body)")
                let got = list.json["data"].items.compactMap { $0["label"].string }
                #expect(got == expected, "\(who): list \(got) vs evaluator \(expected)")

                // LIMIT/OFFSET count readable rows only.
                let paged = try await host.request("GET", "/api/entities/\(entity)?limit=3&offset=2", token: token)
                #expect(paged.json["data"].items.compactMap { $0["label"].string } == Array(expected.dropFirst(2).prefix(3)),
                        "\(who): limit 3 offset 2: \(paged.body)")

                // Cursor pages hold readable rows only; every cursor names one of them.
                var after: String?
                var walked: [String] = []
                for _ in 0...Self.rows.count {
                    let r = try await host.request("GET", "/api/entities/\(entity)/cursor?limit=3" + (after.map { "&after=\($0)" } ?? ""), token: token)
                    #expect(r.status == 200, "\(who): cursor \(r.body)")
                    walked += r.json["data"].items.compactMap { $0["label"].string }
                    after = r.json["next_cursor"].string
                    if let after {
                        #expect(readable.contains { $0["id"]?.stringValue == after }, "\(who): next_cursor \(after) is not a readable row")
                    }
                    if r.json["has_more"].bool != true { break }
                }
                #expect(walked == expected, "\(who): cursor walk \(walked) vs \(expected)")

                // Aggregates count readable rows when the rule runs in SQL, else refuse.
                let count = try await host.request("POST", "/api/aggregate/\(entity)", json: #"{"count":"*"}"#, token: token)
                if filter == .perRow {
                    #expect(count.status == 403 && count.json.errorCode == "AGGREGATE_REQUIRES_ROW_INDEPENDENT_POLICY", "\(who): \(count.body)")
                } else {
                    #expect(count.status == 200 && count.json["rows"][0]["count"].int == expected.count, "\(who): count \(count.body) vs \(expected.count)")
                }
            }
        }
    }
}

/// Issue 16 items 3–5 as the outside probe saw them: no `--dev`, an admin token, alice and
/// bob, an owner-only read rule. `Note`'s rule compiles to SQL; `Memo`'s cannot (it compares
/// two fields) and takes the per-row path — both must behave alike.
@Suite("Hidden rows are indistinguishable from missing ones: lookup, get, patch, delete, cursor (black-box, real pylon-host)")
struct PolicyOracleTests {
    static let manifest = """
    {"manifest_version": 1, "name": "policy-oracle", "version": "0.1.0", "routes": [],
     "entities": [
       {"name": "Note", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}],
        "indexes": [{"name": "note_owner", "fields": ["ownerId"], "unique": false}]},
       {"name": "Memo", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "policies": [
       {"name": "own-notes", "entity": "Note", "allowRead": "auth.userId == data.ownerId",
        "allowInsert": "auth.userId == data.ownerId", "allowUpdate": "auth.userId == data.ownerId",
        "allowDelete": "auth.userId == data.ownerId"},
       {"name": "own-memos", "entity": "Memo", "allowRead": "auth.userId == data.ownerId || data.title == data.ownerId",
        "allowInsert": "auth.userId == data.ownerId", "allowUpdate": "auth.userId == data.ownerId",
        "allowDelete": "auth.userId == data.ownerId"}]}
    """

    static let entities = ["Note", "Memo"]
    /// An id no row has, as long as a real one.
    static let missingID = String(repeating: "0", count: 40)

    @Test("Lookup, get by id, PATCH and DELETE answer a row the caller cannot read exactly as a missing one: 404, same body", arguments: TestStore.all)
    func noOracleByStatus(_ store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        for entity in Self.entities {
            let secret = try await host.create(entity, #"{"ownerId":"alice","title":"alice-secret"}"#, token: alice)
            let mineShared = try await host.create(entity, #"{"ownerId":"bob","title":"shared"}"#, token: bob)
            let hersShared = try await host.create(entity, #"{"ownerId":"alice","title":"shared"}"#, token: alice)
            for (who, token) in [("bob", Optional(bob)), ("anonymous", nil)] {
                // Lookup: the value of a hidden row and a value no row has look the same.
                let hidden = try await host.request("GET", "/api/lookup/\(entity)/title/alice-secret", token: token)
                let missing = try await host.request("GET", "/api/lookup/\(entity)/title/nothing-here", token: token)
                #expect(hidden.status == 404 && missing.status == 404, "\(entity) \(who) lookup: \(hidden.status) \(hidden.body) / \(missing.body)")
                #expect(hidden.body.replacingOccurrences(of: "alice-secret", with: "nothing-here") == missing.body,
                        "\(entity) \(who): same body: \(hidden.body) vs \(missing.body)")
                let byID = try await host.request("GET", "/api/lookup/\(entity)/id/\(secret)", token: token)
                let byMissingID = try await host.request("GET", "/api/lookup/\(entity)/id/\(Self.missingID)", token: token)
                #expect(byID.status == 404 && byID.body.replacingOccurrences(of: secret, with: Self.missingID) == byMissingID.body,
                        "\(entity) \(who): \(byID.body) vs \(byMissingID.body)")

                // Get, patch and delete by id.
                for (method, json) in [("GET", nil), ("PATCH", #"{"title":"hacked"}"#), ("DELETE", nil)] as [(String, String?)] {
                    let h = try await host.request(method, "/api/entities/\(entity)/\(secret)", json: json, token: token)
                    let m = try await host.request(method, "/api/entities/\(entity)/\(Self.missingID)", json: json, token: token)
                    #expect(h.status == 404 && m.status == 404, "\(entity) \(who) \(method): \(h.status) \(h.body) / \(m.status) \(m.body)")
                    #expect(h.body.replacingOccurrences(of: secret, with: Self.missingID) == m.body,
                            "\(entity) \(who) \(method): same body: \(h.body) vs \(m.body)")
                }
            }
            // Bob's lookup of a value both have finds his own row, not a 403 for hers.
            let shared = try await host.request("GET", "/api/lookup/\(entity)/title/shared", token: bob)
            #expect(shared.status == 200 && shared.json["id"].string == mineShared, "\(entity): \(shared.body)")
            let hers = try await host.request("GET", "/api/lookup/\(entity)/title/shared", token: alice)
            #expect(hers.status == 200 && hers.json["id"].string == hersShared, "\(entity): \(hers.body)")
            let own = try await host.request("GET", "/api/lookup/\(entity)/title/alice-secret", token: alice)
            #expect(own.status == 200 && own.json["id"].string == secret, "\(entity): \(own.body)")
            // Nothing was changed by the refused writes.
            let row = try await host.request("GET", "/api/entities/\(entity)/\(secret)", token: HostProcess.adminToken)
            #expect(row.status == 200 && row.json["title"].string == "alice-secret", "\(entity): \(row.body)")
            // Alice may read her row, so a write she may not make is still 403 for her.
            let giveAway = try await host.request("PATCH", "/api/entities/\(entity)/\(secret)", json: #"{"ownerId":"bob"}"#, token: alice)
            #expect(giveAway.status == 403 && giveAway.json.errorCode == "POLICY_DENIED", "\(entity): \(giveAway.body)")
        }
    }

    @Test("Cursor pages, paged lists and counts hold only readable rows: an anonymous walker learns no id, each user's cursors name only their rows", arguments: TestStore.all)
    func cursorPagesHoldOnlyReadableRows(_ store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: false, store: store)
        defer { host.stop() }
        let bob = try await host.mintSession("bob")
        for entity in Self.entities {
            var bobs: [String] = []
            for i in 0..<12 {
                let owner = i % 2 == 0 ? "alice" : "bob"
                let id = try await host.create(entity, #"{"ownerId":"\#(owner)","title":"t\#(i)"}"#)
                if owner == "bob" { bobs.append(id) }
            }
            // Anonymous: nothing readable, so no page and no cursor, wherever it starts.
            for after in [nil, bobs[2]] as [String?] {
                let r = try await host.request("GET", "/api/entities/\(entity)/cursor?limit=2" + (after.map { "&after=\($0)" } ?? ""))
                #expect(r.status == 200 && r.json["data"].items.isEmpty && r.json["next_cursor"].isNull && r.json["has_more"].bool == false,
                        "\(entity) anonymous from \(after ?? "start"): \(r.body)")
            }
            // Bob walks pages of 2: exactly his rows, and every cursor is one of them.
            var after: String?
            var walked: [String] = []
            var cursors: [String] = []
            for _ in 0..<20 {
                let r = try await host.request("GET", "/api/entities/\(entity)/cursor?limit=2" + (after.map { "&after=\($0)" } ?? ""), token: bob)
                #expect(r.status == 200 && r.json["data"].items.count <= 2, "\(entity): \(r.body)")
                walked += r.json["data"].items.compactMap { $0["id"].string }
                after = r.json["next_cursor"].string
                if let after { cursors.append(after) }
                if r.json["has_more"].bool != true { break }
            }
            #expect(walked == bobs, "\(entity): bob's walk \(walked) vs \(bobs)")
            #expect(cursors.allSatisfy { bobs.contains($0) }, "\(entity): cursors \(cursors)")
            #expect(cursors.count == 3, "three full pages of two, the last without more: \(cursors)")

            // LIMIT/OFFSET count readable rows; so do filtered queries.
            let paged = try await host.request("GET", "/api/entities/\(entity)?limit=2&offset=1", token: bob)
            #expect(paged.json["data"].items.compactMap { $0["id"].string } == Array(bobs[1...2]), "\(entity): \(paged.body)")
            let query = try await host.request("POST", "/api/query/\(entity)", json: #"{"$order":{"title":"desc"},"$limit":2}"#, token: bob)
            #expect(query.json.items.compactMap { $0["title"].string } == ["t9", "t7"], "\(entity): \(query.body)")
            let anonList = try await host.request("GET", "/api/entities/\(entity)?limit=5")
            #expect(anonList.status == 200 && anonList.json["data"].items.isEmpty, "\(entity): \(anonList.body)")
            // The largest limit with an offset: every readable row after the first, on each
            // route that pages (it trapped the host on an overflow once).
            let max = Int64.max
            let huge = try await host.request("GET", "/api/entities/\(entity)?limit=\(max)&offset=1", token: bob)
            #expect(huge.json["data"].items.compactMap { $0["id"].string } == Array(bobs.dropFirst()), "\(entity): \(huge.body)")
            let hugeQuery = try await host.request("POST", "/api/query/\(entity)", json: #"{"$limit":\#(max),"$offset":1}"#, token: bob)
            #expect(hugeQuery.json.items.count == bobs.count - 1, "\(entity): \(hugeQuery.body)")
            let hugeGraph = try await host.request("POST", "/api/query", json: #"{"\#(entity)":{"where":{"$offset":1},"limit":\#(max)}}"#, token: bob)
            #expect(hugeGraph.status == 200, "\(entity): \(hugeGraph.body)")
            #expect(try await host.request("GET", "/health").status == 200)

            // Aggregates: counted in SQL over readable rows, or refused for a per-row rule.
            let count = try await host.request("POST", "/api/aggregate/\(entity)", json: #"{"count":"*"}"#, token: bob)
            if entity == "Note" {
                #expect(count.status == 200 && count.json["rows"][0]["count"].int == 6, "\(count.body)")
                let anon = try await host.request("POST", "/api/aggregate/\(entity)", json: #"{"count":"*"}"#)
                #expect(anon.status == 200 && anon.json["rows"][0]["count"].int == 0, "\(anon.body)")
            } else {
                #expect(count.status == 403 && count.json.errorCode == "AGGREGATE_REQUIRES_ROW_INDEPENDENT_POLICY", "\(count.body)")
            }
        }
    }
}

/// The SQL a rule becomes (in-process, no host): what it binds and where NULL is spelled out.
@Suite("Read rules in SQL: the predicate text")
struct RowPredicateTests {
    static let entity = Entity(name: "Note", fields: [
        Field(name: "ownerId", typeName: "string", optional: true, unique: false),
        Field(name: "n", typeName: "int", optional: true, unique: false),
        Field(name: "b", typeName: "bool", optional: true, unique: false),
    ], indexes: [], relations: [], crdt: false)

    /// The rule as SQL for `userID` (SQLite text, `?` placeholders) and its parameters; nil
    /// when it does not compile.
    static func sql(_ rule: String, _ userID: String? = "alice", dialect: SQLDialect = SQLiteDialect()) throws -> (String, [SQLValue])? {
        let auth = AuthContext(userID: userID, isAdmin: false, isGuest: false, roles: [], tenantID: nil)
        guard let p = RowPredicate.compile(try PolicyExpression(rule).root, entity: entity, PolicyInput(auth: auth), dialect) else { return nil }
        var params: [SQLValue] = []
        let text = p.sql(table: "Note", dialect) { v in
            params.append(v)
            return dialect.placeholder(params.count)
        }
        return (text, params)
    }

    @Test("The owner rule is one indexable equality; anonymous callers get IS NULL")
    func ownerRule() throws {
        let alice = try #require(try Self.sql("auth.userId == data.ownerId"))
        #expect(alice.0 == #""Note"."ownerId" = ?"# && alice.1 == [.text("alice")])
        let anonymous = try #require(try Self.sql("auth.userId == data.ownerId", nil))
        #expect(anonymous.0 == #""Note"."ownerId" IS NULL"# && anonymous.1.isEmpty)
    }

    @Test("Negations spell out NULL, mismatched types are constants, strings order by bytes on Postgres")
    func negationsAndTypes() throws {
        #expect(try Self.sql("!(data.n < 5)")?.0 == #"("Note"."n" IS NULL OR "Note"."n" >= ?)"#)
        #expect(try Self.sql("data.ownerId != auth.userId")?.0 == #"("Note"."ownerId" IS NULL OR "Note"."ownerId" <> ?)"#)
        #expect(try Self.sql(#"data.n == "5""#)?.0 == "1 = 0")
        #expect(try Self.sql(#"data.n != "5""#)?.0 == "1 = 1")
        #expect(try Self.sql("data.b")?.0 == #""Note"."b" <> ?"#)
        #expect(try Self.sql("data.n == 5.0")?.1 == [.int(5)])
        let pg = try #require(try Self.sql(#"data.ownerId < "b" && data.n in [1, 2]"#, dialect: PostgresDialect()))
        #expect(pg.0 == #"("Note"."ownerId" COLLATE "C" < $1 AND ("Note"."n" = $2 OR "Note"."n" = $3))"#)
    }

    @Test("Rules SQL cannot evaluate exactly stay per-row", arguments: [
        "data.ownerId == data.n", "data.n == 1.5", "data.n < 2.5", "data == null", "(data.n == 5) == true",
        "data.ownerId in [data.n]", #"data.ownerId == "a\0b""#,
    ])
    func notCompiled(_ rule: String) throws {
        #expect(try Self.sql(rule) == nil)
    }
}
