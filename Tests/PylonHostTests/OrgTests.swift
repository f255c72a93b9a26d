import Foundation
import Testing

/// Organisations through the real host (`/api/auth/orgs…`, `/api/auth/invites/:token/accept`):
/// create, invite by email (a real SMTP server receives the invite; the test reads the link
/// out of it), accept, roles, leave, remove, rename, delete, account deletion — and what a
/// non-member, a plain member, an API key, a guest or a stolen link cannot do. On SQLite and
/// Postgres (the organisations live in the store).
@Suite("Organisations: CRUD, members, invites by email (black-box, real SMTP server, SQLite and Postgres)")
struct OrgTests {
    static let manifest = """
    {"manifest_version": 1, "name": "teams", "version": "0.1.0",
     "entities": [
       {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "displayName", "type": "string", "optional": true, "unique": false},
          {"name": "emailVerified", "type": "string", "optional": true, "unique": false},
          {"name": "createdAt", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Doc", "fields": [
          {"name": "orgId", "type": "string", "optional": false, "unique": false},
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []},
       {"name": "Item", "fields": [
          {"name": "title", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "users", "entity": "User", "allowRead": "auth.userId == data.id", "allowInsert": "false",
        "allowUpdate": "false", "allowDelete": "false"},
       {"name": "docs", "entity": "Doc", "allowRead": "auth.tenantId == data.orgId", "allowInsert": "auth.tenantId == data.orgId",
        "allowUpdate": "false", "allowDelete": "false"},
       {"name": "items", "entity": "Item", "allowRead": "true", "allowInsert": "false", "allowUpdate": "false", "allowDelete": "false"}]}
    """

    static let password = "correct horse battery"

    /// A registered user: (session token, user id).
    static func user(_ host: HostProcess, _ email: String) async throws -> (token: String, id: String) {
        let r = try await PasswordAuthTests.register(host, email, password)
        return (try #require(r.json["token"].string, "\(r.body)"), try #require(r.json["user_id"].string, "\(r.body)"))
    }

    static func create(_ host: HostProcess, _ token: String, _ name: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/orgs", json: #"{"name":\#(TestJSON.quote(name))}"#, token: token)
    }

    static func invite(_ host: HostProcess, _ token: String, _ org: String, _ email: String, role: String = "member") async throws
        -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/orgs/\(org)/invites", json: #"{"email":\#(TestJSON.quote(email)),"role":"\#(role)"}"#, token: token)
    }

    static func accept(_ host: HostProcess, _ token: String, _ invite: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/invites/\(invite)/accept", token: token)
    }

    /// The invite token in a delivered invite's link.
    static func inviteToken(in mail: String) -> String? {
        for word in MailSink.body(mail).split(whereSeparator: { $0.isWhitespace }) where word.contains("/api/auth/invites/") {
            let parts = word.split(separator: "/")
            if let i = parts.firstIndex(of: "invites"), i + 2 < parts.count, parts[i + 2] == "accept" { return String(parts[i + 1]) }
        }
        return nil
    }

    static func env(_ smtp: MailSink) -> [String: String] { MagicCodeTests.env(smtp) }

    @Test("Create, invite by email, accept, select-org and auth.tenantId, roles, the last owner, remove (its streams end), rename, delete, the change log", arguments: [TestStore.sqlite, TestStore.postgres])
    func lifecycle(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp), dev: false, compatPorts: true, store: store)
        defer { host.stop() }
        let ann = try await Self.user(host, "ann@example.com")
        let bob = try await Self.user(host, "bob@example.com")
        let carl = try await Self.user(host, "carl@example.com")

        let made = try await Self.create(host, ann.token, "  Acme  ")
        #expect(made.status == 200 && made.json["name"].string == "Acme" && made.json["role"].string == "owner", "\(made.body)")
        let org = try #require(made.json["id"].string)
        let listed = try await host.request("GET", "/api/auth/orgs", token: ann.token)
        #expect(listed.json.items.map { $0["id"].string } == [org] && listed.json.items.first?["role"].string == "owner", "\(listed.body)")

        // bob is no member yet: the organisation looks like one that does not exist.
        let hidden = try await host.request("GET", "/api/auth/orgs/\(org)", token: bob.token)
        let missing = try await host.request("GET", "/api/auth/orgs/org_nope", token: bob.token)
        #expect(hidden.status == 404 && hidden.json.errorCode == "ORG_NOT_FOUND" && hidden.body == missing.body, "\(hidden.body)")

        let sent = try await Self.invite(host, ann.token, org, " Bob@Example.com ", role: "admin")
        #expect(sent.status == 200 && sent.json["email"].string == "bob@example.com" && sent.json["role"].string == "admin", "\(sent.body)")
        #expect(sent.json["token"] == nil && sent.json["accept_url"] == nil, "the token is only in the email outside --dev: \(sent.body)")
        let mail = try await smtp.message(to: "bob@example.com")
        #expect(mail.contains("Subject: You are invited to Acme on teams"), "\(mail)")
        #expect(MailSink.body(mail).contains("http://app.test/api/auth/invites/"), "\(mail)")
        let token = try #require(Self.inviteToken(in: mail), "\(mail)")
        let pending = try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: ann.token)
        #expect(pending.json.items.count == 1 && pending.json.items.first?["email"].string == "bob@example.com", "\(pending.body)")
        #expect(!pending.body.contains(token), "the listing never holds the token")
        let stored = try await host.sql("SELECT token_hash FROM _pylon_org_invites")
        #expect(!stored.contains(token) && stored.contains(where: { $0.isHexDigit }), "only a hash is stored: \(stored)")

