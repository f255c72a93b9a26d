import Foundation
import Testing

/// Fragmented client messages on the shard WebSocket (outside probe jobsfiles, F9): each
/// fragment is checked as it arrives (masked, no reserved bit), then the fragments are
/// joined into one input. NIO's aggregator used to join them first and hand on a frame
/// without a mask key, so every fragmented message was closed with 1002, and one over
/// `max_frame_bytes` in all stalled the connection without a close frame.
extension ShardWSTests {
    @Test("A message in masked fragments (text in three with a ping between, binary in two) is one input, acked; an unmasked fragment closes with 1002; fragments past max_frame_bytes in all close with 1009; the host keeps serving")
    func fragmentedMessages() async throws {
        let (host, port) = try await Self.start()
        defer { host.stop() }
        try await ShardTests.create(host, #"{"sim": "arena", "id": "frag", "config": {"speed": 0, "cell": 100}}"#)
        let alice = try await host.mintSession("alice"), bob = try await host.mintSession("bob"), carol = try await host.mintSession("carol")
        let a = try await Self.connect(port, shard: "frag", token: alice, label: "fragments")
        _ = try await Self.frame(a)

        let text = Array(#"{"input": {"spawn": [10, 10]}, "client_seq": 11}"#.utf8)
        try a.sendFrame(opcode: 0x1, Array(text[..<10]), fin: false)
        try a.sendFrame(opcode: 0x0, Array(text[10..<30]), fin: false)
        try a.sendFrame(opcode: 0x9, Array("between".utf8))
        try a.sendFrame(opcode: 0x0, Array(text[30...]))
        let ack = try await a.waitForJSON("the ack of the input sent in three fragments", timeout: 30) { $0["type"].string == "ack" && $0["client_seq"].int == 11 }
        #expect(ack["seq"].int != nil, "\(String(describing: ack))")
        let binary = Array(#"{"input": {"move_to": [20, 30]}, "client_seq": 12}"#.utf8)
        try a.sendFrame(opcode: 0x2, Array(binary[..<25]), fin: false)
        try a.sendFrame(opcode: 0x0, Array(binary[25...]))
        _ = try await a.waitForJSON("the ack of the input sent in two binary fragments", timeout: 30) { $0["type"].string == "ack" && $0["client_seq"].int == 12 }
        // Both joined inputs reached the sim: Alice spawned where the first said and heads
        // where the second said.
        _ = try await Self.frame(a) { $0["you"]["x"].double == 10 && $0["you"]["tx"].double == 20 && $0["you"]["ty"].double == 30 }
        #expect(a.closeFrame == nil, "\(a.summary)")

        // A fragment that is not masked is refused, however the message began.
        let rude = try await Self.connect(port, shard: "frag", token: bob, label: "unmasked fragment")
        _ = try await Self.frame(rude)
        try rude.sendFrame(opcode: 0x1, Array(text[..<10]), fin: false)
        try rude.sendFrame(opcode: 0x0, Array(text[10...]), masked: false)
        let rudeClose = try await rude.waitForClose(timeout: 30)
        #expect(rudeClose?.code == 1002 && rudeClose?.reason.contains("masked") == true, "\(rude.summary)")
        try await rude.waitForEnd(timeout: 30)

        // Three fragments of 50 000 bytes: each under max_frame_bytes (128 KiB), together over it.
        let big = try await Self.connect(port, shard: "frag", token: carol, label: "oversized in fragments")
        _ = try await Self.frame(big)
        let chunk = [UInt8](repeating: 0x20, count: 50_000)
        try big.sendFrame(opcode: 0x1, chunk, fin: false)
        try big.sendFrame(opcode: 0x0, chunk, fin: false)
        try big.sendFrame(opcode: 0x0, chunk)
        let bigClose = try await big.waitForClose(timeout: 30)
        #expect(bigClose?.code == 1009, "\(big.summary)")
        try await big.waitForEnd(timeout: 30)

        // A continuation with no message begun is a protocol error.
        let stray = try await Self.connect(port, shard: "frag", token: bob, label: "stray continuation")
        _ = try await Self.frame(stray)
        try stray.sendFrame(opcode: 0x0, Array("stray".utf8))
        #expect(try await stray.waitForClose(timeout: 30)?.code == 1002, "\(stray.summary)")

        // Alice was never disturbed.
        let last = try #require(Self.frames(a).last?.tick)
        _ = try await Self.frame(a, after: last)
        #expect(a.closeFrame == nil && a.end == nil, "\(a.summary)")
        #expect(try await host.request("GET", "/health").status == 200)
    }
}
