import Foundation
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// Black-box tests of the data plane (pylon-core.md §2, §3, §6.1): each test starts the
/// real release `pylon-host` on its own database and port and talks HTTP to it, once per
/// store in `TestStore.all` (SQLite, D1 over the local D1-compatible server, the C executor
/// from examples/, PostgreSQL). Build first: `make build` (or `swift build -c release` and copy the
/// plugins into `plugins/`).
/// Serialized: every test runs on every store, and running them all at once (well over a
/// hundred hosts with their fixture servers and database sessions) starves a small machine.
@Suite("Data plane (black-box, real pylon-host)", .serialized)
struct DataPlaneTests {

    // MARK: - Fixtures

    /// `User{email unique, displayName, age?}` with a has-many `todos`, and
    /// `Todo{title, done, priority?, estimate?, dueAt?, notes?, ownerId?}` with `owner`.
    static let manifest = """
    {
      "manifest_version": 1,
      "name": "dataplane-test",
      "version": "0.1.0",
      "entities": [
        {
          "name": "User",
          "fields": [
            {"name": "email", "type": "string", "optional": false, "unique": true},
            {"name": "displayName", "type": "string", "optional": false, "unique": false},
            {"name": "age", "type": "int", "optional": true, "unique": false}
          ],
          "indexes": [],
          "relations": [{"name": "todos", "target": "Todo", "field": "ownerId", "many": true}]
        },
        {
          "name": "Todo",
          "fields": [
            {"name": "title", "type": "string", "optional": false, "unique": false},
            {"name": "done", "type": "bool", "optional": false, "unique": false},
            {"name": "priority", "type": "int", "optional": true, "unique": false},
            {"name": "estimate", "type": "float", "optional": true, "unique": false},
            {"name": "dueAt", "type": "datetime", "optional": true, "unique": false},
            {"name": "notes", "type": "richtext", "optional": true, "unique": false},
            {"name": "ownerId", "type": "id(User)", "optional": true, "unique": false}
          ],
          "indexes": [{"name": "todo_by_owner", "fields": ["ownerId", "done"], "unique": false}],
          "relations": [{"name": "owner", "target": "User", "field": "ownerId", "many": false}]
        }
      ],
      "routes": [],
      "queries": [],
      "actions": [],
      "policies": [],
      "plugins": {"store": {"use": "sqlite"}}
    }
    """

    static let admin = HostProcess.adminToken

