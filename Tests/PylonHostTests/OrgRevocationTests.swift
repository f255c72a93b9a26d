import Foundation
import Testing

/// What must stop when someone leaves an organisation or an account goes (an outside probe,
/// session 22): a member removed while choosing the organisation does not keep it, a JWT
/// minted in it stops acting in it, a purged user's API keys and memberships end, and an
/// admin cannot undo an owner's invite to be owner. Real host, SQLite and Postgres.
@Suite("Organisations: removal, purge, JWTs and owner invites hold (black-box, real pylon-host)")
struct OrgRevocationTests {
    /// --dev answers invites with their token; the send bucket is off (many invites of one address).
    static let env = SessionJWTTests.env.merging(ApiKeyTests.pepper) { $1 }.merging(["PYLON_AUTH_RATE_LIMIT_SEND": "0"]) { $1 }

    static func start(_ store: TestStore) async throws -> HostProcess {
        try await HostProcess.start(manifest: OrgTests.manifest, env: env, dev: true, store: store)
    }

    /// `who` joins `org` with `role` through an invite of `owner`'s.
    static func join(_ host: HostProcess, owner: String, _ org: String, _ who: (token: String, id: String), _ email: String,
                     role: String = "member") async throws {
        let sent = try await OrgTests.invite(host, owner, org, email, role: role)
        let token = try #require(sent.json["token"].string, "\(sent.body)")
        let joined = try await OrgTests.accept(host, who.token, token)
        #expect(joined.status == 200, "\(joined.body)")
    }

