import Foundation
import Testing

/// API keys through the real host (issue 19): made, used, listed and revoked by a signed-in
/// user on SQLite and Postgres; a key acts as its user and can do nothing about keys,
/// sessions or passwords; malformed, tampered, revoked and expired keys get 401; the
/// database keeps no secret; no pepper outside --dev means no keys.
@Suite("API keys: create, use, list, revoke (black-box, real pylon-host, SQLite and Postgres)")
struct ApiKeyTests {
    static let pepper = ["PYLON_API_KEY_PEPPER": "a-test-pepper-that-is-long-enough-0123456789"]

    static func create(_ host: HostProcess, _ token: String, _ body: String = "{}") async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/auth/api-keys", json: body, token: token)
    }

    @Test("A key signs its user in (api_key_id, api_key_scopes), writes as them under the policies, is listed without its secret, and stops working when revoked", arguments: [TestStore.sqlite, TestStore.postgres])
    func lifecycle(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.pepper, dev: false, store: store)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let made = try await Self.create(host, ann, #"{"name":"ci","scopes":"notes:write"}"#)
        #expect(made.status == 200, "\(made.body)")
        let key = try #require(made.json["key"].string, "\(made.body)")
        #expect(key.range(of: #"^pk\.key_[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$"#, options: .regularExpression) != nil, "\(key)")
        #expect(made.json["prefix"].string == String(key.prefix(16)) && made.json["name"].string == "ci")
        let id = try #require(made.json["id"].string)

        let me = try await host.request("GET", "/api/auth/me", token: key)
        #expect(me.json["user_id"].string == "ann" && me.json["api_key_id"].string == id
                && me.json["api_key_scopes"].string == "notes:write", "\(me.body)")
        let note = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"ann","title":"by key"}"#, token: key)
        #expect(note.status == 201, "\(note.body)")
        let forged = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"bob","title":"as bob"}"#, token: key)
        #expect(forged.status == 403, "the key is ann, not anyone: \(forged.body)")

        let listed = try await host.request("GET", "/api/auth/api-keys", token: ann)
        #expect(listed.json.items.count == 1 && listed.json.items.first?["id"].string == id, "\(listed.body)")
        #expect(!listed.body.contains(String(key.suffix(43))), "the secret is never shown again")
        if let file = host.storeFile, FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") {
            let dump = try await TestCommand.run("/usr/bin/sqlite3", [file, ".dump _pylon_api_keys"]).stdout
            #expect(dump.contains(id) && !dump.contains(String(key.suffix(43))), "stored as an HMAC only: \(dump)")
        }

        // A key manages nothing about its user's credentials.
        for (method, path) in [("POST", "/api/auth/api-keys"), ("GET", "/api/auth/api-keys"), ("GET", "/api/auth/sessions"),
                               ("DELETE", "/api/auth/sessions"), ("DELETE", "/api/auth/api-keys/\(id)")] {
            let r = try await host.request(method, path, json: method == "POST" ? "{}" : nil, token: key)
            #expect(r.status == 403 && r.json.errorCode == "API_KEY_AUTH_FORBIDDEN", "\(method) \(path): \(r.body)")
        }
        // Another user cannot see or revoke it: 404, as for a key that does not exist.
        let bob = try await host.mintSession("bob")
        #expect(try await host.request("GET", "/api/auth/api-keys", token: bob).json.items.isEmpty)
        let theirs = try await host.request("DELETE", "/api/auth/api-keys/\(id)", token: bob)
        let none = try await host.request("DELETE", "/api/auth/api-keys/key_nope", token: bob)
        #expect(theirs.status == 404 && theirs.body == none.body, "\(theirs.body)")

        let revoked = try await host.request("DELETE", "/api/auth/api-keys/\(id)", token: ann)
        #expect(revoked.status == 200 && revoked.json["revoked"].bool == true, "\(revoked.body)")
        let after = try await host.request("GET", "/api/auth/me", token: key)
        #expect(after.status == 401 && after.json.errorCode == "INVALID_API_KEY", "\(after.body)")
    }

    @Test("A stream opened with a key sees its user's rows, and ends when the key is revoked (alone or with the account's keys)", arguments: [TestStore.sqlite, TestStore.postgres])
    func streamsEndWithTheKey(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.pepper, dev: false, store: store)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        var keys: [(key: String, id: String)] = []
        for name in ["one", "two"] {
            let made = try await Self.create(host, ann, #"{"name":"\#(name)"}"#)
            keys.append((try #require(made.json["key"].string, "\(made.body)"), try #require(made.json["id"].string)))
        }
        let first = try await TestWebSocket.connect(port: host.port, token: keys[0].key, label: "ann's key one")
        let second = try await TestWebSocket.connect(port: host.port, token: keys[1].key, label: "ann's key two")
        let note = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"ann","title":"mine"}"#, token: ann)
        let id = try #require(note.json["id"].string, "\(note.body)")
        for ws in [first, second] {
            _ = try await ws.waitForEvent(rowID: id, kind: "insert", timeout: 60)  // ann's row: the stream reads as ann
        }
        let revoked = try await host.request("DELETE", "/api/auth/api-keys/\(keys[0].id)", token: ann)
        #expect(revoked.status == 200, "\(revoked.body)")
        let closed = try await first.waitForClose(timeout: 60)
        #expect(closed?.code == 1008, "a revoked key's stream ends: \(first.summary)")
        // The other key's stream lives on, until the account (and with it every key) goes.
        let later = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"ann","title":"later"}"#, token: ann)
        _ = try await second.waitForEvent(rowID: try #require(later.json["id"].string), kind: "insert", timeout: 60)
        let gone = try await host.request("DELETE", "/api/auth/account", token: ann)
        #expect(gone.status == 200 && gone.json["revoked_api_keys"].int == 1, "\(gone.body)")
        #expect(try await second.waitForClose(timeout: 60)?.code == 1008, "\(second.summary)")
        first.disconnect(); second.disconnect()
    }

    @Test("Guessing keys: a wrong secret for a key that exists and a key that does not get the same 401; after Pylon's LOGIN threshold (5 a minute per address) every key from that address gets 429, a right one too; using keys counts nothing")
    func bruteForce() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest,
                                               env: Self.pepper.merging(["PYLON_AUTH_RATE_LIMIT_LOGIN": "5,30"]) { $1 }, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let key = try #require(try await Self.create(host, ann).json["key"].string)
        for _ in 1...8 { #expect(try await host.request("GET", "/api/auth/me", token: key).status == 200, "a right key is never counted") }
        let id = key.split(separator: ".")[1]
        let wrongSecret = "pk.\(id).\(String(repeating: "A", count: 43))"
        let noSuchKey = "pk.key_\(String(repeating: "B", count: 32)).\(String(repeating: "A", count: 43))"
        var bodies: Set<String> = []
        for token in [wrongSecret, noSuchKey, wrongSecret, noSuchKey, "pk.garbage"] {
            let r = try await host.request("GET", "/api/auth/me", token: token)
            #expect(r.status == 401 && r.json.errorCode == "INVALID_API_KEY", "\(token): \(r.body)")
            bodies.insert(r.body)
        }
        #expect(bodies.count == 1, "one answer whether or not the key exists: \(bodies)")
        for token in [key, wrongSecret, noSuchKey] {
            let r = try await host.request("GET", "/api/auth/me", token: token)
            #expect(r.status == 429 && r.json.errorCode == "RATE_LIMITED", "after five wrong keys: \(r.body)")
        }
        #expect(try await host.request("GET", "/api/auth/me", token: ann).status == 200, "a session from the same address is not held back")
    }

    @Test("Guessing through WebSocket handshakes (header or bearer. subprotocol) counts in the same LOGIN bucket: after five wrong keys the right one is refused there and over HTTP")
    func bruteForceOverWebSockets() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest,
                                               env: Self.pepper.merging(["PYLON_AUTH_RATE_LIMIT_LOGIN": "5,30"]) { $1 }, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let key = try #require(try await Self.create(host, ann).json["key"].string)
        let right = try await TestWebSocket.connect(port: host.port, protocols: ["bearer." + key], label: "right key")
        right.disconnect()
        let wrong = "pk.key_\(String(repeating: "B", count: 32)).\(String(repeating: "A", count: 43))"
        for i in 1...5 {
            do {
                let ws = i % 2 == 0 ? try await TestWebSocket.connect(port: host.port, token: wrong, label: "wrong key \(i)")
                                    : try await TestWebSocket.connect(port: host.port, protocols: ["bearer." + wrong], label: "wrong key \(i)")
                ws.disconnect()
                Issue.record("a wrong key opened a stream")
            } catch {}
        }
        let afterHTTP = try await host.request("GET", "/api/auth/me", token: key)
        #expect(afterHTTP.status == 429 && afterHTTP.json.errorCode == "RATE_LIMITED", "five wrong keys by handshake count: \(afterHTTP.body)")
        do {
            let ws = try await TestWebSocket.connect(port: host.port, protocols: ["bearer." + key], label: "right key, too late")
            ws.disconnect()
            Issue.record("the right key opened a stream after five wrong ones")
        } catch {
            // A declined upgrade is answered with its status and the JSON error body.
            #expect("\(error)".contains("answered 429") && "\(error)".contains("RATE_LIMITED"), "\(error)")
        }
        #expect(try await host.request("GET", "/api/auth/me", token: ann).status == 200, "a session from the same address is not held back")
    }

    @Test("Malformed, tampered and expired keys get 401 INVALID_API_KEY; bad bodies (and bodies that are no object) 400; anonymous 401, admin and guests 403")
    func hostile() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.pepper, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let key = try #require(try await Self.create(host, ann).json["key"].string)
        var tampered = Array(key)
        tampered[tampered.count - 1] = tampered.last == "A" ? "B" : "A"
        for bad in ["pk.", "pk.key_x.y", String(tampered), key + "A", key + ".x", String(key.dropLast()),
                    "pk." + String(repeating: "a", count: 10_000), key.replacingOccurrences(of: "pk.", with: "pk.key_")] {
            let r = try await host.request("GET", "/api/auth/me", token: bad)
            #expect(r.status == 401 && r.json.errorCode == "INVALID_API_KEY", "\(bad.prefix(40)): \(r.body)")
        }
        for body in [#"{"name":5}"#, #"{"scopes":[]}"#, #"{"expires_at":1}"#, #"{"expires_at":"soon"}"#,
                     #"{"name":"\#(String(repeating: "n", count: 101))"}"#, "[]", "null", #""x""#, "7"] {
            let r = try await Self.create(host, ann, body)
            #expect(r.status == 400, "\(body): \(r.body)")
        }
        let guest = try await GuestUpgradeTests.guest(host)
        let byGuest = try await Self.create(host, guest)
        #expect(byGuest.status == 403 && byGuest.json.errorCode == "GUEST_FORBIDDEN", "a guest mints no keys: \(byGuest.body)")
        #expect(try await host.request("POST", "/api/auth/api-keys", json: "{}").status == 401)
        #expect(try await Self.create(host, HostProcess.adminToken).status == 403)

        let soon = Int(Date().timeIntervalSince1970) + 2
        // Whether it works before it expires depends on the machine's speed: only its end is checked.
        let short = try #require(try await Self.create(host, ann, #"{"expires_at":\#(soon)}"#).json["key"].string)
        _ = try await eventuallyAsync("the key expires") {
            try await host.request("GET", "/api/auth/me", token: short).status == 401 ? true : nil
        }
    }

    @Test("Without PYLON_API_KEY_PEPPER outside --dev: 501 API_KEYS_NOT_CONFIGURED, and a pk. token is refused")
    func noPepper() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let r = try await Self.create(host, ann)
        #expect(r.status == 501 && r.json.errorCode == "API_KEYS_NOT_CONFIGURED", "\(r.body)")
        let token = "pk.key_" + String(repeating: "a", count: 32) + "." + String(repeating: "b", count: 43)
        #expect(try await host.request("GET", "/api/auth/me", token: token).status == 401)
    }
}
