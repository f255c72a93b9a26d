import Foundation
import Testing

/// Where a realtime stream opened without a cursor starts (README "Realtime streams"): it
/// gets every change committed after the host answered it — the WebSocket's 101, the SSE
/// response head —, gapless and in seq order, on SQLite and across Postgres hosts.
///
/// A CI run once lost seq 1 on one of `PostgresTests.threeHostsShareTheLog`'s subscribers:
/// the host subscribed a WebSocket to its hub only after the 101 had been written, so a
/// commit made in between (here: on another host, brought in by the change tailer) went to
/// every stream but that one. The window is a few microseconds of the host's event loop
/// unless the machine preempts it there, so `writesRightAfterTheHandshake` races many
/// handshakes against writes (it fails without the fix only when the scheduler hits the
/// window); `overflowBeforeTheFirstFrame` pins the start cursor down deterministically.
@Suite("Stream start: a stream without a cursor gets every change committed after its handshake (black-box)")
struct StreamStartTests {
    static let admin = HostProcess.adminToken

    /// Hosts for a store: on SQLite one (it writes and serves the streams); on Postgres two
    /// on one database, so the streams' host learns of the writes through its change tailer.
    static func hosts(_ store: TestStore, env: [String: String]) async throws -> (writers: [HostProcess], streams: HostProcess) {
        guard store.name == TestStore.postgres.name else {
            let host = try await HostProcess.start(manifest: RealtimeTests.manifest, env: env, store: store)
            return ([host], host)
        }
        let url = try await TestPostgres.shared().freshDatabase()
        let a = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), env: env)
        let b = try await HostProcess.start(manifest: PostgresTests.manifest(url: url), env: env)
        return ([a, b], b)
    }

    @Test("40 fresh WebSockets and SSE streams, each followed at once by a write (on the other host on Postgres) while a writer never pauses: each gets its write and everything after it, gapless, once",
          arguments: [TestStore.sqlite, TestStore.postgres])
    func writesRightAfterTheHandshake(store: TestStore) async throws {
        let (writers, home) = try await Self.hosts(store, env: ["PYLON_MAX_CONNECTIONS_PER_IP": "500"])
        // `writers` holds every host (on SQLite the one that also serves the streams).
        defer { for h in writers { h.stop() } }
        // Commits that keep racing the handshakes (on Postgres, host A's). Stopped by a flag,
        // not by cancelling: a cancelled request may still commit after `last`.
        let stop = StopFlag()
        let background = Task {
            var n = 0
            while !stop.isSet {
                _ = try? await writers[0].create("Item", #"{"title": "background-\#(n)"}"#)
                n += 1
            }
        }
        let lanes = 4, perLane = 10
        let opened: [(stream: FreshStream, write: String)]
        do {
            opened = try await withThrowingTaskGroup(of: [(stream: FreshStream, write: String)].self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        var mine: [(stream: FreshStream, write: String)] = []
                        for k in 0..<perLane {
                            let label = "lane \(lane) stream \(k)"
                            let stream = try await FreshStream.open(sse: k % 2 == 1, port: home.port, label: label)
                            // The host answered the handshake: this write commits after it.
                            let id = try await writers[(lane + k) % writers.count].create("Item", #"{"title": "after \#(label)"}"#)
                            mine.append((stream, id))
                        }
                        return mine
                    }
                }
                var all: [(stream: FreshStream, write: String)] = []
                for try await some in group { all += some }
                return all
            }
        } catch {
            stop.set()
            throw error
        }
        stop.set()
        _ = await background.value
        let last = try await writers[0].create("Item", #"{"title": "last"}"#)
        var seqOf: [String: Int] = [:]
        for e in try await home.pullAll(token: Self.admin) {
            if let id = e["row_id"].string, let seq = e["seq"].int { seqOf[id] = seq }
        }
        let lastSeq = try #require(seqOf[last])
        for (stream, write) in opened {
            try await stream.waitForEvent(rowID: last)
            let got = stream.received
            let own = try #require(seqOf[write])
            #expect(Self.gapless(got, through: lastSeq), "\(stream.summary): seqs are not one gapless run ending at \(lastSeq): first gap after \(String(describing: zip(got, got.dropFirst()).first { $1 != $0 + 1 }))")
            #expect((got.first ?? Int.max) <= own, "\(stream.summary): missed seq \(own), its own write made after the handshake (first seq received \(got.first ?? 0))")
        }
        for (stream, _) in opened { stream.close() }
    }

    @Test("Opened before any commit since a restart, a WebSocket whose queue overflows before it sent a change reads the log from where it subscribed, not from seq 1",
          arguments: [TestStore.sqlite, TestStore.postgres])
    func overflowBeforeTheFirstFrame(store: TestStore) async throws {
        // Relays of 1 MiB (over the defaults of PYLON_WS_MAX_RELAY_BYTES and PYLON_WS_MAX_FRAME),
        // and no write deadline while the wedged connection waits for the batch on a busy machine.
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest,
                                               env: ["PYLON_SYNC_QUEUE": "64", "PYLON_WS_MAX_RELAY_BYTES": "\(2 << 20)",
                                                     "PYLON_WS_MAX_FRAME": "\(2 << 20)", "PYLON_WS_WRITE_TIMEOUT": "0"],
                                               store: store)
        defer { host.stop() }
        let before = try await host.createItems(5, writers: 1, prefix: "before")
        #expect(before.count == 5)
        // The hub starts empty after a restart: the streams must start after the log's newest (5).
        try await host.restart()
        let watcher = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "watcher")
        try await RealtimeTests.ready(watcher)
        // Handshake, then never read: a 4 KiB receive window.
        let stalled = try await TestWebSocket.connect(port: host.port, token: Self.admin, receiveBuffer: 4096, reading: false,
                                                      label: "stalled before its first change")
        // 6 MiB of relays (over the kernel's 4 MiB send buffer cap) wedge the stalled
        // connection's socket before any change reaches it; the watcher's own copies say
        // they were fanned out (to both connections at once).
        let filler = String(repeating: "x", count: 1 << 20)
        for i in 0..<6 {
            try watcher.sendText(#"{"type":"topic","topic":"fill","data":"\#(i)\#(filler)"}"#)
        }
        try await watcher.waitForJSON("its 6th relay", timeout: 60) { $0["type"].string == "topic" && $0["data"].string?.hasPrefix("5x") == true }
        // 200 events while it cannot take any: its queue (64) overflows, to be read from the log.
        let ops = (0..<200).map { #"{"op":"insert","entity":"Item","data":{"title":"batch-\#($0)","n":\#($0)}}"# }
        let batch = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(ops.joined(separator: ","))]}"#, token: Self.admin)
        #expect(batch.json["succeeded"].int == 200, "\(batch.body.prefix(300))")
        // The watcher has the whole batch: it was offered to the wedged connection too, whose
        // queue overflowed. Its reading must resume within the stall window (5 s) from here.
        try await watcher.waitForChangeEvents(200, timeout: 60)
        stalled.startReading()
        let after = try await host.create("Item", #"{"title": "after the batch"}"#)
        try await stalled.waitForEvent(rowID: after, timeout: 60)
        let got = seqs(stalled.changeEvents)
        #expect(got == Array(6...206), "\(stalled.summary): expected seqs 6…206 (what committed after it subscribed), got \(got.count) events \(got.first ?? 0)…\(got.last ?? 0)")
        #expect(try await host.metricCounter("realtime_queue_fallbacks_total") ?? 0 >= 1, "the stalled connection's queue never overflowed, so this test did not test the fallback")
        try await watcher.waitForEvent(rowID: after, timeout: 60)
        #expect(seqs(watcher.changeEvents) == Array(6...206), "\(watcher.summary)")
        watcher.disconnect()
        stalled.disconnect()
    }

    @Test("Hostile: 40 WebSocket handshakes abandoned before or around the 101 (subscribed before it) leave no subscriber behind: with PYLON_MAX_CONNECTIONS_PER_IP=2, two streams open after them and get changes")
    func abandonedHandshakesLeaveNoSubscriber() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, env: ["PYLON_MAX_CONNECTIONS_PER_IP": "2"])
        defer { host.stop() }
        let port = host.port
        try await onThread {
            for i in 0..<40 {
                let socket = try TestSocket.connect(port: port)
                var req = "GET /api/sync/ws HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                req += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer \(Self.admin)\r\n\r\n"
                try socket.send(req)
                // Half of them wait for the 101 (subscribed, upgraded), half leave before it.
                if i % 2 == 0 {
                    let head = try readHTTPHead(socket)
                    guard head.status == 101 else { throw RealtimeTestError("handshake \(i) answered \(head.status), not 101") }
                }
                socket.close()
            }
        }
        var open: Double?
        try await eventuallyAsync("the realtime_connections gauge back to 0 after the abandoned handshakes (last seen \(String(describing: open)))") { () -> Bool? in
            open = try await host.request("GET", "/metrics", token: Self.admin).json["gauges"]["realtime_connections"].double
            return open == 0 ? true : nil
        }
        let first = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "first after the abandoned handshakes")
        let second = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "second after the abandoned handshakes")
        let id = try await host.create("Item", #"{"title": "after the abandoned handshakes"}"#)
        try await first.waitForEvent(rowID: id)
        try await second.waitForEvent(rowID: id)
        #expect(first.closeFrame == nil && second.closeFrame == nil, "\(first.summary); \(second.summary)")
        first.disconnect()
        second.disconnect()
    }

    /// `got` is one ascending run without gaps or repeats that ends at `last`.
    static func gapless(_ got: [Int], through last: Int) -> Bool {
        guard let first = got.first, first <= last else { return false }
        return got == Array(first...last)
    }
}

