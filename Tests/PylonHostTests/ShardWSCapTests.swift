import Foundation
import Testing
import PylonTestPorts

/// The shard WebSocket's connection caps from the outside (probe F3, session 22): a
/// connection over the per-address or total cap is answered 429 at once and closed, never
/// held; the host's descriptors come back to where they were. The release host with the
/// real ShardWS plugin, clients over real sockets. No timing is asserted: generous waits only.
@Suite("Shard WebSocket caps: refused connections are answered and closed at once, never held")
struct ShardWSCapTests {
    /// A manifest whose `shard.transport` config is `transport` (a JSON object's members).
    static func manifest(_ transport: String) -> String {
        #"{"manifest_version": 1, "name": "shards", "version": "0.1.0", "entities": [], "routes": [], "policies": [], "plugins": {"shard.transport": {\#(transport)}}}"#
    }

    /// The open descriptors of the host process (/proc/<pid>/fd).
    static func openFiles(_ host: HostProcess) throws -> Int {
        let pid = try #require(host.pid)
        return try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    /// Reads every socket to its end (the server's close) and returns what each received.
    /// A guard, not a timing assertion: if the server holds a socket past `timeout` seconds,
    /// every socket is shut down here and the result says so (`held`).
    static func drain(_ sockets: [TestSocket], timeout: TimeInterval = 120) async throws -> (replies: [[UInt8]], held: Bool) {
        let guardTask = Task {
            try await Task.sleep(for: .seconds(timeout))
            for s in sockets { s.close() }
            return true
        }
        let replies = try await onThread { () -> [[UInt8]] in
            sockets.map { s in
                var got: [UInt8] = []
                while case let .bytes(b) = s.receive() { got += b }
                return got
            }
        }
        guardTask.cancel()
        let held = (try? await guardTask.value) ?? false
        return (replies, held)
    }

    static func isRefusal(_ reply: [UInt8]) -> Bool {
        let text = String(decoding: reply, as: UTF8.self)
        return text.hasPrefix("HTTP/1.1 429") && text.contains(#""code":"TOO_MANY_CONNECTIONS""#)
    }

    @Test("400 silent TCP connections from one address over a cap of 4: each over the cap gets 429 and is closed at once, the 4 admitted go at the handshake timeout; the host's descriptors return to their count; a real client then connects and plays")
    func silentFlood() async throws {
        let (host, port) = try await ShardWSTests.start(env: ["PYLON_MAX_CONNECTIONS_PER_IP": "4"],
                                                        manifest: Self.manifest(#""handshake_timeout_ms": 3000"#))
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "cap1"}"#)
        let before = try Self.openFiles(host)

        let flood = try (0..<400).map { _ in try TestSocket.connect(port: port) }
        defer { for s in flood { s.release() } }
        let (replies, held) = try await Self.drain(flood)
        #expect(!held, "the host still held shard sockets after 120 s. Log:\n\(host.log.suffix(2000))")
        let refused = replies.filter(Self.isRefusal).count
        let silent = replies.filter(\.isEmpty).count
        // Those admitted (at most the cap at a time) end silently at the handshake timeout.
        #expect(refused + silent == flood.count && refused >= flood.count / 2, "refused \(refused), silent \(silent): \(replies.first { !$0.isEmpty && !Self.isRefusal($0) }.map { String(decoding: $0, as: UTF8.self) } ?? "")")

        for s in flood { s.release() }
        try await ShardWSTests.waitUntil("the host's descriptors to come back to \(before) (+8)") {
            try Self.openFiles(host) <= before + 8
        }
        #expect((try await host.metricCounter("shard_ws_refused_total") ?? 0) >= refused)

        let alice = try await host.mintSession("alice")
        let ws = try await ShardWSTests.connect(port, shard: "cap1", token: alice, label: "after the flood")
        _ = try await ShardWSTests.frame(ws)
        try ShardWSTests.send(ws, #"{"input": {"spawn": [5, 5]}, "client_seq": 1}"#)
        let ack = try await ws.waitForJSON("the ack", timeout: 30) { $0["type"].string == "ack" }
        #expect(ack["client_seq"].int == 1, "\(String(describing: ack))")
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("Under the total cap (max_connections 3) clients connect and get frames; the next connection is answered 429 TOO_MANY_CONNECTIONS without sending a byte; once one leaves another connects")
    func totalCap() async throws {
        let (host, port) = try await ShardWSTests.start(manifest: Self.manifest(#""max_connections": 3"#))
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "cap2"}"#)
        var clients: [TestWebSocket] = []
        for name in ["alice", "bob", "carol"] {
            let token = try await host.mintSession(name)
            let ws = try await ShardWSTests.connect(port, shard: "cap2", token: token, label: name)
            _ = try await ShardWSTests.frame(ws)
            clients.append(ws)
        }

        let extra = try TestSocket.connect(port: port)
        defer { extra.release() }
        let (replies, held) = try await Self.drain([extra])
        #expect(!held && Self.isRefusal(replies[0]), "\(String(decoding: replies[0], as: UTF8.self))")

        clients[0].disconnect()
        let dave = try await host.mintSession("dave")
        let again = try await MatchmakerTests.poll("a free place for dave") {
            try? await ShardWSTests.connect(port, shard: "cap2", token: dave, label: "dave")
        }
        _ = try await ShardWSTests.frame(again)
        for ws in clients.dropFirst() { #expect(ws.closeFrame == nil && ws.end == nil, "\(ws.summary)") }
    }
}
