import Foundation
import Testing

/// `POST /api/auth/upgrade` (pylon-aux.md §1.4): a guest session becomes a user's session in
/// place — in --dev for the caller's own session, otherwise only with the admin token.
@Suite("Guest upgrade: a guest session becomes a user's, its streams reconnect as the user (black-box)")
struct GuestUpgradeTests {
    static let admin = HostProcess.adminToken

    static func guest(_ host: HostProcess) async throws -> String {
        let g = try await host.request("POST", "/api/auth/guest")
        return try #require(g.json["token"].string, "\(g.body)")
    }

    @Test("--dev: the caller's guest session becomes alice's; its stream ends; a real session, a guest id or no user_id is refused")
    func inDev() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest)
        defer { host.stop() }
        let token = try await Self.guest(host)
        let ws = try await TestWebSocket.connect(port: host.port, token: token, label: "guest stream")
        for body in [#"{}"#, #"{"user_id":""}"#, #"{"user_id":"guest_0011"}"#] {
            let r = try await host.request("POST", "/api/auth/upgrade", json: body, token: token)
            #expect(r.status == 400 && r.json.errorCode == "MISSING_FIELD", "\(body): \(r.body)")
        }
        let up = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"alice"}"#, token: token)
        #expect(up.status == 200 && up.json["upgraded"].bool == true && up.json["user_id"].string == "alice", "\(up.body)")
        let me = try await host.request("GET", "/api/auth/me", token: token)
        #expect(me.json["user_id"].string == "alice" && me.json["is_guest"].bool != true, "\(me.body)")
        #expect(try await ws.waitForClose(timeout: 60)?.code == 1008, "the guest's stream ends: \(ws.summary)")
        let again = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"bob"}"#, token: token)
        #expect(again.status == 400 && again.json.errorCode == "UPGRADE_FAILED", "a user's session is not upgraded again: \(again.body)")
        ws.disconnect()
    }

    @Test("Outside --dev only the admin token upgrades, naming the session; a guest cannot upgrade itself")
    func outsideDev() async throws {
        let host = try await HostProcess.start(manifest: PushScopeTests.manifest, dev: false)
        defer { host.stop() }
        let token = try await Self.guest(host)
        let own = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"alice"}"#, token: token)
        #expect(own.status == 403, "\(own.body)")
        let unnamed = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"alice"}"#, token: Self.admin)
        #expect(unnamed.status == 400 && unnamed.json.errorCode == "MISSING_FIELD", "\(unnamed.body)")
        let made = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"alice","token":"\#(token)"}"#, token: Self.admin)
        #expect(made.status == 200, "\(made.body)")
        #expect(try await host.request("GET", "/api/auth/me", token: token).json["user_id"].string == "alice")
        let unknown = try await host.request("POST", "/api/auth/upgrade", json: #"{"user_id":"alice","token":"pylon_nope"}"#, token: Self.admin)
        #expect(unknown.status == 400 && unknown.json.errorCode == "UPGRADE_FAILED", "\(unknown.body)")
    }
}
