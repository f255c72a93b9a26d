import Foundation
import Testing
@testable import PylonCore
@testable import PylonData
@testable import PylonJSON

/// Rooms and presence (issue 20, pylon-aux.md §4): Pylon's routes and shapes, with its gaps
/// fixed — events reach only the room's members, a sender must be a member, idle members are
/// evicted with their leave sent, a closed stream leaves every room, and limits hold.
/// The registry with a test clock, then black-box through the real host with WS and SSE.
@Suite("Rooms and presence (registry with a test clock; black-box, real pylon-host, WS and SSE)")
struct RoomTests {
    /// A clock the test moves.
    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var t = 1000.0
        var now: Double { lock.withLock { t } }
        func advance(_ s: Double) { lock.withLock { t += s } }
    }

    static func registry(_ change: (inout RoomLimits) -> Void = { _ in }) -> (RoomRegistry, Clock) {
        var limits = RoomLimits()
        change(&limits)
        let clock = Clock()
        return (RoomRegistry(limits: limits, clock: { clock.now }), clock)
    }

    @Test("Registry: the snapshot lists earlier peers; joining again is a presence update; events go to the members; leave is idempotent")
    func registryBasics() throws {
        let (r, _) = Self.registry()
        let first = try r.join("lobby", user: "ann", data: .object([("x", 1)]))
        #expect(first.snapshot["peers"]?.arrayValue?.isEmpty == true)
        #expect(first.events.map(\.recipients) == [["ann"]])
        let second = try r.join("lobby", user: "bob", data: nil)
        #expect(second.snapshot["peers"]?.arrayValue?.compactMap { $0["user_id"]?.stringValue } == ["ann"])
        #expect(Set(second.events[0].recipients) == ["ann", "bob"])
        #expect(second.events[0].json["type"]?.stringValue == "join" && second.events[0].json["data"] == nil)
        let again = try r.join("lobby", user: "ann", data: .object([("x", 2)]))
        #expect(again.events.map { $0.json["type"]?.stringValue } == ["presence"], "no second join")
        #expect(again.snapshot["peers"]?.arrayValue?.compactMap { $0["user_id"]?.stringValue } == ["bob"], "the snapshot leaves out the caller")
        #expect(r.peers("lobby", for: "ann")?.first?["data"]?["x"]?.intValue == 2)
        #expect(r.peers("lobby", for: "eve") == nil && r.peers("lobby", for: nil)?.count == 2)
        #expect(try r.setPresence("lobby", user: "eve", data: nil) == nil)
        #expect(try r.broadcast("lobby", sender: "eve", topic: "t", data: nil).0 == .notInRoom)
        #expect(try r.broadcast("nowhere", sender: "eve", topic: "t", data: nil).0 == .notInRoom, "the same for a room that does not exist")
        #expect(try r.broadcast("nowhere", sender: nil, topic: "t", data: nil).0 == .roomEmpty)
        let leave = try #require(r.leave("lobby", user: "bob"))
        #expect(Set(leave.recipients) == ["ann", "bob"] && leave.json["reason"] == nil)
        #expect(r.leave("lobby", user: "bob") == nil)
        #expect(r.list(for: "ann").map(\.name) == ["lobby"] && r.list(for: "bob").isEmpty)
        _ = r.leave("lobby", user: "ann")
        #expect(r.list(for: nil).isEmpty && r.counts == (0, 0), "the last leave removes the room")
    }

    @Test("Registry: limits on rooms, rooms per user and members; the message bucket refills with time and is not reset by leaving")
    func registryLimits() throws {
        let (r, clock) = Self.registry { $0.maxRooms = 2; $0.perUser = 2; $0.maxMembers = 2; $0.messageRate = 2 }
        func code(_ f: () throws -> Void) -> String? {
            do { try f(); return nil } catch { return (error as? HostError)?.code ?? "\(error)" }
        }
        _ = try r.join("a", user: "u1", data: nil)
        _ = try r.join("b", user: "u1", data: nil)
        #expect(code { _ = try r.join("c", user: "u2", data: nil) } == "ROOM_LIMIT_REACHED")
        clock.advance(10)
        _ = try r.join("a", user: "u2", data: nil)
        #expect(code { _ = try r.join("a", user: "u3", data: nil) } == "ROOM_FULL")
        _ = r.leave("b", user: "u1")
        clock.advance(10)
        _ = try r.join("b", user: "u3", data: nil)
        _ = try r.join("b", user: "u2", data: nil)
        #expect(code { _ = try r.join("c", user: "u2", data: nil) } != nil)
        #expect(code { _ = try r.join("c", user: "u4", data: nil) } == "ROOM_LIMIT_REACHED")

        // Rate 2/s, burst 4 (refusals above cost nothing): ten seconds refill u2's bucket.
        clock.advance(10)
        for _ in 0..<4 { #expect(code { _ = try r.setPresence("a", user: "u2", data: nil) } == nil) }
        #expect(code { _ = try r.setPresence("a", user: "u2", data: nil) } == "ROOM_RATE_LIMITED")
        _ = r.leave("a", user: "u2")
        #expect(code { _ = try r.join("a", user: "u2", data: nil) } == "ROOM_RATE_LIMITED", "leaving does not refill the bucket")
        clock.advance(0.5)
        #expect(code { _ = try r.join("a", user: "u2", data: nil) } == nil, "half a second later, one more message")
    }

    @Test("Registry: idle members are evicted (the others get the leave with reason idle); a heartbeat keeps a member; leaveAll leaves every room")
    func registryIdleAndDisconnect() throws {
        let (r, clock) = Self.registry { $0.idleSeconds = 60 }
        _ = try r.join("r", user: "ann", data: nil)
        _ = try r.join("r", user: "bob", data: nil)
        _ = try r.join("s", user: "bob", data: nil)
        clock.advance(40)
        _ = try r.setPresence("r", user: "ann", data: nil)
        clock.advance(30)
        let evicted = r.evictIdle()
        #expect(evicted.map { $0.json["user_id"]?.stringValue } == ["bob", "bob"])
        let inR = try #require(evicted.first { $0.room == "r" })
        #expect(Set(inR.recipients) == ["ann", "bob"] && inR.json["reason"]?.stringValue == "idle")
        #expect(r.peers("r", for: nil)?.count == 1 && r.peers("s", for: nil) == nil)

        _ = try r.join("s", user: "ann", data: nil)
        let gone = r.leaveAll("ann")
        #expect(gone.map(\.room) == ["r", "s"] && gone.allSatisfy { $0.json["reason"]?.stringValue == "disconnect" })
        #expect(r.counts == (0, 0))
    }

    // MARK: Black-box

    static func post(_ host: HostProcess, _ path: String, _ body: String, _ token: String?) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/rooms/" + path, json: body, token: token)
    }

    static func sse(_ host: HostProcess, _ token: String, _ label: String) async throws -> TestEventStream {
        let s = try await TestEventStream.connect(port: host.port, token: token, label: label)
        try await s.waitForComment("connected")
        return s
    }

    /// Waits for a room event on an SSE stream.
    @discardableResult
    static func sseEvent(_ s: TestEventStream, _ what: String, _ match: @escaping (Any?) -> Bool) async throws -> Any? {
        try await eventually("\(what) on \(s.label)") { s.events.map(\.json).first(where: match) }
    }

    @Test("Join, presence, broadcast, leave: Pylon's shapes; events reach the members' WS and SSE streams and no one else; only members see a room")
    func membersOnly() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: false)
        defer { host.stop() }
        let (ann, bob, eve) = (try await host.mintSession("ann"), try await host.mintSession("bob"), try await host.mintSession("eve"))
        let annWS = try await TestWebSocket.connect(port: host.port, token: ann, label: "ann")
        let eveWS = try await TestWebSocket.connect(port: host.port, token: eve, label: "eve")
        try await RealtimeTests.ready(annWS)
        try await RealtimeTests.ready(eveWS)
        let bobSSE = try await Self.sse(host, bob, "bob (SSE)")

        let joined = try await Self.post(host, "join", #"{"room":"lobby","data":{"cursor":1}}"#, ann)
        #expect(joined.status == 200 && joined.json["joined"].string == "lobby", "\(joined.body)")
        #expect(joined.json["snapshot"]["type"].string == "snapshot" && joined.json["snapshot"]["peers"].items.isEmpty, "\(joined.body)")
        let bobJoined = try await Self.post(host, "join", #"{"room":"lobby"}"#, bob)
        let peer = bobJoined.json["snapshot"]["peers"][0]
        #expect(peer["user_id"].string == "ann" && peer["data"]["cursor"].int == 1, "\(bobJoined.body)")
        #expect(peer["joined_at"].string.map { ISO8601DateFormatter().date(from: $0.replacingOccurrences(of: #"\.\d+"#, with: "", options: .regularExpression)) != nil } == true,
                "joined_at is ISO 8601: \(bobJoined.body)")
        try await annWS.waitForJSON("bob's join") { $0["type"].string == "join" && $0["user_id"].string == "bob" && $0["room"].string == "lobby" }
        try await Self.sseEvent(bobSSE, "bob's own join") { $0["type"].string == "join" && $0["user_id"].string == "bob" }

        let updated = try await Self.post(host, "presence", #"{"room":"lobby","data":{"cursor":2}}"#, ann)
        #expect(updated.status == 200 && updated.json["updated"].bool == true, "\(updated.body)")
        try await Self.sseEvent(bobSSE, "ann's presence") { $0["type"].string == "presence" && $0["data"]["cursor"].int == 2 }
        let sent = try await Self.post(host, "broadcast", #"{"room":"lobby","topic":"chat","data":"hi"}"#, ann)
        #expect(sent.json["broadcasted"].bool == true, "\(sent.body)")
        try await Self.sseEvent(bobSSE, "ann's broadcast") {
            $0["type"].string == "broadcast" && $0["sender"].string == "ann" && $0["topic"].string == "chat" && $0["data"].string == "hi"
        }

        // Eve is no member: she is told nothing, and learns nothing of the room.
        let notIn = try await Self.post(host, "presence", #"{"room":"lobby","data":1}"#, eve)
        #expect(notIn.status == 200 && notIn.json["updated"].bool == false && notIn.json["reason"].string == "not_in_room", "\(notIn.body)")
        let refused = try await Self.post(host, "broadcast", #"{"room":"lobby","topic":"spam"}"#, eve)
        let nowhere = try await Self.post(host, "broadcast", #"{"room":"no-such-room","topic":"spam"}"#, eve)
        #expect(refused.json["broadcasted"].bool == false && refused.json["reason"].string == "not_in_room", "\(refused.body)")
        #expect(nowhere.body == refused.body, "a room that does not exist looks the same")
        let peek = try await host.request("GET", "/api/rooms/lobby", token: eve)
        let peekNowhere = try await host.request("GET", "/api/rooms/no-such-room", token: eve)
        #expect(peek.status == 404 && peek.json.errorCode == "ROOM_NOT_FOUND" && peekNowhere.status == 404, "\(peek.body)")
        #expect(try await host.request("GET", "/api/rooms", token: eve).json.items.isEmpty)
        let annRooms = try await host.request("GET", "/api/rooms", token: ann).json
        #expect(annRooms[0]["name"].string == "lobby" && annRooms[0]["members"].int == 2)
        // A marker in a room Eve is in: events leave in order, so once she has it she would
        // have had the lobby's too.
        _ = try await Self.post(host, "join", #"{"room":"side"}"#, eve)
        _ = try await Self.post(host, "join", #"{"room":"side"}"#, ann)
        _ = try await Self.post(host, "broadcast", #"{"room":"side","topic":"marker"}"#, ann)
        try await eveWS.waitForJSON("the marker") { $0["topic"].string == "marker" }
        let leaked = eveWS.jsonMessages.filter { $0["room"].string == "lobby" }
        #expect(leaked.isEmpty, "eve got the lobby's events: \(leaked)")

        let left = try await Self.post(host, "leave", #"{"room":"lobby"}"#, bob)
        #expect(left.json["left"].string == "lobby" && left.json["was_present"].bool == true, "\(left.body)")
        try await annWS.waitForJSON("bob's leave") { $0["type"].string == "leave" && $0["user_id"].string == "bob" }
        #expect(try await Self.post(host, "leave", #"{"room":"lobby"}"#, bob).json["was_present"].bool == false)
        let members = try await host.request("GET", "/api/rooms/lobby", token: ann).json["members"].items.compactMap { $0["user_id"].string }
        #expect(members == ["ann"])

        // The admin token: every room, broadcasts as no one, acts as a user named in the body.
        let admin = HostProcess.adminToken
        #expect(Set(try await host.request("GET", "/api/rooms", token: admin).json.items.compactMap { $0["name"].string }) == ["lobby", "side"])
        #expect(try await Self.post(host, "broadcast", #"{"room":"lobby","topic":"notice"}"#, admin).json["broadcasted"].bool == true)
        let notice = try await annWS.waitForJSON("the admin's notice") { $0["topic"].string == "notice" }
        #expect(notice["sender"] == nil)
        #expect(try await Self.post(host, "broadcast", #"{"room":"nobody-here","topic":"x"}"#, admin).json["reason"].string == "room_empty")
        #expect(try await Self.post(host, "join", #"{"room":"lobby"}"#, admin).status == 400)
        #expect(try await Self.post(host, "join", #"{"room":"lobby","user_id":"carl"}"#, admin).status == 200)
        #expect(try await Self.post(host, "join", #"{"room":"lobby","user_id":"carl"}"#, eve).status == 403, "only an admin acts as another user")
        #expect(try await Self.post(host, "leave", #"{"room":"side","user_id":"eve"}"#, eve).json["was_present"].bool == true, "naming yourself is fine")
        let metrics = try await host.request("GET", "/metrics", token: admin).json
        #expect(metrics["gauges"]["rooms"].double == 2 && metrics["gauges"]["room_members"].double == 3, "lobby: ann, carl; side: ann")
        #expect((metrics["counters"]["room_events_total"].int ?? 0) > 5)
    }

    @Test("A room name in the path is percent-decoded once: a space, a slash, non-ASCII and a literal % reach the room; broken encoding is 400 INVALID_PATH")
    func encodedRoomNames() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: false)
        defer { host.stop() }
        let ann = try await host.mintSession("ann")
        let cases: [(room: String, path: String)] = [
            ("my room", "my%20room"), ("a/b", "a%2Fb"), ("café", "caf%C3%A9"), ("100%", "100%25"), ("pct%41", "pct%2541"), ("plain", "plain"),
        ]
        for c in cases {
            let joined = try await Self.post(host, "join", #"{"room":"\#(c.room)"}"#, ann)
            #expect(joined.status == 200, "\(c.room): \(joined.body)")
            let got = try await host.request("GET", "/api/rooms/" + c.path, token: ann)
            #expect(got.status == 200 && got.json["room"].string == c.room, "\(c.path): \(got.status) \(got.body)")
        }
        #expect(try await host.request("GET", "/api/rooms/pctA", token: ann).status == 404, "%2541 is decoded once, not twice")
        let socket = try TestSocket.connect(port: host.port)
        defer { socket.close() }
        let bad = ["%zz", "%4", "%", "%C3", "%FF"]
        try socket.send(bad.map { RequestPathTests.get("/api/rooms/" + $0, extra: "Authorization: Bearer \(ann)\r\n") }.joined())
        let answers = try await RequestPathTests.read(socket, count: bad.count).answers
        for (path, a) in zip(bad, answers) {
            #expect(a.status == 400 && a.body.contains(#""code":"INVALID_PATH""#), "\(path): \(a.status) \(a.body)")
        }
    }

    @Test("Refused: no session 401; bad bodies 400; oversized data 413; limits on rooms per user, members and rooms answer 429 with their codes; a flood is rate limited")
    func refusals() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, env: [
            "PYLON_ROOMS_PER_USER": "2", "PYLON_ROOM_MAX_MEMBERS": "2", "PYLON_MAX_ROOMS": "3", "PYLON_ROOM_MESSAGE_RATE": "1",
        ], dev: false)
        defer { host.stop() }
        for path in ["join", "leave", "presence", "broadcast"] {
            let r = try await Self.post(host, path, #"{"room":"x","topic":"t"}"#, nil)
            #expect(r.status == 401 && r.json.errorCode == "AUTH_REQUIRED", "\(path): \(r.body)")
        }
        #expect(try await host.request("GET", "/api/rooms").status == 401)
        #expect(try await host.request("GET", "/api/rooms/x").status == 401)

        let ann = try await host.mintSession("ann")
        let long = String(repeating: "r", count: 129)
        for body in ["[]", "{}", #"{"room":5}"#, #"{"room":""}"#, #"{"room":"\#(long)"}"#, #"{"room":"a\u0001b"}"#, "not json"] {
            let r = try await host.request("POST", "/api/rooms/join", json: body, token: ann)
            #expect(r.status == 400, "\(body): \(r.body)")
        }
        #expect(try await Self.post(host, "broadcast", #"{"room":"x"}"#, ann).json.errorCode == "INVALID_TOPIC")
        let big = try await Self.post(host, "join", #"{"room":"x","data":"\#(String(repeating: "d", count: 17_000))"}"#, ann)
        #expect(big.status == 413 && big.json.errorCode == "ROOM_DATA_TOO_LARGE", "\(big.body)")

        // Each user has a bucket of 2 messages refilled at 1/s, and a refused join costs none.
        func join(_ token: String, _ room: String) async throws -> (status: Int, body: String, json: Any?) {
            try await Self.post(host, "join", #"{"room":\#(TestJSON.quote(room))}"#, token)
        }
        let (u1, u2, u3, u4) = (try await host.mintSession("u1"), try await host.mintSession("u2"),
                                try await host.mintSession("u3"), try await host.mintSession("u4"))
        #expect(try await join(u1, "a").status == 200)
        #expect(try await join(u1, "b").status == 200)
        let third = try await join(u2, "a")
        #expect(third.status == 200, "\(third.body)")
        let full = try await join(u3, "a")
        #expect(full.status == 429 && full.json.errorCode == "ROOM_FULL", "\(full.body)")
        let cRoom = try await join(u3, "c")
        #expect(cRoom.status == 200, "\(cRoom.body)")
        let fourth = try await join(u4, "d")
        #expect(fourth.status == 429 && fourth.json.errorCode == "ROOM_LIMIT_REACHED", "\(fourth.body)")
        let perUser = try await join(u1, "c")
        #expect(perUser.status == 429 && perUser.json.errorCode == "ROOMS_PER_USER_LIMIT", "\(perUser.body)")

        // 30 presence updates at once against a bucket of 2 refilled at 1 per second.
        let codes = try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<30 { group.addTask { try await Self.post(host, "presence", #"{"room":"c","data":\#(i)}"#, u3).json.errorCode } }
            return try await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(codes.contains("ROOM_RATE_LIMITED"), "\(codes)")
        #expect(codes.allSatisfy { $0 == nil || $0 == "ROOM_RATE_LIMITED" }, "\(codes)")
    }

    @Test("An idle member is evicted and its leave reaches the room (reason idle); a closed WebSocket leaves every room (reason disconnect)")
    func idleAndDisconnect() async throws {
        let idle = try await HostProcess.start(manifest: RealtimeTests.manifest, env: ["PYLON_ROOM_IDLE_SECS": "1"], dev: false)
        defer { idle.stop() }
        let bob = try await idle.mintSession("bob")
        let bobSSE = try await Self.sse(idle, bob, "bob (SSE)")
        _ = try await Self.post(idle, "join", #"{"room":"quiet"}"#, bob)
        try await Self.sseEvent(bobSSE, "bob's idle leave") {
            $0["type"].string == "leave" && $0["user_id"].string == "bob" && $0["reason"].string == "idle"
        }
        #expect(try await idle.request("GET", "/api/rooms", token: bob).json.items.isEmpty)

        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: false)
        defer { host.stop() }
        let (carl, dave) = (try await host.mintSession("carl"), try await host.mintSession("dave"))
        let carlWS = try await TestWebSocket.connect(port: host.port, token: carl, label: "carl")
        let carlSecond = try await TestWebSocket.connect(port: host.port, token: carl, label: "carl's second tab")
        let daveWS = try await TestWebSocket.connect(port: host.port, token: dave, label: "dave")
        for ws in [carlWS, carlSecond, daveWS] { try await RealtimeTests.ready(ws) }
        for room in ["r1", "r2"] {
            _ = try await Self.post(host, "join", #"{"room":"\#(room)"}"#, dave)
            _ = try await Self.post(host, "join", #"{"room":"\#(room)"}"#, carl)
        }
        carlSecond.disconnect()
        try await carlSecond.waitForEnd()
        // Carl still has a stream: still a member. The marker shows nothing was sent before it.
        _ = try await Self.post(host, "broadcast", #"{"room":"r1","topic":"marker"}"#, dave)
        try await daveWS.waitForJSON("the marker") { $0["topic"].string == "marker" }
        #expect(!daveWS.jsonMessages.contains { $0["type"].string == "leave" }, "one of two tabs closing leaves no room")

        carlWS.disconnect()
        for room in ["r1", "r2"] {
            try await daveWS.waitForJSON("carl's leave of \(room)") {
                $0["type"].string == "leave" && $0["room"].string == room && $0["user_id"].string == "carl" && $0["reason"].string == "disconnect"
            }
        }
        let left = try await host.request("GET", "/api/rooms/r1", token: dave).json["members"].items.compactMap { $0["user_id"].string }
        #expect(left == ["dave"])
    }
}
