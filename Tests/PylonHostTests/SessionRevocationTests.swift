import Foundation
import Testing

/// Sessions end everywhere at once (DESIGN.md §4, issue 16 item 1): every way a session
/// can end — logout, `DELETE /api/auth/session`, `DELETE /api/auth/sessions`, expiry, and
/// an UPDATE or DELETE of its row in SQL — ends the WebSockets (both ports) and SSE
/// streams (both ports) it authenticated, makes its HTTP requests anonymous, and leaves the
/// streams of other sessions alone; on Postgres, across hosts sharing the database.
/// Waits are bounded and generous; nothing asserts on timing.
@Suite("Sessions end everywhere at once: revocation and expiry end WS/SSE streams (black-box, real pylon-host)")
struct SessionRevocationTests {
    static let admin = HostProcess.adminToken

    static func start() async throws -> HostProcess {
        try await HostProcess.start(manifest: RealtimeTests.manifest, dev: true, compatPorts: true)
    }

    @Test("POST /api/auth/logout and DELETE /api/auth/session end the session's 4 streams (1008 `session revoked` / session_ended), at once anonymous over HTTP, no later events, no relays from it; other sessions' streams live on")
    func logoutEndsStreams() async throws {
        let host = try await Self.start()
        defer { host.kill9() } // open SSE streams hold up a graceful stop
        let witness = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "admin witness")
        try await SessionStreams.live(witness)
        let bob = try await host.mintSession("bob")
        let bobs = try await SessionStreams.open(host, token: bob, label: "bob")

        for (method, path) in [("POST", "/api/auth/logout"), ("DELETE", "/api/auth/session")] {
            let alice = try await host.mintSession("alice")
            #expect(try await host.me(alice) == "alice")
            let streams = try await SessionStreams.open(host, token: alice, label: "alice (\(method) \(path))")
            let r = try await host.request(method, path, token: alice)
            #expect(r.status == 200 && r.json["revoked"].bool == true, "\(method) \(path): \(r.status) \(r.body)")
            #expect(try await host.me(alice) == nil, "\(method) \(path): the revoked token is anonymous at once")
            try await streams.expectEnded("\(method) \(path)")
            let counts = streams.changeCounts
            // The revoked WebSocket speaks for no one any more.
            try? streams.sockets[0].sendText(#"{"type":"topic","topic":"after-logout","data":1}"#)
            _ = try await host.insertSeenBy(witness)
            try await SessionStreams.live(witness)
            #expect(streams.changeCounts == counts, "no change event after the end: \(streams.sockets.map(\.summary)) \(streams.events.map(\.summary))")
            #expect(!witness.jsonMessages.contains { $0["topic"].string == "after-logout" }, "no relay from a revoked session: \(witness.summary)")
            // A second logout with the same token revokes nothing.
            let again = try await host.request(method, path, token: alice)
            #expect(again.status == 200 && again.json["revoked"].bool == false, "\(again.body)")
            streams.close()
        }
        bobs.expectOpen("bob's session was not revoked")
        let id = try await host.insertSeenBy(witness)
        for ws in bobs.sockets { try await ws.waitForEvent(rowID: id) }
        for s in bobs.events { try await s.waitForEvent(rowID: id) }
        bobs.close()
    }

