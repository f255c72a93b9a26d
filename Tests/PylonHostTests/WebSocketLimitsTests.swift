import Foundation
import Testing

/// What a WebSocket client may make the host hold before it is refused, and how a refused
/// upgrade is answered. PYLON_WS_MAX_FRAME defaults to 1 MiB (Pylon's 16 MiB let any guest
/// make the host buffer 16 MiB per connection): a frame whose header announces more is
/// closed with 1009 from its header, before its payload is read (NIO's decoder checks the
/// length first), and a fragmented message is held to the same total. Nothing asserts on
/// timing.
@Suite("WebSocket limits: frame and message size, refused upgrades (black-box, real pylon-host)")
struct WebSocketLimitsTests {
    static let admin = HostProcess.adminToken
    static let maxFrame = 1 << 20

    /// A masked text frame header announcing `length` bytes, with `fin` set.
    static func header(announcing length: Int, opcode: UInt8 = 0x1, fin: Bool = true) -> [UInt8] {
        var h: [UInt8] = [(fin ? 0x80 : 0) | opcode, 0x80 | 127]
        for i in (0..<8).reversed() { h.append(UInt8(truncatingIfNeeded: UInt64(length) >> (UInt64(i) * 8))) }
        return h + [0x11, 0x22, 0x33, 0x44]
    }

    /// Sends `header` and then up to `payload` bytes in 64 KiB writes, until the host closes
    /// the connection (a send fails); returns the bytes of payload it got out.
    static func flood(_ ws: TestWebSocket, header: [UInt8], payload: Int) async throws -> Int {
        try await onThread {
            let piece = [UInt8](repeating: 0x61, count: 64 << 10)
            var sent = 0
            do {
                try ws.socket.send(header)
                while sent < payload {
                    try ws.socket.send(Array(piece.prefix(payload - sent)))
                    sent += min(piece.count, payload - sent)
                }
            } catch {}
            return sent
        }
    }

