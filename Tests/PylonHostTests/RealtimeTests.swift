import Foundation
import Testing

/// Black-box realtime sync (DESIGN.md §4–§5, pylon-core.md §3.9–§3.10, issue 3): the real
/// release `pylon-host` with the real `plugins/`, each test on its own database and ports,
/// talked to over real sockets. The WebSocket client is a small RFC 6455 client
/// (`Support/TestWebSocket.swift`), the SSE client a raw HTTP/1.1 reader
/// (`Support/TestEventStream.swift`), both on plain POSIX sockets, so a test can also
/// hold a connection that stops reading.
///
/// Waits are bounded (they fail with what was seen) and nothing asserts on timing.
/// Build first: `swift build -c release && cp .build/release/libPylon*.so plugins/`.
@Suite("Realtime: WebSocket and SSE (black-box, real pylon-host)")
struct RealtimeTests {
    static let manifest = """
    {"manifest_version": 1, "name": "realtime-test", "version": "0.1.0",
     "entities": [{"name": "Item", "fields": [
        {"name": "title", "type": "string", "optional": false, "unique": false},
        {"name": "n", "type": "int", "optional": true, "unique": false}], "indexes": []}],
     "routes": [], "policies": []}
    """

    static let admin = HostProcess.adminToken

    static func start(env: [String: String] = [:], compatPorts: Bool = false) async throws -> HostProcess {
        try await HostProcess.start(manifest: manifest, env: env, dev: true, compatPorts: compatPorts)
    }

