import Foundation
import Testing

/// Matches their players left give their slots back (outside probe jobsfiles, F5): two users
/// looping enqueue → matched → a moment on the shard → ack → enqueue made one empty shard per
/// loop, joined (so the join grace did not apply), each holding a matchmaker slot until it
/// idled out, and honest players waited in the queue until their wait expired. Now a joined
/// match with no subscriber is stopped once all its players queued again, or once it has
/// been empty for `PYLON_MATCH_JOIN_GRACE_SECS`; a match with a subscriber is left alone.
/// The release host, users over HTTP, players on the shard's SSE stream. Shards here never
/// idle out (`idle_ticks_before_shutdown` 1e9), so only the matchmaker frees a slot. No
/// timing is asserted: generous waits only.
@Suite("Matchmaker: matches their players left release their slots; matches with players stay")
struct MatchLeaveTests {
    typealias MM = MatchmakerTests
    typealias Grace = MatchJoinGraceTests

    static func start(grace: Int, _ env: [String: String] = [:]) async throws -> HostProcess {
        try await MM.start(["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_SIZE": "2", "PYLON_MATCH_JOIN_GRACE_SECS": String(grace),
                            "PYLON_MATCH_MAX_WAIT_SECS": "600",
                            "PYLON_MATCH_CONFIG": #"{"config": {"speed": 0}, "idle_ticks_before_shutdown": 1000000000}"#].merging(env) { $1 })
    }

    /// `token` watches `shard` until a frame arrives (it has joined); the open stream.
    static func join(_ host: HostProcess, _ shard: String, _ token: String) async throws -> TestEventStream {
        let stream = try await ShardTests.connect(host, shard, token: token)
        _ = try await ShardTests.frame(stream) { $0 != nil }
        return stream
    }

    /// One loop of the churn: `a` and `b` queue, are matched, each joins for a moment and
    /// leaves, both ack. Returns the match.
    static func churn(_ host: HostProcess, _ a: String, _ b: String) async throws -> String {
        let shard = try await Grace.pair(host, a, b)
        for t in [a, b] { try await join(host, shard, t).close() }
        for t in [a, b] { #expect(try await MM.call(host, "ack", token: t).json["acked"].bool == true) }
        return shard
    }

    @Test("With PYLON_MATCH_SHARD_MAX 2, a pair looping enqueue → matched → a moment on the shard → ack keeps being matched (each empty match stopped once both queued again), and an honest pair is matched beside it and keeps its match while connected")
    func churnDoesNotHoldTheSlots() async throws {
        // A grace longer than the test: only queueing again releases the churned matches.
        let host = try await Self.start(grace: 3600, ["PYLON_MATCH_SHARD_MAX": "2"])
        defer { host.stop() }
        let mal = try await host.mintSession("mal"), lory = try await host.mintSession("lory")
        let ann = try await host.mintSession("ann"), ben = try await host.mintSession("ben")
        var churned: [String] = []
        // Twice the share: before, the third loop was never matched (both slots held).
        for _ in 0..<4 { churned.append(try await Self.churn(host, mal, lory)) }
        #expect(Set(churned).count == 4, "\(churned)")

        // The churn goes on while an honest pair queues: both pairs are matched.
        for t in [mal, lory, ann, ben] { #expect(try await MM.call(host, "enqueue", token: t).status == 200) }
        let honest = try await MM.matched(host, ann)
        #expect(try await MM.matched(host, ben) == honest)
        let annStream = try await Self.join(host, honest, ann), benStream = try await Self.join(host, honest, ben)
        let next = try await MM.matched(host, mal)
        #expect(next != honest && !churned.contains(next))
        for t in [mal, lory] { try await Self.join(host, next, t).close() }
        for t in [mal, lory] { #expect(try await MM.call(host, "ack", token: t).json["acked"].bool == true) }

        // More loops: each needs the slot the previous churned match gave back, as the
        // honest match, connected, keeps the other.
        for _ in 0..<3 { churned.append(try await Self.churn(host, mal, lory)) }
        #expect(try await Grace.running(host).contains(honest))
        for stream in [annStream, benStream] {
            let seen = ShardTests.frames(stream).last?.tick ?? 0
            _ = try await ShardTests.frame(stream) { ($0["tick"].int ?? 0) > seen }
        }
        #expect(try await Grace.running(host).filter { $0.hasPrefix("match_") }.count <= 2)
        #expect((try await host.metricCounter("matchmaker_left_stopped_total") ?? 0) >= 4)
        #expect(host.log.contains("its players left it and all queued again"), "\(host.log.suffix(2000))")
        #expect((try await host.metricCounter("matchmaker_unjoined_stopped_total") ?? 0) == 0)
    }

    @Test("A joined match left empty is stopped after the grace even if its players never queue again; one with a player still connected outlives it")
    func emptyMatchIsReleasedAfterTheGrace() async throws {
        let host = try await Self.start(grace: 8)
        defer { host.stop() }
        var tokens: [String: String] = [:]
        for name in ["ann", "ben", "cat", "dan", "eve", "fay"] { tokens[name] = try await host.mintSession(name) }
        // Ann and Ben play; Ben leaves, Ann stays.
        let kept = try await Grace.pair(host, tokens["ann"]!, tokens["ben"]!)
        let ann = try await Self.join(host, kept, tokens["ann"]!)
        try await Self.join(host, kept, tokens["ben"]!).close()

        // Cat and Dan join and leave and do nothing more (no ack, no enqueue).
        let left = try await Grace.pair(host, tokens["cat"]!, tokens["dan"]!)
        for name in ["cat", "dan"] { try await Self.join(host, left, tokens[name]!).close() }
        try await ShardWSTests.waitUntil("the match its players left to be stopped", timeout: 90) {
            try await !Grace.running(host).contains(left)
        }
        #expect(host.log.contains("its players left it 8 s ago"), "\(host.log.suffix(2000))")
        #expect(try await MM.call(host, "status", token: tokens["cat"]!).body == #"{"status":"idle"}"#)

        // Eve and Fay's match is stopped the same way, after Ben left Ann's: Ann's, with her
        // connected all along, still runs and still sends her frames.
        let later = try await Grace.pair(host, tokens["eve"]!, tokens["fay"]!)
        for name in ["eve", "fay"] { try await Self.join(host, later, tokens[name]!).close() }
        try await ShardWSTests.waitUntil("the second match its players left to be stopped", timeout: 90) {
            try await !Grace.running(host).contains(later)
        }
        #expect(try await Grace.running(host).contains(kept))
        let seen = ShardTests.frames(ann).last?.tick ?? 0
        _ = try await ShardTests.frame(ann) { ($0["tick"].int ?? 0) > seen }
        #expect((try await host.metricCounter("matchmaker_left_stopped_total") ?? 0) == 2)
    }
}
