import Foundation
import Testing
import PylonTestPorts

/// Shards created with `players` — by the admin (`POST /api/shards`) or by a function
/// (`ctx.shards.create`, here an action that opens a private room for its caller and the
/// users it invites) — get the matched shard's roster rule, checked with the same checks as
/// `MatchedShardAccessTests`: only the players (each as itself) and the admin on every path,
/// the missing shard's answer to anyone else, the roster back after a restart. Every bad
/// `players` value is refused with 400 `INVALID_PLAYERS` and starts no shard. No timing is
/// asserted.
@Suite("Shards created with players (by the admin or a function) admit only them, each as itself, on every path; the roster survives a restart; a bad list starts nothing")
struct RequestedRosterTests {
    /// The fixture app's one function: a private arena room (speed 0) for the caller and its
    /// `guests`, or for exactly `players` when given (so a bad list reaches the host as is).
    static let files = [
        "functions/openRoom.ts": """
        import { action } from "@pylon/functions";
        export default action(async (ctx, args) => {
          const players = "players" in args ? args.players : [ctx.auth.userId, ...(args.guests ?? [])];
          try {
            return { shard: await ctx.shards.create("arena", { id: args.id, config: { speed: 0 }, settings: args.settings ?? {}, players }) };
          } catch (e) {
            return { code: e.code ?? null, message: String(e.message), running: (await ctx.shards.get(args.id)) !== null };
          }
        });
        """,
    ]

