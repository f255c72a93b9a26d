import Foundation
import Testing

/// A second sim in another language (issue 20): `examples/shard-tag`, Rust with the standard
/// library only, loaded beside the C arena in one host; a shard of each runs at once.
@Suite("Shards: a sim in Rust beside the sim in C")
struct ShardTagSimTests {
    @Test("The Rust tag sim and the C arena run side by side: joins, tags, a refused tag, the game's end, and a restart")
    func tagBesideArena() async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, store: ShardSimFolders.withTag)
        defer { host.stop() }
        #expect(!host.log.contains("pylon.example.shard_tag") || !host.log.contains("different pylon_plugin.h revision"), "\(host.log.suffix(2000))")
        try await ShardTests.create(host, #"{"sim": "arena", "id": "arena1", "config": {"speed": 0}}"#)
        try await ShardTests.create(host, #"{"sim": "tag", "id": "tag1", "config": {"max_tags": 2}, "persist_every_ticks": 1}"#)
        let list = try await host.request("GET", "/api/shards", token: HostProcess.adminToken)
        #expect((list.json.array ?? []).compactMap { ($0 as Any?)["sim"].string }.sorted() == ["arena", "tag"], "\(list.body)")
        let bad = try await host.request("POST", "/api/shards", json: #"{"sim": "tag", "config": {"pad": 1000000}}"#, token: HostProcess.adminToken)
        #expect(bad.status == 400 && bad.json.errorCode == "INVALID_TAG_CONFIG", "\(bad.body)")

        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        let arena = try await ShardTests.connect(host, "arena1", token: alice)
        let a = try await ShardTests.connect(host, "tag1", token: alice), b = try await ShardTests.connect(host, "tag1", token: bob)
        for s in [arena, a, b] { _ = try await ShardTests.frame(s) { $0 != nil } }
        #expect(try await ShardTests.input(host, "arena1", #"{"input": {"spawn": [10, 10]}}"#, token: alice).status == 200)
        _ = try await ShardTests.frame(arena) { $0["you"]["x"].double == 10 }

        // One input per tick, each after the last one's ack.
        func send(_ body: String, _ token: String, _ stream: TestEventStream, _ seq: Int) async throws {
            #expect(try await ShardTests.input(host, "tag1", body, token: token).status == 200)
            _ = try await eventually("outcome of input \(seq)", timeout: 30) { stream.events.first { $0.json["client_seq"].int == seq } }
        }
        try await send(#"{"input": {"join": true}, "client_seq": 1}"#, alice, a, 1)
        try await send(#"{"input": {"join": true}, "client_seq": 2}"#, bob, b, 2)
        _ = try await ShardTests.frame(b) { $0["it"].string == "alice" && ($0["players"].array?.count ?? 0) == 2 }
        // Bob is not it: his tag is refused with an error frame, and nothing changes.
        try await send(#"{"input": {"tag": "alice"}, "client_seq": 3}"#, bob, b, 3)
        let refused = try #require(b.events.first { $0.event == "error" })
        #expect(refused.json["error"]["code"].string == "INPUT_REJECTED" && refused.json["client_seq"].int == 3, "\(refused.data)")
        try await send(#"{"input": {"tag": "bob"}, "client_seq": 4}"#, alice, a, 4)
        let tagged = try await ShardTests.frame(a) { $0["it"].string == "bob" }
        #expect(tagged.json["you"]["score"].int == 1 && tagged.json["tags"].int == 1, "\(String(describing: tagged.json))")

        // The tag shard's state survives a restart (it saves every tick) …
        await host.stopAndWait()
        try await host.restart()
        let back = try await host.request("GET", "/api/shards/tag1", token: bob)
        #expect(back.status == 200 && (back.json["tick"].int ?? 0) >= tagged.tick, "\(back.body)")
        let b2 = try await ShardTests.connect(host, "tag1", token: bob)
        let seen = try await ShardTests.frame(b2) { $0 != nil }
        #expect(seen.json["it"].string == "bob" && seen.json["tags"].int == 1, "\(String(describing: seen.json))")
        // … and Bob's tag ends the game (max_tags 2): the stream ends, the shard and its row go.
        #expect(try await ShardTests.input(host, "tag1", #"{"input": {"tag": "alice"}}"#, token: bob).status == 200)
        let end = try await b2.waitForNamedEvent("end", timeout: 30)
        #expect(end.json["reason"].string == "finished", "\(end.data)")
        _ = try await MatchmakerTests.poll("the finished shard's row deleted") {
            try await host.sql("SELECT count(*) FROM _pylon_shard_state WHERE id = 'tag1'").trimmingCharacters(in: .whitespacesAndNewlines) == "0" ? true : nil
        }
    }
}
