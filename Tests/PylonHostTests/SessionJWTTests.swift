import Foundation
import Testing

/// HS256 JWTs through the real host (issue 19, pylon-aux.md §1.1 step 3 and §1.3): minted
/// for a signed-in caller, accepted back as that user with their organisation and roles,
/// never as the admin; forged, tampered, other-issuer and expired tokens get 401.
@Suite("JWTs: POST /api/auth/jwt and Bearer JWTs (black-box, real pylon-host)")
struct SessionJWTTests {
    static let env = ["PYLON_JWT_SECRET": "a-jwt-secret-for-the-tests-0123456789", "PYLON_JWT_ISSUER": "tests"]

    @Test("A minted JWT signs its user in; tampering, another issuer or secret, alg none and the admin's get nothing")
    func lifecycle() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.env.merging(ApiKeyTests.pepper) { $1 }, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let minted = try await host.request("POST", "/api/auth/jwt", token: ann)
        let jwt = try #require(minted.json["token"].string, "\(minted.body)")
        #expect(jwt.split(separator: ".").count == 3 && (minted.json["expires_at"].int ?? 0) > 0)
        // iat and exp are whole seconds (verifiers such as Rust's jsonwebtoken reject fractions).
        var payload = String(jwt.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        let claims = String(decoding: Data(base64Encoded: payload) ?? Data(), as: UTF8.self)
        let exp = (try TestJSON.parse(claims) as Any?)["exp"]
        #expect(exp.int == minted.json["expires_at"].int && !claims.contains("."), "\(claims)")
        let me = try await host.request("GET", "/api/auth/me", token: jwt)
        #expect(me.status == 200 && me.json["user_id"].string == "ann" && me.json["is_admin"].bool == false, "\(me.body)")
        let note = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"ann","title":"by jwt"}"#, token: jwt)
        #expect(note.status == 201, "\(note.body)")

        // A JWT is no session: it cannot make credentials or change the account; nor can an
        // API key turn itself into a JWT.
        for (method, path, body) in [("POST", "/api/auth/jwt", "{}"), ("POST", "/api/auth/api-keys", "{}"),
                                     ("DELETE", "/api/auth/account", nil), ("DELETE", "/api/auth/sessions", nil),
                                     ("POST", "/api/auth/password/change", #"{"currentPassword":"x","newPassword":"yyyyyyyyyyyy"}"#)] {
            let r = try await host.request(method, path, json: body, token: jwt)
            #expect(r.status == 403 && r.json.errorCode == "SESSION_REQUIRED", "\(method) \(path): \(r.body)")
        }
        #expect(try await host.me(ann) == "ann", "the session is untouched")
        let key = try #require(try await ApiKeyTests.create(host, ann).json["key"].string)
        let fromKey = try await host.request("POST", "/api/auth/jwt", token: key)
        #expect(fromKey.status == 403 && fromKey.json.errorCode == "API_KEY_AUTH_FORBIDDEN", "\(fromKey.body)")
        let guest = try #require(try await host.request("POST", "/api/auth/guest").json["token"].string)
        let guestJWT = try #require(try await host.request("POST", "/api/auth/jwt", token: guest).json["token"].string)
        #expect(try await host.request("GET", "/api/auth/me", token: guestJWT).json["is_guest"].bool == true, "a guest's JWT is a guest's")

        // The admin's JWT is a plain user called __admin__, without admin rights.
        let adminJWT = try #require(try await host.request("POST", "/api/auth/jwt", token: HostProcess.adminToken).json["token"].string)
        let asAdmin = try await host.request("GET", "/api/auth/me", token: adminJWT)
        #expect(asAdmin.json["is_admin"].bool == false && asAdmin.json["roles"].items.isEmpty, "\(asAdmin.body)")
        #expect(try await host.request("GET", "/api/export", token: adminJWT).status == 403)

        let parts = jwt.split(separator: ".").map(String.init)
        let noneHeader = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        var flipped = Array(parts[2])
        flipped[0] = flipped[0] == "A" ? "B" : "A"
        for bad in [parts[0] + "." + parts[1] + "." + String(flipped), noneHeader + "." + parts[1] + "." + parts[2],
                    parts[0] + ".e30." + parts[2], "a.b.c"] {
            let r = try await host.request("GET", "/api/auth/me", token: bad)
            #expect(r.status == 401 && r.json.errorCode == "INVALID_JWT", "\(bad.prefix(60)): \(r.body)")
        }
        // Unsigned (an empty third part) is not a JWT at all: an unknown token, so anonymous.
        let unsigned = try await host.request("GET", "/api/auth/me", token: noneHeader + "." + parts[1] + ".")
        #expect(unsigned.status == 200 && unsigned.json["user_id"].isNull, "\(unsigned.body)")
        // Another host with another secret, or another issuer, refuses this one.
        for env in [["PYLON_JWT_SECRET": "another-secret-0123456789012345", "PYLON_JWT_ISSUER": "tests"],
                    ["PYLON_JWT_SECRET": Self.env["PYLON_JWT_SECRET"]!, "PYLON_JWT_ISSUER": "others"]] {
            let other = try await HostProcess.start(manifest: PushScopeTests.manifest, env: env, dev: false)
            defer { other.stop() }
            let fresh = try #require(try await host.request("POST", "/api/auth/jwt", token: ann).json["token"].string)
            #expect(try await other.request("GET", "/api/auth/me", token: fresh).status == 401)
        }
    }