    /// Who creates the room.
    enum Creator: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case admin, function
        var testDescription: String { rawValue }
    }

    /// Starts the arena shard `id` (speed 0) with the players Alice and Bob: the admin names
    /// them, or Alice calls `openRoom` inviting Bob. `persist`: its `persist_every_ticks`.
    static func createRoom(_ host: HostProcess, by creator: Creator, id: String, alice: String, persist: Int? = nil) async throws {
        let setting = persist.map { #""persist_every_ticks": \#($0)"# }
        switch creator {
        case .admin:
            let body = #"{"sim": "arena", "id": "\#(id)", "config": {"speed": 0}, "players": ["bob", "alice"]"# + (setting.map { ", " + $0 } ?? "") + "}"
            let r = try await host.request("POST", "/api/shards", json: body, token: HostProcess.adminToken)
            #expect(r.status == 201 && (r.json["players"].array as? [String]) == ["alice", "bob"], "\(r.body)\n\(host.log.suffix(2000))")
        case .function:
            let body = #"{"id": "\#(id)", "guests": ["bob"], "settings": {"# + (setting ?? "") + "}}"
            let r = try await host.request("POST", "/api/fn/openRoom", json: body, token: alice)
            #expect(r.status == 200 && r.json["shard"]["id"].string == id, "\(r.body)\n\(host.log.suffix(2000))")
            #expect((r.json["shard"]["players"].array as? [String]) == ["alice", "bob"], "\(r.body)")
        }
    }

    @Test("A room with players admits only them, each as itself, and the admin, on GET, SSE, the WebSocket and input; anyone else finds no such shard",
          arguments: Creator.allCases)
    func everyPath(by creator: Creator) async throws {
        let port = try freeLoopbackPort()
        let host = try await HostProcess.start(manifest: ShardTests.manifest, env: ["PYLON_SHARD_WS_PORT": String(port)],
                                               store: ShardSimFolders.withTransportAndFunctions, files: Self.files)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), mallory = try await host.mintSession("mallory")
        try await Self.createRoom(host, by: creator, id: "room-\(creator)", alice: alice)
        try await MatchedShardAccessTests.rosterHolds(host, wsPort: port, shard: "room-\(creator)", alice: alice, bob: bob, mallory: mallory)
    }

    @Test("A persisting room keeps its players across a restart, whoever created it",
          arguments: [ShardSimsBuild.withFunctions, ShardSimFolders.postgresWithFunctions])
    func survivesRestart(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, store: store, files: Self.files)
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), mallory = try await host.mintSession("mallory")
        let rooms = Creator.allCases.map { ($0, "room-\($0)") }
        for (creator, id) in rooms {
            try await Self.createRoom(host, by: creator, id: id, alice: alice, persist: 5)
            try await MatchedShardAccessTests.savedWithPlayers(host, id)
            try await MatchedShardAccessTests.spawnAt40(host, id, alice: alice)
        }
        try await host.restart()
        for (_, id) in rooms {
            try await MatchedShardAccessTests.rosterRestored(host, id, alice: alice, bob: bob, mallory: mallory)
        }
    }

    /// `players` values that are no roster, with what is wrong with each.
    static let badPlayers: [(json: String, why: String)] = [
        (#""alice""#, "a string"), (#"{"alice": true}"#, "an object"), ("7", "a number"), ("true", "a boolean"),
        ("[]", "empty"), ("[1]", "a number for an id"), ("[null]", "null for an id"), (#"[["alice"]]"#, "a list for an id"),
        (#"[""]"#, "an empty id"), (#"["has space"]"#, "an id with a space"), (#"["alice/bob"]"#, "an id with a slash"),
        ("[\"\(String(repeating: "x", count: 129))\"]", "an id of 129 bytes"),
        (#"["alice", "bob", "alice"]"#, "an id twice"),
        ("[" + (0...1024).map { "\"p\($0)\"" }.joined(separator: ",") + "]", "1025 ids"),
    ]

    @Test("Every bad players value is 400 INVALID_PLAYERS saying what to send, from the route and from a function, and starts no shard; the bounds are admitted")
    func badPlayersStartNothing() async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, store: ShardSimsBuild.withFunctions, files: Self.files)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let advice = #"send "players" as a list of 1 to 1024 distinct user ids"#
        for (json, why) in Self.badPlayers {
            let r = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "bad", "players": \#(json)}"#, token: HostProcess.adminToken)
            #expect(r.status == 400 && r.json["error"]["code"].string == "INVALID_PLAYERS", "route, \(why): \(r.status) \(r.body)")
            #expect(r.json["error"]["message"].string?.contains(advice) == true, "route, \(why): \(r.body)")
            let f = try await host.request("POST", "/api/fn/openRoom", json: #"{"id": "bad", "players": \#(json)}"#, token: alice)
            #expect(f.status == 200 && f.json["code"].string == "INVALID_PLAYERS" && f.json["running"].bool == false, "function, \(why): \(f.body)")
            #expect(f.json["message"].string?.contains(advice) == true, "function, \(why): \(f.body)")
        }
        let none = try await host.request("GET", "/api/shards", token: HostProcess.adminToken)
        #expect(none.status == 200 && none.json.array?.isEmpty == true, "no shard was started: \(none.body)")
        #expect(try await host.request("GET", "/api/shards/bad", token: HostProcess.adminToken).status == 404)

        // The bounds: 1024 players, an id of 128 bytes; null is no roster (the sim alone admits).
        let most = "[" + (1...1024).map { "\"p\($0)\"" }.joined(separator: ",") + "]"
        let full = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "full", "players": \#(most)}"#, token: HostProcess.adminToken)
        #expect(full.status == 201 && full.json["players"].array?.count == 1024, "\(full.status) \(full.body.prefix(300))")
        let long = String(repeating: "x", count: 128)
        let named = try await host.request("POST", "/api/fn/openRoom", json: #"{"id": "long", "players": ["\#(long)"]}"#, token: alice)
        #expect((named.json["shard"]["players"].array as? [String]) == [long], "\(named.body)")
        for (creator, id) in [(Creator.admin, "open-admin"), (.function, "open-fn")] {
            let r = creator == .admin
                ? try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "\#(id)", "players": null}"#, token: HostProcess.adminToken)
                : try await host.request("POST", "/api/fn/openRoom", json: #"{"id": "\#(id)", "players": null}"#, token: alice)
            #expect(r.status / 100 == 2, "\(r.body)")
            let open = try await host.request("GET", "/api/shards/\(id)", token: alice)
            #expect(open.status == 200 && open.json["players"] == nil, "\(creator): \(open.body)")
        }
    }
}
