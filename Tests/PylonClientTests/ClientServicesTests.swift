import Foundation
import Testing
@testable import PylonClient

/// Auth flows, functions (whole and streamed) and rooms between two clients.
@Suite(.serialized)
struct ClientServicesTests {
    @Test func everySignInFlow() async throws {
        let host = try await TestHost.start()
        let client = host.client()
        let email = "flows-\(UUID().uuidString.prefix(8))@example.com"
        let registered = try await client.auth.register(email: email, password: "correct horse battery")
        #expect(try await client.auth.me()["user_id"]?.stringValue == registered.userId)
        let wrong = await #expect(throws: PylonError.self) { try await client.auth.login(email: email, password: "wrong password!!") }
        #expect(wrong?.status == 401)
        let loggedIn = try await client.auth.login(email: email, password: "correct horse battery")
        #expect(loggedIn.userId == registered.userId)

        let refreshed = try await client.auth.refresh()
        #expect(refreshed.token != loggedIn.token)
        #expect(try await client.auth.me()["user_id"]?.stringValue == registered.userId)

        let key = try await client.auth.createApiKey(name: "cli")
        let keyClient = host.client()
        try await keyClient.auth.useApiKey(try #require(key["key"]?.stringValue))
        #expect(try await keyClient.auth.me()["user_id"]?.stringValue == registered.userId)

        let sent = try await client.auth.sendMagicCode(email: "magic-\(UUID().uuidString.prefix(8))@example.com")
        let code = try #require(sent["dev_code"]?.stringValue)
        let magic = try await client.auth.verifyMagicCode(email: try #require(sent["email"]?.stringValue), code: code)
        #expect(try await client.auth.me()["user_id"]?.stringValue == magic.userId)

        let guest = try await client.auth.guest()
        #expect(guest.isGuest)
        #expect(try await client.auth.me()["is_guest"] == .bool(true))

        try await client.auth.logout()
        #expect(client.auth.token == nil)
        #expect(try await client.auth.me()["user_id"]?.isNull ?? true)
        // The ended session no longer works.
        let ended = host.client(tokens: MemoryTokenStorage(guest.token))
        #expect(try await ended.auth.me()["user_id"]?.stringValue != guest.userId)

        let url = client.auth.oauthLoginURL(provider: "acme", callback: "myapp://done", errorCallback: "myapp://failed")
        #expect(url.absoluteString.hasPrefix(host.url.absoluteString + "/api/auth/login/acme?callback=myapp%3A%2F%2Fdone"))
        let denied = await #expect(throws: PylonError.self) {
            try await client.auth.handleOAuthCallback(URL(string: "myapp://failed?oauth_error=ACCESS_DENIED&oauth_error_message=no")!)
        }
        #expect(denied?.code == "ACCESS_DENIED")
        let back = try await client.auth.handleOAuthCallback(URL(string: "myapp://done?token=\(magic.token)")!)
        #expect(back["user_id"]?.stringValue == magic.userId)
        await host.dispose()
    }

    @Test func functionCallsWholeAndStreamedWithTheHostsErrors() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        #expect(try await client.functions.call("double", ["n": 21]) == ["doubled": 42])
        let bad = await #expect(throws: PylonError.self) { try await client.functions.call("double", ["n": "x"]) }
        #expect(bad?.code == "INVALID_ARGS")
        let missing = await #expect(throws: PylonError.self) { try await client.functions.call("nope") }
        #expect(missing?.code == "FN_NOT_FOUND")

        let chunks = Chunks()
        #expect(try await client.functions.stream("countdown", ["from": 3]) { await chunks.add($0) } == ["liftoff": true])
        #expect(await chunks.all == ["3", "2", "1"])
        let failedChunks = Chunks()
        let failed = await #expect(throws: PylonError.self) {
            try await client.functions.stream("countdown", ["from": 2, "fail": true]) { await failedChunks.add($0) }
        }
        #expect(failed?.code == "COUNTDOWN_FAILED")
        #expect(await failedChunks.all == ["2", "1"])
        await client.stop()
        await host.dispose()
    }

    @Test func roomEventsReachTheOtherMemberThroughItsStream() async throws {
        let host = try await TestHost.start()
        let alice = try await host.signedInClient()
        let bob = try await host.signedInClient()
        let aliceId = try #require(try await alice.auth.me()["user_id"]?.stringValue)
        let bobId = try #require(try await bob.auth.me()["user_id"]?.stringValue)
        let seen = Collected(await alice.rooms.events("lobby"))
        #expect(try await alice.rooms.join("lobby", data: ["name": "Alice"]).isEmpty)
        let peers = try await bob.rooms.join("lobby", data: ["name": "Bob"])
        #expect(peers.map(\.userId) == [aliceId])
        try await eventually("bob's join") { seen.all.contains { $0.type == "join" && $0.userId == bobId } }
        #expect(try await bob.rooms.setPresence("lobby", data: ["typing": true]))
        try await eventually("bob's presence") { seen.all.contains { $0.type == "presence" && $0.data?["typing"] == .bool(true) } }
        #expect(try await bob.rooms.broadcast("lobby", topic: "wave", data: ["hi": 1]))
        try await eventually("bob's broadcast") { seen.all.contains { $0.type == "broadcast" && $0.topic == "wave" } }
        #expect(try await alice.rooms.members("lobby").count == 2)
        try await bob.rooms.leave("lobby")
        try await eventually("bob's leave") { seen.all.contains { $0.type == "leave" && $0.userId == bobId } }
        // Not a member: the host says so.
        #expect(try await bob.rooms.broadcast("lobby", topic: "wave") == false)
        seen.cancel()
        await alice.stop()
        await bob.stop()
        await host.dispose()
    }
}

