import Foundation
import Testing
import PylonTestPorts

/// The shard WebSocket (Plugins/ShardWS, `pylon.shard.transport/1`, issue 20) from the
/// outside: the release host with the real plugin, the C arena sim and the fixture sims,
/// clients over real sockets (`TestWebSocket`). No timing is asserted: tests wait, with
/// generous timeouts, for what must come.
@Suite("Shard WebSocket: binary tick frames, AOI, input acks and errors, auth close codes, slow and hostile clients")
struct ShardWSTests {
    static let admin = HostProcess.adminToken

    /// A host with the sims and ShardWS, its WebSocket on a free port (returned).
    static func start(env: [String: String] = [:], manifest: String = ShardTests.manifest) async throws -> (HostProcess, Int) {
        let port = try freeLoopbackPort()
        let host = try await HostProcess.start(manifest: manifest, env: ["PYLON_SHARD_WS_PORT": String(port)].merging(env) { $1 },
                                               store: ShardWSBuild.store)
        return (host, port)
    }

    static func connect(_ port: Int, shard: String, sid: String? = nil, token: String? = nil, protocols: [String] = [],
                        reading: Bool = true, receiveBuffer: Int? = nil, behind: [UInt8] = [], label: String) async throws -> TestWebSocket {
        try await TestWebSocket.connect(port: port, path: "/?shard=\(shard)" + (sid.map { "&sid=\($0)" } ?? ""), token: token,
                                        protocols: protocols, receiveBuffer: receiveBuffer, reading: reading, behind: behind, label: label)
    }

    /// The binary frames of `ws`: the big-endian tick and the snapshot, parsed.
    static func frames(_ ws: TestWebSocket) -> [(tick: UInt64, json: Any?)] {
        ws.messages.compactMap { m -> (UInt64, Any?)? in
            guard case let .binary(b) = m, b.count >= 8 else { return nil }
            let tick = b.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return (tick, try? TestJSON.parse(String(decoding: b.dropFirst(8), as: UTF8.self)))
        }
    }

    static func frame(_ ws: TestWebSocket, after tick: UInt64 = 0, where probe: @escaping (Any?) -> Bool = { _ in true }) async throws -> (tick: UInt64, json: Any?) {
        try await eventually("a frame after tick \(tick) on \(ws.summary)", timeout: 30) {
            frames(ws).first { $0.tick > tick && probe($0.json) }
        }
    }

    /// Polls `check` (an HTTP read) until it holds, for up to `timeout` seconds.
    static func waitUntil(_ what: String, timeout: TimeInterval = 120, _ check: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await check() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RealtimeTestError("timed out after \(Int(timeout)) s waiting for \(what)")
    }

    static func send(_ ws: TestWebSocket, _ text: String, binary: Bool = false) throws {
        try ws.sendFrame(opcode: binary ? 0x2 : 0x1, Array(text.utf8))
    }