    static func start(_ store: TestStore, env: [String: String] = [:], dev: Bool = true) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, dev: dev, store: store)
    }

    static func isHex(_ s: String?, count: Int) -> Bool {
        guard let s, s.utf8.count == count else { return false }
        return s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    // MARK: - CRUD

    @Test("CRUD lifecycle: insert, typed read, patch, delete, 404", arguments: TestStore.all)
    func crudLifecycle(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }

        let created = try await host.request("POST", "/api/entities/Todo",
                                             json: #"{"title":"Buy milk","done":false,"priority":3,"estimate":2.5}"#)
        #expect(created.status == 201, "\(created.body)")
        let id = try #require(created.json["id"].string, "\(created.body)")
        #expect(Self.isHex(id, count: 40), "id \(id) should be 40 lowercase hex digits")

        let got = try await host.request("GET", "/api/entities/Todo/\(id)")
        #expect(got.status == 200, "\(got.body)")
        #expect(got.json["id"].string == id)
        #expect(got.json["title"].string == "Buy milk")
        #expect(got.json["done"].bool == false, "bools are true/false, not 0/1: \(got.body)")
        #expect(got.json["priority"].int == 3, "ints are JSON integers: \(got.body)")
        #expect(got.json["estimate"].double == 2.5, "floats are JSON floats: \(got.body)")
        #expect(got.json["dueAt"].isNull, "a row carries every column, nulls included: \(got.body)")
        #expect(got.json["notes"].isNull)
        #expect(got.json["ownerId"].isNull)

        // An integral value in a float column stays a float on the wire.
        let whole = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"t","done":true,"estimate":3}"#)
        let wholeID = try #require(whole.json["id"].string, "\(whole.body)")
        let wholeRow = try await host.request("GET", "/api/entities/Todo/\(wholeID)")
        #expect(wholeRow.json["estimate"].double == 3.0, "\(wholeRow.body)")
        #expect(wholeRow.json["done"].bool == true, "\(wholeRow.body)")

        let patched = try await host.request("PATCH", "/api/entities/Todo/\(id)", json: #"{"done":true}"#)
        #expect(patched.status == 200, "\(patched.body)")
        #expect(patched.json["updated"].bool == true, "\(patched.body)")

        let after = try await host.request("GET", "/api/entities/Todo/\(id)")
        #expect(after.json["done"].bool == true, "\(after.body)")
        #expect(after.json["title"].string == "Buy milk", "a patch leaves other fields alone: \(after.body)")
        #expect(after.json["priority"].int == 3)

        let deleted = try await host.request("DELETE", "/api/entities/Todo/\(id)")
        #expect(deleted.status == 200, "\(deleted.body)")
        #expect(deleted.json["deleted"].bool == true, "\(deleted.body)")

        let gone = try await host.request("GET", "/api/entities/Todo/\(id)")
        #expect(gone.status == 404, "\(gone.body)")
        #expect(gone.json.errorCode == "NOT_FOUND", "\(gone.body)")

        let patchGone = try await host.request("PATCH", "/api/entities/Todo/\(id)", json: #"{"done":false}"#)
        #expect(patchGone.status == 404, "\(patchGone.body)")
        #expect(patchGone.json.errorCode == "NOT_FOUND")
        let deleteGone = try await host.request("DELETE", "/api/entities/Todo/\(id)")
        #expect(deleteGone.status == 404, "\(deleteGone.body)")
        #expect(deleteGone.json.errorCode == "NOT_FOUND")
    }

    @Test("An id in the insert body is ignored: the server mints the id", arguments: TestStore.all)
    func clientIdIgnored(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let r = try await host.request("POST", "/api/entities/Todo", json: #"{"id":"mine","title":"x","done":false}"#)
        #expect(r.status == 201, "\(r.body)")
        let id = try #require(r.json["id"].string)
        #expect(id != "mine")
        #expect(Self.isHex(id, count: 40))
        #expect(try await host.request("GET", "/api/entities/Todo/mine").status == 404)
    }

    @Test("Aggregate: count, sum, avg, min, max, countDistinct, groupBy field and time bucket, where", arguments: TestStore.all)
    func aggregate(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let rows = [
            #"{"title":"a","done":true,"priority":1,"estimate":1.5,"dueAt":"2026-01-05T10:00:00Z"}"#,
            #"{"title":"b","done":true,"priority":3,"estimate":2.5,"dueAt":"2026-01-20T10:00:00Z"}"#,
            #"{"title":"c","done":false,"priority":3,"dueAt":"2026-02-01T10:00:00Z"}"#,
        ]
        for r in rows { _ = try await host.insert("Todo", r) }

        let all = try await host.request("POST", "/api/aggregate/Todo", json: #"{"count":"*","sum":["priority"],"avg":["estimate"],"min":["priority"],"max":["dueAt"],"countDistinct":["priority"]}"#)
        #expect(all.status == 200, "\(all.body)")
        let row = all.json["rows"][0]
        #expect(row["count"].int == 3, "\(all.body)")
        #expect(row["sum_priority"].int == 7)
        #expect(row["avg_estimate"].double == 2.0)
        #expect(row["min_priority"].int == 1)
        #expect(row["max_dueAt"].string == "2026-02-01T10:00:00Z")
        #expect(row["count_distinct_priority"].int == 2)

        let grouped = try await host.request("POST", "/api/aggregate/Todo", json: #"{"count":"*","groupBy":["done"]}"#)
        #expect(grouped.json["rows"].items.map { $0["done"].bool } == [false, true], "\(grouped.body)")
        #expect(grouped.json["rows"].items.map { $0["count"].int } == [1, 2])

        let monthly = try await host.request("POST", "/api/aggregate/Todo", json: #"{"count":"*","groupBy":[{"field":"dueAt","bucket":"month"}],"where":{"done":true}}"#)
        #expect(monthly.json["rows"].items.map { $0["dueAt_month"].string } == ["2026-01"], "\(monthly.body)")
        #expect(monthly.json["rows"].items.map { $0["count"].int } == [2])

        #expect(try await host.request("POST", "/api/aggregate/Todo", json: "{}").json.errorCode == "INVALID_QUERY")
        #expect(try await host.request("POST", "/api/aggregate/Todo", json: #"{"sum":["nope"]}"#).json.errorCode == "INVALID_COLUMN")
        #expect(try await host.request("POST", "/api/aggregate/Nope", json: #"{"count":"*"}"#).json.errorCode == "ENTITY_NOT_FOUND")
    }

    @Test("List with ?limit and ?offset, ordered by id, with count", arguments: TestStore.all)
    func listLimitOffset(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        var ids: [String] = []
        for i in 1...5 { ids.append(try await host.insert("Todo", #"{"title":"t\#(i)","done":false}"#)) }
        #expect(ids == ids.sorted(), "ids sort in creation order")

        let all = try await host.request("GET", "/api/entities/Todo")
        #expect(all.status == 200, "\(all.body)")
        #expect(all.json["count"].int == 5)
        #expect(all.json["offset"].int == 0)
        #expect(all.json["limit"].isNull, "\(all.body)")
        #expect(all.json["data"].items.map { $0["id"].string } == ids)

        let page = try await host.request("GET", "/api/entities/Todo?limit=2&offset=1")
        #expect(page.status == 200, "\(page.body)")
        #expect(page.json["count"].int == 2, "count is rows returned: \(page.body)")
        #expect(page.json["limit"].int == 2)
        #expect(page.json["offset"].int == 1)
        #expect(page.json["data"].items.map { $0["id"].string } == Array(ids[1...2]))

        let tail = try await host.request("GET", "/api/entities/Todo?offset=4")
        #expect(tail.json["data"].items.map { $0["id"].string } == [ids[4]])

        let past = try await host.request("GET", "/api/entities/Todo?limit=10&offset=10")
        #expect(past.json["count"].int == 0)
        #expect(past.json["data"].items.isEmpty)
    }

    @Test("Cursor pagination walks every row once: next_cursor and has_more", arguments: TestStore.all)
    func cursorPagination(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }

        let empty = try await host.request("GET", "/api/entities/Todo/cursor?limit=3")
        #expect(empty.status == 200, "\(empty.body)")
        #expect(empty.json["data"].items.isEmpty)
        #expect(empty.json["next_cursor"].isNull, "\(empty.body)")
        #expect(empty.json["has_more"].bool == false)

        var ids: [String] = []
        for i in 1...7 { ids.append(try await host.insert("Todo", #"{"title":"t\#(i)","done":false}"#)) }

        var seen: [String] = []
        var hasMores: [Bool] = []
        var after: String?
        for _ in 0..<10 {
            let path = "/api/entities/Todo/cursor?limit=3" + (after.map { "&after=\($0)" } ?? "")
            let r = try await host.request("GET", path)
            #expect(r.status == 200, "\(r.body)")
            let pageIDs = r.json["data"].items.compactMap { $0["id"].string }
            seen += pageIDs
            let more = r.json["has_more"].bool ?? false
            #expect(r.json["has_more"].bool != nil, "\(r.body)")
            hasMores.append(more)
            #expect(r.json["next_cursor"].string == pageIDs.last, "next_cursor is the last id of the page: \(r.body)")
            if !more { break }
            let next: String = try #require(r.json["next_cursor"].string, "\(r.body)")
            after = next
        }
        #expect(seen == ids, "every row exactly once, in id order")
        #expect(hasMores == [true, true, false])

        // Past the end: empty page, no cursor.
        let end = try await host.request("GET", "/api/entities/Todo/cursor?limit=3&after=\(ids[6])")
        #expect(end.json["data"].items.isEmpty)
        #expect(end.json["has_more"].bool == false)
        #expect(end.json["next_cursor"].isNull)
    }

    // MARK: - Filters

    @Test("Filter operators: $gt $gte $lt $lte $like $in $not, null, $order, $limit, $offset", arguments: TestStore.all)
    func filterOperators(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let rows = [
            #"{"title":"Buy milk","done":false,"priority":1,"estimate":0.5,"dueAt":"2026-01-01T00:00:00Z"}"#,
            #"{"title":"Walk the dog","done":true,"priority":2,"estimate":1.5}"#,
            #"{"title":"Pay 100% of rent","done":false,"priority":3,"estimate":2.0,"dueAt":"2026-03-01T00:00:00Z"}"#,
            #"{"title":"Call MOM","done":true,"priority":4}"#,
            #"{"title":"a_c literal","done":false}"#,
            #"{"title":"abc plain","done":false,"priority":5}"#,
        ]
        for r in rows { _ = try await host.insert("Todo", r) }

        /// Titles matched by `filter`, sorted unless the order itself is under test.
        func titles(_ filter: String, ordered: Bool = false) async throws -> [String] {
            let r = try await host.request("POST", "/api/query/Todo", json: filter)
            #expect(r.status == 200, "\(filter) → \(r.body)")
            let t = r.json.items.compactMap { $0["title"].string }
            return ordered ? t : t.sorted()
        }

        #expect(try await titles(#"{"priority":{"$gt":3}}"#) == ["Call MOM", "abc plain"])
        #expect(try await titles(#"{"priority":{"$gte":3}}"#) == ["Call MOM", "Pay 100% of rent", "abc plain"])
        #expect(try await titles(#"{"priority":{"$lt":2}}"#) == ["Buy milk"])
        #expect(try await titles(#"{"priority":{"$lte":2}}"#) == ["Buy milk", "Walk the dog"])
        #expect(try await titles(#"{"priority":{"$gt":1,"$lt":4}}"#) == ["Pay 100% of rent", "Walk the dog"])
        #expect(try await titles(#"{"estimate":{"$gte":1.5}}"#) == ["Pay 100% of rent", "Walk the dog"])
        #expect(try await titles(#"{"dueAt":{"$gte":"2026-02-01"}}"#) == ["Pay 100% of rent"])

        // Equality, booleans as booleans.
        #expect(try await titles(#"{"done":true}"#) == ["Call MOM", "Walk the dog"])
        #expect(try await titles(#"{"priority":2,"done":true}"#) == ["Walk the dog"])

        // $like: case-insensitive substring; % and _ in the value match themselves.
        #expect(try await titles(#"{"title":{"$like":"MILK"}}"#) == ["Buy milk"])
        #expect(try await titles(#"{"title":{"$like":"mom"}}"#) == ["Call MOM"])
        #expect(try await titles(#"{"title":{"$like":"100%"}}"#) == ["Pay 100% of rent"])
        #expect(try await titles(#"{"title":{"$like":"0% of"}}"#) == ["Pay 100% of rent"])
        #expect(try await titles(#"{"title":{"$like":"1%rent"}}"#) == [], "% in the value is literal, not a wildcard")
        #expect(try await titles(#"{"title":{"$like":"a_c"}}"#) == ["a_c literal"], "_ in the value is literal")

        // $in, including the empty list.
        #expect(try await titles(#"{"priority":{"$in":[1,3]}}"#) == ["Buy milk", "Pay 100% of rent"])
        #expect(try await titles(#"{"title":{"$in":["Walk the dog","Call MOM","nope"]}}"#) == ["Call MOM", "Walk the dog"])
        #expect(try await titles(#"{"title":{"$in":[]}}"#) == [], "empty $in matches no rows")

        // $not (null-safe in this host: a NULL column is "not equal" to a value).
        #expect(try await titles(#"{"done":{"$not":true}}"#) == ["Buy milk", "Pay 100% of rent", "a_c literal", "abc plain"])
        #expect(try await titles(#"{"priority":{"$not":1}}"#) == ["Call MOM", "Pay 100% of rent", "Walk the dog", "a_c literal", "abc plain"])

        // null equality and its negation.
        #expect(try await titles(#"{"dueAt":null}"#) == ["Call MOM", "Walk the dog", "a_c literal", "abc plain"])
        #expect(try await titles(#"{"dueAt":{"$not":null}}"#) == ["Buy milk", "Pay 100% of rent"])
        #expect(try await titles(#"{"priority":null}"#) == ["a_c literal"])

        // $order, $limit, $offset.
        let byPriority = #""priority":{"$not":null}"#
        #expect(try await titles(#"{\#(byPriority),"$order":{"priority":"desc"}}"#, ordered: true)
                == ["abc plain", "Call MOM", "Pay 100% of rent", "Walk the dog", "Buy milk"])
        #expect(try await titles(#"{\#(byPriority),"$order":{"priority":"asc"}}"#, ordered: true)
                == ["Buy milk", "Walk the dog", "Pay 100% of rent", "Call MOM", "abc plain"])
        #expect(try await titles(#"{\#(byPriority),"$order":{"priority":"asc"},"$limit":2}"#, ordered: true)
                == ["Buy milk", "Walk the dog"])
        #expect(try await titles(#"{\#(byPriority),"$order":{"priority":"asc"},"$limit":2,"$offset":1}"#, ordered: true)
                == ["Walk the dog", "Pay 100% of rent"])
        #expect(try await titles(#"{\#(byPriority),"$order":{"priority":"asc"},"$offset":3}"#, ordered: true)
                == ["Call MOM", "abc plain"])
        #expect(try await titles(#"{"$order":{"estimate":"desc"},"estimate":{"$not":null},"$limit":1}"#, ordered: true)
                == ["Pay 100% of rent"])

        // An empty filter returns every row.
        #expect(try await titles("{}").count == 6)
    }

    // MARK: - Errors

    @Test("Error codes: INVALID_COLUMN, INVALID_JSON, INVALID_DATA, MISSING_FIELD, ENTITY_NOT_FOUND", arguments: TestStore.all)
    func errorCodes(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let id = try await host.insert("Todo", #"{"title":"x","done":false}"#)

        func expectError(_ method: String, _ path: String, _ json: String?, _ status: Int, _ code: String,
                         sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let r = try await host.request(method, path, json: json)
            #expect(r.status == status, "\(method) \(path) \(json ?? "") → \(r.body)", sourceLocation: sourceLocation)
            #expect(r.json.errorCode == code, "\(method) \(path) \(json ?? "") → \(r.body)", sourceLocation: sourceLocation)
            #expect(r.json["error"]["message"].string?.isEmpty == false, "errors carry a message", sourceLocation: sourceLocation)
        }

        // Unknown field.
        try await expectError("POST", "/api/entities/Todo", #"{"title":"x","done":false,"bogus":1}"#, 400, "INVALID_COLUMN")
        try await expectError("PATCH", "/api/entities/Todo/\(id)", #"{"bogus":1}"#, 400, "INVALID_COLUMN")
        try await expectError("POST", "/api/query/Todo", #"{"bogus":1}"#, 400, "INVALID_COLUMN")
        try await expectError("POST", "/api/query/Todo", #"{"$order":{"bogus":"asc"}}"#, 400, "INVALID_COLUMN")
        // Bad JSON.
        try await expectError("POST", "/api/entities/Todo", #"{"title":"#, 400, "INVALID_JSON")
        try await expectError("PATCH", "/api/entities/Todo/\(id)", "{bad", 400, "INVALID_JSON")
        try await expectError("POST", "/api/query/Todo", "[1,", 400, "INVALID_JSON")
        // Wrong types.
        try await expectError("POST", "/api/entities/Todo", #"{"title":5,"done":false}"#, 400, "INVALID_DATA")
        try await expectError("POST", "/api/entities/Todo", #"{"title":"x","done":"yes"}"#, 400, "INVALID_DATA")
        try await expectError("POST", "/api/entities/Todo", #"{"title":"x","done":false,"priority":"high"}"#, 400, "INVALID_DATA")
        try await expectError("POST", "/api/entities/Todo", #"{"title":"x","done":false,"estimate":"big"}"#, 400, "INVALID_DATA")
        try await expectError("PATCH", "/api/entities/Todo/\(id)", #"{"done":1.5}"#, 400, "INVALID_DATA")
        try await expectError("POST", "/api/entities/Todo", #"["not","an","object"]"#, 400, "INVALID_DATA")
        // Missing required fields.
        try await expectError("POST", "/api/entities/Todo", #"{"done":false}"#, 400, "MISSING_FIELD")
        try await expectError("POST", "/api/entities/Todo", #"{"title":"x"}"#, 400, "MISSING_FIELD")
        try await expectError("POST", "/api/entities/User", #"{"email":"a@example.com"}"#, 400, "MISSING_FIELD")
        // Unknown entity.
        try await expectError("GET", "/api/entities/Nope", nil, 400, "ENTITY_NOT_FOUND")
        try await expectError("POST", "/api/entities/Nope", #"{"a":1}"#, 400, "ENTITY_NOT_FOUND")
        try await expectError("GET", "/api/entities/Nope/\(id)", nil, 400, "ENTITY_NOT_FOUND")
        try await expectError("POST", "/api/query/Nope", "{}", 400, "ENTITY_NOT_FOUND")

        // None of the failed writes changed the row or reached the change log.
        let row = try await host.request("GET", "/api/entities/Todo/\(id)")
        #expect(row.json["done"].bool == false)
        #expect(row.json["title"].string == "x")
        let log = try await host.drain(since: 0)
        #expect(log.events.count == 1, "only the one successful insert is logged: \(log.events)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)
    }

    @Test("Unique violation → 409 UNIQUE_VIOLATION, on insert and on update", arguments: TestStore.all)
    func uniqueViolation(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        _ = try await host.insert("User", #"{"email":"ann@example.com","displayName":"Ann"}"#)
        let bob = try await host.insert("User", #"{"email":"bob@example.com","displayName":"Bob"}"#)

        let dup = try await host.request("POST", "/api/entities/User", json: #"{"email":"ann@example.com","displayName":"Other"}"#)
        #expect(dup.status == 409, "\(dup.body)")
        #expect(dup.json.errorCode == "UNIQUE_VIOLATION", "\(dup.body)")
        // Says the value is taken and no more: not the index, not the stored key.
        #expect(!dup.body.contains("ann@") && !dup.body.lowercased().contains("constraint"), "\(dup.body)")

        // The user entity's email changes only through the admin (or the email-change link).
        let patch = try await host.request("PATCH", "/api/entities/User/\(bob)", json: #"{"email":"ann@example.com"}"#,
                                           token: HostProcess.adminToken)
        #expect(patch.status == 409, "\(patch.body)")
        #expect(patch.json.errorCode == "UNIQUE_VIOLATION", "\(patch.body)")

        #expect(try await host.request("GET", "/api/entities/User").json["count"].int == 2)
        #expect(try await host.request("GET", "/api/entities/User/\(bob)").json["email"].string == "bob@example.com")
        #expect(try await host.drain(since: 0).events.count == 2, "failed writes are not logged")
    }

    @Test("Lookup by a string field and an int field; missing → 404", arguments: TestStore.all)
    func lookup(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let ann = try await host.insert("User", #"{"email":"ann@example.com","displayName":"Ann","age":42}"#)
        _ = try await host.insert("User", #"{"email":"bob@example.com","displayName":"Bob","age":7}"#)

        let byEmail = try await host.request("GET", "/api/lookup/User/email/ann@example.com")
        #expect(byEmail.status == 200, "\(byEmail.body)")
        #expect(byEmail.json["id"].string == ann)
        #expect(byEmail.json["age"].int == 42)

        let encoded = try await host.request("GET", "/api/lookup/User/email/ann%40example.com")
        #expect(encoded.json["id"].string == ann, "percent-encoded values are decoded: \(encoded.body)")

        let odd = try await host.insert("User", #"{"email":"a b/c%41@example.com","displayName":"Odd"}"#)
        let oddLookup = try await host.request("GET", "/api/lookup/User/email/a%20b%2Fc%2541@example.com")
        #expect(oddLookup.json["id"].string == odd, "decoded exactly once: \(oddLookup.body)")

        let byAge = try await host.request("GET", "/api/lookup/User/age/42")
        #expect(byAge.status == 200, "\(byAge.body)")
        #expect(byAge.json["email"].string == "ann@example.com")

        let byID = try await host.request("GET", "/api/lookup/User/id/\(ann)")
        #expect(byID.json["email"].string == "ann@example.com", "\(byID.body)")

        for path in ["/api/lookup/User/email/nobody@example.com", "/api/lookup/User/age/1000", "/api/lookup/User/age/notanumber"] {
            let r = try await host.request("GET", path)
            #expect(r.status == 404, "\(path) → \(r.body)")
            #expect(r.json.errorCode == "NOT_FOUND", "\(path) → \(r.body)")
        }
        let badField = try await host.request("GET", "/api/lookup/User/bogus/x")
        #expect(badField.status == 400, "\(badField.body)")
        #expect(badField.json.errorCode == "INVALID_COLUMN")
    }

    // MARK: - Links and graph queries

    @Test("Link and unlink set and clear Todo.ownerId, each logged as an update", arguments: TestStore.all)
    func linkUnlink(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let user = try await host.insert("User", #"{"email":"ann@example.com","displayName":"Ann"}"#)
        let todo = try await host.insert("Todo", #"{"title":"x","done":false}"#)
        let before = try await host.drain(since: 0)

        let link = try await host.request("POST", "/api/link",
                                          json: #"{"entity":"Todo","id":"\#(todo)","relation":"owner","target_id":"\#(user)"}"#)
        #expect(link.status == 200, "\(link.body)")
        #expect(link.json["linked"].bool == true, "\(link.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/\(todo)").json["ownerId"].string == user)

        let afterLink = try await host.drain(since: before.lastSeq)
        #expect(afterLink.events.count == 1, "\(afterLink.events)")
        let linkEvent = afterLink.events.first ?? nil
        #expect(linkEvent["kind"].string == "update")
        #expect(linkEvent["entity"].string == "Todo")
        #expect(linkEvent["row_id"].string == todo)
        #expect(linkEvent["data"]["ownerId"].string == user)

        let unlink = try await host.request("POST", "/api/unlink", json: #"{"entity":"Todo","id":"\#(todo)","relation":"owner"}"#)
        #expect(unlink.status == 200, "\(unlink.body)")
        #expect(unlink.json["unlinked"].bool == true, "\(unlink.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/\(todo)").json["ownerId"].isNull)

        let afterUnlink = try await host.drain(since: afterLink.lastSeq)
        #expect(afterUnlink.events.count == 1, "\(afterUnlink.events)")
        let unlinkEvent = afterUnlink.events.first ?? nil
        #expect(unlinkEvent["kind"].string == "update")
        #expect(unlinkEvent["row_id"].string == todo)
        #expect(unlinkEvent["data"]["ownerId"].isNull, "\(String(describing: unlinkEvent))")

        let missing = try await host.request("POST", "/api/link",
                                             json: #"{"entity":"Todo","id":"nope","relation":"owner","target_id":"\#(user)"}"#)
        #expect(missing.status == 404, "\(missing.body)")
        #expect(missing.json.errorCode == "NOT_FOUND")
        let badRel = try await host.request("POST", "/api/link",
                                            json: #"{"entity":"Todo","id":"\#(todo)","relation":"nope","target_id":"\#(user)"}"#)
        #expect(badRel.status == 400, "\(badRel.body)")
        #expect(badRel.json.errorCode == "RELATION_NOT_FOUND")
    }

    @Test("Graph query with include (belongs-to and has-many) and limit", arguments: TestStore.all)
    func graphQuery(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let ann = try await host.insert("User", #"{"email":"ann@example.com","displayName":"Ann"}"#)
        let bob = try await host.insert("User", #"{"email":"bob@example.com","displayName":"Bob"}"#)
        let t1 = try await host.insert("Todo", #"{"title":"one","done":false,"ownerId":"\#(ann)"}"#)
        let t2 = try await host.insert("Todo", #"{"title":"two","done":true,"ownerId":"\#(ann)"}"#)
        _ = try await host.insert("Todo", #"{"title":"three","done":false}"#)

        let r = try await host.request("POST", "/api/query", json: """
            {"Todo": {"where": {"ownerId": "\(ann)"}, "include": {"owner": {}}},
             "User": {"where": {"$order": {"email": "asc"}}, "include": {"todos": {}}}}
            """)
        #expect(r.status == 200, "\(r.body)")
        let todos = r.json["Todo"].items
        #expect(todos.compactMap { $0["id"].string } == [t1, t2], "\(r.body)")
        for t in todos {
            #expect(t["owner"]["id"].string == ann, "\(r.body)")
            #expect(t["owner"]["email"].string == "ann@example.com")
        }
        let users = r.json["User"].items
        #expect(users.compactMap { $0["id"].string } == [ann, bob], "\(r.body)")
        #expect((users.first ?? nil)["todos"].items.compactMap { $0["id"].string } == [t1, t2], "\(r.body)")
        #expect((users.last ?? nil)["todos"].items.isEmpty, "\(r.body)")

        let limited = try await host.request("POST", "/api/query", json: #"{"Todo": {"limit": 2}}"#)
        #expect(limited.status == 200, "\(limited.body)")
        #expect(limited.json["Todo"].items.count == 2, "\(limited.body)")
        // The smaller of `limit` and the filter's own `$limit`; a bad `$limit` is still refused.
        let both = try await host.request("POST", "/api/query", json: #"{"Todo": {"where": {"$limit": 1}, "limit": 2}}"#)
        #expect(both.json["Todo"].items.count == 1, "\(both.body)")
        let bad = try await host.request("POST", "/api/query", json: #"{"Todo": {"where": {"$limit": "x"}, "limit": 2}}"#)
        #expect(bad.status == 400 && bad.json.errorCode == "INVALID_QUERY", "\(bad.body)")
        // The limit is the store's `$limit`, not a cut of every row read.
        #expect(DataService.limited(nil, 3) == .object([("$limit", .int(3))]))
        #expect(DataService.limited(.object([("done", .bool(true)), ("$limit", .int(9))]), 3)
                == .object([("done", .bool(true)), ("$limit", .int(3))]))
        #expect(DataService.limited(.object([("done", .bool(true))]), nil) == .object([("done", .bool(true))]))

        let unknown = try await host.request("POST", "/api/query", json: #"{"Nope": {}}"#)
        #expect(unknown.status == 400, "\(unknown.body)")
        #expect(unknown.json.errorCode == "ENTITY_NOT_FOUND")
    }

    // MARK: - Batch and transact

    @Test("Hostile: a belongs-to include of one 1 MiB row by 70 rows is 400 RESULT_TOO_LARGE (the answer would copy it 70 times); 10 of them answer, the row read once")
    func graphIncludeBounded() async throws {
        let host = try await Self.start(.sqlite)
        defer { host.stop() }
        let name = String(repeating: "n", count: 1 << 20)
        let big = try await host.insert("User", #"{"email":"big@example.com","displayName":"\#(name)"}"#)
        for i in 0..<70 { _ = try await host.insert("Todo", #"{"title":"t\#(i)","done":false,"ownerId":"\#(big)"}"#) }
        let all = try await host.request("POST", "/api/query", json: #"{"Todo": {"include": {"owner": {}}}}"#)
        #expect(all.status == 400 && all.json.errorCode == "RESULT_TOO_LARGE", "\(all.body.prefix(300))")
        let some = try await host.request("POST", "/api/query", json: #"{"Todo": {"include": {"owner": {}}, "limit": 10}}"#)
        #expect(some.status == 200 && some.json["Todo"].items.count == 10, "\(some.body.prefix(300))")
        #expect(some.json["Todo"].items.allSatisfy { $0["owner"]["displayName"].string?.count == 1 << 20 })
    }

    @Test("Batch: independent ops, a failing op does not stop the others; admin only", arguments: TestStore.all)
    func batch(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let existing = try await host.insert("Todo", #"{"title":"old","done":false}"#)
        let start = try await host.drain(since: 0)

        let body = """
            {"operations": [
              {"op": "insert", "entity": "Todo", "data": {"title": "a", "done": true}},
              {"op": "insert", "entity": "Todo", "data": {"done": true}},
              {"op": "delete", "entity": "Todo", "id": "nope"},
              {"op": "update", "entity": "Todo", "id": "\(existing)", "data": {"done": true}},
              {"op": "insert", "entity": "Nope", "data": {}},
              {"op": "insert", "entity": "Todo", "data": {"title": "b", "done": false}}
            ]}
            """
        let denied = try await host.request("POST", "/api/batch", json: body)
        #expect(denied.status == 403, "\(denied.body)")
        #expect(denied.json.errorCode == "FORBIDDEN")
        let session = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"u1"}"#)
        let userToken = try #require(session.json["token"].string, "\(session.body)")
        let deniedUser = try await host.request("POST", "/api/batch", json: body, token: userToken)
        #expect(deniedUser.status == 403, "a signed-in non-admin is refused too: \(deniedUser.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1, "a refused batch writes nothing")

        let r = try await host.request("POST", "/api/batch", json: body, token: Self.admin)
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["succeeded"].int == 3, "\(r.body)")
        #expect(r.json["failed"].int == 3, "\(r.body)")
        let results = r.json["results"].items
        #expect(results.count == 6)
        #expect(results.map { $0["ok"].bool } == [true, false, false, true, false, true], "\(r.body)")
        #expect(results.map { $0["op"].string } == ["insert", "insert", "delete", "update", "insert", "insert"])
        for failed in [1, 2, 4] where failed < results.count {
            #expect(results[failed]["error"].string?.isEmpty == false, "a failed op says why: \(r.body)")
        }
        let aID = try #require((results.first ?? nil)["id"].string)
        let bID = try #require((results.last ?? nil)["id"].string)
        #expect(try await host.request("GET", "/api/entities/Todo/\(aID)").json["title"].string == "a")
        #expect(try await host.request("GET", "/api/entities/Todo/\(bID)").json["title"].string == "b")
        #expect(try await host.request("GET", "/api/entities/Todo/\(existing)").json["done"].bool == true)
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 3)

        // The successful ops are in the change log; the failed ones are not.
        let log = try await host.drain(since: start.lastSeq)
        #expect(log.events.map { $0["kind"].string } == ["insert", "update", "insert"], "\(log.events)")
        #expect(log.events.map { $0["row_id"].string } == [aID, existing, bID])

        let missing = try await host.request("POST", "/api/batch", json: #"{"ops":[]}"#, token: Self.admin)
        #expect(missing.status == 400, "\(missing.body)")
        #expect(missing.json.errorCode == "MISSING_OPERATIONS")
    }

    @Test("Transact: all or nothing; a failure rolls back and leaves no change-log entries", arguments: TestStore.all)
    func transact(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let existing = try await host.insert("Todo", #"{"title":"old","done":false}"#)
        let start = try await host.drain(since: 0)

        let failing = """
            [{"op": "insert", "entity": "Todo", "data": {"title": "t1", "done": true}},
             {"op": "update", "entity": "Todo", "id": "\(existing)", "data": {"title": "changed"}},
             {"op": "insert", "entity": "Todo", "data": {"done": true}},
             {"op": "insert", "entity": "Todo", "data": {"title": "t3", "done": true}}]
            """
        let denied = try await host.request("POST", "/api/transact", json: failing)
        #expect(denied.status == 403, "\(denied.body)")
        #expect(denied.json.errorCode == "FORBIDDEN")

        let r = try await host.request("POST", "/api/transact", json: failing, token: Self.admin)
        #expect(r.status == 400, "\(r.body)")
        #expect(r.json["committed"].bool == false, "\(r.body)")
        let results = r.json["results"].items
        #expect(results.contains { $0["error"].string != nil }, "the failing op carries its error: \(r.body)")
        // Nothing of it is visible: no new rows, the update rolled back, no log entries.
        let list = try await host.request("GET", "/api/entities/Todo")
        #expect(list.json["count"].int == 1, "\(list.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/\(existing)").json["title"].string == "old")
        if let firstID = (results.first ?? nil)["id"].string {
            #expect(try await host.request("GET", "/api/entities/Todo/\(firstID)").status == 404)
        }
        let q = try await host.request("POST", "/api/query/Todo", json: #"{"title":{"$in":["t1","t3","changed"]}}"#)
        #expect(q.json.items.isEmpty, "\(q.body)")
        let log = try await host.drain(since: start.lastSeq)
        #expect(log.events.isEmpty, "a rolled-back transact leaves nothing in the change log: \(log.events)")
        #expect(log.lastSeq == start.lastSeq)

        // The same ops without the bad one commit together.
        let ok = try await host.request("POST", "/api/transact", token: Self.admin, json: """
            [{"op": "insert", "entity": "Todo", "data": {"title": "t1", "done": true}},
             {"op": "update", "entity": "Todo", "id": "\(existing)", "data": {"title": "changed"}}]
            """)
        #expect(ok.status == 200, "\(ok.body)")
        #expect(ok.json["committed"].bool == true, "\(ok.body)")
        let newID = try #require((ok.json["results"].items.first ?? nil)["id"].string, "\(ok.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/\(newID)").json["title"].string == "t1")
        #expect(try await host.request("GET", "/api/entities/Todo/\(existing)").json["title"].string == "changed")
        let committedLog = try await host.drain(since: start.lastSeq)
        #expect(committedLog.events.map { $0["kind"].string } == ["insert", "update"], "\(committedLog.events)")
    }

    // MARK: - Pull

    @Test("Pull honours since and limit; has_more; cursor echo on an empty page; event shapes", arguments: TestStore.all)
    func pull(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }

        let empty = try await host.request("GET", "/api/sync/pull?since=0")
        #expect(empty.status == 200, "\(empty.body)")
        #expect(empty.json["changes"].items.isEmpty)
        #expect(empty.json["cursor"]["last_seq"].int == 0)
        #expect(empty.json["has_more"].bool == false)
        let epoch = try #require(empty.json["cursor"]["epoch"].string, "\(empty.body)")
        #expect(!epoch.isEmpty)

        var ids: [String] = []
        for i in 1...5 {
            ids.append(try await host.insert("Todo", #"{"title":"t\#(i)","done":false,"priority":\#(i)}"#))
        }
        let p1 = try await host.request("GET", "/api/sync/pull?since=0&limit=2")
        #expect(p1.status == 200, "\(p1.body)")
        #expect(p1.json["changes"].items.compactMap { $0["seq"].int } == [1, 2], "\(p1.body)")
        #expect(p1.json["cursor"]["last_seq"].int == 2)
        #expect(p1.json["cursor"]["epoch"].string == epoch)
        #expect(p1.json["has_more"].bool == true)
        let p2 = try await host.request("GET", "/api/sync/pull?since=2&limit=2")
        #expect(p2.json["changes"].items.compactMap { $0["seq"].int } == [3, 4], "\(p2.body)")
        #expect(p2.json["has_more"].bool == true)
        let p3 = try await host.request("GET", "/api/sync/pull?since=4&limit=2")
        #expect(p3.json["changes"].items.compactMap { $0["seq"].int } == [5], "\(p3.body)")
        #expect(p3.json["cursor"]["last_seq"].int == 5)
        #expect(p3.json["has_more"].bool == false)

        // Caught up: an empty page echoes the cursor.
        let caughtUp = try await host.request("GET", "/api/sync/pull?since=5")
        #expect(caughtUp.status == 200, "\(caughtUp.body)")
        #expect(caughtUp.json["changes"].items.isEmpty)
        #expect(caughtUp.json["cursor"]["last_seq"].int == 5, "\(caughtUp.body)")
        #expect(caughtUp.json["has_more"].bool == false)

        // Insert events: full stored row, id included, typed values, nulls included.
        let insert = p1.json["changes"].items.first ?? nil
        #expect(insert["kind"].string == "insert")
        #expect(insert["entity"].string == "Todo")
        #expect(insert["row_id"].string == ids[0])
        #expect(insert["data"]["id"].string == ids[0], "insert events carry the id: \(p1.body)")
        #expect(insert["data"]["title"].string == "t1")
        #expect(insert["data"]["done"].bool == false)
        #expect(insert["data"]["priority"].int == 1)
        #expect(insert["data"]["dueAt"].isNull, "the full row, nulls included: \(p1.body)")
        #expect(insert["timestamp"].string?.hasSuffix("Z") == true)

        // Update events: the full row after the patch, not only the patch.
        _ = try await host.request("PATCH", "/api/entities/Todo/\(ids[1])", json: #"{"done":true}"#)
        _ = try await host.request("DELETE", "/api/entities/Todo/\(ids[2])")
        let tail = try await host.request("GET", "/api/sync/pull?since=5")
        let events = tail.json["changes"].items
        #expect(events.map { $0["kind"].string } == ["update", "delete"], "\(tail.body)")
        let update = events.first ?? nil
        #expect(update["seq"].int == 6)
        #expect(update["row_id"].string == ids[1])
        #expect(update["data"]["id"].string == ids[1], "\(tail.body)")
        #expect(update["data"]["done"].bool == true)
        #expect(update["data"]["title"].string == "t2", "update events carry the full row: \(tail.body)")
        #expect(update["data"]["priority"].int == 2)
        let delete = events.last ?? nil
        #expect(delete["seq"].int == 7)
        #expect(delete["row_id"].string == ids[2])
        #expect(delete.object?.keys.contains("data") == false, "delete events have no data: \(tail.body)")

        // Default page size is 100; a malformed since counts as 0.
        let all = try await host.request("GET", "/api/sync/pull")
        #expect(all.json["changes"].items.count == 7, "\(all.body)")
    }

    @Test("Pull caps limit at 1000", arguments: TestStore.all)
    func pullLimitCap(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let ops = (0..<1005).map { #"{"op":"insert","entity":"Todo","data":{"title":"r\#($0)","done":false}}"# }
        let r = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(ops.joined(separator: ","))]}"#, token: Self.admin)
        #expect(r.status == 200)
        #expect(r.json["succeeded"].int == 1005, "\(r.body.prefix(300))")

        let big = try await host.request("GET", "/api/sync/pull?since=0&limit=5000")
        #expect(big.status == 200)
        #expect(big.json["changes"].items.count == 1000, "limit above 1000 is capped at 1000")
        #expect(big.json["cursor"]["last_seq"].int == 1000)
        #expect(big.json["has_more"].bool == true)
        let rest = try await host.request("GET", "/api/sync/pull?since=1000&limit=5000")
        #expect(rest.json["changes"].items.compactMap { $0["seq"].int } == Array(1001...1005))
        #expect(rest.json["has_more"].bool == false)

        let cursorPage = try await host.request("GET", "/api/entities/Todo/cursor?limit=500")
        #expect(cursorPage.json["data"].items.count == 100, "cursor pages are capped at 100 rows")
        #expect(cursorPage.json["has_more"].bool == true)

        let defaultPage = try await host.request("GET", "/api/sync/pull?since=0")
        #expect(defaultPage.json["changes"].items.count == 100, "the default page is 100 events")
        #expect(defaultPage.json["has_more"].bool == true)
    }

    @Test("410 RESYNC_REQUIRED for a future cursor and for another database's epoch", arguments: TestStore.all)
    func resyncFutureAndEpoch(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        for i in 1...3 { _ = try await host.insert("Todo", #"{"title":"t\#(i)","done":false}"#) }
        let head = try await host.request("GET", "/api/sync/pull?since=0")
        let epoch = try #require(head.json["cursor"]["epoch"].string)

        let future = try await host.request("GET", "/api/sync/pull?since=50")
        #expect(future.status == 410, "\(future.body)")
        #expect(future.json.errorCode == "RESYNC_REQUIRED")
        #expect(future.json["error"]["oldest_seq"].int == 4, "future cursor: oldest_seq = newest + 1: \(future.body)")

        let justAhead = try await host.request("GET", "/api/sync/pull?since=4")
        #expect(justAhead.status == 410, "\(justAhead.body)")

        let otherDB = try await host.request("GET", "/api/sync/pull?since=1&epoch=not-this-database")
        #expect(otherDB.status == 410, "\(otherDB.body)")
        #expect(otherDB.json.errorCode == "RESYNC_REQUIRED")
        #expect(otherDB.json["error"]["oldest_seq"].int != nil, "\(otherDB.body)")

        // The checks also apply to a zero-size page (a client probing for has_more).
        let futureProbe = try await host.request("GET", "/api/sync/pull?since=50&limit=0")
        #expect(futureProbe.status == 410, "a future cursor is refused even with limit=0: \(futureProbe.body)")
        #expect(futureProbe.json.errorCode == "RESYNC_REQUIRED")
        let otherDBProbe = try await host.request("GET", "/api/sync/pull?since=1&limit=0&epoch=not-this-database")
        #expect(otherDBProbe.status == 410, "another epoch is refused even with limit=0: \(otherDBProbe.body)")
        #expect(otherDBProbe.json.errorCode == "RESYNC_REQUIRED")
        // limit=0 reads one change (see pullLimitZero).
        let probe = try await host.request("GET", "/api/sync/pull?since=1&limit=0&epoch=\(epoch)")
        #expect(probe.status == 200, "\(probe.body)")
        #expect(probe.json["changes"].items.compactMap { $0["seq"].int } == [2], "\(probe.body)")
        #expect(probe.json["cursor"]["last_seq"].int == 2)
        #expect(probe.json["has_more"].bool == true)

        let sameDB = try await host.request("GET", "/api/sync/pull?since=1&epoch=\(epoch)")
        #expect(sameDB.status == 200, "\(sameDB.body)")
        #expect(sameDB.json["changes"].items.compactMap { $0["seq"].int } == [2, 3])
    }

    @Test("410 for a cursor older than retention (PYLON_CHANGELOG_RETENTION=5, trimmed at restart)", arguments: TestStore.all)
    func resyncRetention(store: TestStore) async throws {
        let host = try await Self.start(store, env: ["PYLON_CHANGELOG_RETENTION": "5"])
        defer { host.stop() }
        let ops = (1...20).map { #"{"op":"insert","entity":"Todo","data":{"title":"r\#($0)","done":false}}"# }
        let r = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(ops.joined(separator: ","))]}"#, token: Self.admin)
        #expect(r.json["succeeded"].int == 20, "\(r.body.prefix(300))")
        let epochBefore = try await host.request("GET", "/api/sync/pull?since=20").json["cursor"]["epoch"].string

        try await host.restart()

        let old = try await host.request("GET", "/api/sync/pull?since=3")
        #expect(old.status == 410, "\(old.body)\n\(host.log)")
        #expect(old.json.errorCode == "RESYNC_REQUIRED")
        #expect(old.json["error"]["oldest_seq"].int == 16, "\(old.body)")

        let edge = try await host.request("GET", "/api/sync/pull?since=14")
        #expect(edge.status == 410, "seq 15 was trimmed, so a cursor at 14 cannot continue: \(edge.body)")

        let resume = try await host.request("GET", "/api/sync/pull?since=15")
        #expect(resume.status == 200, "a cursor right before the oldest retained seq continues: \(resume.body)")
        #expect(resume.json["changes"].items.compactMap { $0["seq"].int } == Array(16...20))

        let fresh = try await host.request("GET", "/api/sync/pull?since=0")
        #expect(fresh.status == 200, "since=0 never resyncs: \(fresh.body)")
        #expect(fresh.json["changes"].items.compactMap { $0["seq"].int } == Array(16...20))
        #expect(fresh.json["cursor"]["epoch"].string == epochBefore, "the epoch survives a restart")

        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 20, "trimming the log keeps the rows")
    }

    @Test("Concurrent writes get gapless, unique seqs and each appears once in the log", arguments: TestStore.all)
    func concurrentWrites(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<40 {
                group.addTask { try await host.insert("Todo", #"{"title":"c\#(i)","done":false}"#) }
            }
            var out: [String] = []
            for try await id in group { out.append(id) }
            return out
        }
        #expect(Set(ids).count == 40, "ids are unique")
        let log = try await host.drain(since: 0)
        #expect(log.events.compactMap { $0["seq"].int } == Array(1...40), "seq is gapless and ordered")
        #expect(Set(log.events.compactMap { $0["row_id"].string }) == Set(ids))
        #expect(log.lastSeq == 40)
    }

    /// The writer folds concurrent requests into one transaction and runs them without
    /// savepoints first; a failing one must make it roll back and replay them one savepoint
    /// each, so that only the failing requests fail. Inserts, updates and deletes race here,
    /// a fifth of them bound to fail (duplicate email, patch onto a taken email, delete of a
    /// missing row), over several rounds so that failures land inside many batches.
    /// A subscriber must get the same events live, numbered as in the log (on Postgres a
    /// batch's statements number its entries and the writer learns the numbers at COMMIT).
    @Test("Concurrent writes with failures among them: only the failing ones fail, every success is logged once and delivered live with its logged seq", arguments: TestStore.all)
    func concurrentWritesWithFailures(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let live = try await TestEventStream.connect(port: host.port, path: "/api/sync/events", token: HostProcess.adminToken)
        defer { live.close() }
        #expect(live.status == 200, "SSE: \(live.summary)")
        var expectedRows = 0
        var successes = 0
        for round in 0..<3 {
            let seeded = try await host.insert("User", #"{"email":"seed\#(round)@example.com","displayName":"S"}"#)
            successes += 1
            expectedRows += 1
            // (kind, status) per request: 0 insert ok, 1 duplicate insert, 2 patch ok,
            // 3 patch onto a taken email, 4 delete of a missing row.
            let results = try await withThrowingTaskGroup(of: (Int, Int, String?).self) { group in
                for i in 0..<60 {
                    let kind = i % 10 == 9 ? 1 : i % 10 == 8 ? 3 : i % 10 == 7 ? 4 : i % 10 == 6 ? 2 : 0
                    group.addTask {
                        switch kind {
                        case 0:
                            let r = try await host.request("POST", "/api/entities/User", json: #"{"email":"r\#(round)-\#(i)@example.com","displayName":"U"}"#)
                            return (kind, r.status, r.json.errorCode)
                        case 1:
                            let r = try await host.request("POST", "/api/entities/User", json: #"{"email":"seed\#(round)@example.com","displayName":"Dup"}"#)
                            return (kind, r.status, r.json.errorCode)
                        case 2:
                            let r = try await host.request("PATCH", "/api/entities/User/\(seeded)", json: #"{"displayName":"P\#(i)"}"#)
                            return (kind, r.status, r.json.errorCode)
                        case 3:
                            let r = try await host.request("PATCH", "/api/entities/User/\(seeded)", json: #"{"email":"seed0@example.com"}"#,
                                                           token: HostProcess.adminToken)
                            return (kind, r.status, r.json.errorCode)
                        default:
                            let r = try await host.request("DELETE", "/api/entities/User/missing-\(i)")
                            return (kind, r.status, r.json.errorCode)
                        }
                    }
                }
                var out: [(Int, Int, String?)] = []
                for try await r in group { out.append(r) }
                return out
            }
            for (kind, status, code) in results {
                switch kind {
                case 0, 2: #expect((200..<300).contains(status), "kind \(kind) must succeed: \(status) \(code ?? "")")
                case 1, 3:
                    // Round 0's patch of seed0 onto its own email is no conflict.
                    if kind == 3 && round == 0 { #expect((200..<300).contains(status)); break }
                    #expect(status == 409 && code == "UNIQUE_VIOLATION", "kind \(kind): \(status) \(code ?? "")")
                default: #expect(status == 404, "delete of a missing row: \(status) \(code ?? "")")
                }
                if (200..<300).contains(status) { successes += 1 }
                if kind == 0 && (200..<300).contains(status) { expectedRows += 1 }
            }
        }
        let log = try await host.drain(since: 0)
        #expect(log.events.compactMap { $0["seq"].int } == Array(1...successes), "one entry per successful write, gapless")
        let delivered = try await live.waitForChangeEvents(successes)
        let key = { (e: Any?) in "\(e["seq"].int ?? -1) \(e["kind"].string ?? "?") \(e["row_id"].string ?? "?")" }
        #expect(delivered.map { key($0.json) } == log.events.map(key), "live events = the log, seq for seq")
        #expect(try await host.request("GET", "/api/entities/User?limit=1000").json["count"].int == expectedRows)
        let emails = try await host.request("GET", "/api/entities/User?limit=1000").json["data"].items.compactMap { $0["email"].string }
        #expect(Set(emails).count == emails.count, "no email twice")
        let counters = try await host.request("GET", "/metrics").json["counters"]
        if store.name == "postgres" {
            // Its round trips guarantee batches of several requests: the replay path ran.
            #expect((counters["write_batches_replayed_total"].int ?? 0) > 0, "no batch was replayed: \(counters)")
        }
        print("[\(store)] write batches \(counters["write_batches_total"].int ?? -1), jobs \(counters["write_jobs_total"].int ?? -1), replayed \(counters["write_batches_replayed_total"].int ?? 0)")
    }

    // MARK: - Push

    @Test("Push: policy-checked (open in dev with no policy); pending ids map to server ids; dedupe by op_id; failed ops can be retried", arguments: TestStore.all)
    func push(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }

        let first = """
            {"client_id": "c1", "changes": [
              {"entity": "Todo", "row_id": "_pending_x", "kind": "insert", "data": {"title": "p", "done": false}, "op_id": "op-1"},
              {"entity": "Todo", "row_id": "_pending_x", "kind": "update", "data": {"done": true}, "op_id": "op-2"}
            ]}
            """
        // No admin token: push is checked against the entity's policies like every other
        // write, and in --dev an entity without a policy is open.
        let r = try await host.request("POST", "/api/sync/push", json: first)
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["applied"].int == 2, "\(r.body)")
        #expect(r.json["deduped"].int == 0)
        #expect(r.json["errors"].items.isEmpty, "\(r.body)")
        let serverID = try #require(r.json["id_map"]["_pending_x"].string, "\(r.body)")
        #expect(Self.isHex(serverID, count: 40))

        let row = try await host.request("GET", "/api/entities/Todo/\(serverID)")
        #expect(row.status == 200, "\(row.body)")
        #expect(row.json["title"].string == "p")
        #expect(row.json["done"].bool == true, "the later update of _pending_x applied to the server row: \(row.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/_pending_x").status == 404)

        let log = try await host.drain(since: 0)
        #expect(log.events.map { $0["kind"].string } == ["insert", "update"], "\(log.events)")
        #expect(log.events.map { $0["row_id"].string } == [serverID, serverID])

        // The same op ids again from the same (anonymous) caller: deduped, nothing applied
        // twice. (Op ids are per caller: PushScopeTests.)
        let again = try await host.request("POST", "/api/sync/push", json: first)
        #expect(again.status == 200, "\(again.body)")
        #expect(again.json["applied"].int == 0, "\(again.body)")
        #expect(again.json["deduped"].int == 2, "\(again.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1, "no duplicate row")
        #expect(try await host.drain(since: log.lastSeq).events.isEmpty)

        let single = #"{"changes":[{"entity":"Todo","row_id":"_pending_x","kind":"insert","data":{"title":"p","done":false},"op_id":"op-1"}]}"#
        let once = try await host.request("POST", "/api/sync/push", json: single)
        #expect(once.json["deduped"].int == 1, "\(once.body)")
        #expect(once.json["applied"].int == 0)
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)

        // A failed op is not remembered: the corrected retry with the same op_id applies.
        let bad = #"{"changes":[{"entity":"Todo","row_id":"_pending_y","kind":"insert","data":{"done":false},"op_id":"op-3"}]}"#
        let failed = try await host.request("POST", "/api/sync/push", json: bad, token: Self.admin)
        #expect(failed.status == 200, "\(failed.body)")
        #expect(failed.json["applied"].int == 0, "\(failed.body)")
        #expect(failed.json["errors"].items.count == 1, "\(failed.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)

        let fixed = #"{"changes":[{"entity":"Todo","row_id":"_pending_y","kind":"insert","data":{"title":"fixed","done":false},"op_id":"op-3"}]}"#
        let retried = try await host.request("POST", "/api/sync/push", json: fixed, token: Self.admin)
        #expect(retried.status == 200, "\(retried.body)")
        #expect(retried.json["applied"].int == 1, "a failed op_id must not be remembered: \(retried.body)")
        #expect(retried.json["deduped"].int == 0, "\(retried.body)")
        let yID = try #require(retried.json["id_map"]["_pending_y"].string, "\(retried.body)")
        #expect(try await host.request("GET", "/api/entities/Todo/\(yID)").json["title"].string == "fixed")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 2)
    }

    @Test("Push: an op_id repeated inside one push is applied once", arguments: TestStore.all)
    func pushRepeatedOpInOneRequest(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let body = """
            {"changes": [
              {"entity": "Todo", "row_id": "_pending_dup", "kind": "insert", "data": {"title": "once", "done": false}, "op_id": "op-dup"},
              {"entity": "Todo", "row_id": "_pending_dup", "kind": "insert", "data": {"title": "once", "done": false}, "op_id": "op-dup"}
            ]}
            """
        let r = try await host.request("POST", "/api/sync/push", json: body, token: Self.admin)
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["applied"].int == 1, "\(r.body)")
        #expect(r.json["deduped"].int == 1, "\(r.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)
        #expect(try await host.drain(since: 0).events.count == 1)
    }

    @Test("Push dedupe survives a host restart", arguments: TestStore.all)
    func pushDedupeAcrossRestart(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let body = #"{"changes":[{"entity":"Todo","row_id":"_pending_r","kind":"insert","data":{"title":"once","done":false},"op_id":"op-restart"}]}"#
        let first = try await host.request("POST", "/api/sync/push", json: body, token: Self.admin)
        #expect(first.json["applied"].int == 1, "\(first.body)")
        try await host.restart()
        let second = try await host.request("POST", "/api/sync/push", json: body, token: Self.admin)
        #expect(second.json["applied"].int == 0, "\(second.body)")
        #expect(second.json["deduped"].int == 1, "\(second.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)
    }

    // MARK: - System routes and limits

    @Test("/health answers with security headers", arguments: TestStore.all)
    func healthHeaders(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let r = try await host.rawRequest("GET", "/health")
        #expect(r.status == 200, "\(r.body)")
        #expect(r.json["status"].string == "ok")
        #expect(r.json["version"].string != nil)
        #expect(r.json["uptime_secs"].int != nil, "\(r.body)")
        #expect(r.headers["content-type"]?.hasPrefix("application/json") == true, "\(r.headers)")
        #expect(r.headers["x-content-type-options"] == "nosniff", "\(r.headers)")
        #expect(r.headers["x-frame-options"] == "DENY", "\(r.headers)")
        #expect(r.headers["referrer-policy"] != nil, "\(r.headers)")
        #expect(r.headers["access-control-allow-origin"] == "*", "dev mode allows any origin: \(r.headers)")

        let options = try await host.rawRequest("OPTIONS", "/api/entities/Todo")
        #expect(options.status == 204, "preflight: \(options.body)")
    }

    @Test("A capability without a plugin answers 501 CAPABILITY_UNAVAILABLE", arguments: TestStore.all)
    func capabilityStub(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        for (method, json) in [("POST", "{}"), ("GET", nil)] as [(String, String?)] {
            // (Functions are served whenever libPylonFnBun.so is in the plugins folder.)
            let r = try await host.request(method, "/api/shards/anything", json: json)
            #expect(r.status == 501, "\(method) → \(r.body)")
            #expect(r.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(r.body)")
            #expect(r.json["error"]["message"].string?.contains("pylon.shard.sim") == true, "names the capability: \(r.body)")
        }
        let unknown = try await host.request("GET", "/api/definitely-not-a-route")
        #expect(unknown.status == 404, "\(unknown.body)")
        #expect(unknown.json.errorCode == "NOT_FOUND")
    }

    @Test("A body over PYLON_MAX_BODY_BYTES → 413 PAYLOAD_TOO_LARGE", arguments: TestStore.all)
    func payloadTooLarge(store: TestStore) async throws {
        let host = try await Self.start(store, env: ["PYLON_MAX_BODY_BYTES": "1000"])
        defer { host.stop() }
        let small = try await host.request("POST", "/api/entities/Todo", json: #"{"title":"small","done":false}"#)
        #expect(small.status == 201, "\(small.body)")

        let big = #"{"title":""# + String(repeating: "x", count: 5000) + #"","done":false}"#
        let r = try await host.request("POST", "/api/entities/Todo", json: big)
        #expect(r.status == 413, "\(r.body)")
        #expect(r.json.errorCode == "PAYLOAD_TOO_LARGE", "\(r.body)")
        #expect(try await host.request("GET", "/api/entities/Todo").json["count"].int == 1)
    }

    // MARK: - Sessions

    @Test("Sessions (dev): mint, /me, logout revokes", arguments: TestStore.all)
    func sessionsDev(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let anon = try await host.request("GET", "/api/auth/me")
        #expect(anon.json["user_id"].isNull, "\(anon.body)")
        #expect(anon.json["is_admin"].bool == false)
        let admin = try await host.request("GET", "/api/auth/me", token: Self.admin)
        #expect(admin.json["is_admin"].bool == true, "\(admin.body)")

        let s = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"user-1"}"#)
        #expect(s.status == 201, "\(s.body)")
        #expect(s.json["user_id"].string == "user-1")
        let token = try #require(s.json["token"].string, "\(s.body)")
        #expect(token.hasPrefix("pylon_") && Self.isHex(String(token.dropFirst(6)), count: 64), "token \(token)")

        let me = try await host.request("GET", "/api/auth/me", token: token)
        #expect(me.status == 200, "\(me.body)")
        #expect(me.json["user_id"].string == "user-1", "\(me.body)")
        #expect(me.json["is_admin"].bool == false)
        let cookie = try await host.request("GET", "/api/auth/me", headers: ["Cookie": "dataplane-test_session=\(token)"])
        #expect(cookie.json["user_id"].string == "user-1", "the session cookie works too: \(cookie.body)")

        let out = try await host.request("POST", "/api/auth/logout", token: token)
        #expect(out.status == 200, "\(out.body)")
        let after = try await host.request("GET", "/api/auth/me", token: token)
        #expect(after.status == 200, "an unknown token is anonymous, not 401: \(after.body)")
        #expect(after.json["user_id"].isNull, "logout revokes the session: \(after.body)")

        let missing = try await host.request("POST", "/api/auth/session", json: "{}")
        #expect(missing.status == 400, "\(missing.body)")
    }

    @Test("Sessions (not dev): minting needs the admin token", arguments: TestStore.all)
    func sessionsNonDev(store: TestStore) async throws {
        let host = try await Self.start(store, dev: false)
        defer { host.stop() }
        let denied = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"user-1"}"#)
        #expect(denied.status == 403, "\(denied.body)")
        #expect(denied.json.errorCode == "FORBIDDEN")

        let userSession = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"user-1"}"#, token: Self.admin)
        #expect(userSession.status == 201, "\(userSession.body)")
        let token = try #require(userSession.json["token"].string)
        let escalate = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"user-2"}"#, token: token)
        #expect(escalate.status == 403, "a user session cannot mint sessions: \(escalate.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: token).json["user_id"].string == "user-1")
    }

    @Test("A session survives a restart and is stored hashed", arguments: TestStore.all)
    func sessionSurvivesRestart(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let s = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"persisted-user"}"#)
        let token = try #require(s.json["token"].string, "\(s.body)")

        await host.stopAndWait()
        let sqlite = "/usr/bin/sqlite3"
        // Every store here keeps its data in a SQLite file (D1's fixture server too).
        if FileManager.default.isExecutableFile(atPath: sqlite), let file = host.storeFile {
            let dump = try await TestCommand.run(sqlite, [file, "SELECT * FROM _pylon_sessions;"]).stdout
            #expect(dump.contains("persisted-user"), "the session row exists: \(dump)")
            #expect(!dump.contains(token), "the plaintext token is not stored")
            #expect(!dump.contains(String(token.dropFirst(6))), "nor its hex part")
        }

        try await host.restart()
        let me = try await host.request("GET", "/api/auth/me", token: token)
        #expect(me.json["user_id"].string == "persisted-user", "\(me.body)")
    }

    @Test("Committed writes survive kill -9", arguments: TestStore.all)
    func survivesKill9(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let id = try await host.insert("Todo", #"{"title":"durable","done":true}"#)
        host.kill9()
        try await host.restart()
        let row = try await host.request("GET", "/api/entities/Todo/\(id)")
        #expect(row.status == 200, "\(row.body)\n\(host.log)")
        #expect(row.json["title"].string == "durable")
        let log = try await host.drain(since: 0)
        #expect(log.events.map { $0["row_id"].string } == [id])
    }
}

// MARK: - Request helpers

extension HostProcess {
    /// `POST /api/entities/E` that must succeed; returns the new id.
    func insert(_ entity: String, _ json: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let r = try await request("POST", "/api/entities/\(entity)", json: json)
        #expect(r.status == 201, "insert \(entity) \(json) → \(r.body)", sourceLocation: sourceLocation)
        return try #require(r.json["id"].string, "insert \(entity) \(json) → \(r.body)", sourceLocation: sourceLocation)
    }

    /// Pulls every change after `since` (pages of 1000) and returns them with the final cursor.
    func drain(since: Int) async throws -> (events: [Any?], lastSeq: Int) {
        var cursor = since
        var events: [Any?] = []
        for _ in 0..<1000 {
            let r = try await request("GET", "/api/sync/pull?since=\(cursor)&limit=1000")
            guard r.status == 200, let last = r.json["cursor"]["last_seq"].int else {
                throw HostProcessError(description: "pull since=\(cursor) → \(r.status) \(r.body)")
            }
            events += r.json["changes"].items
            cursor = last
            if r.json["has_more"].bool != true { break }
        }
        return (events, cursor)
    }

    /// `request` with the token before the body, for readability at call sites.
    func request(_ method: String, _ path: String, token: String?, json: String) async throws
        -> (status: Int, body: String, json: Any?)
    {
        try await request(method, path, json: json, token: token)
    }
}
