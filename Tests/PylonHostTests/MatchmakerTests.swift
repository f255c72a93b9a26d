import Foundation
import Testing

/// The matchmaker from the outside (pylon-aux.md §5.6, issue 20): the release host with the
/// shard sims of `ShardSimsBuild`, players as signed-in users over HTTP, matched players
/// watching their shard over SSE. No timing is asserted: tests wait, with generous
/// timeouts, for what must come.
@Suite("Matchmaker: queue, groups by mode, assignments, acks, limits")
struct MatchmakerTests {
    static let path = "/api/shards/matchmaker"

    static func start(_ env: [String: String]) async throws -> HostProcess {
        try await HostProcess.start(manifest: ShardTests.manifest, env: ["PYLON_MATCH_INTERVAL_MS": "100"].merging(env) { $1 },
                                    store: ShardSimsBuild.store)
    }

    static func call(_ host: HostProcess, _ op: String, _ body: String? = nil, token: String?) async throws -> (status: Int, body: String, json: Any?) {
        try await host.request(op == "status" ? "GET" : "POST", "\(path)/\(op)", json: op == "status" ? nil : (body ?? "{}"), token: token)
    }

    /// Polls `probe` (async) every 100 ms until it gives a value, for at most `timeout` s.
    static func poll<T>(_ what: String, timeout: TimeInterval = 30, _ probe: () async throws -> T?) async throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let v = try await probe() { return v }
            if Date() >= deadline { throw RealtimeTestError("timed out after \(Int(timeout)) s waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func matched(_ host: HostProcess, _ token: String) async throws -> String {
        try await poll("a match") { try await call(host, "status", token: token).json["shard_id"].string }
    }

    @Test("Players of one mode are matched into one shard (however often they enqueue); each learns it, watches it as itself, acks it")
    func matchesByMode() async throws {
        let host = try await Self.start(["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_SIZE": "2", "PYLON_MATCH_MODES": "trio=3",
                                         "PYLON_MATCH_CONFIG": #"{"config": {"speed": 0}, "tick_rate_hz": 20}"#])
        defer { host.stop() }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), carol = try await host.mintSession("carol")
        #expect(try await Self.call(host, "status", token: alice).body == #"{"status":"idle"}"#)

        // Alice enqueues many times, at once: one place (deduplicated by player).
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<200 { group.addTask { try await Self.call(host, "enqueue", token: alice).status } }
            for try await s in group { #expect(s == 200) }
        }
        let queued = try await Self.call(host, "status", token: alice)
        #expect(queued.json["status"].string == "queued" && queued.json["position"].int == 1 && queued.json["waiting_secs"].int != nil, "\(queued.body)")
        // Carol waits for a trio: a mode of its own, so Bob (default mode) pairs with Alice.
        let trio = try await Self.call(host, "enqueue", #"{"criteria": {"mode": "trio", "skill": 7}}"#, token: carol)
        #expect(trio.json["status"].string == "queued" && trio.json["position"].int == 1, "\(trio.body)")
        #expect(try await Self.call(host, "enqueue", #"{"criteria": {}}"#, token: bob).status == 200)

        let shardA = try await Self.matched(host, alice)
        let shardB = try await Self.matched(host, bob)
        #expect(shardA == shardB)
        #expect(shardA.range(of: #"^match_[0-9a-f]+_[0-9]+$"#, options: .regularExpression) != nil, "\(shardA)")
        #expect(try await Self.call(host, "status", token: carol).json["status"].string == "queued")
        let shards = try await host.request("GET", "/api/shards", token: HostProcess.adminToken)
        #expect((shards.json.array ?? []).count == 1, "one shard for the pair: \(shards.body)")
        #expect(shards.json[0]["sim"].string == "arena" && shards.json[0]["tick_rate_hz"].int == 20, "\(shards.body)")

        // A matched player watches its shard as itself (the default sid) and plays.
        let stream = try await ShardTests.connect(host, shardA, token: alice)
        _ = try await ShardTests.frame(stream) { $0 != nil }
        #expect(try await ShardTests.input(host, shardA, #"{"input": {"spawn": [10, 10]}}"#, token: alice).status == 200)
        _ = try await ShardTests.frame(stream) { $0["you"]["id"].string == "alice" }

        // Queueing again before the ack is refused; the ack clears the assignment, once.
        let again = try await Self.call(host, "enqueue", token: alice)
        #expect(again.status == 409 && again.json.errorCode == "ALREADY_MATCHED", "\(again.body)")
        #expect(try await Self.call(host, "ack", token: alice).json["acked"].bool == true)
        #expect(try await Self.call(host, "ack", token: alice).json["acked"].bool == false)
        #expect(try await Self.call(host, "status", token: alice).body == #"{"status":"idle"}"#)
        #expect(try await Self.call(host, "status", token: bob).json["shard_id"].string == shardA)

        // Two more trio players make Carol's group.
        let dave = try await host.mintSession("dave"), erin = try await host.mintSession("erin")
        for t in [dave, erin] { #expect(try await Self.call(host, "enqueue", #"{"criteria": {"mode": "trio"}}"#, token: t).status == 200) }
        let trioShard = try await Self.matched(host, carol)
        let daves = try await Self.matched(host, dave), erins = try await Self.matched(host, erin)
        #expect(daves == trioShard && erins == trioShard && trioShard != shardA)
        #expect(try await host.metricCounter("matchmaker_matches_total") == 2)
    }

    @Test("Only signed-in users, each only for itself; bad criteria, a full queue, an expired wait, no sim to start")
    func hostile() async throws {
        let host = try await Self.start(["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_SIZE": "5", "PYLON_MATCH_QUEUE_MAX": "2"])
        defer { host.stop() }
        for op in ["enqueue", "status", "dequeue", "ack"] {
            for token in [nil, "nope"] {
                let r = try await Self.call(host, op, token: token)
                #expect(r.status == 401 && r.json.errorCode == "AUTH_REQUIRED", "\(op) as \(token ?? "nobody"): \(r.status) \(r.body)")
            }
            let admin = try await Self.call(host, op, token: HostProcess.adminToken)
            #expect(admin.status == 403 && admin.json.errorCode == "NOT_A_PLAYER", "\(op) as the admin: \(admin.status) \(admin.body)")
        }
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), carol = try await host.mintSession("carol")
        for (body, status, code) in [(#"{"criteria": [1]}"#, 400, "INVALID_CRITERIA"), (#"{"criteria": {"mode": 3}}"#, 400, "INVALID_CRITERIA"),
                                     (#"{"criteria": {"mode": ""}}"#, 400, "INVALID_CRITERIA"), (#"[]"#, 400, "INVALID_BODY"),
                                     (#"{"criteria": {"pad": "\#(String(repeating: "x", count: 5000))"}}"#, 413, "CRITERIA_TOO_LARGE")] {
            let r = try await Self.call(host, "enqueue", body, token: alice)
            #expect(r.status == status && r.json.errorCode == code, "\(body.prefix(60)): \(r.status) \(r.body)")
        }
        #expect(try await Self.call(host, "status", token: alice).body == #"{"status":"idle"}"#, "a refused enqueue queues nothing")

        // The queue holds two players; a third is refused until one leaves.
        #expect(try await Self.call(host, "enqueue", token: alice).status == 200)
        #expect(try await Self.call(host, "enqueue", token: bob).status == 200)
        let full = try await Self.call(host, "enqueue", token: carol)
        #expect(full.status == 503 && full.json.errorCode == "MATCHMAKER_FULL", "\(full.body)")
        #expect(try await Self.call(host, "enqueue", token: alice).status == 200, "a player already waiting is not refused")
        // Carol cannot take Alice out: dequeue and ack act for the caller only.
        #expect(try await Self.call(host, "dequeue", #"{"player": "alice"}"#, token: carol).json["dequeued"].bool == false)
        #expect(try await Self.call(host, "ack", #"{"player": "alice"}"#, token: carol).json["acked"].bool == false)
        #expect(try await Self.call(host, "status", token: alice).json["status"].string == "queued")
        #expect(try await Self.call(host, "dequeue", token: bob).json["dequeued"].bool == true)
        #expect(try await Self.call(host, "status", token: bob).body == #"{"status":"idle"}"#)
        #expect(try await Self.call(host, "enqueue", token: carol).status == 200)
        #expect(try await Self.call(host, "status", token: carol).json["position"].int == 2)
    }

    @Test("A player who waits past the maximum leaves the queue; with several sims and none named, the matchmaker is off")
    func expiryAndNoSim() async throws {
        let host = try await Self.start(["PYLON_MATCH_SIM": "arena", "PYLON_MATCH_MAX_WAIT_SECS": "1"])
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        #expect(try await Self.call(host, "enqueue", token: alice).status == 200)
        _ = try await Self.poll("alice's wait to expire") { try await Self.call(host, "status", token: alice).json["status"].string == "idle" ? true : nil }

        let off = try await Self.start([:])  // the arena and the misbehaving sim: which one is not said
        defer { off.stop() }
        let bob = try await off.mintSession("bob")
        let r = try await Self.call(off, "enqueue", token: bob)
        #expect(r.status == 503 && r.json.errorCode == "MATCHMAKER_UNAVAILABLE", "\(r.body)")
        #expect(try await Self.call(off, "status", token: bob).body == #"{"status":"idle"}"#)
    }
}