    /// ann owns Acme, which holds one document; bob is not a member yet.
    static func acme(_ host: HostProcess) async throws -> (ann: (token: String, id: String), bob: (token: String, id: String), org: String) {
        let ann = try await OrgTests.user(host, "ann@example.com")
        let bob = try await OrgTests.user(host, "bob@example.com")
        let org = try #require(try await OrgTests.create(host, ann.token, "Acme").json["id"].string)
        _ = try await host.request("POST", "/api/entities/Doc", json: #"{"orgId":"\#(org)","title":"plan"}"#, token: HostProcess.adminToken)
        return (ann, bob, org)
    }

    static func tenant(_ host: HostProcess, _ token: String) async throws -> String? {
        try await host.request("GET", "/api/auth/me", token: token).json["tenant_id"].string
    }

    @Test("A member removed while they keep choosing the organisation does not keep it", arguments: [TestStore.sqlite, TestStore.postgres])
    func removalDuringSelect(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let (ann, bob, org) = try await Self.acme(host)
        // The membership was read before the write that chose the organisation: a removal
        // committed in between was undone (the probe saw it in 5 rounds of 12).
        for round in 0..<8 {
            try await Self.join(host, owner: ann.token, org, bob, "bob@example.com")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        for _ in 0..<15 { _ = try await OrgSelectionTests.select(host, bob.token, org) }
                    }
                }
                group.addTask {
                    let removed = try await host.request("DELETE", "/api/auth/orgs/\(org)/members/\(bob.id)", token: ann.token)
                    #expect(removed.status == 200, "\(removed.body)")
                }
                try await group.waitForAll()
            }
            #expect(try await Self.tenant(host, bob.token) == nil, "round \(round): the removed member still acts in the organisation")
            #expect(try await host.request("GET", "/api/entities/Doc", token: bob.token).json["data"].items.isEmpty, "round \(round)")
        }
    }

    @Test("A JWT minted in an organisation acts in it only while its user is a member", arguments: [TestStore.sqlite, TestStore.postgres])
    func jwtAfterRemoval(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let (ann, bob, org) = try await Self.acme(host)
        try await Self.join(host, owner: ann.token, org, bob, "bob@example.com")
        #expect(try await OrgSelectionTests.select(host, bob.token, org).status == 200)
        let jwt = try #require(try await host.request("POST", "/api/auth/jwt", token: bob.token).json["token"].string)
        #expect(try await Self.tenant(host, jwt) == org)
        #expect(try await host.request("GET", "/api/entities/Doc", token: jwt).json["data"].items.count == 1)

        let removed = try await host.request("DELETE", "/api/auth/orgs/\(org)/members/\(bob.id)", token: ann.token)
        #expect(removed.status == 200, "\(removed.body)")
        let me = try await host.request("GET", "/api/auth/me", token: jwt)
        #expect(me.status == 200 && me.json["user_id"].string == bob.id && me.json["tenant_id"].string == nil, "\(me.body)")
        #expect(try await host.request("GET", "/api/entities/Doc", token: jwt).json["data"].items.isEmpty)
        let write = try await host.request("POST", "/api/entities/Doc", json: #"{"orgId":"\#(org)","title":"after"}"#, token: jwt)
        #expect(write.status == 403, "\(write.body)")
        // Rejoined, the same token acts in it again: the claim is checked, not burnt.
        try await Self.join(host, owner: ann.token, org, bob, "bob@example.com")
        #expect(try await Self.tenant(host, jwt) == org)
    }

    @Test("A purge ends the user's API keys and memberships; an organisation they alone owned passes to its admin", arguments: [TestStore.sqlite, TestStore.postgres])
    func purgeEndsAccess(store: TestStore) async throws {
        let host = try await Self.start(store)
        defer { host.stop() }
        let ann = try await OrgTests.user(host, "ann@example.com")
        let cat = try await OrgTests.user(host, "cat@example.com")
        let org = try #require(try await OrgTests.create(host, ann.token, "Acme").json["id"].string)
        try await Self.join(host, owner: ann.token, org, cat, "cat@example.com", role: "admin")
        let key = try #require(try await ApiKeyTests.create(host, ann.token).json["key"].string)
        #expect(try await host.request("GET", "/api/auth/me", token: key).status == 200)

        let purged = try await host.request("DELETE", "/api/admin/users/\(ann.id)/purge", token: HostProcess.adminToken)
        #expect(purged.status == 200 && purged.json["api_keys_revoked"].int == 1 && purged.json["left_orgs"].int == 1, "\(purged.body)")
        #expect((purged.json["sessions_revoked"].int ?? 0) >= 1, "\(purged.body)")
        let byKey = try await host.request("GET", "/api/auth/me", token: key)
        #expect(byKey.status == 401 && byKey.json.errorCode == "INVALID_API_KEY", "\(byKey.body)")
        #expect(try await host.me(ann.token) == nil)
        let heir = try await host.request("GET", "/api/auth/orgs/\(org)", token: cat.token)
        #expect(heir.json["role"].string == "owner", "\(heir.body)")
        #expect(try await PasswordAuthTests.login(host, "ann@example.com", OrgTests.password).status == 401, "the password went too")
        // Purging again finds nothing left to end.
        let again = try await host.request("DELETE", "/api/admin/users/\(ann.id)/purge", token: HostProcess.adminToken)
        #expect(again.status == 200 && again.json["api_keys_revoked"].int == 0 && again.json["left_orgs"].int == 0, "\(again.body)")
    }

    @Test("Only an owner replaces or revokes an invite to be owner; an admin still manages the others")
    func ownerInvites() async throws {
        let host = try await Self.start(.sqlite)
        defer { host.stop() }
        let ann = try await OrgTests.user(host, "ann@example.com")
        let cat = try await OrgTests.user(host, "cat@example.com")
        let org = try #require(try await OrgTests.create(host, ann.token, "Acme").json["id"].string)
        try await Self.join(host, owner: ann.token, org, cat, "cat@example.com", role: "admin")
        #expect(try await OrgTests.invite(host, ann.token, org, "dan@example.com", role: "owner").status == 200)
        let ownerInvite = try #require(try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: cat.token).json.items.first?["id"].string)

        let downgrade = try await OrgTests.invite(host, cat.token, org, "dan@example.com", role: "member")
        #expect(downgrade.status == 403 && downgrade.json.errorCode == "FORBIDDEN", "\(downgrade.body)")
        let revoke = try await host.request("DELETE", "/api/auth/orgs/\(org)/invites/\(ownerInvite)", token: cat.token)
        #expect(revoke.status == 403 && revoke.json.errorCode == "FORBIDDEN", "\(revoke.body)")
        let listed = try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: ann.token).json.items
        #expect(listed.count == 1 && listed.first?["role"].string == "owner", "the owner's invite stands: \(listed)")

        // The admin's own invites: replaced and revoked as before.
        #expect(try await OrgTests.invite(host, cat.token, org, "eve@example.com").status == 200)
        #expect(try await OrgTests.invite(host, cat.token, org, "eve@example.com", role: "admin").status == 200)
        let eve = try #require(try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: cat.token).json.items
            .first { $0["email"].string == "eve@example.com" }?["id"].string)
        #expect(try await host.request("DELETE", "/api/auth/orgs/\(org)/invites/\(eve)", token: cat.token).status == 200)
        // The owner may do both to an owner invite.
        #expect(try await OrgTests.invite(host, ann.token, org, "dan@example.com", role: "member").status == 200)
    }
}
