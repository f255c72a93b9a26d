import Foundation
import Testing

/// The matchmaker's bounds on shard slots from the outside (probe F6, session 22): a matched
/// shard nobody joins within `PYLON_MATCH_JOIN_GRACE_SECS` is stopped, its players cannot
/// queue again while it waits (409 `MATCH_NOT_JOINED`), and matched shards take at most
/// `PYLON_MATCH_SHARD_MAX` (default half of `PYLON_SHARD_MAX`) slots. The release host, users
/// over HTTP, players joining over SSE. No timing is asserted: generous waits only.
@Suite("Matchmaker join grace: unjoined matches are released, a handful of users cannot fill the shard slots")
struct MatchJoinGraceTests {
    typealias MM = MatchmakerTests
    static let admin = HostProcess.adminToken

    /// `grace`: long enough that the steps a test takes inside it are never slower, even on
    /// a loaded machine (the tests wait for its end; they never time it).
    static func start(grace: Int, _ env: [String: String] = [:]) async throws -> HostProcess {
        try await MM.start(["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_SIZE": "2", "PYLON_MATCH_JOIN_GRACE_SECS": String(grace),
                            "PYLON_MATCH_CONFIG": #"{"config": {"speed": 0}}"#].merging(env) { $1 })
    }

    /// Ids of the running shards (admin list).
    static func running(_ host: HostProcess) async throws -> [String] {
        let list = try await host.request("GET", "/api/shards", token: admin).json
        return (list.array ?? []).indices.compactMap { list[$0]["id"].string }
    }

    /// `a` and `b` queue and are matched into one shard; returns its id.
    static func pair(_ host: HostProcess, _ a: String, _ b: String) async throws -> String {
        for t in [a, b] {
            let r = try await MM.call(host, "enqueue", token: t)
            #expect(r.status == 200, "\(r.status) \(r.body)")
        }
        let shard = try await MM.matched(host, a)
        #expect(try await MM.matched(host, b) == shard)
        return shard
    }

    @Test("Two users looping enqueue → matched → ack never join: each may not queue again (409 MATCH_NOT_JOINED) until the grace releases the shard; at most one of their shards runs at a time; the admin can still start shards")
    func churnIsBounded() async throws {
        let host = try await Self.start(grace: 8, ["PYLON_SHARD_MAX": "4"])
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob")
        var seen: Set<String> = []
        for round in 0..<3 {
            let shard = try await Self.pair(host, alice, bob)
            #expect(seen.insert(shard).inserted, "round \(round): a new match")
            for t in [alice, bob] { #expect(try await MM.call(host, "ack", token: t).json["acked"].bool == true) }
            for t in [alice, bob] {
                let again = try await MM.call(host, "enqueue", token: t)
                #expect(again.status == 409 && again.json.errorCode == "MATCH_NOT_JOINED", "round \(round): \(again.status) \(again.body)")
                #expect(again.json["error"]["message"].string?.contains(shard) == true, "\(again.body)")
            }
            #expect(try await Self.running(host).filter { $0.hasPrefix("match_") }.count == 1, "round \(round)")
            // The admin's slots are untouched.
            let made = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "admin\#(round)"}"#, token: Self.admin)
            #expect(made.status == 201, "\(made.status) \(made.body)")
            #expect(try await host.request("DELETE", "/api/shards/admin\(round)", token: Self.admin).status < 300)
            try await ShardWSTests.waitUntil("the unjoined match \(shard) to be released", timeout: 60) {
                try await !Self.running(host).contains(shard)
            }
            #expect(try await MM.call(host, "status", token: alice).body == #"{"status":"idle"}"#)
        }
        #expect((try await host.metricCounter("matchmaker_unjoined_stopped_total") ?? 0) == 3)
        #expect(host.log.contains("no player joined within 8 s"), "\(host.log.suffix(2000))")
    }

    @Test("A match one player joins outlives the grace, and its players may queue again after acking; with PYLON_SHARD_MAX 4 the matchmaker runs at most 2 matches, a third pair waits queued until a slot frees, and the admin still starts shards")
    func joinedMatchesAndTheShare() async throws {
        let host = try await Self.start(grace: 10, ["PYLON_SHARD_MAX": "4", "PYLON_MATCH_MAX_WAIT_SECS": "600"])
        defer { host.stop() }
        var tokens: [String: String] = [:]
        for name in ["ann", "ben", "cat", "dan", "eve", "fay"] { tokens[name] = try await host.mintSession(name) }
        let first = try await Self.pair(host, tokens["ann"]!, tokens["ben"]!)
        let stream = try await ShardTests.connect(host, first, token: tokens["ann"]!)
        _ = try await ShardTests.frame(stream) { $0 != nil }
        let second = try await Self.pair(host, tokens["cat"]!, tokens["dan"]!)
        let watcher = try await ShardTests.connect(host, second, token: tokens["dan"]!)
        _ = try await ShardTests.frame(watcher) { $0 != nil }

        // Past the grace (10 s, waited generously) both joined matches still run.
        try await Task.sleep(for: .seconds(14))
        #expect(Set(try await Self.running(host)).isSuperset(of: [first, second]))
        #expect((try await host.metricCounter("matchmaker_unjoined_stopped_total") ?? 0) == 0)

        // The matchmaker's share (2 of 4) is taken: the third pair waits in the queue.
        for name in ["eve", "fay"] { #expect(try await MM.call(host, "enqueue", token: tokens[name]!).status == 200) }
        try await Task.sleep(for: .seconds(2))
        #expect(try await MM.call(host, "status", token: tokens["eve"]!).json["status"].string == "queued")
        for id in ["a1", "a2"] {
            let made = try await host.request("POST", "/api/shards", json: #"{"sim": "arena", "id": "\#(id)"}"#, token: Self.admin)
            #expect(made.status == 201, "the admin's half: \(made.status) \(made.body)")
        }

        // Ben (who never joined) acks and may queue again: someone joined his match.
        #expect(try await MM.call(host, "ack", token: tokens["ben"]!).json["acked"].bool == true)
        let ben = try await MM.call(host, "enqueue", token: tokens["ben"]!)
        #expect(ben.status == 200 && ben.json["status"].string == "queued", "\(ben.body)")
        #expect(try await MM.call(host, "dequeue", token: tokens["ben"]!).json["dequeued"].bool == true)

        // A slot frees: the waiting pair is matched.
        #expect(try await host.request("DELETE", "/api/shards/\(first)", token: Self.admin).status < 300)
        let third = try await MM.matched(host, tokens["eve"]!)
        #expect(try await MM.matched(host, tokens["fay"]!) == third && ![first, second].contains(third))
    }

    @Test("Groups waiting for a slot keep their order round after round: the first pair to queue stays first and is matched when a slot frees")
    func waitingGroupsKeepTheirOrder() async throws {
        let host = try await Self.start(grace: 120, ["PYLON_MATCH_SHARD_MAX": "1", "PYLON_MATCH_MAX_WAIT_SECS": "600"])
        defer { host.stop() }
        var tokens: [String: String] = [:]
        for name in ["ann", "ben", "cat", "dan", "eve", "fay"] { tokens[name] = try await host.mintSession(name) }
        let first = try await Self.pair(host, tokens["ann"]!, tokens["ben"]!)
        // The one slot is taken: two pairs queue behind it, cat and dan first.
        for name in ["cat", "dan", "eve", "fay"] { #expect(try await MM.call(host, "enqueue", token: tokens[name]!).status == 200) }
        // Many rounds (100 ms apart) pass; every one takes both pairs and puts them back.
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(150))
            let cat = try await MM.call(host, "status", token: tokens["cat"]!).json
            #expect(cat["status"].string == "queued" && cat["position"].int == 1, "\(String(describing: cat))")
        }
        #expect(try await host.request("DELETE", "/api/shards/\(first)", token: Self.admin).status < 300)
        let next = try await MM.matched(host, tokens["cat"]!)
        #expect(try await MM.matched(host, tokens["dan"]!) == next && next != first)
        #expect(try await MM.call(host, "status", token: tokens["eve"]!).json["status"].string == "queued")
    }
}