extension ClientServicesTests {
    @Test func shardFramesAndInputAcks() async throws {
        let build = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-swiftclient-arena-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: build) }
        let arena = try TestHost.buildShardArena(into: build)
        let host = try await TestHost.start(extraPlugins: [arena])
        try await host.admin("POST", "/api/shards", ["sim": "arena", "id": "a1", "config": ["speed": 0, "cell": 100]])
        let client = host.client()
        _ = try await client.auth.guest()
        let events = Collected(client.shards.connect("a1"))
        // Subscribed (a frame came) before input, which needs an attached subscriber.
        try await eventually("a first frame") { events.all.contains { if case .frame = $0 { true } else { false } } }
        let seq = try await client.shards.input("a1", ["spawn": [50, 50]], clientSeq: 7)
        try await eventually("the ack") { events.all.contains {
            if case let .ack(c, s, _) = $0 { c == 7 && s == seq } else { false } } }
        try await eventually("a frame with the spawned player") { events.all.contains {
            if case let .frame(_, snapshot) = $0 { snapshot["you"]?["x"]?.doubleValue == 50 } else { false } } }
        // A shard that does not exist: the host's refusal, typed.
        let refused = await #expect(throws: PylonError.self) {
            for try await _ in client.shards.connect("nope") {}
        }
        #expect(refused?.status == 404)
        try await host.admin("DELETE", "/api/shards/a1")
        try await eventually("the end") { events.all.contains { if case .end = $0 { true } else { false } } }
        events.cancel()
        await host.dispose()
    }
}

extension ClientServicesTests {
    @Test func filesUploadDownloadSignedURLAndDelete() async throws {
        let host = try await TestHost.start()
        let client = try await host.signedInClient()
        let bytes = Data((0..<70_000).map { UInt8(($0 * 7) % 256) })
        let info = try await client.files.upload(bytes, name: "data.bin")
        #expect(info["size"]?.intValue == 70_000)
        let id = try #require(info["id"]?.stringValue)
        #expect(try await client.files.download(id) == bytes)
        // The signed link works without credentials.
        let url = try await client.files.signedURL(id, expiresIn: 60)
        let anonymous = HTTP(baseURL: host.url, tokens: MemoryTokenStorage(), timeout: 30)
        let path = url.absoluteString.replacingOccurrences(of: host.url.absoluteString, with: "")
        let fetched = try await anonymous.send("GET", path)
        #expect(fetched.status == 200 && fetched.body == bytes)
        // Another user sees nothing; after delete the owner neither.
        let stranger = try await host.signedInClient()
        let hidden = await #expect(throws: PylonError.self) { try await stranger.files.download(id) }
        #expect(hidden?.code == "FILE_NOT_FOUND")
        try await client.files.delete(id)
        let gone = await #expect(throws: PylonError.self) { try await client.files.download(id) }
        #expect(gone?.status == 404)
        await client.stop()
        await stranger.stop()
        await host.dispose()
    }
}

actor Chunks {
    private(set) var all: [String] = []
    func add(_ s: String) { all.append(s) }
}
