import Foundation
import Testing

/// The shard's bounds from the outside (issue 20): a bounded input queue that answers 429
/// `INPUT_QUEUE_FULL`, and a subscriber that stops reading, whose one-frame mailbox keeps
/// being replaced while the other subscribers get every tick. No timing is asserted.
@Suite("Shards: the input queue's bound and a slow SSE consumer")
struct ShardLimitsTests {
    @Test("Inputs past max_input_queue are refused with 429 INPUT_QUEUE_FULL; every accepted one is acked")
    func inputQueueFull() async throws {
        let host = try await ShardTests.start()
        defer { host.stop() }
        // One tick a second and room for two inputs: a burst overflows between two ticks.
        try await ShardTests.create(host, #"{"sim": "arena", "id": "q", "tick_rate_hz": 1, "max_input_queue": 2, "config": {"speed": 0}}"#)
        let w = try await ShardTests.connect(host, "q", token: HostProcess.adminToken, sid: "w")
        _ = try await ShardTests.frame(w) { $0 != nil }
        #expect(try await ShardTests.input(host, "q", #"{"input": {"spawn": [1, 1]}, "subscriber_id": "w"}"#, token: HostProcess.adminToken).status == 200)
        _ = try await eventually("the spawn's ack", timeout: 30) { w.events.first { $0.event == "ack" } }

        /// (status, seq when accepted, error code and message when refused) of each answer.
        let answers = try await withThrowingTaskGroup(of: (Int, Int?, String?, String?).self) { group -> [(Int, Int?, String?, String?)] in
            for i in 0..<40 {
                group.addTask {
                    let r = try await ShardTests.input(host, "q", #"{"input": {"move_to": [\#(i), 2]}, "subscriber_id": "w"}"#, token: HostProcess.adminToken)
                    return (r.status, r.json["seq"].int, r.json.errorCode, r.json["error"]["message"].string)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let refused = answers.filter { $0.0 == 429 }
        #expect(!refused.isEmpty, "\(answers.map(\.0))")
        #expect(answers.allSatisfy { $0.0 == 200 || $0.0 == 429 }, "\(answers.map(\.0))")
        #expect(refused.allSatisfy { $0.2 == "INPUT_QUEUE_FULL" && $0.3?.contains("send fewer") == true }, "\(refused)")
        // Nothing accepted is lost: each accepted seq comes back as an ack.
        let accepted = Set(answers.compactMap { $0.0 == 200 ? $0.1 : nil })
        _ = try await eventually("acks of \(accepted.count) accepted inputs", timeout: 60) { () -> Bool? in
            let acked = Set(w.events.filter { $0.event == "ack" }.compactMap { $0.json["seq"].int })
            return accepted.isSubset(of: acked) ? true : nil
        }
    }

    @Test("A subscriber that stops reading gets its mailbox replaced (dropped frames), the other keeps getting frames, and it stays attached")
    func slowConsumer() async throws {
        let host = try await HostProcess.start(manifest: ShardTests.manifest, store: ShardSimFolders.withTag)
        defer { host.stop() }
        // ~16 KB snapshots at 100 Hz: a reader that stops fills its socket's buffers at once.
        try await ShardTests.create(host, #"{"sim": "tag", "id": "s", "tick_rate_hz": 100, "config": {"pad": 16000}}"#)
        let good = try await ShardTests.connect(host, "s", token: HostProcess.adminToken, sid: "good")
        _ = try await ShardTests.frame(good) { $0 != nil }
        let slow = try await onThread { () throws -> TestSocket in
            let s = try TestSocket.connect(port: host.port, receiveBuffer: 4096)
            try s.send("GET /api/shards/s/connect?sid=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(HostProcess.adminToken)\r\n\r\n")
            return s
        }
        defer { slow.close() }
        _ = try await MatchmakerTests.poll("both subscribers attached") {
            try await host.request("GET", "/api/shards/s", token: HostProcess.adminToken).json["subscribers"].int == 2 ? true : nil
        }
        // The slow reader's frames are replaced in its mailbox, not queued: the counter climbs
        // on and on while the good reader keeps up.
        let dropped = try await MatchmakerTests.poll("frames dropped for the slow reader", timeout: 60) {
            try await host.metricCounter("shard_frames_dropped_total").flatMap { $0 >= 300 ? $0 : nil }
        }
        let at = try #require(ShardTests.frames(good).last?.tick)
        _ = try await eventually("the good reader past tick \(at + 200)", timeout: 60) { ShardTests.frames(good).last.flatMap { $0.tick > at + 200 ? $0 : nil } }
        _ = try await MatchmakerTests.poll("more frames dropped", timeout: 60) {
            try await host.metricCounter("shard_frames_dropped_total").flatMap { $0 >= dropped + 150 ? $0 : nil }
        }
        let info = try await host.request("GET", "/api/shards/s", token: HostProcess.adminToken)
        #expect(info.json["subscribers"].int == 2 && info.json["running"].bool == true, "\(info.body)")
        // What the good reader got: each frame once, in tick order.
        let ticks = ShardTests.frames(good).map(\.tick)
        #expect(ticks == ticks.sorted() && Set(ticks).count == ticks.count, "frames arrive in tick order, once each")
    }
}
