import Foundation
import Testing

/// Shard persistence from the outside (pylon-aux.md §5.8, issue 20): shards save through the
/// arena's `save` every N ticks into `_pylon_shard_state`, and a restarted host restores
/// them through `restore`. On SQLite and on Postgres. No timing is asserted.
@Suite("Shard persistence: saved every N ticks, restored when the host starts again")
struct ShardPersistenceTests {
    static func savedTick(_ host: HostProcess, _ id: String) async throws -> Int? {
        Int(try await host.sql("SELECT tick FROM _pylon_shard_state WHERE id = '\(id)'").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("A persisting shard comes back after a restart with its tick and its players; deleted, unsaved and corrupt ones do not",
          arguments: [ShardSimsBuild.store, ShardSimFolders.postgres])
    func restoredAfterRestart(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, env: ["PYLON_SHARD_PERSIST_TICKS": "10"], store: store)
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "p1", "config": {"speed": 0}, "persist_every_ticks": 5}"#)
        try await ShardTests.create(host, #"{"sim": "arena", "id": "p2"}"#)  // the host's default: every 10 ticks
        try await ShardTests.create(host, #"{"sim": "arena", "id": "gone", "persist_every_ticks": 2}"#)
        try await ShardTests.create(host, #"{"sim": "arena", "id": "bad", "persist_every_ticks": 2}"#)
        let off = try await ShardTests.create(host, #"{"sim": "arena", "id": "off", "persist_every_ticks": 0}"#)
        #expect(off["persist_every_ticks"].int == 0)
        let cannot = try await host.request("POST", "/api/shards", json: #"{"sim": "misbehaving", "config": {"mode": "none"}, "persist_every_ticks": 5}"#,
                                            token: HostProcess.adminToken)
        #expect(cannot.status == 400 && cannot.json.errorCode == "SIM_CANNOT_PERSIST", "\(cannot.body)")

        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let a = try await ShardTests.connect(host, "p1", token: alice), b = try await ShardTests.connect(host, "p1", token: bob)
        for s in [a, b] { _ = try await ShardTests.frame(s) { $0 != nil } }
        #expect(try await ShardTests.input(host, "p1", #"{"input": {"spawn": [50, 50]}}"#, token: alice).status == 200)
        #expect(try await ShardTests.input(host, "p1", #"{"input": {"spawn": [120, 60]}}"#, token: bob).status == 200)
        _ = try await ShardTests.frame(a) { ShardTests.playerIDs($0) == ["bob"] }
        let spawnedBy = try #require(ShardTests.frames(a).last?.tick)
        let saved = try await MatchmakerTests.poll("p1 saved after tick \(spawnedBy)") { try await Self.savedTick(host, "p1").flatMap { $0 > spawnedBy ? $0 : nil } }
        _ = try await MatchmakerTests.poll("p2 saved") { try await Self.savedTick(host, "p2") }
        _ = try await MatchmakerTests.poll("bad saved") { try await Self.savedTick(host, "bad") }
        #expect(try await Self.savedTick(host, "off") == nil)
        // A deleted shard's row goes.
        _ = try await MatchmakerTests.poll("gone saved") { try await Self.savedTick(host, "gone") }
        #expect(try await host.request("DELETE", "/api/shards/gone", token: HostProcess.adminToken).status == 200)
        _ = try await MatchmakerTests.poll("gone's row deleted") { try await Self.savedTick(host, "gone") == nil ? true : nil }

        await host.stopAndWait()
        // A state the arena did not write: logged and skipped; the host starts all the same.
        try await host.sql("UPDATE _pylon_shard_state SET state = 'bm90IGFuIGFyZW5h' WHERE id = 'bad'")
        try await host.restart()
        let info = try await host.request("GET", "/api/shards/p1", token: alice)
        #expect(info.status == 200 && (info.json["tick"].int ?? 0) >= saved && info.json["persist_every_ticks"].int == 5, "\(info.body)")
        #expect(try await host.request("GET", "/api/shards/p2", token: alice).status == 200)
        for gone in ["gone", "off", "bad"] { #expect(try await host.request("GET", "/api/shards/\(gone)", token: alice).status == 404, "\(gone)") }
        #expect(host.log.contains("shard bad: its saved state") && host.log.contains("INVALID_SAVED_STATE"), "\(host.log.suffix(3000))")
        #expect(try await Self.savedTick(host, "bad") != nil, "a row that could not be restored is kept")

        // The players are where they were, and the ticks go on from the saved one.
        let again = try await ShardTests.connect(host, "p1", token: alice)
        let back = try await ShardTests.frame(again) { $0 != nil }
        #expect(back.tick > saved, "\(back)")
        #expect(back.json["you"]["x"].double == 50 && back.json["you"]["y"].double == 50, "\(String(describing: back.json))")
        #expect(ShardTests.playerIDs(back.json) == ["bob"], "\(String(describing: back.json))")
        #expect(back.json["players"][0]["x"].double == 120, "\(String(describing: back.json))")
    }

    @Test("A graceful stop saves each persisting shard's last tick, however far off its next periodic save; an unpersisted one leaves no row",
          arguments: [ShardSimsBuild.store, ShardSimFolders.postgres])
    func savedWhenTheHostStops(store: TestStore) async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, store: store)
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "rare", "config": {"speed": 0}, "persist_every_ticks": 1000000}"#)
        try await ShardTests.create(host, #"{"sim": "arena", "id": "off", "persist_every_ticks": 0}"#)
        let alice = try await host.mintSession("alice")
        let a = try await ShardTests.connect(host, "rare", token: alice)
        _ = try await ShardTests.frame(a) { $0 != nil }
        #expect(try await ShardTests.input(host, "rare", #"{"input": {"spawn": [70, 30]}}"#, token: alice).status == 200)
        let spawned = try await ShardTests.frame(a) { $0["you"]["x"].double == 70 }
        #expect(try await Self.savedTick(host, "rare") == nil, "no periodic save within a million ticks")

        await host.stopAndWait()
        let last = try #require(try await Self.savedTick(host, "rare"), "the stop saved rare\n\(host.log.suffix(3000))")
        #expect(last >= spawned.tick)
        #expect(try await Self.savedTick(host, "off") == nil)

        try await host.restart()
        let again = try await ShardTests.connect(host, "rare", token: alice)
        let back = try await ShardTests.frame(again) { $0 != nil }
        #expect(back.tick > last, "\(back)")
        #expect(back.json["you"]["x"].double == 70 && back.json["you"]["y"].double == 30, "\(String(describing: back.json))")
        #expect(try await host.request("GET", "/api/shards/off", token: alice).status == 404)
    }
}
