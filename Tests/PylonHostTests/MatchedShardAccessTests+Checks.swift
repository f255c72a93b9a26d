import Foundation
import Testing

/// The roster checks shared by every way a shard gets its players (`ShardRoster`): matched
/// by the matchmaker (`MatchedShardAccessTests`), or created with `players` by the admin or
/// a function (`RequestedRosterTests`). Each expects the arena sim at speed 0 and a roster
/// of exactly Alice and Bob, with Mallory a signed-in outsider.
extension MatchedShardAccessTests {
    /// Every path into `shard`: Mallory gets the missing shard's very answers on GET, SSE, the
    /// WebSocket and input, under any sid; Alice (over SSE) and Bob (over the WebSocket on
    /// `port`) play, each only as itself; the admin watches under any sid over either
    /// transport; nothing Mallory tried reached the shard.
    static func rosterHolds(_ host: HostProcess, wsPort port: Int, shard: String, alice: String, bob: String, mallory: String) async throws {
        let admin = HostProcess.adminToken

        // GET: the outsider gets the missing shard's very answer; players and the admin read it.
        let missing = try await Self.get(host, Self.unknown, token: mallory)
        #expect(missing.hasPrefix("404 ") && missing.contains("SHARD_NOT_FOUND"), "\(missing)")
        #expect(try await Self.get(host, shard, token: mallory) == missing)
        for token in [alice, bob, admin] {
            let r = try await host.request("GET", "/api/shards/\(shard)", token: token)
            #expect(r.status == 200 && (r.json["players"].array as? [String]) == ["alice", "bob"], "\(r.body)")
        }

        // SSE: refused as if missing, whatever sid the outsider claims.
        let sseMissing = try await Self.sse(host, Self.unknown, token: mallory)
        #expect(sseMissing.hasPrefix("404 ") && sseMissing.contains("SHARD_NOT_FOUND"), "\(sseMissing)")
        for sid in [nil, "mallory", "alice", "no spaces"] {
            #expect(try await Self.sse(host, shard, token: mallory, sid: sid?.replacingOccurrences(of: " ", with: "%20")) == sseMissing, "sid \(sid ?? "-")")
        }
        // A player under another's sid (a co-player's, or anyone's): 403, never admitted.
        for sid in ["bob", "mallory"] {
            let spoof = try await Self.sse(host, shard, token: alice, sid: sid)
            #expect(spoof.hasPrefix("403 ") && spoof.contains("SID_NOT_YOURS"), "alice as \(sid): \(spoof)")
        }

        // WebSocket: 4404 with the missing shard's reason; a player under another's sid: 1008.
        let wsMissing = try await Self.wsRefusal(port, Self.unknown, token: mallory)
        #expect(wsMissing.hasPrefix("4404 ") && wsMissing.contains("SHARD_NOT_FOUND"), "\(wsMissing)")
        for sid in [nil, "alice"] { #expect(try await Self.wsRefusal(port, shard, token: mallory, sid: sid) == wsMissing, "sid \(sid ?? "-")") }
        let wsSpoof = try await Self.wsRefusal(port, shard, token: bob, sid: "alice")
        #expect(wsSpoof.hasPrefix("1008 ") && wsSpoof.contains("SID_NOT_YOURS"), "\(wsSpoof)")

        // The players: Alice over SSE, Bob over the WebSocket, each playing as itself.
        let a = try await ShardTests.connect(host, shard, token: alice)
        _ = try await ShardTests.frame(a) { $0 != nil }
        let b = try await ShardWSTests.connect(port, shard: shard, token: bob, label: "bob")
        _ = try await ShardWSTests.frame(b)
        #expect(try await ShardTests.input(host, shard, #"{"input": {"spawn": [50, 50]}}"#, token: alice).status == 200)
        try ShardWSTests.send(b, #"{"input": {"spawn": [60, 60]}, "client_seq": 1}"#)
        _ = try await b.waitForJSON("bob's ack", timeout: 30) { $0["type"].string == "ack" && $0["client_seq"].int == 1 }
        _ = try await ShardTests.frame(a) { ShardTests.playerIDs($0) == ["bob"] && $0["you"]["x"].double == 50 }

        // Input: the outsider's is not found (before its body is even read), as a player acting as another is refused.
        let inputMissing = try await Self.input(host, Self.unknown, #"{"input": {"spawn": [1, 1]}}"#, token: mallory)
        #expect(inputMissing.hasPrefix("404 ") && inputMissing.contains("SHARD_NOT_FOUND"), "\(inputMissing)")
        for body in [#"{"input": {"spawn": [1, 1]}}"#, #"{"input": {"move_to": [1, 1]}, "subscriber_id": "alice"}"#, #"{"nope": 1}"#] {
            #expect(try await Self.input(host, shard, body, token: mallory) == inputMissing, "\(body)")
        }
        let asBob = try await Self.input(host, shard, #"{"input": {"move_to": [1, 1]}, "subscriber_id": "bob"}"#, token: alice)
        #expect(asBob.hasPrefix("403 ") && asBob.contains("SID_NOT_YOURS"), "\(asBob)")

        // The admin watches under any sid over either transport (the sim admits the admin too).
        let referee = try await ShardTests.connect(host, shard, token: admin, sid: "referee")
        _ = try await ShardTests.frame(referee) { $0 != nil }
        let judge = try await ShardWSTests.connect(port, shard: shard, sid: "judge", token: admin, label: "judge")
        _ = try await ShardWSTests.frame(judge)

        // Nothing the outsider tried reached the shard.
        let last = try #require(ShardTests.frames(a).last?.tick)
        let later = try await ShardTests.frame(a) { ($0["tick"].int ?? 0) > last }
        #expect(ShardTests.playerIDs(later.json) == ["bob"] && later.json["you"]["x"].double == 50, "\(String(describing: later.json))")
        let seen = try await host.request("GET", "/api/shards/\(shard)", token: admin)
        #expect(seen.json["subscribers"].int == 4, "alice, bob, referee, judge: \(seen.body)")
    }

    /// Waits until the persisting shard `id` is saved, and expects its players in the row.
    static func savedWithPlayers(_ host: HostProcess, _ id: String) async throws {
        let saved = try await MatchmakerTests.poll("\(id) saved") { () -> String? in
            let row = try await Self.savedSettings(host, id)
            return row.isEmpty ? nil : row
        }
        #expect(saved.contains(#""players":["#), "\(saved)")
    }

    /// Alice joins `shard` and spawns at (40, 40): after a restart, her position tells the
    /// restored state from a fresh one.
    static func spawnAt40(_ host: HostProcess, _ shard: String, alice: String) async throws {
        let a = try await ShardTests.connect(host, shard, token: alice)
        _ = try await ShardTests.frame(a) { $0 != nil }
        #expect(try await ShardTests.input(host, shard, #"{"input": {"spawn": [40, 40]}}"#, token: alice).status == 200)
        _ = try await ShardTests.frame(a) { $0["you"]["x"].double == 40 }
    }

    /// After a restart: `shard` is back with its roster (Mallory finds no such shard, Bob
    /// reads the players and may not act as Alice) and its state (Alice at 40).
    static func rosterRestored(_ host: HostProcess, _ shard: String, alice: String, bob: String, mallory: String) async throws {
        let missing = try await Self.get(host, Self.unknown, token: mallory)
        #expect(missing.hasPrefix("404 "), "\(missing)")
        #expect(try await Self.get(host, shard, token: mallory) == missing)
        #expect(try await Self.sse(host, shard, token: mallory) == (try await Self.sse(host, Self.unknown, token: mallory)))
        #expect(try await Self.input(host, shard, #"{"input": {"spawn": [1, 1]}}"#, token: mallory)
                == (try await Self.input(host, Self.unknown, #"{"input": {"spawn": [1, 1]}}"#, token: mallory)))
        let info = try await host.request("GET", "/api/shards/\(shard)", token: bob)
        #expect(info.status == 200 && (info.json["players"].array as? [String]) == ["alice", "bob"], "\(info.body)")
        let spoof = try await Self.sse(host, shard, token: bob, sid: "alice")
        #expect(spoof.hasPrefix("403 ") && spoof.contains("SID_NOT_YOURS"), "\(spoof)")
        let again = try await ShardTests.connect(host, shard, token: alice)
        let back = try await ShardTests.frame(again) { $0 != nil }
        #expect(back.json["you"]["x"].double == 40, "\(String(describing: back.json))")
    }
}
