import Foundation
import Testing
@testable import PylonHost
@testable import PylonCore
@testable import PylonPlugins
@testable import PylonData
@testable import PylonServices
@testable import PylonEdge

/// Disconnect notices (`{"type":"presence","event":"disconnect","clientId":N}`): kept once
/// by the hub (`LeaveLog`), a burst of them delivered as one queue entry per connection
/// (`HubMessage.leaves`), written while the socket takes more (`WebSocketConnection.deliver`).
/// Unit tests of the pieces, then black-box: many clients leaving at once, seen by a reading
/// peer and by a peer whose socket stopped taking data.
@Suite("Presence: disconnect notices of many leavers (LeaveLog, queue entries, black-box)")
struct PresenceLeaveTests {
    @Test("LeaveLog numbers notices from 1 and returns a range in order; notices overwritten by newer ones are skipped")
    func leaveLogRing() {
        var log = LeaveLog()
        #expect(log.frames(1...1).isEmpty, "nothing kept yet")
        for i in 1...5 { #expect(log.append("n\(i)") == Int64(i)) }
        #expect(log.frames(2...4) == ["n2", "n3", "n4"])
        let total = LeaveLog.capacity + 10
        for i in 6...total { _ = log.append("n\(i)") }
        #expect(log.newest == Int64(total))
        // The first 10 were overwritten: a range reaching back to them gets what is left.
        #expect(log.frames(1...12) == ["n11", "n12"])
        #expect(log.frames(Int64(total - 1)...Int64(total)) == ["n\(total - 1)", "n\(total)"])
    }

    @Test("Leave ranges that follow the last queued entry extend it; anything queued between keeps them apart, in order")
    func leavesCoalesceInTheQueue() {
        let sub = Subscriber(id: 1, auth: AuthContext.admin, address: "a", wantsRelays: true, session: nil, limit: 3, live: true)
        sub.offer(.leaves(1...1))
        sub.offer(.leaves(2...4))
        sub.offer(.leaves(5...9))
        sub.offer(.relay("r"))
        sub.offer(.leaves(10...10))
        // Not contiguous with the last entry (a range this subscriber missed): a new entry.
        let (messages, overflowed) = sub.drain()
        #expect(!overflowed)
        #expect(messages.count == 3, "\(messages)")
        guard messages.count == 3 else { return }
        if case let .leaves(r) = messages[0] { #expect(r == 1...9) } else { Issue.record("\(messages[0])") }
        if case let .relay(t) = messages[1] { #expect(t == "r") } else { Issue.record("\(messages[1])") }
        if case let .leaves(r) = messages[2] { #expect(r == 10...10) } else { Issue.record("\(messages[2])") }
        // A queue at its limit still takes contiguous leaves (they add no entry).
        sub.offer(.relay("a"))
        sub.offer(.relay("b"))
        sub.offer(.leaves(11...11))
        sub.offer(.leaves(12...20))
        let again = sub.drain()
        #expect(!again.overflowed && again.messages.count == 3, "\(again)")
    }

    @Test("WS: 30 clients leave at once; each peer, including one whose socket was full, gets one notice per leaver (30 distinct clientIds, no duplicate), none before that many leavers' last frames")
    func manyLeaveAtOnce() async throws {
        // Topic messages of 70 KB (over PYLON_WS_MAX_RELAY_BYTES's default), and no write
        // deadline for the stalled peer while the leavers come and go on a busy machine.
        let host = try await HostProcess.start(manifest: RealtimeTests.manifest,
                                               env: ["PYLON_WS_MAX_RELAY_BYTES": "\(128 << 10)", "PYLON_WS_WRITE_TIMEOUT": "0"],
                                               dev: true)
        defer { host.stop() }
        let admin = HostProcess.adminToken
        let peer = try await TestWebSocket.connect(port: host.port, token: admin, label: "peer")
        // Reads nothing until the leavers are gone, with a small receive window: big relays
        // fill it, so the host's writes back up and the notices wait behind them.
        let stalled = try await TestWebSocket.connect(port: host.port, token: admin, receiveBuffer: 4096, reading: false,
                                                      label: "stalled peer")
        try await RealtimeTests.ready(peer)
        var leavers: [TestWebSocket] = []
        for i in 0..<30 {
            let ws = try await TestWebSocket.connect(port: host.port, token: admin, label: "leaver \(i)")
            try await RealtimeTests.ready(ws)
            leavers.append(ws)
        }
        // 30 topic frames of 60 and 70 KB (~2 MB; a 70 KB frame has a 64-bit length) for the
        // stalled peer's socket to back up on.
        func big(_ i: Int) -> String { "\(i)-" + String(repeating: "x", count: i % 2 == 0 ? 60_000 : 70_000) }
        for i in 0..<30 { try peer.sendText(#"{"type":"topic","topic":"big","data":"\#(big(i))"}"#) }
        try await peer.waitForJSON("the last big topic frame") { $0["topic"].string == "big" && ($0["data"].string ?? "").hasPrefix("29-") }

        // Each leaver's last frame, then its close, all at once.
        for (i, ws) in leavers.enumerated() { try ws.sendText(#"{"type":"topic","topic":"last","data":"\#(i)"}"#) }
        for ws in leavers { ws.disconnect() }

        stalled.startReading()
        for ws in [peer, stalled] {
            let seen = try await eventually("30 disconnect notices on \(ws.summary)", timeout: 60) { () -> [Any?]? in
                let notices = ws.jsonMessages.filter { $0["type"].string == "presence" && $0["event"].string == "disconnect" }
                return notices.count >= 30 ? notices : nil
            }
            let ids = seen.compactMap { $0["clientId"].int }
            #expect(ids.count == 30 && Set(ids).count == 30, "one notice per leaver, each clientId once: \(ids)")
            // A notice follows its leaver's last frame, so the k-th notice comes after at
            // least k of the leavers' last frames.
            var lasts = 0, notices = 0, early: [Int] = []
            for m in ws.jsonMessages {
                if m["type"].string == "topic" && m["topic"].string == "last" { lasts += 1 }
                if m["type"].string == "presence" && m["event"].string == "disconnect" {
                    notices += 1
                    if lasts < notices { early.append(notices) }
                }
            }
            #expect(lasts == 30 && early.isEmpty, "\(ws.label): every last frame, each before the notices: \(lasts) last frames, notices too early: \(early)")
        }
        for ws in [peer, stalled] {
            let bigs = ws.jsonMessages.filter { $0["topic"].string == "big" }.map { $0["data"].string ?? "" }
            let whole = bigs == (0..<30).map(big)  // (not inside #expect: it would print 2 MB)
            #expect(whole, "\(ws.label): every big frame, whole and in order: \(bigs.count) of 30, lengths \(bigs.map(\.count))")
        }

        // Nothing more comes later: a round trip through the host, then the counts again.
        try await RealtimeTests.ready(peer)
        try await RealtimeTests.ready(stalled)
        for ws in [peer, stalled] {
            let n = ws.jsonMessages.filter { $0["type"].string == "presence" && $0["event"].string == "disconnect" }.count
            #expect(n == 30, "\(ws.label): no duplicate notices: \(n)")
        }
        // Still live for change events.
        let id = try await host.create("Item", #"{"title":"after"}"#)
        for ws in [peer, stalled] { try await ws.waitForEvent(rowID: id, kind: "insert") }
        for ws in [peer, stalled] { ws.disconnect() }
    }
}
