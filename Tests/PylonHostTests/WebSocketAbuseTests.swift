import Foundation
import Testing

/// Hostile WebSocket clients (issue 16 items 8 and 9) on both WebSocket listeners
/// (`/api/sync/ws` and port+1): RFC 6455 framing (an unmasked client frame closes with
/// 1002, invalid UTF-8 text with 1007, and neither is relayed) and the per-connection limit
/// on relayed messages (PYLON_WS_RELAY_RATE / PYLON_WS_RELAY_BURST). The host keeps
/// serving everyone else. Nothing asserts on timing.
@Suite("WebSocket abuse: RFC 6455 framing and relay flood limits (black-box, real pylon-host)")
struct WebSocketAbuseTests {
    static let admin = HostProcess.adminToken

    @Test("An unmasked client frame closes with 1002 and an invalid UTF-8 text message with 1007, on /api/sync/ws and port+1; neither reaches other clients; the host keeps serving")
    func framingRules() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: true, compatPorts: true)
        defer { host.kill9() }
        let mallory = try await host.mintSession("mallory")
        let observer = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "observer")
        try await SessionStreams.live(observer)
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            let unmasked = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "unmasked \(port)")
            try await SessionStreams.live(unmasked)
            try unmasked.sendFrame(opcode: 0x1, Array(#"{"type":"topic","topic":"unmasked","data":1}"#.utf8), masked: false)
            let close = try await unmasked.waitForClose()
            #expect(close?.code == 1002, "an unmasked client frame is a protocol error (RFC 6455 §5.1): \(unmasked.summary)")

            let badText = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "bad UTF-8 \(port)")
            try await SessionStreams.live(badText)
            // A topic frame with a lone continuation byte and an overlong encoding of "/".
            let payload = Array(#"{"type":"topic","topic":"bad-utf8","data":""#.utf8) + [0x80, 0xC0, 0xAF] + Array(#""}"#.utf8)
            try badText.sendFrame(opcode: 0x1, payload)
            let close2 = try await badText.waitForClose()
            #expect(close2?.code == 1007, "invalid UTF-8 in a text message (RFC 6455 §8.1): \(badText.summary)")
        }
        // The observer proves its own frames still flow, and saw none of the bad ones.
        try await SessionStreams.live(observer)
        #expect(!observer.jsonMessages.contains { ["unmasked", "bad-utf8"].contains($0["topic"].string ?? "") }, "\(observer.summary)")
        let health = try await host.request("GET", "/health")
        #expect(health.status == 200)
    }

    @Test("Bytes sent in the same write as the upgrade request (a close frame, an unmasked frame) are read as frames once upgraded, with and without a token, on /api/sync/ws and port+1; the host keeps serving")
    func framesBehindTheUpgradeRequest() async throws {
        // They reached a handler typed for HTTP parts, which stopped the host: one packet from
        // anyone, no token needed (the upgrade of a caller without one completes, then closes
        // with 1008).
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: true, compatPorts: true)
        defer { host.kill9() }
        let mallory = try await host.mintSession("mallory")
        let close1000 = TestWebSocket.frame(opcode: 0x8, [0x03, 0xE8])
        let unmasked = TestWebSocket.frame(opcode: 0x1, Array("sent too early".utf8), masked: false)
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            let polite = try await TestWebSocket.connect(port: port, path: path, token: mallory, behind: close1000, label: "close behind \(port)")
            #expect(try await polite.waitForClose()?.code == 1000, "the close frame is answered: \(polite.summary)")
            let anonymous = try await TestWebSocket.connect(port: port, path: path, behind: close1000, label: "no token \(port)")
            #expect(try await anonymous.waitForClose()?.code == 1008, "refused as without the extra bytes: \(anonymous.summary)")
            let rude = try await TestWebSocket.connect(port: port, path: path, token: mallory, behind: unmasked, label: "unmasked behind \(port)")
            #expect(try await rude.waitForClose()?.code == 1002, "an unmasked frame is a protocol error: \(rude.summary)")
            // Still serving: HTTP, and a WebSocket opened the usual way.
            #expect(try await host.request("GET", "/health").status == 200, "the host is up after the bytes on port \(port). Log:\n\(host.log)")
            let after = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "after \(port)")
            try await SessionStreams.live(after)
            after.disconnect()
        }
    }

    @Test("An unmasked client control frame (ping, pong, close) closes with 1002 too, on /api/sync/ws and port+1; a masked ping is answered and the connection stays open")
    func unmaskedControlFrames() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: true, compatPorts: true)
        defer { host.kill9() }
        let mallory = try await host.mintSession("mallory")
        let controls: [(name: String, opcode: UInt8, payload: [UInt8])] = [("ping", 0x9, [1, 2, 3]), ("pong", 0xA, [4, 5]), ("close", 0x8, [0x03, 0xE8])]
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            for (name, opcode, payload) in controls {
                let ws = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "unmasked \(name) \(port)")
                try await SessionStreams.live(ws)
                try ws.sendFrame(opcode: opcode, payload, masked: false)
                let close = try await ws.waitForClose()
                #expect(close?.code == 1002, "an unmasked \(name) frame is a protocol error (RFC 6455 §5.1): \(ws.summary)")
            }
            // The happy twin: masked control frames are fine.
            let polite = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "masked ping \(port)")
            try polite.sendFrame(opcode: 0x9, [7, 7])
            try polite.sendFrame(opcode: 0xA, [])
            try await SessionStreams.live(polite)
            #expect(polite.closeFrame == nil, "\(polite.summary)")
            polite.disconnect()
        }
        let health = try await host.request("GET", "/health")
        #expect(health.status == 200)
    }

    /// A client's close frame and the code its answer must carry (RFC 6455 §5.5.1, §7.4):
    /// a code allowed on the wire is echoed; one that is not (1005, 1006 and 1015 are for
    /// reporting only, 1004 and 1016–2999 reserved, under 1000 or from 5000 unused), or a
    /// 1-byte payload, is 1002; a reason that is not UTF-8 is 1007. Shared with ShardWSTests.
    static let closeCases: [(name: String, payload: [UInt8], answer: Int)] = {
        func code(_ c: Int, _ reason: [UInt8] = []) -> [UInt8] { [UInt8(c >> 8), UInt8(c & 0xFF)] + reason }
        var cases: [(name: String, payload: [UInt8], answer: Int)] = [
            ("1000 with a reason", code(1000, Array("bye".utf8)), 1000), ("1001", code(1001), 1001), ("1011", code(1011), 1011),
            ("1013", code(1013), 1013), ("3000", code(3000), 3000), ("4999 with a UTF-8 reason", code(4999, Array("café".utf8)), 4999),
            ("1-byte payload", [0x03], 1002),
            ("reason 0xFF", code(1000, [0xFF]), 1007), ("overlong reason", code(1000, [0xC0, 0xAF]), 1007),
            ("truncated reason", code(1000, [0xE2, 0x82]), 1007),
        ]
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] { cases.append(("code \(bad)", code(bad), 1002)) }
        return cases
    }()

    @Test("A client's close frame: an allowed code is echoed; 1005/1006/1015, reserved and unused codes and a 1-byte payload answer 1002, a reason that is not UTF-8 1007; on /api/sync/ws and port+1")
    func closeFrames() async throws {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, dev: true, compatPorts: true)
        defer { host.kill9() }
        let mallory = try await host.mintSession("mallory")
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            for c in Self.closeCases {
                let ws = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "close \(c.name) \(port)")
                try await SessionStreams.live(ws)
                try ws.sendFrame(opcode: 0x8, c.payload)
                let close = try await ws.waitForClose()
                #expect(close?.code == c.answer, "\(c.name) on \(port): \(ws.summary)")
                try await ws.waitForEnd()
            }
            // No code at all is answered with none.
            let bare = try await TestWebSocket.connect(port: port, path: path, token: mallory, label: "bare close \(port)")
            try await SessionStreams.live(bare)
            try bare.sendFrame(opcode: 0x8, [])
            let close = try await bare.waitForClose()
            #expect(close != nil && close?.code == nil, "\(bare.summary)")
        }
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("PYLON_WS_RELAY_RATE=1, PYLON_WS_RELAY_BURST=5: a flooding client gets RELAY_RATE_LIMITED error frames, then close 1008; other clients get at most the allowed frames; a polite client is untouched")
    func relayFlood() async throws {
        let (host, guestToken, observer) = try await Self.relayStage(env: ["PYLON_WS_RELAY_RATE": "1", "PYLON_WS_RELAY_BURST": "5"])
        defer { host.kill9() }

        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            let flooder = try await TestWebSocket.connect(port: port, path: path, token: guestToken, label: "flooder \(port)")
            let tag = "flood-\(port)"
            let started = Date()
            for i in 0..<200 {
                do {
                    try flooder.sendText(#"{"type":"topic","topic":"\#(tag)","data":\#(i)}"#)
                } catch {
                    break // the host closed the connection
                }
            }
            let close = try await flooder.waitForClose()
            #expect(close?.code == 1008 && close?.reason == "relay rate limit exceeded", "\(flooder.summary)")
            let errors = flooder.jsonMessages.filter { $0["type"].string == "error" }
            #expect(!errors.isEmpty && errors.allSatisfy { $0.errorCode == "RELAY_RATE_LIMITED" }, "\(flooder.summary)")
            // Everything relayed was relayed before the close, and reaches the observer in
            // order ahead of its own ready frame.
            try await SessionStreams.live(observer)
            let seen = observer.jsonMessages.filter { $0["topic"].string == tag }.count
            // The burst, plus one per second of refill while the flood lasted.
            let allowed = 5 + Int(Date().timeIntervalSince(started).rounded(.up))
            #expect(seen >= 1 && seen <= allowed, "the observer got \(seen) of the flood's frames, allowed \(allowed)")
        }

        // A client under the limit: every frame relayed, no error.
        let polite = try await TestWebSocket.connect(port: host.port, token: guestToken, label: "polite")
        for i in 0..<3 { try polite.sendText(#"{"type":"topic","topic":"polite","data":\#(i)}"#) }
        try await observer.waitForJSON("the polite client's third frame") { $0["topic"].string == "polite" && $0["data"].int == 2 }
        #expect(!polite.jsonMessages.contains { $0["type"].string == "error" }, "\(polite.summary)")
        #expect(polite.closeFrame == nil)
        #expect(try await host.request("GET", "/health").status == 200)
    }

    /// A host with the compat ports, a guest's token (anyone can have one) and an admin
    /// observer whose stream is live.
    static func relayStage(env: [String: String] = [:]) async throws -> (HostProcess, String, TestWebSocket) {
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest, env: env, dev: true, compatPorts: true)
        do {
            let token = try await host.guestToken()
            let observer = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "observer")
            try await SessionStreams.live(observer)
            return (host, token, observer)
        } catch {
            host.kill9()
            throw error
        }
    }

    /// A topic message of exactly `bytes` bytes, tagged `tag`.
    static func topic(_ tag: String, bytes: Int) -> String {
        let head = #"{"type":"topic","topic":"\#(tag)","data":""#, tail = #""}"#
        return head + String(repeating: "x", count: bytes - head.utf8.count - tail.utf8.count) + tail
    }

    @Test("A guest's topic message over PYLON_WS_MAX_RELAY_BYTES (default 64 KiB) is refused with a RELAY_TOO_LARGE error frame and not relayed, on /api/sync/ws and port+1; one of exactly 64 KiB is relayed; the connection stays open")
    func oversizedRelay() async throws {
        let (host, guestToken, observer) = try await Self.relayStage()
        defer { host.kill9() }
        for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
            let sender = try await TestWebSocket.connect(port: port, path: path, token: guestToken, label: "sender \(port)")
            try await SessionStreams.live(sender)
            let over = "over-\(port)", edge = "edge-\(port)"
            try sender.sendText(Self.topic(over, bytes: 64 * 1024 + 1))
            let refusal = try await sender.waitForJSON("the RELAY_TOO_LARGE error frame") { $0["type"].string == "error" }
            #expect(refusal.errorCode == "RELAY_TOO_LARGE", "\(sender.summary)")
            // The happy twin, right at the limit: relayed to everyone, the sender included.
            try sender.sendText(Self.topic(edge, bytes: 64 * 1024))
            try await observer.waitForJSON("the 64 KiB topic message") { $0["topic"].string == edge }
            try await sender.waitForJSON("its own 64 KiB topic message") { $0["topic"].string == edge }
            #expect(!observer.jsonMessages.contains { $0["topic"].string == over }, "the oversized message is not relayed")
            #expect(!sender.jsonMessages.contains { $0["topic"].string == over })
            #expect(sender.closeFrame == nil, "refusing a message does not close the connection: \(sender.summary)")
            sender.disconnect()
        }
        #expect(try await host.request("GET", "/health").status == 200)
    }

    @Test("A client cannot forge room events or the host's notices on the relay: a presence message naming a room, or shaped as a disconnect notice, is refused with RELAY_NOT_ALLOWED and reaches no one (a signed-in non-member and a guest, on /api/sync/ws and port+1); an ordinary presence relay still reaches everyone, with from and user_id set to the sender")
    func forgedRoomPresence() async throws {
        let (host, guestToken, _) = try await Self.relayStage()
        defer { host.kill9() }
        let alice = try await host.mintSession("alice")
        let aliceWS = try await TestWebSocket.connect(port: host.port, token: alice, label: "alice")
        try await SessionStreams.live(aliceWS)
        let joined = try await host.request("POST", "/api/rooms/join", json: #"{"room":"private"}"#, token: alice)
        #expect(joined.status == 200, "\(joined.body)")
        let mallory = try await host.mintSession("mallory")
        for (who, token) in [("mallory", mallory), ("guest", guestToken)] {
            for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
                let sender = try await TestWebSocket.connect(port: port, path: path, token: token, label: "\(who) \(port)")
                try await SessionStreams.live(sender)
                let tag = "\(who)-\(port)"
                try sender.sendText(#"{"type":"presence","room":"private","user_id":"alice","data":{"tag":"forged-\#(tag)"}}"#)
                try sender.sendText(#"{"type":"presence","event":"disconnect","clientId":1,"tag":"forged-\#(tag)"}"#)
                let refusals = try await eventually("two RELAY_NOT_ALLOWED frames on \(sender.summary)") { () -> [Any?]? in
                    let errors = sender.jsonMessages.filter { $0["type"].string == "error" }
                    return errors.count >= 2 ? errors : nil
                }
                #expect(refusals.allSatisfy { $0.errorCode == "RELAY_NOT_ALLOWED" }, "\(sender.summary)")
                // The happy twin, sent after the forgeries: relayed, with the host's identity
                // in place of the one the client wrote. Relays keep their order, so once it
                // arrived the refused ones would have too.
                try sender.sendText(#"{"type":"presence","event":"update","user_id":"ghost","data":{"tag":"ok-\#(tag)"}}"#)
                let relayed = try await aliceWS.waitForJSON("\(tag)'s presence update") { $0["data"]["tag"].string == "ok-\(tag)" }
                let from = relayed["from"].string
                #expect(from != nil && from != "ghost" && relayed["user_id"].string == from, "\(String(describing: relayed))")
                if who == "mallory" { #expect(from == "mallory") }
                let forged = aliceWS.jsonMessages.filter { ($0["data"]["tag"].string ?? $0["tag"].string) == "forged-\(tag)" }
                #expect(forged.isEmpty, "a forged frame reached a room member: \(forged)")
                #expect(sender.closeFrame == nil, "refusing a message does not close the connection: \(sender.summary)")
                sender.disconnect()
            }
        }
        #expect(try await host.request("GET", "/health").status == 200)
    }
}
