import Foundation
import Testing

/// Shards from the outside (pylon-aux.md §5, issue 20): the release host with the C sims
/// `examples/shard-arena` (built by its own Makefile) and `Tests/Fixtures/plugins/
/// misbehaving_sim.c` beside the SQLite store; clients over real sockets (SSE frames, HTTP
/// input). No timing is asserted: tests wait, with generous timeouts, for what must come.
@Suite("Shards: sims, the tick loop, SSE frames, input acks, auth, misbehaving sims")
struct ShardTests {
    static let manifest = """
    {"manifest_version": 1, "name": "shards", "version": "0.1.0", "entities": [], "routes": [], "policies": []}
    """
    static let admin = HostProcess.adminToken

    static func start(env: [String: String] = [:]) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, store: ShardSimsBuild.store)
    }

    /// `POST /api/shards` as the admin; fails the test unless 201.
    @discardableResult
    static func create(_ host: HostProcess, _ body: String) async throws -> Any? {
        let r = try await host.request("POST", "/api/shards", json: body, token: admin)
        #expect(r.status == 201, "POST /api/shards \(body) → \(r.status) \(r.body)\n\(host.log.suffix(3000))")
        return r.json
    }

    static func connect(_ host: HostProcess, _ shard: String, token: String, sid: String? = nil) async throws -> TestEventStream {
        try await TestEventStream.connect(port: host.port, path: "/api/shards/\(shard)/connect" + (sid.map { "?sid=\($0)" } ?? ""),
                                          token: token, label: "\(shard)/\(sid ?? "me")")
    }

    static func input(_ host: HostProcess, _ shard: String, _ body: String, token: String) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request("POST", "/api/shards/\(shard)/input", json: body, token: token)
    }

    /// Snapshot frames (events with an id) of `s`, parsed.
    static func frames(_ s: TestEventStream) -> [(tick: Int, json: Any?)] {
        s.events.compactMap { e in e.event == nil ? e.id.flatMap(Int.init).map { ($0, e.json) } : nil }
    }

    static func frame(_ s: TestEventStream, where probe: @escaping (Any?) -> Bool) async throws -> (tick: Int, json: Any?) {
        try await eventually("a frame on \(s.summary)", timeout: 30) { frames(s).first { probe($0.json) } }
    }

    static func playerIDs(_ json: Any?) -> [String] {
        (json["players"].array ?? []).compactMap { ($0 as Any?)["id"].string }
    }

    /// An outside probe (session 24): a link on any site opened the visitor's shard stream
    /// with their session cookie (SameSite=Lax sends it), which replaced their own stream.
    @Test("The session cookie opens a shard stream from the app's pages, not from another site's link or a foreign page")
    func crossSiteCookie() async throws {
        let host = try await HostProcess.start(manifest: Self.manifest, env: ["PYLON_TRUSTED_ORIGINS": "https://app.example"],
                                               dev: false, store: ShardSimsBuild.store)
        defer { host.stop() }
        try await Self.create(host, #"{"sim": "arena", "id": "c1", "config": {"speed": 0}}"#)
        let cookie = "shards_session=\(try await host.mintSession("alice"))"
        let cases: [(String, [String: String], Int)] = [
            ("a link on another site", ["Sec-Fetch-Site": "cross-site"], 401),
            ("a page of an untrusted origin", ["Referer": "https://evil.example/page"], 401),
            ("a script of an untrusted origin", ["Origin": "https://evil.example"], 401),
            ("the app's own page", ["Sec-Fetch-Site": "same-origin"], 200),
            ("a trusted origin on another site", ["Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"], 200),
            ("a client that is no browser", [:], 200),
        ]
        for (what, headers, status) in cases {
            let s = try await TestEventStream.connect(port: host.port, path: "/api/shards/c1/connect",
                                                      headers: headers.merging(["Cookie": cookie]) { a, _ in a }, label: what)
            #expect(s.status == status, "\(what): \(s.summary)")
            s.close()
        }
    }

    @Test("SSE frames carry the tick and the snapshot; the grid area of interest hides a far player; an input is acked with the next frame")
    func framesAOIAndAcks() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        try await Self.create(host, #"{"sim": "arena", "id": "a1", "config": {"speed": 0, "cell": 100}}"#)
        let tokens = try await (host.mintSession("alice"), host.mintSession("bob"), host.mintSession("carol"))
        let alice = try await Self.connect(host, "a1", token: tokens.0)
        let bob = try await Self.connect(host, "a1", token: tokens.1)
        let carol = try await Self.connect(host, "a1", token: tokens.2)
        #expect(alice.status == 200 && alice.headers["content-type"]?.hasPrefix("text/event-stream") == true, "\(alice.summary)")
        // Subscribed (a frame came) before inputs, which need an attached subscriber.
        for s in [alice, bob, carol] { _ = try await Self.frame(s) { $0 != nil } }
        let spawned = try await Self.input(host, "a1", #"{"input": {"spawn": [50, 50]}, "client_seq": 7}"#, token: tokens.0)
        #expect(spawned.status == 200 && spawned.json["accepted"].bool == true, "\(spawned.body)")
        let seq = try #require(spawned.json["seq"].int)
        #expect(try await Self.input(host, "a1", #"{"input": {"spawn": [120, 60]}}"#, token: tokens.1).status == 200)
        #expect(try await Self.input(host, "a1", #"{"input": {"spawn": [900, 900]}}"#, token: tokens.2).status == 200)

        // The ack: client_seq echoed with the server seq and the tick, right before that tick's frame.
        let ack = try await eventually("alice's ack", timeout: 30) { alice.events.first { $0.event == "ack" } }
        #expect(ack.json["client_seq"].int == 7 && ack.json["seq"].int == seq, "\(ack.data)")
        let ackTick = try #require(ack.json["tick"].int)
        let afterAck = try await eventually("the frame after the ack", timeout: 30) { () -> TestEventStream.Event? in
            let all = alice.events
            guard let i = all.firstIndex(where: { $0.event == "ack" }) else { return nil }
            return all[(i + 1)...].first { $0.event == nil }
        }
        // (Normally that tick's own frame; a later one if the reader fell behind and it was replaced.)
        #expect((afterAck.json["tick"].int ?? 0) >= ackTick && afterAck.id == afterAck.json["tick"].int.map(String.init), "\(afterAck)")
        #expect(afterAck.json["you"]["x"].double == 50, "\(afterAck.data)")

        // Alice and Bob are in neighbouring cells; Carol is far from both.
        _ = try await Self.frame(alice) { Self.playerIDs($0) == ["bob"] }
        _ = try await Self.frame(bob) { Self.playerIDs($0) == ["alice"] }
        let carolSees = try await Self.frame(carol) { $0["you"]["id"].string == "carol" }
        #expect(Self.playerIDs(carolSees.json).isEmpty)
        // Every frame so far: the id is the snapshot's tick, and no one ever saw a far player.
        for (s, far) in [(alice, "carol"), (bob, "carol"), (carol, "alice"), (carol, "bob")] {
            for f in Self.frames(s) {
                #expect(f.json["tick"].int == f.tick)
                #expect(!Self.playerIDs(f.json).contains(far), "\(s.label) saw \(far): \(String(describing: f.json))")
            }
        }
        let info = try await host.request("GET", "/api/shards/a1", token: tokens.0)
        #expect(info.status == 200 && info.json["subscribers"].int == 3 && info.json["sim"].string == "arena", "\(info.body)")

        // Signing out ends the stream (at its next heartbeat), and the subscriber leaves.
        #expect(try await host.request("POST", "/api/auth/logout", token: tokens.2).status == 200)
        let ended = try await carol.waitForNamedEvent("end", timeout: 40)
        #expect(ended.json["reason"].string == "session_ended", "\(ended.data)")
        var subscribers = 3
        for _ in 0..<300 where subscribers != 2 {
            subscribers = try await host.request("GET", "/api/shards/a1", token: tokens.0).json["subscribers"].int ?? -1
            if subscribers != 2 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(subscribers == 2)
    }

    @Test("Rejected inputs get an error frame; a user sends only as a subscriber it attached; subscribe and admin routes are guarded")
    func rejectionAndAuth() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        try await Self.create(host, #"{"sim": "arena", "id": "r1"}"#)
        try await Self.create(host, #"{"sim": "misbehaving", "id": "m1", "config": {"mode": "none"}}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let stream = try await Self.connect(host, "r1", token: alice)
        _ = try await Self.frame(stream) { $0 != nil }

        // Rejected by the sim: an error event with the client's seq, and nothing changed.
        #expect(try await Self.input(host, "r1", #"{"input": {"move_to": [1, 1]}, "client_seq": 1}"#, token: alice).status == 200)
        #expect(try await Self.input(host, "r1", #"{"input": {"jump": true}, "client_seq": 2}"#, token: alice).status == 200)
        #expect(try await Self.input(host, "r1", #"{"input": {"spawn": [5000, 1]}, "client_seq": 3}"#, token: alice).status == 200)
        let errors = try await eventually("three error events", timeout: 30) { () -> [TestEventStream.Event]? in
            let e = stream.events.filter { $0.event == "error" }
            return e.count >= 3 ? e : nil
        }
        #expect(errors.map { $0.json["client_seq"].int } == [1, 2, 3])
        #expect(errors.allSatisfy { $0.json["error"]["code"].string == "INPUT_REJECTED" }, "\(errors.map(\.data))")
        #expect(!stream.events.contains { $0.event == "ack" })

        // An input over 64 KiB is refused before it is queued.
        let big = try await Self.input(host, "r1", #"{"input": "\#(String(repeating: "x", count: 70_000))"}"#, token: alice)
        #expect(big.status == 413 && big.json["error"]["code"].string == "INPUT_TOO_LARGE", "\(big.body.prefix(300))")

        // Only as a subscriber one attached: Bob is not attached, and may not act as Alice.
        let notAttached = try await Self.input(host, "r1", #"{"input": {"spawn": [1, 1]}}"#, token: bob)
        #expect(notAttached.status == 403 && notAttached.json["error"]["code"].string == "UNAUTHORIZED", "\(notAttached.body)")
        let asAlice = try await Self.input(host, "r1", #"{"input": {"spawn": [1, 1]}, "subscriber_id": "alice"}"#, token: bob)
        #expect(asAlice.status == 403, "\(asAlice.body)")
        // Subscribing as someone else: refused by the default rule; the admin may.
        let other = try await Self.connect(host, "r1", token: bob, sid: "alice")
        #expect(other.status == 403, "\(other.status) \(other.body)")
        let watcher = try await Self.connect(host, "r1", token: Self.admin, sid: "watcher")
        #expect(watcher.status == 200)

        // Anonymous callers, non-admins on admin routes, unknown shards and sims, bad bodies.
        #expect(try await host.request("GET", "/api/shards/r1").status == 401)
        #expect(try await Self.connect(host, "r1", token: "nope").status == 401)
        #expect(try await Self.input(host, "r1", #"{"input": {}}"#, token: "nope").status == 401)
        #expect(try await host.request("GET", "/api/shards", token: alice).status == 403)
        #expect(try await host.request("POST", "/api/shards", json: #"{"sim": "arena"}"#, token: alice).status == 403)
        #expect(try await host.request("DELETE", "/api/shards/r1", token: alice).status == 403)
        let missing = try await host.request("GET", "/api/shards/nope", token: alice)
        #expect(missing.status == 404 && missing.json["error"]["code"].string == "SHARD_NOT_FOUND")
        let noSim = try await host.request("POST", "/api/shards", json: #"{"sim": "chess"}"#, token: Self.admin)
        #expect(noSim.status == 404 && noSim.json["error"]["code"].string == "SIM_NOT_FOUND", "\(noSim.body)")
        let badConfig = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "config": {"width": "wide"}}"#, token: Self.admin)
        #expect(badConfig.status == 400 && badConfig.json["error"]["code"].string == "INVALID_ARENA_CONFIG", "\(badConfig.body)")
        let badRate = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "tick_rate_hz": 100000}"#, token: Self.admin)
        #expect(badRate.status == 400 && badRate.json["error"]["code"].string == "INVALID_SHARD_CONFIG", "\(badRate.body)")
        let taken = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "r1"}"#, token: Self.admin)
        #expect(taken.status == 409 && taken.json["error"]["code"].string == "SHARD_EXISTS")
        let badID = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "a b/c"}"#, token: Self.admin)
        #expect(badID.status == 400 && badID.json["error"]["code"].string == "INVALID_SHARD_ID")
        #expect(try await Self.connect(host, "r1", token: alice, sid: "bad%20sid").status == 400)

        // A sim's own rules: authorize_subscribe refuses "banned", authorize_input a word.
        let banned = try await Self.connect(host, "m1", token: Self.admin, sid: "banned")
        _ = try await banned.waitForEnd(timeout: 20)  // the error body read whole
        #expect(banned.status == 403 && banned.bodyJSON["error"]["code"].string == "BANNED", "\(banned.body)")
        let mine = try await Self.connect(host, "m1", token: alice)
        _ = try await Self.frame(mine) { $0 != nil }
        #expect(try await Self.input(host, "m1", #"{"input": "forbidden", "client_seq": 9}"#, token: alice).status == 200)
        let refused = try await eventually("the refusal", timeout: 30) { mine.events.first { $0.event == "error" } }
        #expect(refused.json["error"]["code"].string == "INPUT_FORBIDDEN" && refused.json["client_seq"].int == 9, "\(refused.data)")
    }

    @Test("A sim that breaks the contract is stopped with a log line while another shard keeps ticking",
          arguments: ["garbage", "slow", "fail", "silent"])
    func misbehavingSimStopped(_ mode: String) async throws {
        let host = try await Self.start(env: ["PYLON_SHARD_TICK_BUDGET_MS": "300"])
        defer { host.stop() }
        try await Self.create(host, #"{"sim": "arena", "id": "good"}"#)
        try await Self.create(host, #"{"sim": "misbehaving", "id": "bad", "config": {"mode": "\#(mode)", "after": 3}}"#)
        let good = try await Self.connect(host, "good", token: Self.admin, sid: "w")
        let bad = try await Self.connect(host, "bad", token: Self.admin, sid: "w")
        let end = try await bad.waitForNamedEvent("end", timeout: 30)
        #expect(end.json["reason"].string?.isEmpty == false, "\(end.data)")
        let line = try await eventually("the log line", timeout: 30) {
            host.log.split(separator: "\n").first { $0.contains("shard bad stopped: sim misbehaving") }
        }
        #expect(line.contains("broke the contract"), "\(line)")
        // The good shard goes on ticking after the bad one stopped (for "slow": while its
        // turn still sleeps on its thread).
        let seen = Self.frames(good).last?.tick ?? 0
        _ = try await eventually("good's frames past tick \(seen + 5)", timeout: 30) { Self.frames(good).last.flatMap { $0.tick > seen + 5 ? $0 : nil } }
        #expect(try await host.request("GET", "/api/shards/bad", token: Self.admin).status == 404)
        let info = try await host.request("GET", "/api/shards/good", token: Self.admin)
        #expect(info.json["running"].bool == true, "\(info.body)")
    }

    @Test("An idle shard stops and is removed; a watched one does not; a finished one ends its streams")
    func idleAndFinished() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        try await Self.create(host, #"{"sim": "arena", "id": "idle", "tick_rate_hz": 50, "idle_ticks_before_shutdown": 5}"#)
        // Watched well before its 500 idle ticks (10 s) run out, and then for longer.
        try await Self.create(host, #"{"sim": "arena", "id": "watched", "tick_rate_hz": 50, "idle_ticks_before_shutdown": 500}"#)
        let watcher = try await Self.connect(host, "watched", token: Self.admin, sid: "w")
        _ = try await Self.frame(watcher) { ($0["tick"].int ?? 0) > 600 }
        _ = try await eventually("the idle shard stopped", timeout: 30) { host.log.contains("shard idle stopped: idle") ? true : nil }
        #expect(try await host.request("GET", "/api/shards/idle", token: Self.admin).status == 404)
        #expect(try await host.request("GET", "/api/shards/watched", token: Self.admin).status == 200)
        // Once its only watcher leaves, the watched shard goes idle too.
        watcher.close()
        _ = try await eventually("the watched shard stopped", timeout: 60) { host.log.contains("shard watched stopped: idle") ? true : nil }
        #expect(try await host.request("GET", "/api/shards/watched", token: Self.admin).status == 404)

        // Event-driven (0 Hz): tick 1 admits the subscriber, each input makes one more.
        try await Self.create(host, #"{"sim": "arena", "id": "short", "tick_rate_hz": 0, "config": {"max_ticks": 3}}"#)
        let player = try await Self.connect(host, "short", token: Self.admin, sid: "w")
        _ = try await Self.frame(player) { $0["tick"].int == 1 }
        for (n, body) in [#"{"input": {"spawn": [1, 1]}, "subscriber_id": "w"}"#, #"{"input": {"move_to": [2, 2]}, "subscriber_id": "w"}"#].enumerated() {
            #expect(try await Self.input(host, "short", body, token: Self.admin).status == 200)
            // One input per tick: the next is sent after this one's ack.
            _ = try await eventually("ack \(n + 1)", timeout: 30) { player.events.filter { $0.event == "ack" }.count > n ? true : nil }
        }
        let end = try await player.waitForNamedEvent("end", timeout: 30)
        #expect(end.json["reason"].string == "finished", "\(end.data)")
        #expect(Self.frames(player).map(\.tick) == [1, 2, 3])
        _ = try await eventually("the finished shard removed", timeout: 30) { host.log.contains("shard short stopped: finished") ? true : nil }
        let list = try await host.request("GET", "/api/shards", token: Self.admin)
        #expect(list.status == 200 && (list.json.array ?? []).isEmpty, "\(list.body)")
    }
}

extension ShardTests {
    @Test("ctx.shards from an action creates a shard, reads it and sends input; a mutation may not")
    func fromFunctions() async throws {
        let files = [
            "functions/openArena.ts": """
            import { action } from "@pylon/functions";
            export default action(async (ctx, args) => {
              const made = await ctx.shards.create("arena", { id: args.id, config: { speed: 0 }, settings: { tick_rate_hz: 20 } });
              const sent = await ctx.shards.input(args.id, "npc", { spawn: [10, 10] }, 5);
              const got = await ctx.shards.get(args.id);
              const none = await ctx.shards.get("missing");
              let dup = null;
              try { await ctx.shards.create("arena", { id: args.id }); } catch (e) { dup = e.code; }
              return { made, sent, got, none, dup };
            });
            """,
            "functions/fromMutation.ts": """
            import { mutation } from "@pylon/functions";
            export default mutation(async (ctx) => await ctx.shards.get("x"));
            """,
        ]
        let host = try await HostProcess.start(manifest: Self.manifest, store: ShardSimsBuild.withFunctions, files: files)
        defer { host.stop() }
        let r = try await host.request("POST", "/api/fn/openArena", json: #"{"id": "fn1"}"#, token: Self.admin)
        #expect(r.status == 200, "\(r.body)\n\(host.log.suffix(2000))")
        #expect(r.json["made"]["id"].string == "fn1" && r.json["made"]["sim"].string == "arena", "\(r.body)")
        #expect(r.json["sent"]["accepted"].bool == true && r.json["sent"]["seq"].int == 1, "\(r.body)")
        #expect(r.json["got"]["running"].bool == true && r.json["none"].isNull, "\(r.body)")
        #expect(r.json["dup"].string == "SHARD_EXISTS", "\(r.body)")
        // The input was applied: a watcher sees the function's player.
        let watcher = try await Self.connect(host, "fn1", token: Self.admin, sid: "w")
        _ = try await Self.frame(watcher) { $0["tick"].int != nil }
        let listed = try await host.request("GET", "/api/shards", token: Self.admin)
        #expect((listed.json.array ?? []).count == 1, "\(listed.body)")
        // ctx.shards is not on a mutation's ctx at all.
        let m = try await host.request("POST", "/api/fn/fromMutation", json: "{}", token: Self.admin)
        #expect(m.status != 200, "\(m.body)")
    }
}

/// The plugins folder of the shard tests: the real SQLite store (a link to `plugins/`), the
/// arena built by its own Makefile and the misbehaving fixture, built once per test process.
actor ShardSimsBuild {
    static let shared = ShardSimsBuild()
    static let store = TestStore(
        name: "sqlite+sims", pluginsDir: { try await ShardSimsBuild.shared.pluginsDir() },
        provision: { _, db in TestStoreBackend(storeConfig: [("use", .string("sqlite"))], sqliteFile: db) })
    /// The same with the function runtime (`libPylonFnBun.so` from `plugins/`).
    static let withFunctions = ShardSimFolders.linking("sqlite+sims+functions", ["libPylonFnBun.so"], provision: store.provision)
    private let once = OnceBuild { try await ShardSimsBuild.make() }

    func pluginsDir() async throws -> String {
        try await once.value()
    }

    private static func make() async throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pylon-shard-sims-\(UUID().uuidString)")
        let plugins = root.appendingPathComponent("plugins").path
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        let arena = TestPaths.packageRoot.appendingPathComponent("examples/shard-arena").path
        let make = try await TestCommand.run("/usr/bin/env", ["make", "-C", arena, "BUILD_DIR=\(plugins)", "CC=cc"], timeout: 120)
        guard make.status == 0 else { throw TestSetupError(description: "make in \(arena) failed:\n\(make.stdout)\n\(make.stderr)") }
        try await FixturePlugins.compile("misbehaving_sim", to: plugins + "/libmisbehaving_sim.so")
        try FileManager.default.createSymbolicLink(atPath: plugins + "/libPylonStoreSQLite.so", withDestinationPath: TestPaths.sqlitePlugin)
        return plugins
    }
}
