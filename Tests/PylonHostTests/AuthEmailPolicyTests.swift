import Foundation
import Testing

/// `auth.email` in policies through the real host (black-box, real SMTP server for the
/// verification code and the email-change link): it is the signed-in user's address only
/// once verified, for sessions and API keys alike, on every read and write path and in
/// realtime; an email change takes the old address's rows away at once, open streams
/// included. SQLite and Postgres.
@Suite("auth.email in policies: the verified address only, current after a change (black-box, SQLite and Postgres)")
struct AuthEmailPolicyTests {
    static let manifest = """
    {"manifest_version": 1, "name": "teams", "version": "0.1.0",
     "entities": [
       {"name": "User", "fields": [
          {"name": "email", "type": "string", "optional": false, "unique": true},
          {"name": "displayName", "type": "string", "optional": true, "unique": false},
          {"name": "emailVerified", "type": "string", "optional": true, "unique": false},
          {"name": "createdAt", "type": "string", "optional": true, "unique": false}], "indexes": []},
       {"name": "Invite", "fields": [
          {"name": "invitee", "type": "string", "optional": false, "unique": false},
          {"name": "note", "type": "string", "optional": false, "unique": false}], "indexes": []}],
     "routes": [],
     "policies": [
       {"name": "users", "entity": "User", "allowRead": "auth.userId == data.id", "allowInsert": "false",
        "allowUpdate": "false", "allowDelete": "false"},
       {"name": "invites", "entity": "Invite", "allowRead": "auth.email == data.invitee",
        "allowInsert": "auth.email == data.invitee", "allowUpdate": "auth.email == data.invitee", "allowDelete": "false"}]}
    """

    /// The ids of the invites `token` can list.
    static func listed(_ host: HostProcess, _ token: String) async throws -> Set<String> {
        let r = try await host.request("GET", "/api/entities/Invite", token: token)
        #expect(r.status == 200, "\(r.body)")
        return Set(r.json["data"].items.compactMap { $0["id"].string })
    }