    @Test("A JWT stops working when it expires (PYLON_JWT_LIFETIME_SECS)")
    func expiry() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.env.merging(["PYLON_JWT_LIFETIME_SECS": "1"]) { $1 },
                                               dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let jwt = try #require(try await host.request("POST", "/api/auth/jwt", token: ann).json["token"].string)
        _ = try await eventuallyAsync("the JWT expires") {
            let r = try await host.request("GET", "/api/auth/me", token: jwt)
            return r.status == 401 && r.json.errorCode == "INVALID_JWT" ? true : nil
        }
    }

    @Test("A stream opened with a JWT reads as its user (it was anonymous) and ends when the token expires", arguments: [TestStore.sqlite, TestStore.postgres])
    func streamsEndWithTheToken(store: TestStore) async throws {
        // Long enough for a loaded machine to connect and see a row before it lapses.
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, env: Self.env.merging(["PYLON_JWT_LIFETIME_SECS": "45"]) { $1 },
                                               dev: false, store: store)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let minted = try await host.request("POST", "/api/auth/jwt", token: ann)
        let jwt = try #require(minted.json["token"].string, "\(minted.body)")
        let ws = try await TestWebSocket.connect(port: host.port, token: jwt, label: "ann's JWT")
        let events = try await TestEventStream.connect(port: host.port, token: jwt, label: "ann's JWT SSE")
        let note = try await host.request("POST", "/api/entities/Note", json: #"{"ownerId":"ann","title":"mine"}"#, token: ann)
        let id = try #require(note.json["id"].string, "\(note.body)")
        _ = try await ws.waitForEvent(rowID: id, kind: "insert", timeout: 40)  // ann's row: the stream reads as ann
        let closed = try await ws.waitForClose(timeout: 180)
        #expect(closed?.code == 1008, "the JWT's stream ends when it expires: \(ws.summary)")
        try await events.waitForEnd(timeout: 180)
        #expect(events.events.contains { $0.data.contains(id) }, "the SSE stream read as ann too: \(events.summary)")
        _ = try await eventuallyAsync("the JWT no longer works either") {
            try await host.request("GET", "/api/auth/me", token: jwt).status == 401 ? true : nil
        }
        ws.disconnect()
    }

    @Test("Without PYLON_JWT_SECRET: 501 JWT_NOT_CONFIGURED; without PYLON_JWT_ISSUER JWTs are minted but refused (JWT_MISCONFIGURED); anonymous callers get 401")
    func configuration() async throws {
        let none = try await HostProcess.start(manifest: PushScopeTests.manifest, dev: false)
        defer { none.stop() }
        let ann = try await none.mintSession("ann")
        let r = try await none.request("POST", "/api/auth/jwt", token: ann)
        #expect(r.status == 501 && r.json.errorCode == "JWT_NOT_CONFIGURED", "\(r.body)")

        let noIssuer = try await HostProcess.start(manifest: PushScopeTests.manifest, env: ["PYLON_JWT_SECRET": Self.env["PYLON_JWT_SECRET"]!], dev: false)
        defer { noIssuer.stop() }
        #expect(try await noIssuer.request("POST", "/api/auth/jwt").status == 401)
        let bob = try await noIssuer.mintSession("bob")
        let jwt = try #require(try await noIssuer.request("POST", "/api/auth/jwt", token: bob).json["token"].string)
        let me = try await noIssuer.request("GET", "/api/auth/me", token: jwt)
        #expect(me.status == 401 && me.json.errorCode == "JWT_MISCONFIGURED", "\(me.body)")
    }
}