    @Test("GET /api/auth/sessions lists the caller's sessions without token material; DELETE /api/auth/sessions revokes all of them ({revoked_count}), ending every stream of each; 401 anonymous, 403 admin")
    func revokeAllSessions() async throws {
        let host = try await Self.start()
        defer { host.kill9() }
        let first = try await host.mintSession("carol")
        let second = try await host.mintSession("carol")
        let dave = try await host.mintSession("dave")

        let list = try await host.request("GET", "/api/auth/sessions", token: first)
        #expect(list.status == 200, "\(list.body)")
        let items = list.json.items
        #expect(items.count == 2, "\(list.body)")
        #expect(items.allSatisfy { $0["user_id"].string == "carol" && ($0["id"].string?.count ?? 0) == 16 && $0["expires_at"].int != nil }, "\(list.body)")
        #expect(items.filter { $0["current"].bool == true }.count == 1, "exactly the caller's session is current: \(list.body)")
        for token in [first, second] {
            #expect(!list.body.contains(String(token.dropFirst(6).prefix(12))), "no part of a token in the list: \(list.body)")
        }
        #expect(try await host.request("GET", "/api/auth/sessions").status == 401)
        #expect(try await host.request("DELETE", "/api/auth/sessions").status == 401)
        let adm = try await host.request("DELETE", "/api/auth/sessions", token: Self.admin)
        #expect(adm.status == 403 && adm.json.errorCode == "FORBIDDEN", "\(adm.body)")

        let a = try await SessionStreams.open(host, token: first, label: "carol #1")
        let b = try await SessionStreams.open(host, token: second, label: "carol #2")
        let d = try await SessionStreams.open(host, token: dave, label: "dave")
        let r = try await host.request("DELETE", "/api/auth/sessions", token: second)
        #expect(r.status == 200 && r.json["revoked_count"].int == 2, "\(r.status) \(r.body)")
        #expect(try await host.me(first) == nil, "both of carol's tokens are anonymous at once")
        #expect(try await host.me(second) == nil, "both of carol's tokens are anonymous at once")
        try await a.expectEnded("DELETE /api/auth/sessions, the other session")
        try await b.expectEnded("DELETE /api/auth/sessions, the caller's session")
        d.expectOpen("dave is another user")
        #expect(try await host.me(dave) == "dave")
        a.close(); b.close(); d.close()
    }

    @Test("A session row deleted or expired by hand in SQL stops being honoured (HTTP anonymous, 4 streams ended) well before the 30-s session cache would expire; an expiry moved later keeps the streams")
    func sqlChangesEndSessions() async throws {
        let host = try await Self.start()
        defer { host.kill9() }
        let witness = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "admin witness")
        try await SessionStreams.live(witness)
        let cases: [(user: String, sql: (String) -> String)] = [
            ("erin", { "DELETE FROM _pylon_sessions WHERE user_id = '\($0)'" }),
            ("frank", { "UPDATE _pylon_sessions SET expires_at = 1 WHERE user_id = '\($0)'" }),
        ]
        for c in cases {
            let token = try await host.mintSession(c.user)
            #expect(try await host.me(token) == c.user) // now in the session cache
            let streams = try await SessionStreams.open(host, token: token, label: c.user)
            try await host.sql(c.sql(c.user))
            try await streams.expectEnded(c.sql(c.user))
            // The host dropped the session from its cache before ending the streams: not
            // honoured any more, though its 30-s cache entry is young.
            #expect(try await host.me(token) == nil, "\(c.sql(c.user)): the token is anonymous")
            let counts = streams.changeCounts
            _ = try await host.insertSeenBy(witness)
            #expect(streams.changeCounts == counts, "no change event after the end")
            streams.close()
        }

        // Moving the expiry later is a change too, but the session is still good.
        let grace = try await host.mintSession("grace")
        let kept = try await SessionStreams.open(host, token: grace, label: "grace")
        try await host.sql("UPDATE _pylon_sessions SET expires_at = expires_at + 3600 WHERE user_id = 'grace'")
        let id = try await host.insertSeenBy(witness)
        for ws in kept.sockets { try await ws.waitForEvent(rowID: id) }
        for s in kept.events { try await s.waitForEvent(rowID: id) }
        kept.expectOpen("an expiry moved later keeps the streams")
        #expect(try await host.me(grace) == "grace")