    /// Sends a topic frame from `ws` and waits for its own copy: proof that the
    /// connection is subscribed and live (relays only reach live subscribers).
    static func ready(_ ws: TestWebSocket) async throws {
        let nonce = UUID().uuidString
        try ws.sendText(#"{"type":"topic","topic":"ready","data":"\#(nonce)"}"#)
        try await ws.waitForJSON("its own ready relay \(nonce)") { $0["type"].string == "topic" && $0["data"].string == nonce }
    }

    /// Inserts warm-up rows until every stream saw one: for connections opened without a
    /// cursor, which only get events committed after they went live.
    static func warmUp(_ host: HostProcess, _ streams: [TestEventStream]) async throws {
        var ids: Set<String> = []
        let deadline = Date().addingTimeInterval(30)
        while true {
            ids.insert(try await host.create("Item", #"{"title":"warm-up"}"#))
            let round = Date().addingTimeInterval(1)
            while Date() < round {
                if streams.allSatisfy({ s in s.changeEvents.contains { ids.contains(($0.json as Any?)["row_id"].string ?? "") } }) {
                    return
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            if Date() > deadline {
                throw RealtimeTestError("no warm-up row reached every stream within 30 s: \(streams.map(\.summary))")
            }
        }
    }

    // MARK: - WebSocket: auth, frames, relays

    @Test("WS: auth by bearer header, bearer.<token> subprotocol (echoed) and admin token on /api/sync/ws and any path of port+1; none → 1008; change events, topic relay with from, disconnect presence")
    func webSocketAuthFramesAndRelays() async throws {
        let host = try await Self.start(compatPorts: true)
        defer { host.stop() }
        let alice = try await host.mintSession("alice")
        let bob = try await host.mintSession("bob")

        // No token, or a token that is no session: upgraded, then closed with 1008.
        for (port, path, token) in [(host.port, "/api/sync/ws", nil), (host.wsCompatPort, "/", nil),
                                    (host.wsCompatPort, "/any/path/at/all", nil), (host.port, "/api/sync/ws", "pylon_not_a_session"),
                                    (host.wsCompatPort, "/", "wrong-admin-token")] as [(Int, String, String?)] {
            let anon = try await TestWebSocket.connect(port: port, path: path, token: token, label: "unauthenticated \(port)\(path)")
            let close = try await anon.waitForClose()
            #expect(close?.code == 1008, "no valid token on port \(port) \(path) must close with 1008: \(anon.summary)")
            #expect(anon.changeEvents.isEmpty)
        }

        let a = try await TestWebSocket.connect(port: host.port, token: alice, label: "alice (header, main port)")
        let b = try await TestWebSocket.connect(port: host.wsCompatPort, path: "/sync", protocols: ["bearer.\(bob)"],
                                                label: "bob (subprotocol, port+1)")
        #expect(b.responseHeaders["sec-websocket-protocol"] == "bearer.\(bob)", "the bearer subprotocol is echoed: \(b.responseHeaders)")
        // Percent-encoded token (test%2Dadmin = test-admin) among other subprotocols: the
        // exact entry is echoed.
        let adm = try await TestWebSocket.connect(port: host.wsCompatPort, path: "/", protocols: ["pylon", "bearer.test%2Dadmin"],
                                                  label: "admin (subprotocol, port+1)")
        #expect(adm.responseHeaders["sec-websocket-protocol"] == "bearer.test%2Dadmin", "\(adm.responseHeaders)")
        let adm2 = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "admin (header, main port)")
        for ws in [a, b, adm, adm2] { try await Self.ready(ws) }

        // Change events: bare objects, Pylon's key order, full rows for insert/update, no data on delete.
        let id = try await host.create("Item", #"{"title":"first","n":1}"#)
        let p = try await host.request("PATCH", "/api/entities/Item/\(id)", json: #"{"title":"second"}"#, token: Self.admin)
        #expect(p.status == 200, "\(p.body)")
        let d = try await host.request("DELETE", "/api/entities/Item/\(id)", token: Self.admin)
        #expect(d.status == 200, "\(d.body)")
        for ws in [a, b, adm, adm2] {
            try await ws.waitForEvent(rowID: id, kind: "delete")
            let mine = ws.changeEvents.filter { $0["row_id"].string == id }
            #expect(mine.map { $0["kind"].string } == ["insert", "update", "delete"], "\(ws.summary)")
            let s = seqs(mine)
            #expect(s.count == 3 && s == s.sorted() && Set(s).count == 3, "seqs increase: \(s)")
            #expect(mine.allSatisfy { $0["entity"].string == "Item" && $0["timestamp"].string != nil && $0["type"] == nil },
                    "bare change events: \(mine)")
            #expect(mine.first?["data"]["title"].string == "first")
            #expect(mine.first?["data"]["n"].int == 1)
            #expect(mine.dropFirst().first?["data"]["title"].string == "second", "\(mine)")
            #expect(mine.dropFirst().first?["data"]["n"].int == 1, "an update event carries the full row, not only the patch: \(mine)")
            #expect(mine.last?["data"] == nil, "a delete event has no data key: \(mine)")
            let raw = try #require(ws.texts.first { $0.contains(id) && $0.contains("\"insert\"") })
            let order = ["\"seq\"", "\"entity\"", "\"row_id\"", "\"kind\"", "\"data\"", "\"timestamp\""]
                .map { raw.range(of: $0)?.lowerBound }
            #expect(raw.hasPrefix("{\"seq\":") && order.allSatisfy { $0 != nil } && order.compactMap { $0 } == order.compactMap { $0 }.sorted(),
                    "keys in Pylon's order seq, entity, row_id, kind, data, timestamp: \(raw)")
        }

        // Topic relay: re-broadcast to every WS client with `from` stamped by the host.
        try a.sendText(#"{"type":"topic","topic":"chat","data":{"x":1},"from":"mallory"}"#)
        for ws in [a, b, adm, adm2] {
            let m = try await ws.waitForJSON("alice's topic frame") { $0["type"].string == "topic" && $0["topic"].string == "chat" }
            #expect(m["from"].string == "alice", "from is the sender's user id, whatever the client wrote: \(m ?? "nil")")
            #expect(m["data"]["x"].int == 1)
        }
        try adm.sendText(#"{"type":"presence","event":"update","data":{"cursor":5}}"#)
        let pres = try await b.waitForJSON("the admin's presence frame") { $0["type"].string == "presence" && $0["event"].string == "update" }
        #expect(pres["from"].string == "admin", "\(pres ?? "nil")")
        #expect(pres["data"]["cursor"].int == 5)

        // Disconnect presence when a client goes away.
        a.disconnect()
        for ws in [b, adm, adm2] {
            let bye = try await ws.waitForJSON("a disconnect presence frame") { $0["type"].string == "presence" && $0["event"].string == "disconnect" }
            #expect(bye["clientId"].int != nil, "clientId is a number: \(bye ?? "nil")")
        }

        // A cursor on port+1 at any path: the log from that cursor, then live.
        let late = try await TestWebSocket.connect(port: host.wsCompatPort, path: "/deep/path?since=0", token: Self.admin, label: "late (since=0, port+1)")
        try await late.waitForEvent(rowID: id, kind: "delete")
        #expect(late.changeEvents.filter { $0["row_id"].string == id }.map { $0["kind"].string } == ["insert", "update", "delete"], "\(late.summary)")
        let live = try await host.create("Item", #"{"title":"live"}"#)
        try await late.waitForEvent(rowID: live, kind: "insert")
        for ws in [b, adm, adm2, late] { ws.disconnect() }
    }

    // MARK: - SSE: auth, frames

    @Test("SSE: auth by header or ?token= on /api/sync/events and any path of port+2, else 401; `: connected`, `id: <seq>` + `data: <event>`; no WS relays")
    func eventStreamAuthAndFrames() async throws {
        let host = try await Self.start(compatPorts: true)
        defer { host.kill9() } // an open SSE stream holds up a graceful stop
        let alice = try await host.mintSession("alice")

        for (port, path, token) in [(host.port, "/api/sync/events", nil), (host.sseCompatPort, "/", nil),
                                    (host.sseCompatPort, "/x/y", nil), (host.port, "/api/sync/events?token=pylon_bogus", nil),
                                    (host.port, "/api/sync/events", "not-the-admin-token")] as [(Int, String, String?)] {
            let s = try await TestEventStream.connect(port: port, path: path, token: token, label: "unauthenticated \(port)\(path)")
            #expect(s.status == 401, "no valid token on port \(port) \(path) → 401: \(s.summary)")
            try await s.waitForEnd()
            #expect(s.bodyJSON.errorCode != nil, "the 401 has an error body: \(s.body)")
            s.close()
        }

        let main = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?token=\(alice)", label: "alice ?token= (main)")
        let compat = try await TestEventStream.connect(port: host.sseCompatPort, path: "/events/anything", token: Self.admin, label: "admin header (port+2)")
        let compat2 = try await TestEventStream.connect(port: host.sseCompatPort, path: "/?token=\(alice)", label: "alice ?token= (port+2)")
        let streams = [main, compat, compat2]
        for s in streams {
            #expect(s.status == 200, "\(s.summary)")
            #expect(s.headers["content-type"]?.hasPrefix("text/event-stream") == true, "\(s.headers)")
            try await s.waitForComment("connected")
            #expect(s.comments.first == "connected", "the first thing on the stream is `: connected`: \(s.summary)")
        }
        try await Self.warmUp(host, streams)

        let ws = try await TestWebSocket.connect(port: host.port, token: alice, label: "alice ws")
        try await Self.ready(ws)
        try ws.sendText(#"{"type":"topic","topic":"not-for-sse","data":1}"#)

        let id = try await host.create("Item", #"{"title":"a","n":7}"#)
        _ = try await host.request("PATCH", "/api/entities/Item/\(id)", json: #"{"n":8}"#, token: Self.admin)
        _ = try await host.request("DELETE", "/api/entities/Item/\(id)", token: Self.admin)
        for s in streams {
            try await s.waitForEvent(rowID: id, kind: "delete")
            let mine = s.changeEvents.filter { ($0.json as Any?)["row_id"].string == id }
            #expect(mine.map { ($0.json as Any?)["kind"].string } == ["insert", "update", "delete"], "\(s.summary)")
            for e in mine {
                let j: Any? = e.json
                #expect(e.id != nil && e.id == j["seq"].int.map(String.init), "id: line carries the event's seq: id \(e.id ?? "nil"), data \(e.data)")
            }
            #expect((mine[1].json as Any?)["data"]["title"].string == "a", "update events carry the full row")
            #expect((mine[2].json as Any?)["data"] == nil, "delete events have no data")
            #expect(!s.events.contains { $0.data.contains("not-for-sse") }, "WS topic relays are not sent over SSE: \(s.summary)")
            s.close()
        }
        ws.disconnect()
    }

    @Test("SSE sends keepalive comments on an idle stream")
    func eventStreamKeepalive() async throws {
        let host = try await Self.start()
        defer { host.kill9() }
        let s = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?token=\(Self.admin)")
        #expect(s.status == 200, "\(s.summary)")
        // The host sends one every 15 s; the bound only guards against never.
        try await s.waitForComment("keepalive", timeout: 60)
        #expect(s.ended == nil, "the stream stays open: \(s.summary)")
        s.close()
    }

    // MARK: - Resume from a cursor

    @Test("WS resume: disconnect, 500 writes, reconnect with ?since=<last seq>&epoch=: every missed event once, in order, then live ones")
    func webSocketResume() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let first = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "first connection")
        try await Self.ready(first)
        let early = try await host.createItems(5, writers: 1, prefix: "early")
        let seen = try await first.waitForChangeEvents(5)
        #expect(rowIDs(seen) == early, "\(first.summary)")
        let lastSeq = try #require(seqs(seen).last)
        first.disconnect()
        let epoch = try await host.logHead().epoch

        let missed = try await host.createItems(500, writers: 4, prefix: "missed")
        let ws = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=\(lastSeq)&epoch=\(epoch)",
                                                 token: Self.admin, label: "resumed connection")
        // Live writes start while the connection is still reading the log (the seam).
        let live = try await host.createItems(100, writers: 1, prefix: "live")
        let sentinel = try await host.create("Item", #"{"title":"sentinel"}"#)
        try await ws.waitForEvent(rowID: sentinel, timeout: 60)

        let events = ws.changeEvents
        #expect(seqs(events) == Array((lastSeq + 1)...(lastSeq + 601)),
                "exactly the seqs after the cursor, each once, in order: \(ws.summary)")
        let ids = rowIDs(events)
        #expect(ids.count == 601)
        #expect(Set(ids.prefix(500)) == Set(missed) && Set(ids.prefix(500)).count == 500, "the 500 missed rows come first, each once")
        #expect(Array(ids.dropFirst(500).prefix(100)) == live, "then the live rows in commit order")
        #expect(ids.last == sentinel)
        #expect(events.allSatisfy { $0["kind"].string == "insert" })
        ws.disconnect()
    }

    @Test("SSE resume: reconnect with Last-Event-ID after 500 writes: every missed event once, in order, then live ones")
    func eventStreamResume() async throws {
        let host = try await Self.start()
        defer { host.kill9() } // an open SSE stream holds up a graceful stop (see eventStreamDoesNotBlockShutdown)
        let first = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0", token: Self.admin, label: "first stream")
        let early = try await host.createItems(5, writers: 1, prefix: "early")
        let seen = try await first.waitForChangeEvents(5)
        #expect(seen.map { ($0.json as Any?)["row_id"].string } == early, "\(first.summary)")
        let lastID = try #require(seen.last?.id)
        first.close()

        let missed = try await host.createItems(500, writers: 4, prefix: "missed")
        let s = try await TestEventStream.connect(port: host.port, path: "/api/sync/events", token: Self.admin,
                                                  headers: ["Last-Event-ID": lastID], label: "resumed stream")
        #expect(s.status == 200, "\(s.summary)")
        let live = try await host.createItems(100, writers: 1, prefix: "live")
        let sentinel = try await host.create("Item", #"{"title":"sentinel"}"#)
        try await s.waitForEvent(rowID: sentinel, timeout: 60)

        let events = s.changeEvents
        let last = try #require(Int(lastID))
        #expect(events.map(\.id) == ((last + 1)...(last + 601)).map { String($0) },
                "exactly the ids after Last-Event-ID, each once, in order: \(s.summary)")
        #expect(events.allSatisfy { $0.id == ($0.json as Any?)["seq"].int.map(String.init) })
        let ids = events.compactMap { ($0.json as Any?)["row_id"].string }
        #expect(Set(ids.prefix(500)) == Set(missed) && Set(ids.prefix(500)).count == 500)
        #expect(Array(ids.dropFirst(500).prefix(100)) == live)
        #expect(ids.last == sentinel)
        s.close()
    }

    // MARK: - Resync

    @Test("Resync: a future cursor or another database's epoch gets the 410 body as a frame, then close 4410 (WS) / `event: resync`, then the end (SSE)")
    func resyncFutureCursorAndWrongEpoch() async throws {
        let host = try await Self.start(compatPorts: true)
        defer { host.kill9() }
        _ = try await host.createItems(3, writers: 1, prefix: "r")
        let head = try await host.logHead()
        #expect(head.newest == 3)

        let cases: [(String, Int?)] = [
            ("since=1000", head.newest + 1),
            ("since=\(head.newest + 1)", head.newest + 1),
            ("since=1&epoch=not-this-database", nil),
            ("since=0&epoch=not-this-database", nil),
        ]
        for (query, oldest) in cases {
            for (port, path) in [(host.port, "/api/sync/ws"), (host.wsCompatPort, "/")] {
                let ws = try await TestWebSocket.connect(port: port, path: "\(path)?\(query)", token: Self.admin, label: "ws \(port)\(path)?\(query)")
                let notice = try await ws.waitForJSON("the RESYNC_REQUIRED frame") { $0.errorCode != nil }
                #expect(notice.errorCode == "RESYNC_REQUIRED", "\(ws.summary)")
                #expect(notice["error"]["oldest_seq"].int != nil, "\(ws.summary)")
                if let oldest { #expect(notice["error"]["oldest_seq"].int == oldest, "future cursor: oldest_seq = newest + 1: \(ws.summary)") }
                let close = try await ws.waitForClose()
                #expect(close?.code == 4410, "close code 4410 after the resync frame: \(ws.summary)")
                #expect(ws.changeEvents.isEmpty, "no events before the resync notice: \(ws.summary)")
            }
            for (port, path) in [(host.port, "/api/sync/events"), (host.sseCompatPort, "/x")] {
                let s = try await TestEventStream.connect(port: port, path: "\(path)?\(query)&token=\(Self.admin)", label: "sse \(port)\(path)?\(query)")
                #expect(s.status == 200, "\(s.summary)")
                let e = try await s.waitForNamedEvent("resync")
                let j: Any? = e.json
                #expect(j.errorCode == "RESYNC_REQUIRED", "\(s.summary)")
                if let oldest { #expect(j["error"]["oldest_seq"].int == oldest, "\(s.summary)") }
                try await s.waitForEnd()
                #expect(s.changeEvents.isEmpty, "\(s.summary)")
            }
        }
        // Last-Event-ID ahead of the log resyncs too.
        let ahead = try await TestEventStream.connect(port: host.port, path: "/api/sync/events", token: Self.admin,
                                                      headers: ["Last-Event-ID": "999"], label: "sse Last-Event-ID 999")
        let e = try await ahead.waitForNamedEvent("resync")
        #expect((e.json as Any?)["error"]["oldest_seq"].int == head.newest + 1, "\(ahead.summary)")
        try await ahead.waitForEnd()

        // The right epoch and a valid cursor resume normally.
        let ok = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=1&epoch=\(head.epoch)", token: Self.admin, label: "valid cursor")
        let got = try await ok.waitForChangeEvents(2)
        #expect(seqs(got) == [2, 3], "\(ok.summary)")
        #expect(ok.closeFrame == nil && !ok.jsonMessages.contains { $0.errorCode != nil }, "\(ok.summary)")
        ok.disconnect()
    }

    @Test("Resync: a cursor older than the retained log (PYLON_CHANGELOG_RETENTION=5, trimmed at restart) gets 410 with oldest_seq over WS and SSE")
    func resyncTooOldCursor() async throws {
        let host = try await Self.start(env: ["PYLON_CHANGELOG_RETENTION": "5"])
        defer { host.kill9() }
        _ = try await host.createItems(20, writers: 1, prefix: "old")
        try await host.restart()
        let pull = try await host.request("GET", "/api/sync/pull?since=1", token: Self.admin)
        #expect(pull.status == 410, "\(pull.body)")
        let oldest = try #require(pull.json["error"]["oldest_seq"].int, "\(pull.body)")
        #expect(oldest > 2)

        let ws = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=1", token: Self.admin, label: "too-old ws")
        let notice = try await ws.waitForJSON("the RESYNC_REQUIRED frame") { $0.errorCode != nil }
        #expect(notice.errorCode == "RESYNC_REQUIRED")
        #expect(notice["error"]["oldest_seq"].int == oldest, "\(ws.summary)")
        #expect(try await ws.waitForClose()?.code == 4410, "\(ws.summary)")

        let s = try await TestEventStream.connect(port: host.port, path: "/api/sync/events", token: Self.admin,
                                                  headers: ["Last-Event-ID": "1"], label: "too-old sse")
        let e = try await s.waitForNamedEvent("resync")
        #expect((e.json as Any?)["error"]["oldest_seq"].int == oldest, "\(s.summary)")
        try await s.waitForEnd()

        // Right before the oldest retained seq is still a valid cursor.
        let edge = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=\(oldest - 1)", token: Self.admin, label: "edge ws")
        let got = try await edge.waitForChangeEvents(20 - oldest + 1)
        #expect(seqs(got) == Array(oldest...20), "\(edge.summary)")
        edge.disconnect()
    }

    // MARK: - Backpressure

    @Test("Backpressure (PYLON_SYNC_QUEUE=64): a client that stops reading is closed; another client gets all 3,000 events; host RSS stays bounded")
    func slowConsumerIsClosed() async throws {
        let host = try await Self.start(env: ["PYLON_SYNC_QUEUE": "64"])
        defer { host.stop() }
        let pid = try #require(host.pid)
        let fast = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: Self.admin, label: "fast reader")
        // Handshake, then never read: a 4 KiB receive window fills at once.
        let slow = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: Self.admin,
                                                   receiveBuffer: 4096, reading: false, label: "stalled reader")
        let total = 3000
        // ~2 KiB rows, so the stalled connection's kernel buffers fill long before the end.
        let monitor = Task {
            var peak = 0
            while !Task.isCancelled {
                if let rss = residentBytes(pid: pid) { peak = max(peak, rss) }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return peak
        }
        let ids = try await host.createItems(total, writers: 2, prefix: "bp", padding: 2000)
        let events = try await fast.waitForChangeEvents(total, timeout: 120)
        let rssAfter = residentBytes(pid: pid) ?? 0
        monitor.cancel()
        let peak = max(await monitor.value, rssAfter)

        #expect(seqs(events) == Array(1...total), "the reading client got every event once, in order: \(fast.summary)")
        #expect(Set(rowIDs(events)) == Set(ids))
        #expect(fast.closeFrame == nil && fast.end == nil, "the reading client stays connected: \(fast.summary)")

        // The stalled connection overflowed its queue and then made no progress for the
        // stall window: the host closes it (a client that resumes reading within the window
        // is caught up from the log instead). Wait for that, then read what it had buffered.
        // A bound against hanging, generous for a machine busy with the rest of the suite.
        let deadline = Date().addingTimeInterval(90)
        while (try await host.metricCounter("realtime_slow_consumers_closed_total") ?? 0) < 1 {
            #expect(Date() < deadline, "the host never closed the stalled reader: \(slow.summary)")
            if Date() >= deadline { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        slow.startReading()
        let end = try await slow.waitForEnd(timeout: 30)
        let slowSeqs = seqs(slow.changeEvents)
        #expect(slowSeqs.count < total, "the stalled client cannot have received everything: \(slow.summary)")
        #expect(slowSeqs == Array(slowSeqs.indices.map { $0 + 1 }), "whatever it got is a gapless prefix (never a silent skip): \(slow.summary)")
        if let notice = slow.jsonMessages.first(where: { $0.errorCode != nil }) {
            #expect(notice.errorCode == "RESYNC_REQUIRED", "\(slow.summary)")
        }
        if let close = slow.closeFrame { #expect(close.code == 4410, "\(slow.summary)") }
        #expect(try await host.metricCounter("realtime_slow_consumers_closed_total") ?? 0 >= 1,
                "the host counts the slow consumer it closed (stream ended: \(end))")
        #expect(peak < 400 * 1024 * 1024, "host RSS peaked at \(peak / 1024 / 1024) MiB")

        // The host still serves realtime.
        let after = try await host.create("Item", #"{"title":"after"}"#)
        try await fast.waitForEvent(rowID: after)
        fast.disconnect()
    }

    @Test("Backpressure: one commit bigger than PYLON_SYNC_QUEUE (a 200-op batch, queue 64) reaches every client that keeps reading; none is closed")
    func largeCommitDoesNotCloseReadingClients() async throws {
        let host = try await Self.start(env: ["PYLON_SYNC_QUEUE": "64"])
        defer { host.kill9() }
        let ws = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: Self.admin, label: "reading ws")
        let sse = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?since=0&token=\(Self.admin)", label: "reading sse")
        let warm = try await host.create("Item", #"{"title":"warm"}"#)
        try await ws.waitForEvent(rowID: warm)
        try await sse.waitForEvent(rowID: warm)

        let ops = (0..<200).map { #"{"op":"insert","entity":"Item","data":{"title":"batch-\#($0)","n":\#($0)}}"# }
        let r = try await host.request("POST", "/api/batch", json: #"{"operations":[\#(ops.joined(separator: ","))]}"#, token: Self.admin)
        #expect(r.json["succeeded"].int == 200, "\(r.body.prefix(300))")
        let after = try await host.create("Item", #"{"title":"after the batch"}"#)
        try await eventually("both clients to receive the 200 batch events and the next one, or be closed (\(ws.summary); \(sse.summary))") { () -> Bool? in
            let done = ws.changeEvents.contains { $0["row_id"].string == after } && sse.changeEvents.contains { ($0.json as Any?)["row_id"].string == after }
            let closed = ws.closeFrame != nil || ws.end != nil || sse.ended != nil
            return done || closed ? true : nil
        }
        #expect(ws.closeFrame == nil && ws.end == nil && !ws.jsonMessages.contains { $0.errorCode != nil },
                "a client that keeps reading must not be told to resync because one commit had more events than the queue limit: \(ws.summary)")
        #expect(sse.ended == nil && !sse.events.contains { $0.event == "resync" },
                "same for SSE: \(sse.summary)")
        let wsSeqs = seqs(ws.changeEvents), sseIDs = sse.changeEvents.compactMap { $0.id.flatMap { Int($0) } }
        #expect(wsSeqs.count == 202 && wsSeqs == Array(1...202), "WS got seqs \(wsSeqs.first ?? 0)…\(wsSeqs.last ?? 0) (\(wsSeqs.count) events), expected 1…202")
        #expect(sseIDs.count == 202 && sseIDs == Array(1...202), "SSE got ids \(sseIDs.first ?? 0)…\(sseIDs.last ?? 0) (\(sseIDs.count) events), expected 1…202")
        ws.disconnect()
        sse.close()
    }

    // MARK: - Crash and resume

    @Test("kill -9 while a client is subscribed and a writer runs; restart; the client resumes from its cursor and its replica equals the server's rows")
    func killDashNineThenResume() async throws {
        let host = try await Self.start()
        defer { host.stop() }
        let epoch = try await host.logHead().epoch
        let client = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=0", token: Self.admin, label: "replica client")

        let writer = CrashWriter(host: host)
        let load = Task { await writer.run(writers: 3) }
        try await eventually("300 events on \(client.summary) while the writer runs", timeout: 60) {
            client.changeEventCount >= 300 ? true : nil
        }
        host.kill9()
        await writer.stop()
        await load.value
        try await client.waitForEnd(timeout: 30)
        let before = client.changeEvents
        let cursor = seqs(before).last ?? 0

        try await host.restart()
        let again = try await TestWebSocket.connect(port: host.port, path: "/api/sync/ws?since=\(cursor)&epoch=\(epoch)",
                                                    token: Self.admin, label: "replica client after restart")
        await writer.resume()
        let load2 = Task { await writer.run(writers: 2, limit: 150) }
        await load2.value
        let sentinel = try await host.create("Item", #"{"title":"sentinel"}"#)
        try await again.waitForEvent(rowID: sentinel, timeout: 60)
        #expect(again.closeFrame == nil && !again.jsonMessages.contains { $0.errorCode != nil }, "no resync: \(again.summary)")

        let after = again.changeEvents
        let all = before + after
        let allSeqs = seqs(all)
        #expect(allSeqs == Array(1...(allSeqs.last ?? 0)), "across the crash every seq arrived exactly once, in order (cursor \(cursor)): \(client.summary) / \(again.summary)")
        var replica: [String: [String: Any]] = [:]
        applyEvents(all, to: &replica)

        let server = try await host.request("GET", "/api/entities/Item", token: Self.admin)
        #expect(server.status == 200)
        var serverRows: [String: String] = [:]
        for r in server.json["data"].items {
            serverRows[r["id"].string ?? "?"] = "\(r["title"].string ?? "nil")|\(r["n"].int.map(String.init) ?? "nil")"
        }
        var replicaRows: [String: String] = [:]
        for (id, r) in replica {
            replicaRows[id] = "\((r["title"] as? String) ?? "nil")|\((r["n"] as? Int).map(String.init) ?? "nil")"
        }
        #expect(serverRows.count > 0)
        #expect(replicaRows == serverRows,
                "replica (\(replicaRows.count) rows) differs from the server (\(serverRows.count) rows): only in replica \(Set(replicaRows.keys).subtracting(serverRows.keys).prefix(3)), only on server \(Set(serverRows.keys).subtracting(replicaRows.keys).prefix(3)), different \(replicaRows.filter { serverRows[$0.key] != nil && serverRows[$0.key] != $0.value }.prefix(3))")
        again.disconnect()
    }

    // MARK: - Limits

    @Test("PYLON_MAX_CONNECTIONS_PER_IP=3: the 4th WS is closed with 1008, the 4th SSE gets 429 TOO_MANY_CONNECTIONS; a freed slot can be reused")
    func perAddressLimit() async throws {
        let host = try await Self.start(env: ["PYLON_MAX_CONNECTIONS_PER_IP": "3"])
        defer { host.kill9() }
        var open: [TestWebSocket] = []
        for i in 0..<3 {
            let ws = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "ws \(i + 1)")
            try await Self.ready(ws)
            open.append(ws)
        }
        let fourth = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "ws 4")
        let close = try await fourth.waitForClose()
        #expect(close?.code == 1008, "the 4th connection from one address is refused with 1008: \(fourth.summary)")

        let sse = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?token=\(Self.admin)", label: "sse 4")
        #expect(sse.status == 429, "\(sse.summary)")
        try await sse.waitForEnd()
        #expect(sse.bodyJSON.errorCode == "TOO_MANY_CONNECTIONS", "\(sse.body)")

        // The three admitted connections work.
        let id = try await host.create("Item", #"{"title":"x"}"#)
        for ws in open { try await ws.waitForEvent(rowID: id) }

        // Closing one frees its slot (retry until the host noticed the close).
        open.removeFirst().disconnect()
        let replacement = try await eventuallyAsync("a new connection to be admitted after one closed", timeout: 20) { () async throws -> TestWebSocket? in
            let ws = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "replacement")
            let nonce = UUID().uuidString
            try? ws.sendText(#"{"type":"topic","topic":"ready","data":"\#(nonce)"}"#)
            let admitted = try? await eventually("ready or close", timeout: 10) { () -> Bool? in
                if ws.jsonMessages.contains(where: { $0["data"].string == nonce }) { return true }
                if ws.closeFrame != nil || ws.end != nil { return false }
                return nil
            }
            if admitted == true { return ws }
            ws.abort()
            return nil
        }
        let id2 = try await host.create("Item", #"{"title":"y"}"#)
        try await replacement.waitForEvent(rowID: id2)
        for ws in open + [replacement] { ws.disconnect() }
    }

    @Test("PYLON_WS_MAX_FRAME=2048: a bigger client frame (or fragmented message) closes that connection; the host keeps serving")
    func frameSizeLimit() async throws {
        let host = try await Self.start(env: ["PYLON_WS_MAX_FRAME": "2048"])
        defer { host.stop() }
        let a = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "sender")
        let b = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "bystander")
        for ws in [a, b] { try await Self.ready(ws) }

        let small = String(repeating: "s", count: 1500)
        try a.sendText(#"{"type":"topic","topic":"small","data":"\#(small)"}"#)
        try await b.waitForJSON("the 1.5 KB topic frame") { $0["topic"].string == "small" }

        let big = String(repeating: "b", count: 4096)
        try a.sendText(#"{"type":"topic","topic":"big","data":"\#(big)"}"#)
        let close = try await a.waitForClose()
        if let close { #expect(close.code != 1000, "an oversized frame is an error close: \(a.summary)") }
        #expect(!b.jsonMessages.contains { $0["topic"].string == "big" }, "the oversized frame is not relayed: \(b.summary)")

        // Fragments under the limit that add up to a message over it.
        let c = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "fragmenting sender")
        try await Self.ready(c)
        let part = Array(String(repeating: "f", count: 1000).utf8)
        try c.sendFrame(opcode: 0x1, Array(#"{"type":"topic","topic":"fragmented","data":""#.utf8) + part, fin: false)
        try c.sendFrame(opcode: 0x0, part, fin: false)
        try c.sendFrame(opcode: 0x0, part + Array(#""}"#.utf8), fin: true)
        try await c.waitForClose()
        #expect(!b.jsonMessages.contains { $0["topic"].string == "fragmented" }, "\(b.summary)")

        // The host keeps serving: the bystander still gets events, new clients connect.
        let id = try await host.create("Item", #"{"title":"still here"}"#)
        try await b.waitForEvent(rowID: id)
        let d = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "newcomer")
        try await Self.ready(d)
        #expect(try await host.request("GET", "/health").status == 200)
        for ws in [b, d] { ws.disconnect() }
    }

    // MARK: - Shutdown

    @Test("SIGTERM ends open SSE streams and WebSockets and the host exits")
    func eventStreamDoesNotBlockShutdown() async throws {
        let host = try await Self.start()
        defer { host.kill9() }
        let s = try await TestEventStream.connect(port: host.port, path: "/api/sync/events?token=\(Self.admin)", label: "open stream")
        let ws = try await TestWebSocket.connect(port: host.port, token: Self.admin, label: "open ws")
        try await Self.ready(ws)
        try await s.waitForComment("connected")
        host.terminate()
        try await eventually("the host to exit after SIGTERM with an SSE stream and a WebSocket open (\(s.summary); \(ws.summary))", timeout: 20) {
            host.hasExited ? true : nil
        }
        try await s.waitForEnd()
        try await ws.waitForEnd()
    }
}

/// Like `eventually`, for an async probe.
@discardableResult
func eventuallyAsync<T>(_ what: @autoclosure () -> String, timeout: TimeInterval = 20,
                        _ probe: () async throws -> T?) async throws -> T {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if let v = try await probe() { return v }
        if Date() >= deadline { throw RealtimeTestError("timed out after \(Int(timeout)) s waiting for \(what())") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Random inserts, updates and deletes on `Item` until stopped (or `limit` writes), for
/// the crash test. Writes that fail (the host is gone) end that writer.
actor CrashWriter {
    let host: HostProcess
    private var ids: [String] = []
    private var stopped = false
    private(set) var committed = 0

    init(host: HostProcess) { self.host = host }

    func stop() { stopped = true }
    func resume() { stopped = false }
    private func pick() -> String? { ids.randomElement() }
    private func add(_ id: String) { ids.append(id); committed += 1 }
    private func remove(_ id: String) { ids.removeAll { $0 == id }; committed += 1 }
    private func count() { committed += 1 }

    nonisolated func run(writers: Int, limit: Int = .max) async {
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    var i = 0
                    while i < limit / writers, !(await self.stopped) {
                        i += 1
                        let roll = Int.random(in: 0..<100)
                        let target = await self.pick()
                        do {
                            if roll < 60 || target == nil {
                                let r = try await self.host.request("POST", "/api/entities/Item", json: #"{"title":"w\#(w)-\#(i)","n":\#(i)}"#,
                                                                    token: HostProcess.adminToken, timeout: 10)
                                guard r.status == 201, let id = r.json["id"].string else { return }
                                await self.add(id)
                            } else if let id = target {
                                if roll < 85 {
                                    let r = try await self.host.request("PATCH", "/api/entities/Item/\(id)", json: #"{"title":"u\#(w)-\#(i)","n":\#(-i)}"#,
                                                                        token: HostProcess.adminToken, timeout: 10)
                                    if r.status == 200 { await self.count() } else if r.status != 404 { return }
                                } else {
                                    let r = try await self.host.request("DELETE", "/api/entities/Item/\(id)", token: HostProcess.adminToken, timeout: 10)
                                    if r.status == 200 { await self.remove(id) } else if r.status != 404 { return }
                                }
                            }
                        } catch {
                            return
                        }
                    }
                }
            }
        }
    }
}
