import Foundation
import Testing

/// `POST /api/auth/select-org` through the real host (issue 19): a member chooses an
/// organisation of the app's `OrgMember` entity, policies see it as `auth.tenantId`, a
/// refresh keeps it; a non-member or an API key is refused. (Members made by the host's own
/// `/api/auth/orgs` routes: `OrgTests`.)
@Suite("Organisations: select-org and auth.tenantId (black-box, real pylon-host, SQLite and Postgres)")
struct OrgSelectionTests {
    static let manifest = """
    {"manifest_version": 1, "name": "orgs", "version": "0.1.0",
     "entities": [
       {"name": "OrgMember", "fields": [
          {"name": "userId", "type": "string", "optional": false, "unique": false},
          {"name": "orgId", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Doc", "fields": [
          {"name": "orgId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Tally", "fields": [
          {"name": "orgId", "type": "string", "optional": false, "unique": false},
          {"name": "n", "type": "int", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "members", "entity": "OrgMember", "allowRead": "auth.userId == data.userId", "allowInsert": "false",
        "allowUpdate": "false", "allowDelete": "false"},
       {"name": "docs", "entity": "Doc", "allowRead": "auth.tenantId == data.orgId", "allowInsert": "auth.tenantId == data.orgId",
        "allowUpdate": "false", "allowDelete": "false"},
       {"name": "tallies", "entity": "Tally", "allowRead": "auth.userId != null"}]}
    """

    static func select(_ host: HostProcess, _ token: String, _ org: String?) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/select-org", json: #"{"orgId":\#(org.map(TestJSON.quote) ?? "null")}"#, token: token)
    }