        // An expiry set a few seconds ahead: the streams end when it passes, with no further
        // database change.
        let now = Int(Date().timeIntervalSince1970)
        try await host.sql("UPDATE _pylon_sessions SET expires_at = \(now + 3) WHERE user_id = 'grace'")
        try await kept.expectEnded("expiry by time")
        #expect(try await host.me(grace) == nil)
        kept.close()
    }

    @Test("The manifest's auth.session.expires_in: a session ends when it expires (streams and HTTP)")
    func manifestExpiry() async throws {
        let manifest = RealtimeTests.manifest.replacingOccurrences(
            of: #""policies": []}"#, with: #""policies": [], "auth": {"session": {"expires_in": 8}}}"#)
        #expect(manifest != RealtimeTests.manifest)
        let host = try await HostProcess.start(manifest: manifest, dev: true, compatPorts: true)
        defer { host.kill9() }
        let r = try await host.request("POST", "/api/auth/session", json: #"{"user_id":"heidi"}"#, token: Self.admin)
        let token = try #require(r.json["token"].string, "\(r.body)")
        let expires = try #require(r.json["expires_at"].int, "\(r.body)")
        #expect(abs(expires - Int(Date().timeIntervalSince1970) - 8) <= 30, "expires_at follows expires_in: \(r.body)")
        // Opening may be slow on a loaded machine; whatever opened in time must end at expiry.
        let ws = try await TestWebSocket.connect(port: host.port, token: token, label: "heidi WS")
        let sse = try await TestEventStream.connect(port: host.sseCompatPort, path: "/", token: token, label: "heidi SSE port+2")
        let close = try await ws.waitForClose()
        #expect(close?.code == 1008, "\(ws.summary)")
        try await sse.waitForEnd()
        #expect(try await host.me(token) == nil)
        ws.disconnect(); sse.close()
    }
    // Always on Postgres. Under PYLON_TEST_DEFAULT_STORE the harness would give each host a
    // database of its own, so it runs only in the default (SQLite) pass.
    @Test("Postgres, two hosts on one database: logout on host A ends the session's streams on host B (both ports, WS and SSE) and B treats the token as anonymous; a session deleted in SQL ends its streams on both hosts, also when its log entry commits after a later-numbered one",
          .enabled(if: TestStore.defaultStore.name == TestStore.sqlite.name))
    func revocationAcrossHosts() async throws {
        let pg = try await TestPostgres.shared()
        let url = try await pg.freshDatabase()
        let a = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), compatPorts: true)
        defer { a.kill9() }
        let b = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), compatPorts: true)
        defer { b.kill9() }
        let witness = try await TestWebSocket.connect(port: b.port, token: Self.admin, label: "admin witness on B")
        try await SessionStreams.live(witness)

        let ivan = try await a.mintSession("ivan")
        #expect(try await b.me(ivan) == "ivan") // now in B's session cache
        let onB = try await SessionStreams.open(b, token: ivan, label: "ivan on B")
        let out = try await a.request("POST", "/api/auth/logout", token: ivan)
        #expect(out.status == 200 && out.json["revoked"].bool == true, "\(out.body)")
        try await onB.expectEnded("logout on host A")
        #expect(try await b.me(ivan) == nil, "host B no longer honours the token")
        let counts = onB.changeCounts
        _ = try await a.insertSeenBy(witness)
        #expect(onB.changeCounts == counts, "no change event after the end")
        onB.close()

        let judy = try await b.mintSession("judy")
        let judyA = try await SessionStreams.open(a, token: judy, label: "judy on A")
        let judyB = try await SessionStreams.open(b, token: judy, label: "judy on B")
        _ = try await pg.psql("DELETE FROM _pylon_sessions WHERE user_id = 'judy'", url: url)
        try await judyA.expectEnded("DELETE in SQL, host A")
        try await judyB.expectEnded("DELETE in SQL, host B")
        #expect(try await a.me(judy) == nil)
        #expect(try await b.me(judy) == nil)
        judyA.close(); judyB.close()

        // Out of order: kim's DELETE takes the next log number but commits seconds later,
        // after leo's (the next number) committed. The hosts pass over kim's number at
        // first, and must still end kim's streams when it commits.
        let kim = try await a.mintSession("kim")
        let leo = try await a.mintSession("leo")
        let kims = try await SessionStreams.open(b, token: kim, label: "kim on B")
        let leos = try await SessionStreams.open(b, token: leo, label: "leo on B")
        let sequence = "SELECT last_value FROM _pylon_session_changes_seq_seq"
        let before = try await pg.psql(sequence, url: url)
        let slow = Task {
            try await pg.psql("BEGIN; DELETE FROM _pylon_sessions WHERE user_id = 'kim'; SELECT pg_sleep(3); COMMIT", url: url)
        }
        var taken = before
        while taken == before { // kim's entry has its number
            try await Task.sleep(for: .milliseconds(20))
            taken = try await pg.psql(sequence, url: url)
        }
        _ = try await pg.psql("DELETE FROM _pylon_sessions WHERE user_id = 'leo'", url: url)
        try await leos.expectEnded("leo's DELETE, committed first")
        _ = try await slow.value
        try await kims.expectEnded("kim's DELETE, committed later with the earlier number")
        #expect(try await b.me(kim) == nil)
        kims.close(); leos.close()
    }
}
