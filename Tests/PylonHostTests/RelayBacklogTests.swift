import Foundation
import Testing

/// What a WebSocket client that never reads may make the host hold (an outside probe grew
/// the host from 93 MB to 3.2 GB with guests' 15 MB topic frames and ten sockets that never
/// read): each connection's queue is bounded in bytes (PYLON_SYNC_QUEUE_BYTES) as in
/// messages, with the same slow-consumer policy (overflow to the log, then closed if it
/// makes no progress), and a connection whose writes make no progress for
/// PYLON_WS_WRITE_TIMEOUT is closed. Clients with full sockets: run with the slow-client
/// suites (Makefile). Nothing asserts on timing; waits have generous bounds.
@Suite("Relay backlog: byte-bounded queues and the write-progress deadline (black-box, real pylon-host)")
struct RelayBacklogTests {
    static let admin = HostProcess.adminToken

    /// A topic message of about `bytes`, tagged `tag` and numbered `i`.
    static func bigTopic(_ tag: String, _ i: Int, bytes: Int = 60_000) -> String {
        #"{"type":"topic","topic":"\#(tag)","data":"\#(i)-\#(String(repeating: "x", count: bytes))"}"#
    }

    /// Polls `probe` until it answers true; fails after `timeout` (a bound against hanging).
    static func waitUntil(_ what: String, timeout: TimeInterval = 120, _ probe: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !probe() {
            guard Date() < deadline else { throw RealtimeTestError("timed out after \(Int(timeout)) s waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    static func gauge(_ host: HostProcess, _ name: String) async throws -> Double? {
        try await host.request("GET", "/metrics", token: admin).json["gauges"][name].double
    }

    @Test("Hostile (PYLON_SYNC_QUEUE_BYTES=1 MiB): 10 guest WebSockets that never read while a guest relays 12 MB of topic messages are closed as slow consumers, no queue holds more than its budget, host RSS stays bounded; a reading client still gets events and /health answers")
    func stalledReadersAreClosed() async throws {
        let budget = 1 << 20
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest,
                                               env: ["PYLON_SYNC_QUEUE_BYTES": "\(budget)",
                                                     "PYLON_WS_RELAY_RATE": "1000", "PYLON_WS_RELAY_BURST": "1000"],
                                               dev: true)
        defer { host.kill9() }
        let pid = try #require(host.pid)
        let token = try await host.guestToken()
        let observer = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "observer")
        try await RealtimeTests.ready(observer)
        // Handshake, then never read: a 4 KiB receive window fills at once.
        var stalled: [TestWebSocket] = []
        for i in 0..<10 {
            stalled.append(try await TestWebSocket.connect(port: host.port, token: token, receiveBuffer: 4096, reading: false,
                                                           label: "stalled \(i)"))
        }
        let sender = try await TestWebSocket.connect(port: host.port, token: token, label: "sender")
        try await RealtimeTests.ready(sender)

        // The heaviest queue and the host's RSS, sampled while the relays flow.
        let monitor = Task {
            var heaviest = 0.0, peak = 0
            while !Task.isCancelled {
                if let rss = residentBytes(pid: pid) { peak = max(peak, rss) }
                if let b = try? await Self.gauge(host, "realtime_queue_bytes_max") { heaviest = max(heaviest, b) }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return (heaviest, peak)
        }
        // 200 × 60 KB: 12 MB offered to each stalled connection (its kernel buffers take ~4 MB).
        // (The sender and the observer read, but may fall behind too: their own queues can
        // overflow to the log, which has no relays, so nothing here waits for every relay.)
        for i in 0..<200 { try sender.sendText(Self.bigTopic("big", i)) }

        // Each stalled queue went over its byte budget long before 4096 messages
        // (PYLON_SYNC_QUEUE), fell back to the log and then made no progress: closed.
        try await Self.waitUntil("the 10 stalled readers closed as slow consumers") {
            try await host.metricCounter("realtime_slow_consumers_closed_total") ?? 0 >= 10
        }
        monitor.cancel()
        let (heaviest, peak) = await monitor.value
        #expect(heaviest <= Double(budget), "a queue held \(Int(heaviest)) bytes, over its budget of \(budget)")
        #expect(peak < 400 * 1024 * 1024, "host RSS peaked at \(peak / 1024 / 1024) MiB")
        #expect(try await host.metricCounter("realtime_queue_fallbacks_total") ?? 0 >= 10)
        for ws in stalled {
            ws.startReading()
            _ = try await ws.waitForEnd(timeout: 60)
            let bigs = ws.jsonMessages.filter { $0["topic"].string == "big" }.count
            #expect(bigs < 200, "a closed stalled reader cannot have had every relay: \(ws.summary)")
        }

        // The host still serves: HTTP, change events to the reading client, relays, new sockets.
        #expect(try await host.request("GET", "/health").status == 200)
        let id = try await host.create("Item", #"{"title":"after the flood"}"#)
        try await observer.waitForEvent(rowID: id, timeout: 60)
        #expect(observer.closeFrame == nil && observer.end == nil, "the reading client stays connected: \(observer.summary)")
        let newcomer = try await TestWebSocket.connect(port: host.port, token: token, label: "newcomer")
        try await RealtimeTests.ready(newcomer)
        for ws in [observer, sender, newcomer] { ws.disconnect() }
    }

    @Test("Hostile (PYLON_WS_WRITE_TIMEOUT=5, a queue budget it never reaches): a WebSocket that never reads, with 9.6 MB of relays queued for it, is closed by the write-progress deadline (not by a queue overflow); the host keeps serving")
    func writeDeadlineClosesAStalledReader() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest,
                                               env: ["PYLON_WS_WRITE_TIMEOUT": "5", "PYLON_SYNC_QUEUE_BYTES": "\(64 << 20)",
                                                     "PYLON_WS_RELAY_RATE": "1000", "PYLON_WS_RELAY_BURST": "1000"],
                                               dev: true)
        defer { host.kill9() }
        let token = try await host.guestToken()
        let stalled = try await TestWebSocket.connect(port: host.port, token: token, receiveBuffer: 4096, reading: false,
                                                      label: "stalled")
        let sender = try await TestWebSocket.connect(port: host.port, token: token, label: "sender")
        try await RealtimeTests.ready(sender)
        // More than the kernel buffers take (~4 MB): the host's writes to it stop leaving.
        for i in 0..<160 { try sender.sendText(Self.bigTopic("wedge", i)) }
        try await sender.waitForJSON("its own last relay", timeout: 120) { $0["topic"].string == "wedge" && ($0["data"].string ?? "").hasPrefix("159-") }

        try await Self.waitUntil("the stalled reader closed by the write deadline") {
            try await host.metricCounter("realtime_write_timeouts_total") ?? 0 >= 1
        }
        // Its queue never overflowed: the deadline closed it, not the slow-consumer watchdog.
        #expect(try await host.metricCounter("realtime_queue_fallbacks_total") ?? 0 == 0)
        stalled.startReading()
        _ = try await stalled.waitForEnd(timeout: 60)
        #expect(stalled.jsonMessages.filter { $0["topic"].string == "wedge" }.count < 160, "\(stalled.summary)")

        // The happy twin: the sender, which reads, is still connected and gets events.
        #expect(try await host.request("GET", "/health").status == 200)
        let id = try await host.create("Item", #"{"title":"after the wedge"}"#)
        try await sender.waitForEvent(rowID: id, timeout: 60)
        #expect(sender.closeFrame == nil && sender.end == nil, "\(sender.summary)")
        sender.disconnect()
    }
}