    /// What every read path shows `token` of the invites: the list, a filtered query and a
    /// count, which must agree.
    static func visible(_ host: HostProcess, _ token: String) async throws -> Set<String> {
        let ids = try await listed(host, token)
        let queried = try await host.request("POST", "/api/query/Invite", json: "{}", token: token)
        #expect(Set(queried.json.items.compactMap { $0["id"].string }) == ids, "\(queried.body)")
        let counted = try await host.request("POST", "/api/aggregate/Invite", json: #"{"count":"*"}"#, token: token)
        #expect(counted.json["rows"][0]["count"].int ?? 0 == ids.count, "\(counted.body)")
        return ids
    }

    static func invite(_ host: HostProcess, _ invitee: String, token: String = HostProcess.adminToken) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/entities/Invite", json: #"{"invitee":\#(TestJSON.quote(invitee)),"note":"hi"}"#, token: token)
    }

    static func adminInvite(_ host: HostProcess, _ invitee: String) async throws -> String {
        try await host.create("Invite", #"{"invitee":\#(TestJSON.quote(invitee)),"note":"hi"}"#)
    }

    /// The invites of the change events `stream` got (it also gets the user's own row).
    static func seen(_ stream: TestEventStream) -> Set<String> {
        Set(stream.changeEvents.compactMap { e in
            let json = e.json as Any?
            return json["entity"].string == "Invite" ? json["row_id"].string : nil
        })
    }

    @Test("Unverified: nothing (sessions and API keys); verified: its own rows on every path and in realtime; after an email change the old address matches nothing, open streams end", arguments: [TestStore.sqlite, TestStore.postgres])
    func verifiedAddressOnly(store: TestStore) async throws {
        let smtp = try await MailSink.start()
        defer { smtp.stop() }
        let host = try await HostProcess.start(manifest: Self.manifest, env: MagicCodeTests.env(smtp).merging(ApiKeyTests.pepper) { a, _ in a },
                                               dev: false, store: store)
        defer { host.stop() }
        let forAnn = try await Self.adminInvite(host, "ann@example.com")
        let forBob = try await Self.adminInvite(host, "bob@example.com")
        let forNew = try await Self.adminInvite(host, "ann.new@example.com")

        // Registered with the address but never proved it: the address grants nothing.
        let ann = try await OrgTests.user(host, "ann@example.com")
        let key = try #require(try await ApiKeyTests.create(host, ann.token).json["key"].string)
        for (who, token) in [("session", ann.token), ("API key", key)] {
            #expect(try await Self.visible(host, token).isEmpty, "unverified \(who)")
            #expect(try await host.request("GET", "/api/entities/Invite/\(forAnn)", token: token).status == 404, "unverified \(who)")
            #expect(try await host.request("GET", "/api/lookup/Invite/invitee/ann@example.com", token: token).status == 404, "unverified \(who)")
            let wrote = try await Self.invite(host, "ann@example.com", token: token)
            #expect(wrote.status == 403, "unverified \(who): \(wrote.body)")
        }

        // Verified with a code sent to it, in the same session: the cached session follows.
        _ = try await host.request("POST", "/api/auth/email/send-verification", token: ann.token)
        let code = try #require(MailSink.code(in: try await smtp.message(to: "ann@example.com")))
        let verified = try await host.request("POST", "/api/auth/email/verify", json: #"{"code":"\#(code)"}"#, token: ann.token)
        #expect(verified.status == 200, "\(verified.body)")
        var mine: Set<String> = [forAnn]
        for (who, token) in [("session", ann.token), ("API key", key)] {
            #expect(try await Self.visible(host, token) == mine, "verified \(who)")
            #expect(try await host.request("GET", "/api/entities/Invite/\(forAnn)", token: token).status == 200, "verified \(who)")
            #expect(try await host.request("GET", "/api/entities/Invite/\(forBob)", token: token).status == 404, "verified \(who)")
            let wrote = try await Self.invite(host, "ann@example.com", token: token)
            #expect(wrote.status == 201, "verified \(who): \(wrote.body)")
            mine.insert(try #require(wrote.json["id"].string))
            #expect(try await Self.invite(host, "bob@example.com", token: token).status == 403, "verified \(who) writes only its own address")
        }
        let patched = try await host.request("PATCH", "/api/entities/Invite/\(forAnn)", json: #"{"note":"seen"}"#, token: ann.token)
        #expect(patched.status == 200, "\(patched.body)")
        #expect(try await host.request("PATCH", "/api/entities/Invite/\(forAnn)", json: #"{"invitee":"bob@example.com"}"#, token: ann.token).status == 403,
                "a row cannot be handed to another address")

        // Realtime: the stream replays and then delivers exactly the rows of the address.
        let stream = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0", token: ann.token, label: "ann SSE")
        defer { stream.close() }
        #expect(stream.status == 200, "\(stream.summary)")
        let live = try await Self.adminInvite(host, "ann@example.com")
        let hidden = try await Self.adminInvite(host, "bob@example.com")
        let last = try await Self.adminInvite(host, "ann@example.com")
        try await stream.waitForEvent(rowID: last)
        #expect(Self.seen(stream) == mine.union([live, last]), "only ann@'s rows: \(stream.summary)")
        #expect(!Self.seen(stream).contains(hidden))
        mine.formUnion([live, last])

        // The address changes (confirmed by a link to the new one): the old one's rows go at
        // once for the session and the key, and the open stream ends.
        _ = try await EmailChangeTests.request(host, ann.token, "ann.new@example.com")
        let link = try await EmailChangeTests.link(smtp, "ann.new@example.com")
        let confirmed = try await EmailChangeTests.confirm(host, link)
        #expect(confirmed.status == 200, "\(confirmed.body)")
        for (who, token) in [("session", ann.token), ("API key", key)] {
            #expect(try await Self.visible(host, token) == [forNew], "after the change, \(who)")
            #expect(try await host.request("GET", "/api/entities/Invite/\(forAnn)", token: token).status == 404, "after the change, \(who)")
            #expect(try await Self.invite(host, "ann@example.com", token: token).status == 403, "after the change, \(who)")
        }
        try await stream.waitForEnd()
        #expect(stream.events.contains { $0.event == "session_ended" }, "\(stream.summary)")

        // A new stream reads as the new address.
        let again = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0", token: ann.token, label: "ann SSE again")
        defer { again.close() }
        let oldAddress = try await Self.adminInvite(host, "ann@example.com")
        let newAddress = try await Self.adminInvite(host, "ann.new@example.com")
        try await again.waitForEvent(rowID: newAddress)
        #expect(Self.seen(again) == [forNew, newAddress], "only ann.new@'s rows: \(again.summary)")
        #expect(!Self.seen(again).contains(oldAddress))
    }
}