    @Test("Hostile (default PYLON_WS_MAX_FRAME, 1 MiB): 24 guest connections each announcing a 16 MiB frame and sending it are closed with 1009 from the header; host RSS grows by far less than their 384 MiB; the host keeps serving")
    func announcedHugeFrames() async throws {
        let host = try await RealtimeTests.start()
        defer { host.kill9() }
        let pid = try #require(host.pid)
        let token = try await host.guestToken()
        let bystander = try await TestWebSocket.connect(port: host.port, token: token, label: "bystander")
        try await RealtimeTests.ready(bystander)
        var clients: [TestWebSocket] = []
        for i in 0..<24 {
            let ws = try await TestWebSocket.connect(port: host.port, token: token, label: "announcer \(i)")
            try await RealtimeTests.ready(ws)
            clients.append(ws)
        }
        let before = try #require(residentBytes(pid: pid))
        // The host's RSS, sampled while the floods run (the peak is what buffering would show).
        let monitor = Task {
            var peak = 0
            while !Task.isCancelled {
                if let rss = residentBytes(pid: pid) { peak = max(peak, rss) }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return peak
        }
        let huge = 16 << 20
        let sent = try await withThrowingTaskGroup(of: Int.self) { group in
            for ws in clients { group.addTask { try await Self.flood(ws, header: Self.header(announcing: huge), payload: huge) } }
            return try await group.reduce(0, +)
        }
        for ws in clients {
            let close = try await ws.waitForClose(timeout: 60)
            #expect(close?.code == 1009, "\(ws.summary)")
        }
        monitor.cancel()
        let peak = max(await monitor.value, residentBytes(pid: pid) ?? 0)
        let sum = clients.count * huge
        #expect(peak - before < sum / 4, "host RSS grew from \(before >> 20) MiB to \(peak >> 20) MiB; the announced frames add up to \(sum >> 20) MiB (\(sent >> 20) MiB got out before the closes)")

        // The host keeps serving: the bystander gets relays and events, newcomers connect.
        let id = try await host.create("Item", #"{"title":"after the announcements"}"#)
        try await bystander.waitForEvent(rowID: id, timeout: 60)
        let newcomer = try await TestWebSocket.connect(port: host.port, token: token, label: "newcomer")
        try await RealtimeTests.ready(newcomer)
        #expect(bystander.closeFrame == nil && bystander.end == nil, "\(bystander.summary)")
        for ws in [bystander, newcomer] { ws.disconnect() }
    }

    @Test("A fragmented message is held to PYLON_WS_MAX_FRAME in total (default 1 MiB): exactly 1 MiB in four fragments is read (and refused as a relay, RELAY_TOO_LARGE, the connection stays open); one byte more closes with 1009")
    func fragmentedMessages() async throws {
        let host = try await RealtimeTests.start()
        defer { host.kill9() }
        let token = try await host.guestToken()
        let quarter = [UInt8](repeating: 0x61, count: Self.maxFrame / 4)

        let happy = try await TestWebSocket.connect(port: host.port, token: token, label: "at the limit")
        try await RealtimeTests.ready(happy)
        try happy.sendFrame(opcode: 0x1, quarter, fin: false)
        for _ in 0..<2 { try happy.sendFrame(opcode: 0x0, quarter, fin: false) }
        try happy.sendFrame(opcode: 0x0, quarter, fin: true)
        let refused = try await happy.waitForJSON("RELAY_TOO_LARGE for the 1 MiB message", timeout: 60) { $0["error"]["code"].string == "RELAY_TOO_LARGE" }
        #expect(refused["error"]["message"].string?.contains("\(Self.maxFrame) bytes") == true, "\(happy.summary)")
        try await RealtimeTests.ready(happy)
        #expect(happy.closeFrame == nil && happy.end == nil, "\(happy.summary)")

        let hostile = try await TestWebSocket.connect(port: host.port, token: token, label: "over the limit")
        try await RealtimeTests.ready(hostile)
        try hostile.sendFrame(opcode: 0x1, quarter, fin: false)
        for _ in 0..<3 { try hostile.sendFrame(opcode: 0x0, quarter, fin: false) }
        try? hostile.sendFrame(opcode: 0x0, [0x61], fin: true)
        let close = try await hostile.waitForClose(timeout: 60)
        #expect(close?.code == 1009, "\(hostile.summary)")
        happy.disconnect()
    }

    /// Sends a WebSocket handshake for `target` on `port` and reads the one answer.
    static func upgrade(_ port: Int, _ target: String, extra: String = "") async throws -> (answer: RequestPathTests.Answer, closed: Bool) {
        let socket = try TestSocket.connect(port: port)
        defer { socket.close() }
        try socket.send("GET \(target) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extra)\r\n")
        let (answers, closed) = try await RequestPathTests.read(socket, count: 1, closeExpected: true)
        return (try #require(answers.first), closed)
    }

    @Test("Every refused upgrade answers its status with the JSON error body and a stable code, then closes: a path that takes no WebSocket (400 WEBSOCKET_NOT_SERVED), a wrong API key (401 INVALID_API_KEY); a good handshake upgrades")
    func refusedUpgradesExplainThemselves() async throws {
        let host = try await RealtimeTests.start()
        defer { host.stop() }
        let cases: [(target: String, extra: String, status: Int, code: String)] = [
            ("/api/entities/Item", "Authorization: Bearer \(Self.admin)\r\n", 400, "WEBSOCKET_NOT_SERVED"),
            ("/health", "", 400, "WEBSOCKET_NOT_SERVED"),
            ("/api/sync/ws", "Authorization: Bearer pk.nosuchkey.nosecret\r\n", 401, "INVALID_API_KEY"),
        ]
        for c in cases {
            let (a, closed) = try await Self.upgrade(host.port, c.target, extra: c.extra)
            #expect(a.status == c.status && a.headers["content-type"] == "application/json"
                        && a.body.contains(#""code":"\#(c.code)""#) && closed,
                    "\(c.target) \(c.extra): \(a.status) \(a.headers) \(a.body)")
        }
        // The happy twin: the same handshake on the sync path upgrades.
        let ws = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "good")
        try await RealtimeTests.ready(ws)
        ws.disconnect()
    }
}