    @Test("A member selects their organisation and reads its documents; another organisation is 403 NOT_A_MEMBER; null leaves it; refresh keeps it", arguments: [TestStore.sqlite, TestStore.postgres])
    func selectOrg(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ApiKeyTests.pepper, dev: false, store: store)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        _ = try await host.request("POST", "/api/entities/OrgMember", json: #"{"userId":"ann","orgId":"acme"}"#, token: admin)
        _ = try await host.request("POST", "/api/entities/Doc", json: #"{"orgId":"acme","title":"plan"}"#, token: admin)
        _ = try await host.request("POST", "/api/entities/Doc", json: #"{"orgId":"globex","title":"secret"}"#, token: admin)
        let ann = try await host.mintSession("ann")
        #expect(try await host.request("GET", "/api/entities/Doc", token: ann).json["data"].items.isEmpty, "no organisation yet")

        let chosen = try await Self.select(host, ann, "acme")
        #expect(chosen.status == 200 && chosen.json["tenantId"].string == "acme", "\(chosen.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: ann).json["tenant_id"].string == "acme")
        let docs = try await host.request("GET", "/api/entities/Doc", token: ann).json["data"].items.compactMap { $0["title"].string }
        #expect(docs == ["plan"], "\(docs)")

        let other = try await Self.select(host, ann, "globex")
        let nowhere = try await Self.select(host, ann, "no-such-org")
        #expect(other.status == 403 && other.json.errorCode == "NOT_A_MEMBER", "\(other.body)")
        #expect(nowhere.status == other.status && nowhere.body == other.body, "an organisation that does not exist looks the same")
        #expect(try await host.request("GET", "/api/auth/me", token: ann).json["tenant_id"].string == "acme", "a refusal changes nothing")

        let refreshed = try #require(try await host.request("POST", "/api/auth/refresh", token: ann).json["token"].string)
        #expect(try await host.request("GET", "/api/auth/me", token: refreshed).json["tenant_id"].string == "acme")
        let left = try await Self.select(host, refreshed, nil)
        #expect(left.status == 200 && left.json["tenantId"].isNull, "\(left.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: refreshed).json["tenant_id"].string == nil)
    }

    @Test("Removing an OrgMember row (delete, a batch, or a patch that moves it) ends its user's sessions acting in that organisation and their streams; another row or another organisation keeps them", arguments: [TestStore.sqlite, TestStore.postgres])
    func appMembershipRemoved(store: TestStore) async throws {
        // `SessionStreams` proves its streams live with rows of an `Item` anyone may read.
        let item = #"{"name": "Item", "fields": [{"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}, "#
        let items = #"{"name": "items", "entity": "Item", "allowRead": "true", "allowInsert": "false", "allowUpdate": "false", "allowDelete": "false"}, "#
        let manifest = Self.manifest.replacingOccurrences(of: #"{"name": "Tally", "fields""#, with: item + #"{"name": "Tally", "fields""#)
            .replacingOccurrences(of: #"{"name": "tallies""#, with: items + #"{"name": "tallies""#)
        let host = try await HostProcess.start(manifest: manifest, dev: false, compatPorts: true, store: store)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        func member(_ user: String, _ org: String) async throws -> String {
            try await host.create("OrgMember", #"{"userId":"\#(user)","orgId":"\#(org)"}"#)
        }
        func tenant(_ token: String) async throws -> String? {
            try await host.request("GET", "/api/auth/me", token: token).json["tenant_id"].string
        }
        _ = try await host.create("Doc", #"{"orgId":"acme","title":"plan"}"#)
        let annAcme = try await member("ann", "acme"), annGlobex = try await member("ann", "globex")
        let bobAcme = try await member("bob", "acme")
        let carlFirst = try await member("carl", "acme")
        let ann = try await host.mintSession("ann"), annInGlobex = try await host.mintSession("ann")
        let bob = try await host.mintSession("bob"), carl = try await host.mintSession("carl")
        for (token, org) in [(ann, "acme"), (annInGlobex, "globex"), (bob, "acme"), (carl, "acme")] {
            #expect(try await Self.select(host, token, org).status == 200)
        }

        // Deleted: ann's session in acme leaves it, its streams end; her globex session and
        // bob's acme session are untouched.
        let streams = try await SessionStreams.open(host, token: ann, label: "ann in acme")
        let bobStreams = try await SessionStreams.open(host, token: bob, label: "bob in acme")
        let deleted = try await host.request("DELETE", "/api/entities/OrgMember/\(annAcme)", token: admin)
        #expect(deleted.status == 200, "\(deleted.body)")
        #expect(try await tenant(ann) == nil, "ann still acts in acme after her OrgMember row went")
        #expect(try await host.request("GET", "/api/entities/Doc", token: ann).json["data"].items.isEmpty)
        try await streams.expectEnded("ann's OrgMember row for the organisation her streams read as was deleted")
        #expect(try await tenant(annInGlobex) == "globex")
        #expect(try await Self.select(host, ann, "acme").status == 403, "no longer a member")

        // Another row still says carl belongs: deleting one keeps his session in acme.
        let carlStreams = try await SessionStreams.open(host, token: carl, label: "carl in acme")
        let carlSecond = try await member("carl", "acme")
        #expect(try await host.request("DELETE", "/api/entities/OrgMember/\(carlFirst)", token: admin).status == 200)
        #expect(try await tenant(carl) == "acme")
        // A transaction that deletes his last rows and then fails changes nothing.
        let ops = #"[{"op":"delete","entity":"OrgMember","id":"\#(carlSecond)"},{"op":"insert","entity":"Doc","data":{"orgId":"acme"}}]"#
        let failed = try await host.request("POST", "/api/transact", json: ops, token: admin)
        #expect(failed.json["committed"].bool == false, "\(failed.status) \(failed.body)")
        #expect(try await tenant(carl) == "acme")
        carlStreams.expectOpen("carl's membership rows were not all removed")

        // A patch that moves ann's globex row to another organisation ends her globex session.
        let moved = try await host.request("PATCH", "/api/entities/OrgMember/\(annGlobex)", json: #"{"orgId":"initech"}"#, token: admin)
        #expect(moved.status == 200, "\(moved.body)")
        #expect(try await tenant(annInGlobex) == nil)

        // Through a batch (several writes in one transaction): bob leaves acme too.
        bobStreams.expectOpen("bob's membership was not touched yet")
        let batch = try await host.request("POST", "/api/batch", json: #"{"operations":[{"op":"delete","entity":"OrgMember","id":"\#(bobAcme)"},{"op":"insert","entity":"Doc","data":{"orgId":"acme","title":"later"}}]}"#, token: admin)
        #expect(batch.status == 200 && batch.json["failed"].int == 0, "\(batch.body)")
        #expect(try await tenant(bob) == nil)
        try await bobStreams.expectEnded("bob's OrgMember row was deleted in a batch")
        #expect(try await tenant(carl) == "acme")
    }

    @Test("Refused: anonymous 401, the admin token and API keys 403, bad bodies 400, no OrgMember entity and no membership 403")
    func refused() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ApiKeyTests.pepper, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let key = try #require(try await ApiKeyTests.create(host, ann).json["key"].string)
        #expect(try await host.request("POST", "/api/auth/select-org", json: #"{"orgId":"acme"}"#).status == 401)
        #expect(try await Self.select(host, HostProcess.adminToken, "acme").status == 403)
        let byKey = try await Self.select(host, key, "acme")
        #expect(byKey.status == 403 && byKey.json.errorCode == "API_KEY_AUTH_FORBIDDEN", "\(byKey.body)")
        for body in ["{}", #"{"orgId":5}"#, #"{"orgId":""}"#, #"{"orgId":"\#(String(repeating: "o", count: 300))"}"#] {
            let r = try await host.request("POST", "/api/auth/select-org", json: body, token: ann)
            #expect(r.status == 400, "\(body): \(r.body)")
        }
        // Without an OrgMember entity, membership is the host's own (`/api/auth/orgs`).
        let plain = try await HostProcess.start(manifest: PushScopeTests.manifest, dev: false)
        defer { plain.stop() }
        let bob = try await plain.mintSession("bob")
        let r = try await Self.select(plain, bob, "acme")
        #expect(r.status == 403 && r.json.errorCode == "NOT_A_MEMBER", "\(r.body)")
    }

    static func aggregate(_ host: HostProcess, _ token: String, _ spec: String) async throws -> (count: Int?, sum: Int?, rows: [Any?]) {
        let r = try await host.request("POST", "/api/aggregate/Tally", json: spec, token: token)
        #expect(r.status == 200, "\(spec): \(r.body)")
        let rows = r.json["rows"].items
        return (rows.first?["count"].int, rows.first?["sum_n"].int, rows)
    }

    @Test("Aggregate, as in Pylon (pylon-core.md §2.6): a caller with an organisation counts only its rows of an entity with orgId; without one, every readable row", arguments: [TestStore.sqlite, TestStore.postgres])
    func aggregateTenant(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, store: store)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        for (user, org) in [("ann", "acme"), ("bob", "globex")] {
            _ = try await host.request("POST", "/api/entities/OrgMember", json: #"{"userId":"\#(user)","orgId":"\#(org)"}"#, token: admin)
        }
        for (org, n) in [("acme", 1), ("acme", 2), ("globex", 10)] {
            #expect(try await host.request("POST", "/api/entities/Tally", json: #"{"orgId":"\#(org)","n":\#(n)}"#, token: admin).status == 201)
        }
        let ann = try await host.mintSession("ann"), bob = try await host.mintSession("bob"), carl = try await host.mintSession("carl")
        #expect(try await Self.select(host, ann, "acme").status == 200)
        #expect(try await Self.select(host, bob, "globex").status == 200)
        let spec = #"{"count":"*","sum":["n"]}"#
        let annSees = try await Self.aggregate(host, ann, spec), bobSees = try await Self.aggregate(host, bob, spec)
        #expect(annSees.count == 2 && annSees.sum == 3, "\(annSees)")
        #expect(bobSees.count == 1 && bobSees.sum == 10, "\(bobSees)")
        let all = try await Self.aggregate(host, carl, spec)
        #expect(all.count == 3 && all.sum == 13, "no organisation selected: every readable row, \(all)")
        #expect(try await Self.aggregate(host, admin, spec).count == 3)
        // Only aggregate is forced, as in Pylon; lists follow the read policy alone.
        #expect(try await host.request("GET", "/api/entities/Tally", token: ann).json["data"].items.count == 3)
    }

    @Test("Hostile: where.orgId naming another organisation, a $ne or an operator object, or grouping by orgId cannot reach past the caller's organisation")
    func aggregateTenantForced() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        _ = try await host.request("POST", "/api/entities/OrgMember", json: #"{"userId":"ann","orgId":"acme"}"#, token: admin)
        for (org, n) in [("acme", 1), ("globex", 10), ("globex", 20)] {
            _ = try await host.request("POST", "/api/entities/Tally", json: #"{"orgId":"\#(org)","n":\#(n)}"#, token: admin)
        }
        let ann = try await host.mintSession("ann")
        #expect(try await Self.select(host, ann, "acme").status == 200)
        for filter in [#"{"orgId":"globex"}"#, #"{"orgId":{"$ne":"acme"}}"#, #"{"orgId":{"$in":["acme","globex"]}}"#, #"{"orgId":null}"#, "{}"] {
            let r = try await Self.aggregate(host, ann, #"{"count":"*","sum":["n"],"where":\#(filter)}"#)
            #expect(r.count == 1 && r.sum == 1, "where \(filter): \(r)")
        }
        let grouped = try await Self.aggregate(host, ann, #"{"count":"*","groupBy":["orgId"]}"#).rows
        #expect(grouped.count == 1 && grouped.first?["orgId"].string == "acme", "\(grouped)")
        // The filter still narrows within the organisation.
        #expect(try await Self.aggregate(host, ann, #"{"count":"*","where":{"n":{"$gt":5}}}"#).count == 0)
    }
}
