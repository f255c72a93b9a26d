import Foundation
import Testing

/// The rest of Pylon's data surface (issue 22 item 3): export and import, one user's data
/// out and gone (GDPR), the dev-only test reset, manifest actions and the CRDT stub.
@Suite("Export, import, GDPR, test reset, actions (black-box, real pylon-host, SQLite and Postgres)")
struct AdminDataTests {
    static let manifest = """
    {"manifest_version": 1, "name": "admin-data", "version": "0.1.0",
     "entities": [
       {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "name", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Post", "fields": [
          {"name": "authorId", "type": "id(User)", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false},
          {"name": "body", "type": "richtext", "optional": true, "unique": false, "crdt": "text"},
          {"name": "score", "type": "float", "optional": true, "unique": false}], "indexes": []},
       {"name": "Note", "fields": [
          {"name": "ownerId", "type": "string", "optional": false, "unique": false},
          {"name": "done", "type": "bool", "optional": false, "unique": false}], "indexes": []}],
     "actions": [{"name": "publish", "input": [{"name": "postId", "type": "string", "optional": false, "unique": false}]}],
     "routes": [],
     "policies": [
       {"name": "users", "entity": "User", "allow": "true"},
       {"name": "posts", "entity": "Post", "allow": "true"},
       {"name": "notes", "entity": "Note", "allow": "auth.userId == data.ownerId"},
       {"name": "publishing", "action": "publish", "allow": "auth.userId != null"}]}
    """

    static let admin = HostProcess.adminToken
    static let stores = [TestStore.sqlite, TestStore.postgres]