        // The link works only for the address it was sent to, and only once.
        let stolen = try await Self.accept(host, carl.token, token)
        #expect(stolen.status == 403 && stolen.json.errorCode == "WRONG_EMAIL", "\(stolen.body)")
        let joined = try await Self.accept(host, bob.token, token)
        #expect(joined.status == 200 && joined.json["org_id"].string == org && joined.json["role"].string == "admin", "\(joined.body)")
        let again = try await Self.accept(host, bob.token, token)
        #expect(again.status == 404 && again.json.errorCode == "INVITE_NOT_FOUND", "\(again.body)")

        // bob acts in the organisation: policies see it as auth.tenantId.
        _ = try await host.request("POST", "/api/entities/Doc", json: #"{"orgId":"\#(org)","title":"plan"}"#, token: HostProcess.adminToken)
        let chosen = try await OrgSelectionTests.select(host, bob.token, org)
        #expect(chosen.status == 200 && chosen.json["tenantId"].string == org, "\(chosen.body)")
        #expect(try await host.request("GET", "/api/entities/Doc", token: bob.token).json["data"].items.compactMap { $0["title"].string } == ["plan"])
        #expect(try await OrgSelectionTests.select(host, carl.token, org).json.errorCode == "NOT_A_MEMBER")
        let members = try await host.request("GET", "/api/auth/orgs/\(org)/members", token: bob.token)
        #expect(Set(members.json.items.compactMap { $0["user_id"].string }) == [ann.id, bob.id], "\(members.body)")

        // An admin cannot touch an owner nor make one; the last owner stays one.
        let demote = try await host.request("PUT", "/api/auth/orgs/\(org)/members/\(ann.id)", json: #"{"role":"member"}"#, token: bob.token)
        #expect(demote.status == 403 && demote.json.errorCode == "FORBIDDEN", "\(demote.body)")
        let crown = try await host.request("PATCH", "/api/auth/orgs/\(org)/members/\(bob.id)", json: #"{"role":"owner"}"#, token: bob.token)
        #expect(crown.status == 403, "\(crown.body)")
        #expect(try await Self.invite(host, bob.token, org, "dan@example.com", role: "owner").status == 403)
        let selfDemote = try await host.request("PUT", "/api/auth/orgs/\(org)/members/\(ann.id)", json: #"{"role":"admin"}"#, token: ann.token)
        #expect(selfDemote.status == 400 && selfDemote.json.errorCode == "LAST_OWNER", "\(selfDemote.body)")
        let leave = try await host.request("DELETE", "/api/auth/orgs/\(org)/members/\(ann.id)", token: ann.token)
        #expect(leave.status == 400 && leave.json.errorCode == "LAST_OWNER", "\(leave.body)")

        // Removed, bob's session leaves the organisation and the streams it opened in it end.
        let streams = try await SessionStreams.open(host, token: bob.token, label: "bob in \(org)")
        let removed = try await host.request("DELETE", "/api/auth/orgs/\(org)/members/\(bob.id)", token: ann.token)
        #expect(removed.status == 200 && removed.json["removed"].bool == true, "\(removed.body)")
        try await streams.expectEnded("bob was removed from the organisation his streams read as")
        #expect(try await host.request("GET", "/api/auth/me", token: bob.token).json["tenant_id"].string == nil)
        #expect(try await host.request("GET", "/api/entities/Doc", token: bob.token).json["data"].items.isEmpty)
        #expect(try await host.request("GET", "/api/auth/orgs/\(org)", token: bob.token).status == 404)

        // A revoked invite no longer works.
        _ = try await Self.invite(host, ann.token, org, "carl@example.com")
        let carlToken = try #require(Self.inviteToken(in: try await smtp.message(to: "carl@example.com")))
        let inviteID = try #require(try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: ann.token).json.items.first?["id"].string)
        let revoked = try await host.request("DELETE", "/api/auth/orgs/\(org)/invites/\(inviteID)", token: ann.token)
        #expect(revoked.status == 200 && revoked.json["revoked"].bool == true, "\(revoked.body)")
        #expect(try await Self.accept(host, carl.token, carlToken).json.errorCode == "INVITE_NOT_FOUND")
        #expect(try await host.request("DELETE", "/api/auth/orgs/\(org)/invites/\(inviteID)", token: ann.token).status == 404)

        let renamed = try await host.request("PATCH", "/api/auth/orgs/\(org)", json: #"{"name":"Acme Ltd"}"#, token: ann.token)
        #expect(renamed.status == 200 && renamed.json["name"].string == "Acme Ltd", "\(renamed.body)")
        let log = try await host.request("GET", "/api/sync/pull?since=0", token: HostProcess.adminToken)
        #expect(log.body.contains("_pylon_orgs") && log.body.contains("_pylon_org_members") && log.body.contains("Acme Ltd"), "\(log.body)")
        #expect(!log.body.contains("_pylon_org_invites"), "invites are not in the change log")
        #expect(try await host.request("GET", "/api/sync/pull?since=0", token: carl.token).body.contains("_pylon_org") == false,
                "only admins read these entries")

        let deleted = try await host.request("DELETE", "/api/auth/orgs/\(org)", token: ann.token)
        #expect(deleted.status == 200 && deleted.json["deleted"].bool == true, "\(deleted.body)")
        #expect(try await host.request("GET", "/api/auth/orgs", token: ann.token).json.items.isEmpty)
        #expect(try await host.sql("SELECT count(*) FROM _pylon_org_members").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    @Test("Postgres, two hosts on one database: a member removed on host A leaves the organisation on host B too — the streams B holds for it end and B no longer reads it as the tenant",
          .enabled(if: TestStore.defaultStore.name == TestStore.sqlite.name))
    func removalAcrossHosts() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        let a = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), compatPorts: true)
        defer { a.kill9() }
        let b = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), compatPorts: true)
        defer { b.kill9() }
        let ann = try await Self.user(a, "ann@example.com")
        let bob = try await Self.user(a, "bob@example.com")
        let org = try #require(try await Self.create(a, ann.token, "Acme").json["id"].string)
        let invite = try #require(try await Self.invite(a, ann.token, org, "bob@example.com").json["token"].string, "--dev answers with the token")
        #expect(try await Self.accept(b, bob.token, invite).status == 200)
        #expect(try await OrgSelectionTests.select(b, bob.token, org).status == 200)
        #expect(try await b.request("GET", "/api/auth/me", token: bob.token).json["tenant_id"].string == org)
        let onB = try await SessionStreams.open(b, token: bob.token, label: "bob on B in \(org)")
        let removed = try await a.request("DELETE", "/api/auth/orgs/\(org)/members/\(bob.id)", token: ann.token)
        #expect(removed.status == 200, "\(removed.body)")
        try await onB.expectEnded("bob was removed on host A")
        #expect(try await b.request("GET", "/api/auth/me", token: bob.token).json["tenant_id"].string == nil)
        onB.close()
    }

    @Test("Deleting an account: its memberships end; an organisation it alone owned passes to its admin, or goes when nobody is left", arguments: [TestStore.sqlite, TestStore.postgres])
    func accountDeletion(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, dev: true, store: store)
        defer { host.stop() }
        let ann = try await Self.user(host, "ann@example.com")
        let bob = try await Self.user(host, "bob@example.com")
        let cat = try await Self.user(host, "cat@example.com")
        let shared = try #require(try await Self.create(host, ann.token, "Shared").json["id"].string)
        let solo = try #require(try await Self.create(host, ann.token, "Solo").json["id"].string)
        for (who, role) in [(bob, "member"), (cat, "admin")] {
            let sent = try await Self.invite(host, ann.token, shared, who.id == bob.id ? "bob@example.com" : "cat@example.com", role: role)
            let token = try #require(sent.json["token"].string, "--dev answers with the token: \(sent.body)")
            #expect(try await Self.accept(host, who.token, token).status == 200)
        }
        // Even in --dev the host's own tables are the admin's in the change log.
        for token in [nil, bob.token] {
            let pulled = try await host.request("GET", "/api/sync/pull?since=0", token: token)
            #expect(pulled.status != 200 || !pulled.body.contains("_pylon_org"), "\(pulled.body.prefix(300))")
        }
        #expect(try await host.request("GET", "/api/sync/pull?since=0", token: HostProcess.adminToken).body.contains("_pylon_orgs"))
        let gone = try await host.request("DELETE", "/api/auth/account", token: ann.token)
        #expect(gone.status == 200 && gone.json["left_orgs"].int == 2, "\(gone.body)")
        let heir = try await host.request("GET", "/api/auth/orgs/\(shared)", token: cat.token)
        #expect(heir.json["role"].string == "owner", "the admin inherits the organisation: \(heir.body)")
        #expect(try await host.request("GET", "/api/auth/orgs/\(shared)", token: bob.token).json["role"].string == "member")
        let members = try await host.request("GET", "/api/auth/orgs/\(shared)/members", token: bob.token)
        #expect(members.json.items.count == 2 && !members.body.contains(ann.id), "\(members.body)")
        #expect(try await host.sql("SELECT count(*) FROM _pylon_orgs WHERE id = '\(solo)'").trimmingCharacters(in: .whitespacesAndNewlines) == "0",
                "an organisation left with nobody is deleted")
    }

    @Test("Refused: anonymous 401, the admin token 403, API keys and guests cannot change anything, bad input 400, a plain member and a non-member are held back, bad links 404")
    func refused() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp).merging(ApiKeyTests.pepper) { a, _ in a }, dev: false)
        defer { host.stop() }
        let ann = try await Self.user(host, "ann@example.com")
        let meg = try await Self.user(host, "meg@example.com")
        let eve = try await Self.user(host, "eve@example.com")
        let org = try #require(try await Self.create(host, ann.token, "Acme").json["id"].string)
        _ = try await Self.invite(host, ann.token, org, "meg@example.com")
        let megToken = try #require(Self.inviteToken(in: try await smtp.message(to: "meg@example.com")))
        #expect(try await Self.accept(host, meg.token, megToken).status == 200)

        #expect(try await host.request("GET", "/api/auth/orgs").status == 401)
        #expect(try await host.request("POST", "/api/auth/orgs", json: #"{"name":"x"}"#).status == 401)
        #expect(try await Self.create(host, HostProcess.adminToken, "x").status == 403)
        let key = try #require(try await ApiKeyTests.create(host, ann.token).json["key"].string)
        let byKey = try await Self.create(host, key, "x")
        #expect(byKey.status == 403 && byKey.json.errorCode == "API_KEY_AUTH_FORBIDDEN", "\(byKey.body)")
        #expect(try await host.request("GET", "/api/auth/orgs", token: key).json.items.count == 1, "a key reads its user's organisations")
        let guest = try #require(try await host.request("POST", "/api/auth/guest").json["token"].string)
        #expect(try await Self.create(host, guest, "x").json.errorCode == "GUEST_FORBIDDEN")

        for body in ["{}", #"{"name":"   "}"#, #"{"name":5}"#, #"{"name":"\#(String(repeating: "n", count: 201))"}"#, #"{"name":"a\nb"}"#] {
            let r = try await host.request("POST", "/api/auth/orgs", json: body, token: ann.token)
            #expect(r.status == 400, "\(body): \(r.body)")
        }
        #expect(try await Self.invite(host, ann.token, org, "not-an-email").status == 400)
        #expect(try await Self.invite(host, ann.token, org, "x@example.com", role: "root").json.errorCode == "BAD_ROLE")
        #expect(try await Self.invite(host, ann.token, org, "meg@example.com").json.errorCode == "ALREADY_MEMBER")

        // A plain member reads, but manages nothing; leaving is allowed.
        #expect(try await host.request("GET", "/api/auth/orgs/\(org)/members", token: meg.token).status == 200)
        for (method, path, body) in [("POST", "/api/auth/orgs/\(org)/invites", #"{"email":"x@example.com"}"#),
                                     ("GET", "/api/auth/orgs/\(org)/invites", nil),
                                     ("PATCH", "/api/auth/orgs/\(org)", #"{"name":"Mine"}"#),
                                     ("DELETE", "/api/auth/orgs/\(org)", nil),
                                     ("PUT", "/api/auth/orgs/\(org)/members/\(meg.id)", #"{"role":"admin"}"#),
                                     ("DELETE", "/api/auth/orgs/\(org)/members/\(ann.id)", nil)] {
            let r = try await host.request(method, path, json: body, token: meg.token)
            #expect(r.status == 403 && r.json.errorCode == "FORBIDDEN", "a member \(method) \(path): \(r.body)")
        }

        // A non-member learns nothing: every route answers as for an organisation that does not exist.
        for (method, suffix, body) in [("GET", "", nil), ("PATCH", "", #"{"name":"Mine"}"#), ("DELETE", "", nil),
                                       ("GET", "/members", nil), ("PUT", "/members/\(ann.id)", #"{"role":"member"}"#),
                                       ("DELETE", "/members/\(ann.id)", nil), ("GET", "/invites", nil),
                                       ("POST", "/invites", #"{"email":"eve@example.com"}"#), ("DELETE", "/invites/inv_x", nil)] {
            let real = try await host.request(method, "/api/auth/orgs/\(org)\(suffix)", json: body, token: eve.token)
            let none = try await host.request(method, "/api/auth/orgs/org_none\(suffix)", json: body, token: eve.token)
            #expect(real.status == 404 && real.json.errorCode == "ORG_NOT_FOUND" && real.body == none.body, "\(method) \(suffix): \(real.body) / \(none.body)")
        }
        #expect(smtp.messages(to: "eve@example.com").isEmpty, "a non-member cannot make the host send mail")

        for bad in ["x", String(repeating: "A", count: 42), String(repeating: "A", count: 44), String(repeating: "A", count: 43),
                    "%2E%2E%2F%2E%2E", String(repeating: "z", count: 4000)] {
            let r = try await Self.accept(host, eve.token, bad)
            #expect(r.status == 404 && r.json.errorCode == "INVITE_NOT_FOUND", "\(bad.prefix(20)): \(r.body)")
        }
        #expect(try await Self.accept(host, key, megToken).json.errorCode == "API_KEY_AUTH_FORBIDDEN")

        #expect(try await host.request("DELETE", "/api/auth/orgs/\(org)/members/\(meg.id)", token: meg.token).status == 200, "a member may leave")
    }

    @Test("Invites count in the send bucket (Pylon's 3 a minute per address): the fourth is 429 and sends nothing; without an email plugin outside --dev: 501")
    func limitsAndStub() async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: Self.env(smtp).merging(["PYLON_AUTH_RATE_LIMIT_SEND": "3,10"]) { a, _ in a }, dev: false)
        defer { host.stop() }
        // Registering counts in the send bucket too: the users come from the admin's sessions.
        _ = try await host.request("POST", "/api/entities/User", json: #"{"email":"ann@example.com"}"#, token: HostProcess.adminToken)
        let annID = try #require(try await host.request("GET", "/api/entities/User", token: HostProcess.adminToken).json["data"].items.first?["id"].string)
        let ann = try await host.mintSession(annID)
        let org = try #require(try await Self.create(host, ann, "Acme").json["id"].string)
        for i in 1...3 { #expect(try await Self.invite(host, ann, org, "p\(i)@example.com").status == 200) }
        let over = try await Self.invite(host, ann, org, "p4@example.com")
        #expect(over.status == 429 && over.json.errorCode == "RATE_LIMITED", "\(over.body)")
        _ = try await smtp.message(to: "p3@example.com")
        #expect(smtp.messages(to: "p4@example.com").isEmpty)
        #expect(try await host.request("GET", "/api/auth/orgs/\(org)/invites", token: ann).json.items.count == 3)

        let noMail = Self.manifest.replacingOccurrences(of: #""routes": [],"#, with: #""routes": [], "plugins": {"auth.code": {"use": "none"}},"#)
        let bare = try await HostProcess.start(manifest: noMail, dev: false)
        defer { bare.stop() }
        _ = try await bare.request("POST", "/api/entities/User", json: #"{"email":"ann@example.com"}"#, token: HostProcess.adminToken)
        let bareAnn = try await bare.mintSession(try #require(try await bare.request("GET", "/api/entities/User", token: HostProcess.adminToken).json["data"].items.first?["id"].string))
        let bareOrg = try #require(try await Self.create(bare, bareAnn, "Acme").json["id"].string)
        let stub = try await Self.invite(bare, bareAnn, bareOrg, "bob@example.com")
        #expect(stub.status == 501 && stub.json.errorCode == "CAPABILITY_UNAVAILABLE", "\(stub.body)")
        #expect(try await bare.request("GET", "/api/auth/orgs/\(bareOrg)/invites", token: bareAnn).json.items.isEmpty, "nothing half-done")
    }
}