/// Tells a loop in another task to end after its current step.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// A stream opened without a cursor: a WebSocket or an SSE response (as admin).
enum FreshStream: Sendable {
    case ws(TestWebSocket)
    case sse(TestEventStream)

    static func open(sse: Bool, port: Int, label: String) async throws -> FreshStream {
        if sse {
            let s = try await TestEventStream.connect(port: port, path: "/api/sync/events", token: HostProcess.adminToken, label: "SSE \(label)")
            guard s.status == 200 else { throw RealtimeTestError("\(s.summary): answered \(s.status), not 200") }
            return .sse(s)
        }
        return .ws(try await TestWebSocket.connect(port: port, token: HostProcess.adminToken, label: "WS \(label)"))
    }

    /// The seqs of the change events received so far, in order.
    var received: [Int] {
        switch self {
        case let .ws(w): return seqs(w.changeEvents)
        case let .sse(s): return s.changeEvents.compactMap { $0.id.flatMap { Int($0) } }
        }
    }

    var summary: String {
        switch self {
        case let .ws(w): return w.summary
        case let .sse(s): return s.summary
        }
    }

    func waitForEvent(rowID: String) async throws {
        switch self {
        case let .ws(w): try await w.waitForEvent(rowID: rowID, timeout: 60)
        case let .sse(s): try await s.waitForEvent(rowID: rowID, timeout: 60)
        }
    }

    func close() {
        switch self {
        case let .ws(w): w.disconnect()
        case let .sse(s): s.close()
        }
    }
}