    static func start(_ store: TestStore, dev: Bool = false) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, dev: dev, store: store)
    }

    /// Two users with posts and notes; returns the users' ids.
    static func seed(_ host: HostProcess) async throws -> (ann: String, bob: String) {
        let ann = try await host.create("User", #"{"email":"ann@example.com","name":"Ann"}"#)
        let bob = try await host.create("User", #"{"email":"bob@example.com"}"#)
        for (n, author) in [ann, ann, bob].enumerated() {
            _ = try await host.create("Post", #"{"authorId":"\#(author)","title":"post \#(n)","body":"line\n\t ünïcode","score":\#(n).5}"#)
        }
        for owner in [ann, bob, bob] { _ = try await host.create("Note", #"{"ownerId":"\#(owner)","done":false}"#) }
        return (ann, bob)
    }

    @Test("Export then import into an empty database: every row, its id and its references come back, each import is change-logged; bad rows fail alone; admin only", arguments: stores)
    func exportImportRoundTrip(store: TestStore) async throws {
        let source = try await Self.start(store)
        defer { source.stop() }
        _ = try await Self.seed(source)
        // More rows than one export page, so the stream crosses pages.
        try await source.createItemsOf("Note", count: 1203, json: { #"{"ownerId":"bulk-\#($0)","done":true}"# })

        #expect(try await source.request("GET", "/api/export").status == 403)
        let exported = try await source.request("GET", "/api/export", token: Self.admin)
        #expect(exported.status == 200, "\(exported.body.prefix(300))")
        #expect(exported.json["counts"]["User"].int == 2 && exported.json["counts"]["Post"].int == 3 && exported.json["counts"]["Note"].int == 1206,
                "\(exported.body.prefix(300))")
        #expect(exported.json["exported_at"].string?.hasSuffix("Z") == true)
        let one = try await source.request("GET", "/api/export/Post", token: Self.admin)
        #expect(one.json["counts"].object?.count == 1 && one.json["entities"]["Post"].items.count == 3, "\(one.body)")
        #expect(try await source.request("GET", "/api/export/Nope", token: Self.admin).json.errorCode == "ENTITY_NOT_FOUND")

        let target = try await Self.start(store)
        defer { target.stop() }
        let entities = try #require(exported.json["entities"].object)
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["entities": entities]), as: UTF8.self)
        #expect(try await target.request("POST", "/api/import", json: body).status == 403)
        let imported = try await target.request("POST", "/api/import", json: body, token: Self.admin)
        #expect(imported.status == 200 && imported.json["imported"].int == 1211 && imported.json["failed"].int == 0, "\(imported.body.prefix(500))")
        let again = try await target.request("GET", "/api/export", token: Self.admin)
        for entity in ["User", "Post", "Note"] {
            let a = exported.json["entities"][entity].items.compactMap { $0["id"].string }
            let b = again.json["entities"][entity].items.compactMap { $0["id"].string }
            #expect(a == b, "\(entity): the same ids in the same order")
        }
        let post = try #require(again.json["entities"]["Post"].items.first)
        #expect(post["body"].string == "line\n\t ünïcode" && post["score"].double == 0.5, "\(post)")
        #expect(try await target.pullAll(token: Self.admin).count == 1211, "every imported row is in the change log")

        // Bad rows fail alone: a taken id, a wrong type, an unknown field; the good row lands.
        let takenID = try #require(post["id"].string)
        let mixed = #"{"entities":{"Post":[{"id":"\#(takenID)","authorId":"x","title":"dup"},{"authorId":"x","title":5},{"authorId":"x","title":"t","nope":1},{"authorId":"x","title":"fine"}]}}"#
        let partial = try await target.request("POST", "/api/import", json: mixed, token: Self.admin)
        #expect(partial.json["imported"].int == 1 && partial.json["failed"].int == 3, "\(partial.body)")
        let codes = partial.json["by_entity"].items.first?["errors"].items.compactMap { $0["code"].string }
        #expect(codes == ["UNIQUE_VIOLATION", "INVALID_DATA", "INVALID_COLUMN"], "\(partial.body)")
        let unknown = try await target.request("POST", "/api/import", json: #"{"entities":{"Nope":[]}}"#, token: Self.admin)
        #expect(unknown.status == 400 && unknown.json.errorCode == "ENTITY_NOT_FOUND", "nothing imported when an entity is unknown: \(unknown.body)")
    }

    @Test("Imported ids: an addressable id is kept and its row reached percent-encoded by GET, PATCH, DELETE and lookup; any other id fails its row alone with INVALID_ID")
    func importedIDs() async throws {
        let host = try await Self.start(.sqlite)
        defer { host.stop() }
        let good: [(id: String, path: String)] = [("a:b@c.d", "a%3Ab%40c.d"), ("x-1_2.3", "x-1_2.3"), ("ann@example.com", "ann%40example.com")]
        let bad = ["../x", "a/b", "pct%41", "a b", "..", ".", "", String(repeating: "i", count: 129), "é", "a?b", "a#b"]
        let rows = (good.map { $0.id } + bad).map { #"{"id":"\#($0)","authorId":"u","title":"t"}"# }
        let r = try await host.request("POST", "/api/import", json: #"{"entities":{"Post":[\#(rows.joined(separator: ","))]}}"#, token: Self.admin)
        #expect(r.status == 200 && r.json["imported"].int == good.count && r.json["failed"].int == bad.count, "\(r.body)")
        let errors = r.json["by_entity"].items.first?["errors"].items ?? []
        #expect(errors.compactMap { $0["index"].int } == Array(good.count..<(good.count + bad.count)), "\(r.body)")
        #expect(errors.allSatisfy { $0["code"].string == "INVALID_ID" }, "\(r.body)")
        for g in good {
            let got = try await host.request("GET", "/api/entities/Post/" + g.path, token: Self.admin)
            #expect(got.status == 200 && got.json["id"].string == g.id, "GET \(g.path): \(got.status) \(got.body)")
            let patched = try await host.request("PATCH", "/api/entities/Post/" + g.path, json: #"{"title":"100% pct%41"}"#, token: Self.admin)
            #expect(patched.status == 200, "PATCH \(g.path): \(patched.body)")
        }
        let found = try await host.request("GET", "/api/lookup/Post/title/100%25%20pct%2541", token: Self.admin)
        #expect(found.status == 200 && found.json["title"].string == "100% pct%41", "lookup decodes once: \(found.body)")
        #expect(try await host.request("GET", "/api/lookup/Post/title/100%25%20pctA", token: Self.admin).status == 404)
        for g in good {
            #expect(try await host.request("DELETE", "/api/entities/Post/" + g.path, token: Self.admin).status == 200, "DELETE \(g.path)")
        }
        #expect(try await host.request("GET", "/api/entities/Post", token: Self.admin).json["count"].int == 0)
    }

    @Test("GDPR: a user's export holds their row and every row they own; purge deletes exactly those (logged), ends their sessions, keeps everyone else's", arguments: stores)
    func gdprExportAndPurge(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let (ann, bob) = try await Self.seed(host)
        let annToken = try await host.mintSession(ann)
        #expect(try await host.request("POST", "/api/admin/users/\(ann)/export", token: annToken).status == 403)
        let export = try await host.request("POST", "/api/admin/users/\(ann)/export", token: Self.admin)
        #expect(export.status == 200, "\(export.body)")
        #expect(export.json["counts"]["User"].int == 1 && export.json["counts"]["Post"].int == 2 && export.json["counts"]["Note"].int == 1, "\(export.body)")
        #expect(export.json["entities"]["User"].items.first?["email"].string == "ann@example.com")

        let before = try await host.pullAll(token: Self.admin).count
        let purge = try await host.request("DELETE", "/api/admin/users/\(ann)/purge", token: Self.admin)
        #expect(purge.status == 200 && purge.json["total"].int == 4 && purge.json["sessions_revoked"].int == 1, "\(purge.body)")
        #expect(try await host.me(annToken) == nil, "the purged user's session no longer works")
        let left = try await host.request("GET", "/api/export", token: Self.admin)
        #expect(left.json["counts"]["User"].int == 1 && left.json["counts"]["Post"].int == 1 && left.json["counts"]["Note"].int == 2, "\(left.body)")
        #expect(left.json["entities"]["User"].items.first?["id"].string == bob)
        let log = try await host.pullAll(token: Self.admin)
        #expect(log.count == before + 4 && log.suffix(4).allSatisfy { $0["kind"].string == "delete" }, "four logged deletes")
        let nobody = try await host.request("DELETE", "/api/admin/users/nobody/purge", token: Self.admin)
        #expect(nobody.status == 200 && nobody.json["total"].int == 0, "\(nobody.body)")
    }

    @Test("POST /api/__test__/reset: in --dev from this machine it empties every entity (logged); outside --dev it does not exist")
    func testReset() async throws {
        let dev = try await Self.start(.sqlite, dev: true)
        defer { dev.stop() }
        _ = try await Self.seed(dev)
        // A page of another site the developer has open posts to this machine: refused.
        for origin in ["https://evil.example", "null"] {
            let foreign = try await dev.request("POST", "/api/__test__/reset", headers: ["Origin": origin, "Content-Type": "text/plain"])
            #expect(foreign.status == 403 && foreign.json.errorCode == "CSRF_REJECTED", "\(origin): \(foreign.body)")
        }
        #expect(try await dev.request("GET", "/api/export", token: Self.admin).json["counts"]["Note"].int == 3, "nothing was reset")
        let reset = try await dev.request("POST", "/api/__test__/reset")
        #expect(reset.status == 200 && reset.json["deleted"]["Note"].int == 3 && reset.json["deleted"]["User"].int == 2, "\(reset.body)")
        #expect(try await dev.request("GET", "/api/export", token: Self.admin).json["counts"]["Post"].int == 0)

        let prod = try await Self.start(.sqlite)
        defer { prod.stop() }
        _ = try await Self.seed(prod)
        let refused = try await prod.request("POST", "/api/__test__/reset", token: Self.admin)
        #expect(refused.status == 404, "\(refused.body)")
        #expect(try await prod.request("GET", "/api/export", token: Self.admin).json["counts"]["Note"].int == 3)
    }

    @Test("The studio's admin listings: sessions without tokens, the pending schedules and search indexes; admin only, GET only", arguments: stores)
    func adminListings(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let token = try await host.mintSession("u1")
        #expect(try await host.request("GET", "/api/admin/auth/sessions", token: token).status == 403)
        let sessions = try await host.request("GET", "/api/admin/auth/sessions", token: Self.admin)
        #expect(sessions.status == 200 && sessions.json.items.count == 1, "\(sessions.body)")
        let listed = try #require(sessions.json.items.first)
        #expect(listed["user_id"].string == "u1" && listed["id"].string?.count == 16, "\(sessions.body)")
        #expect(!sessions.body.contains(token) && !sessions.body.contains(String(token.dropFirst(6).prefix(12))), "no token, not even a prefix")
        for path in ["auth/accounts", "auth/oauth_state", "auth/magic_codes", "ops/jobs", "ops/workflows", "ops/scheduler", "ops/search_indexes"] {
            let r = try await host.request("GET", "/api/admin/\(path)", token: Self.admin)
            #expect(r.status == 200 && r.json.items.isEmpty && r.body.hasPrefix("["), "\(path): \(r.body)")
        }
        #expect(try await host.request("POST", "/api/admin/auth/sessions", json: "{}", token: Self.admin).status == 405)
    }

    @Test("Manifest actions as Pylon answers them: policy first, then existence and required input; success echoes; only POST; /api/crdt is 501 and crdt fields are plain values")
    func actionsAndCRDT() async throws {
        let host = try await Self.start(.sqlite)
        defer { host.stop() }
        let user = try await host.mintSession("u1")
        let anonymous = try await host.request("POST", "/api/actions/publish", json: #"{"postId":"p"}"#)
        #expect(anonymous.status == 403 && anonymous.json.errorCode == "POLICY_DENIED", "\(anonymous.body)")
        let unknownAsUser = try await host.request("POST", "/api/actions/nope", json: "{}", token: user)
        #expect(unknownAsUser.status == 403, "no policy names it: admin-only, so a user learns nothing: \(unknownAsUser.body)")
        let unknown = try await host.request("POST", "/api/actions/nope", json: "{}", token: Self.admin)
        #expect(unknown.status == 404 && unknown.json.errorCode == "ACTION_NOT_FOUND" && unknown.body.contains("publish"), "\(unknown.body)")
        let missing = try await host.request("POST", "/api/actions/publish", json: #"{"postId":null}"#, token: user)
        #expect(missing.status == 400 && missing.json.errorCode == "ACTION_MISSING_INPUT", "\(missing.body)")
        let ok = try await host.request("POST", "/api/actions/publish", json: #"{"postId":"p1"}"#, token: user)
        #expect(ok.status == 200 && ok.json["executed"].bool == true && ok.json["input"]["postId"].string == "p1", "\(ok.body)")
        #expect(try await host.request("GET", "/api/actions/publish", token: user).status == 405)

        let crdt = try await host.request("POST", "/api/crdt/Post/x", json: #"{"update":"00"}"#, token: Self.admin)
        #expect(crdt.status == 501 && crdt.json.errorCode == "CAPABILITY_UNAVAILABLE" && crdt.body.contains("pylon.crdt/1"), "\(crdt.body)")
        #expect(host.log.contains("crdt: Post.body (text) stored and synced as plain values"), "\(host.log)")
    }
}

extension HostProcess {
    /// `count` rows of `entity` made by `json(i)`, through `/api/batch` in chunks.
    func createItemsOf(_ entity: String, count: Int, json: (Int) -> String) async throws {
        var i = 0
        while i < count {
            let n = min(500, count - i)
            let ops = (i..<(i + n)).map { #"{"op":"insert","entity":"\#(entity)","data":\#(json($0))}"# }.joined(separator: ",")
            let r = try await request("POST", "/api/batch", json: #"{"operations":[\#(ops)]}"#, token: Self.adminToken)
            guard r.status == 200, r.json["failed"].int == 0 else { throw RealtimeTestError("batch insert: \(r.status) \(r.body.prefix(300))") }
            i += n
        }
    }
}