    @Test("Frames sent in the same write as the upgrade request are read once upgraded (an input before the first frame is answered NOT_SUBSCRIBED, an unmasked frame closes with 1002); the host keeps serving")
    func framesBehindTheUpgradeRequest() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "early", "config": {"speed": 0, "cell": 100}}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let input = TestWebSocket.frame(opcode: 0x1, Array(#"{"input": {"spawn": [10, 10]}, "client_seq": 3}"#.utf8))
        let eager = try await Self.connect(port, shard: "early", token: alice, behind: input, label: "input behind")
        // Read, and answered as any input sent before the first frame is.
        let early = try await eager.waitForJSON("the early input's answer", timeout: 30) { $0["type"].string != nil }
        #expect(early["error"]["code"].string == "NOT_SUBSCRIBED", "\(String(describing: early))")
        _ = try await Self.frame(eager)
        try Self.send(eager, #"{"input": {"spawn": [10, 10]}, "client_seq": 4}"#)
        let ack = try await eager.waitForJSON("the ack after the first frame", timeout: 30) { $0["type"].string == "ack" }
        #expect(ack["client_seq"].int == 4, "\(String(describing: ack))")
        let unmasked = TestWebSocket.frame(opcode: 0x1, Array("too early".utf8), masked: false)
        let rude = try await Self.connect(port, shard: "early", token: bob, behind: unmasked, label: "unmasked behind")
        #expect(try await rude.waitForClose()?.code == 1002, "\(rude.summary)")
        #expect(try await host.request("GET", "/health").status == 200, "Log:\n\(host.log)")
    }

    @Test("Binary frames are the 8-byte big-endian tick and the JSON snapshot; AOI per subscriber; inputs acked with client_seq; bearer subprotocol echoed")
    func framesAOIAndAcks() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "w1", "config": {"speed": 0, "cell": 100}}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), carol = try await host.mintSession("carol")
        let a = try await Self.connect(port, shard: "w1", token: alice, label: "alice")
        let b = try await Self.connect(port, shard: "w1", protocols: ["bearer." + bob], label: "bob")
        let c = try await Self.connect(port, shard: "w1", sid: "carol", token: carol, label: "carol")
        #expect(b.responseHeaders["sec-websocket-protocol"] == "bearer." + bob, "\(b.responseHeaders)")
        for ws in [a, b, c] { _ = try await Self.frame(ws) }

        try Self.send(a, #"{"input": {"spawn": [50, 50]}, "client_seq": 7}"#)
        try Self.send(b, #"{"input": {"spawn": [120, 60]}}"#, binary: true)
        try Self.send(c, #"{"input": {"spawn": [900, 900]}, "client_seq": 1}"#)
        let ack = try await a.waitForJSON("alice's ack", timeout: 30) { $0["type"].string == "ack" }
        #expect(ack["client_seq"].int == 7 && (ack["seq"].int ?? 0) >= 1 && (ack["tick"].int ?? 0) >= 1, "\(String(describing: ack))")
        let bAck = try await b.waitForJSON("bob's ack", timeout: 30) { $0["type"].string == "ack" }
        #expect(bAck["client_seq"].int == nil, "\(String(describing: bAck))")

        // Alice and Bob are neighbours; Carol is far from both.
        _ = try await Self.frame(a) { ShardTests.playerIDs($0) == ["bob"] && $0["you"]["x"].double == 50 }
        _ = try await Self.frame(b) { ShardTests.playerIDs($0) == ["alice"] }
        _ = try await Self.frame(c) { $0["you"]["id"].string == "carol" }
        for (ws, far) in [(a, "carol"), (b, "carol"), (c, "alice"), (c, "bob")] {
            let all = Self.frames(ws)
            // Ticks increase, and each frame's tick is its snapshot's.
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.tick < $1.tick }, "\(ws.label): \(all.map(\.tick))")
            for f in all {
                #expect(f.json["tick"].int == Int(f.tick), "\(ws.label): \(f)")
                #expect(!ShardTests.playerIDs(f.json).contains(far), "\(ws.label) saw \(far)")
            }
        }
        let info = try await host.request("GET", "/api/shards/w1", token: alice)
        #expect(info.json["subscribers"].int == 3, "\(info.body)")
        let connections = try await host.request("GET", "/metrics", token: Self.admin).json["gauges"]["shard_ws_connections"].double
        #expect(connections == 3, "\(String(describing: connections))")

        // Closing leaves the shard.
        a.disconnect()
        try await Self.waitUntil("alice to leave") {
            try await host.request("GET", "/api/shards/w1", token: bob).json["subscribers"].int == 2
        }
    }

    @Test("Rejected and malformed inputs get error frames on the same connection; input only as its own subscriber; HTTP input as another's WebSocket subscriber refused")
    func inputErrors() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "r1"}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let a = try await Self.connect(port, shard: "r1", token: alice, label: "alice")
        _ = try await Self.frame(a)
        try Self.send(a, #"{"input": {"jump": true}, "client_seq": 2}"#)
        let rejected = try await a.waitForJSON("the sim's refusal", timeout: 30) { $0["type"].string == "error" && $0["client_seq"].int == 2 }
        #expect(rejected["error"]["code"].string == "INPUT_REJECTED" && rejected["seq"].int != nil, "\(String(describing: rejected))")
        try Self.send(a, "this is not json")
        let garbage = try await a.waitForJSON("the malformed-input error", timeout: 30) { $0["error"]["code"].string == "INVALID_JSON" }
        #expect(garbage["type"].string == "error")
        try Self.send(a, #"{"client_seq": 4}"#)
        _ = try await a.waitForJSON("INPUT_REQUIRED", timeout: 30) { $0["error"]["code"].string == "INPUT_REQUIRED" && $0["client_seq"].int == nil }
        try Self.send(a, #"{"input": "\#(String(repeating: "x", count: 70_000))", "client_seq": 5}"#)
        _ = try await a.waitForJSON("INPUT_TOO_LARGE", timeout: 30) { $0["error"]["code"].string == "INPUT_TOO_LARGE" }
        // Still served after all that.
        let last = try #require(Self.frames(a).last?.tick)
        _ = try await Self.frame(a, after: last)
        #expect(a.closeFrame == nil)

        // Bob is no subscriber: the HTTP input route refuses to act as Alice's WebSocket subscriber.
        let asAlice = try await host.request("POST", "/api/shards/r1/input", json: #"{"input": {"spawn": [1, 1]}, "subscriber_id": "alice"}"#, token: bob)
        #expect(asAlice.status == 403, "\(asAlice.body)")
        // Alice herself may use either transport for her WebSocket subscriber.
        let mine = try await host.request("POST", "/api/shards/r1/input", json: #"{"input": {"spawn": [1, 1]}, "client_seq": 9}"#, token: alice)
        #expect(mine.status == 200, "\(mine.body)")
        _ = try await a.waitForJSON("the HTTP input's ack on the WebSocket", timeout: 30) { $0["type"].string == "ack" && $0["client_seq"].int == 9 }
    }

    @Test("Close codes: no or bad token 1008, unknown shard 4404 with a reason, another's sid 1008, full 1013; no ?shard= is 400; the host keeps serving")
    func closeCodes() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "c1", "max_subscribers": 1}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")

        let anonymous = try await Self.connect(port, shard: "c1", label: "anonymous")
        let noToken = try await anonymous.waitForClose(timeout: 30)
        #expect(noToken?.code == 1008 && noToken?.reason.contains("AUTH_REQUIRED") == true, "\(anonymous.summary)")
        let bogus = try await Self.connect(port, shard: "c1", token: "pylon_not_a_session", label: "bogus")
        #expect(try await bogus.waitForClose(timeout: 30)?.code == 1008, "\(bogus.summary)")
        let badKey = try await Self.connect(port, shard: "c1", protocols: ["bearer.pk.key_nope.secret"], label: "bad key")
        let keyClose = try await badKey.waitForClose(timeout: 30)
        #expect(keyClose?.code == 1008 && keyClose?.reason.contains("INVALID_API_KEY") == true, "\(badKey.summary)")

        let unknown = try await Self.connect(port, shard: "nope", token: alice, label: "unknown shard")
        let unknownClose = try await unknown.waitForClose(timeout: 30)
        #expect(unknownClose?.code == 4404 && unknownClose?.reason.contains("SHARD_NOT_FOUND") == true, "\(unknown.summary)")
        let asAlice = try await Self.connect(port, shard: "c1", sid: "alice", token: bob, label: "bob as alice")
        let asAliceClose = try await asAlice.waitForClose(timeout: 30)
        #expect(asAliceClose?.code == 1008 && asAliceClose?.reason.contains("UNAUTHORIZED") == true, "\(asAlice.summary)")
        let badSid = try await Self.connect(port, shard: "c1", sid: "no%20spaces", token: alice, label: "bad sid")
        #expect(try await badSid.waitForClose(timeout: 30)?.code == 1008, "\(badSid.summary)")

        let first = try await Self.connect(port, shard: "c1", token: alice, label: "alice")
        _ = try await Self.frame(first)
        let second = try await Self.connect(port, shard: "c1", token: bob, label: "bob")
        let full = try await second.waitForClose(timeout: 30)
        #expect(full?.code == 1013 && full?.reason.contains("SHARD_FULL") == true, "\(second.summary)")

        await #expect(throws: (any Error).self) { _ = try await TestWebSocket.connect(port: port, path: "/", token: alice, label: "no shard") }
        // Alice was never disturbed.
        let last = try #require(Self.frames(first).last?.tick)
        _ = try await Self.frame(first, after: last)
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("A client that stops reading costs one snapshot: the host drops its older frames, the others keep getting every tick, memory stays bounded, and it resumes with the newest")
    func slowConsumer() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        // ~256 KiB snapshots for "slow" at 50 Hz (the reader's are small): a client that does
        // not read fills its socket within a few ticks.
        try await ShardTests.create(host, #"{"sim": "bulky", "id": "s1", "tick_rate_hz": 50, "config": {"bytes": 262144}}"#)
        let fast = try await host.mintSession("fast"), slow = try await host.mintSession("slow")
        let reader = try await Self.connect(port, shard: "s1", token: fast, label: "reader")
        let stalled = try await Self.connect(port, shard: "s1", token: slow, reading: false, receiveBuffer: 4096, label: "stalled")
        _ = try await Self.frame(reader)
        let pid = try #require(host.pid)
        let dropsBefore = try await host.metricCounter("shard_frames_dropped_total") ?? 0
        // Wait until the stalled client has had many frames dropped (each ~256 KiB).
        try await Self.waitUntil("frames dropped for the stalled client") {
            try await host.metricCounter("shard_frames_dropped_total") ?? 0 >= dropsBefore + 50
        }
        let rssMid = residentBytes(pid: pid) ?? 0
        try await Self.waitUntil("200 more dropped frames") {
            try await host.metricCounter("shard_frames_dropped_total") ?? 0 >= dropsBefore + 250
        }
        let rssLate = residentBytes(pid: pid) ?? 0
        // 200 frames of 256 KiB is 50 MiB: queued, they would show; dropped, they do not.
        #expect(rssLate < rssMid + 32 * 1024 * 1024, "RSS grew from \(rssMid) to \(rssLate) while dropping frames")
        // The reader was never held back: it keeps receiving new ticks.
        let seen = try #require(Self.frames(reader).last?.tick)
        _ = try await Self.frame(reader, after: seen + 10)
        // Once it reads again, the stalled client gets the newest snapshot, not the backlog.
        stalled.startReading()
        let now = try #require(Self.frames(reader).last?.tick)
        _ = try await Self.frame(stalled, after: now)
    }

    @Test("A client's close frame (WebSocketAbuseTests.closeCases): an allowed code is echoed; 1005/1006/1015, reserved and unused codes and a 1-byte payload answer 1002, a reason that is not UTF-8 1007; no code answers 1000")
    func closeFrames() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "closing"}"#)
        let alice = try await host.mintSession("alice")
        for c in WebSocketAbuseTests.closeCases + [("no code", [], 1000)] {
            let ws = try await Self.connect(port, shard: "closing", token: alice, label: "close \(c.name)")
            _ = try await Self.frame(ws)
            try ws.sendFrame(opcode: 0x8, c.payload)
            #expect(try await ws.waitForClose(timeout: 30)?.code == c.answer, "\(c.name): \(ws.summary)")
            try await ws.waitForEnd(timeout: 30)
        }
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("An oversized message, garbage bytes and unmasked frames close that connection only; a silent TCP client is dropped after the handshake timeout; the per-address cap answers 429")
    func hostileClients() async throws {
        let manifest = #"{"manifest_version": 1, "name": "shards", "version": "0.1.0", "entities": [], "routes": [], "policies": [], "plugins": {"shard.transport": {"handshake_timeout_ms": 2000}}}"#
        let (host, port) = try await Self.start(env: ["PYLON_MAX_CONNECTIONS_PER_IP": "6"], manifest: manifest)
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "h1"}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let good = try await Self.connect(port, shard: "h1", token: alice, label: "good")
        _ = try await Self.frame(good)

        let big = try await Self.connect(port, shard: "h1", token: bob, label: "oversized")
        _ = try await Self.frame(big)
        try big.sendFrame(opcode: 0x2, [UInt8](repeating: 0x7B, count: 200 * 1024))
        // 1009, unless the close frame is lost to the reset of a socket whose unread bytes were dropped.
        let bigClose = try await big.waitForClose(timeout: 30)
        #expect(bigClose == nil || bigClose?.code == 1009, "\(big.summary)")
        try await big.waitForEnd(timeout: 30)

        let junk = try await Self.connect(port, shard: "h1", token: bob, label: "garbage")
        // A frame with the reserved bits and a reserved opcode.
        try junk.socket.send([0xFF, 0x80, 0x01, 0x02, 0x03, 0x04])
        try await junk.waitForEnd(timeout: 30)
        #expect(junk.closeFrame == nil || junk.closeFrame?.code == 1002, "\(junk.summary)")

        let unmasked = try await Self.connect(port, shard: "h1", token: bob, label: "unmasked")
        try unmasked.sendFrame(opcode: 0x1, Array(#"{"input": {"spawn": [1, 1]}}"#.utf8), masked: false)
        #expect(try await unmasked.waitForClose(timeout: 30)?.code == 1002, "\(unmasked.summary)")
        try await unmasked.waitForEnd(timeout: 30)

        // A client that connects and sends nothing is dropped once the handshake time is up.
        let silent = try TestSocket.connect(port: port)
        let silentEnd = try await onThread { () -> Bool in
            while true {
                switch silent.receive() {
                case .bytes: continue
                case .end, .failed: return true
                }
            }
        }
        #expect(silentEnd)
        silent.close()

        // The per-address cap (6): the good client plus five more; the next gets 429.
        var held: [TestWebSocket] = []
        for i in 0..<5 { held.append(try await Self.connect(port, shard: "h1", sid: "held\(i)", token: Self.admin, label: "held \(i)")) }
        await #expect(throws: (any Error).self) { _ = try await Self.connect(port, shard: "h1", token: bob, label: "over the cap") }
        for ws in held { ws.disconnect() }

        let last = try #require(Self.frames(good).last?.tick)
        _ = try await Self.frame(good, after: last)
        #expect(good.closeFrame == nil && good.end == nil, "\(good.summary)")
        #expect(try await host.request("GET", "/health").status == 200)
    }
}

/// The plugins folder of these tests: the shard tests' folder (SQLite, the arena, the
/// misbehaving sim) plus the bulky fixture sim and `libPylonShardWS.so` from `plugins/`.
enum ShardWSBuild {
    static let store = TestStore(
        name: "sqlite+sims+shardws",
        pluginsDir: {
            try await ShardSimFolders.shared.folder("ws") {
                let bulky = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-bulky-sim-\(UUID().uuidString).so").path
                try await FixturePlugins.compile("bulky_sim", to: bulky)
                return ["libbulky_sim.so": bulky, "libPylonShardWS.so": TestPaths.pluginsDir + "/libPylonShardWS.so"]
            }
        },
        provision: ShardSimsBuild.store.provision)
}
