import Foundation
import Testing
import PylonTestPorts

/// A matched shard belongs to its group (`ShardRoster`): the release host with the arena sim
/// and ShardWS, two players matched by the matchmaker, a third signed-in user who tries every
/// way in — `GET /api/shards/:id`, the SSE stream, the WebSocket, the input route — under
/// every `sid`. To the outsider the match must look exactly like an id no shard has; a
/// player may act only as itself; the admin is admitted. No timing is asserted.
@Suite("Matched shards: only the group's players (and the admin) read, join and play them, on every path; the roster survives a restart")
struct MatchedShardAccessTests {
    static let env = ["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_SIZE": "2", "PYLON_MATCH_INTERVAL_MS": "100"]
    /// Shaped like a match id, but no shard has it.
    static let unknown = "match_0_999"

    /// Queues `a` and `b` (a group of two) and returns the shard they were matched into.
    static func match(_ host: HostProcess, _ a: String, _ b: String) async throws -> String {
        for t in [a, b] { #expect(try await MatchmakerTests.call(host, "enqueue", token: t).status == 200) }
        let shard = try await MatchmakerTests.matched(host, a)
        #expect(try await MatchmakerTests.matched(host, b) == shard)
        return shard
    }

    /// An answer with `id` masked, so a foreign shard's answer compares with a missing one's.
    static func masked(_ status: Int, _ text: String, _ id: String) -> String { "\(status) " + text.replacingOccurrences(of: id, with: "<id>") }

    static func get(_ host: HostProcess, _ shard: String, token: String) async throws -> String {
        let r = try await host.request("GET", "/api/shards/\(shard)", token: token)
        return masked(r.status, r.body, shard)
    }

    static func input(_ host: HostProcess, _ shard: String, _ body: String, token: String) async throws -> String {
        let r = try await ShardTests.input(host, shard, body, token: token)
        return masked(r.status, r.body, shard)
    }

    /// An SSE connect: a refusal's status and body (masked); "200" when it was admitted.
    static func sse(_ host: HostProcess, _ shard: String, token: String, sid: String? = nil) async throws -> String {
        let s = try await ShardTests.connect(host, shard, token: token, sid: sid)
        defer { s.close() }
        guard s.status != 200 else { return "200" }
        try await s.waitForEnd(timeout: 30)
        return masked(s.status, s.body, shard)
    }

    /// A WebSocket connect that must be refused: its close code and reason (masked).
    static func wsRefusal(_ port: Int, _ shard: String, token: String, sid: String? = nil) async throws -> String {
        let ws = try await ShardWSTests.connect(port, shard: shard, sid: sid, token: token, label: "\(shard)/\(sid ?? "me")")
        let close = try await ws.waitForClose(timeout: 30)
        return masked(close?.code ?? 0, close?.reason ?? "no close frame", shard)
    }

    @Test("A third signed-in user finds no such shard on GET, SSE, the WebSocket and input, under any sid, exactly as for a missing one; the players play, each only as itself; the admin is admitted")
    func outsiderPlayersAndAdmin() async throws {
        let port = try freeLoopbackPort()
        let host = try await HostProcess.start(manifest: ShardTests.manifest,
                                               env: Self.env.merging(["PYLON_SHARD_WS_PORT": String(port),
                                                                      "PYLON_MATCH_CONFIG": #"{"config": {"speed": 0}}"#]) { $1 },
                                               store: ShardWSBuild.store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), mallory = try await host.mintSession("mallory")
        let shard = try await Self.match(host, alice, bob)
        try await Self.rosterHolds(host, wsPort: port, shard: shard, alice: alice, bob: bob, mallory: mallory)

        // A shard the admin started has no roster: the sim alone decides, as before.
        try await ShardTests.create(host, #"{"sim": "arena", "id": "open1"}"#)
        let open = try await host.request("GET", "/api/shards/open1", token: mallory)
        #expect(open.status == 200 && open.json["players"] == nil, "\(open.body)")
        let m = try await ShardTests.connect(host, "open1", token: mallory)
        _ = try await ShardTests.frame(m) { $0 != nil }
    }

    static func savedSettings(_ host: HostProcess, _ id: String) async throws -> String {
        try await host.sql("SELECT settings FROM _pylon_shard_state WHERE id = '\(id)'").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("A persisting matched shard keeps its players across a restart; a saved roster that is not one keeps the shard down",
          arguments: [ShardSimsBuild.store, ShardSimFolders.postgres])
    func rosterSurvivesRestart(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest,
                                               env: Self.env.merging(["PYLON_MATCH_CONFIG": #"{"config": {"speed": 0}, "persist_every_ticks": 5}"#]) { $1 },
                                               store: store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let carol = try await host.mintSession("carol"), dave = try await host.mintSession("dave"), mallory = try await host.mintSession("mallory")
        let shard = try await Self.match(host, alice, bob)
        let broken = try await Self.match(host, carol, dave)
        for id in [shard, broken] { try await Self.savedWithPlayers(host, id) }
        try await Self.spawnAt40(host, shard, alice: alice)

        await host.stopAndWait()
        // A roster damaged behind the host's back: the shard must not come back open to all.
        try await host.sql(#"UPDATE _pylon_shard_state SET settings = '{"tick_rate_hz": 20, "players": "everyone"}' WHERE id = '\#(broken)'"#)
        try await host.restart()

        try await Self.rosterRestored(host, shard, alice: alice, bob: bob, mallory: mallory)

        #expect(try await host.request("GET", "/api/shards/\(broken)", token: HostProcess.adminToken).status == 404)
        #expect(host.log.contains("shard \(broken): its saved state") && host.log.contains("INVALID_SAVED_ROSTER"), "\(host.log.suffix(3000))")
        #expect(try await Self.savedSettings(host, broken).contains("everyone"), "a row that could not be restored is kept")
    }

    @Test("With a sim that admits everyone signed in, the roster still keeps outsiders and spoofed sids out; the sim's own refusals still apply to players")
    func bothMustAdmit() async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest,
                                               env: Self.env.merging(["PYLON_MATCH_SIM": "misbehaving",
                                                                      "PYLON_MATCH_CONFIG": #"{"config": {"mode": "none"}}"#]) { $1 },
                                               store: ShardSimsBuild.store)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), banned = try await host.mintSession("banned"), mallory = try await host.mintSession("mallory")
        let shard = try await Self.match(host, alice, banned)

        // The sim would admit Mallory under any sid: the host does not ask it.
        let missing = try await Self.sse(host, Self.unknown, token: mallory)
        for sid in [nil, "alice", "anyone"] { #expect(try await Self.sse(host, shard, token: mallory, sid: sid) == missing, "sid \(sid ?? "-")") }
        let spoof = try await Self.sse(host, shard, token: alice, sid: "spectator")
        #expect(spoof.hasPrefix("403 ") && spoof.contains("SID_NOT_YOURS"), "\(spoof)")
        // A player the sim refuses stays out: both must admit.
        let refused = try await Self.sse(host, shard, token: banned)
        #expect(refused.hasPrefix("403 ") && refused.contains("BANNED"), "\(refused)")

        let a = try await ShardTests.connect(host, shard, token: alice)
        _ = try await ShardTests.frame(a) { $0 != nil }
        #expect(try await ShardTests.input(host, shard, #"{"input": "forbidden", "client_seq": 3}"#, token: alice).status == 200)
        let error = try await a.waitForNamedEvent("error", timeout: 30)
        #expect(error.json["error"]["code"].string == "INPUT_FORBIDDEN" && error.json["client_seq"].int == 3, "\(error.data)")
        #expect(try await Self.input(host, shard, #"{"input": "hello"}"#, token: mallory)
                == (try await Self.input(host, Self.unknown, #"{"input": "hello"}"#, token: mallory)))
    }
}
