import Foundation
import Testing

/// The four realtime streams one session can hold on a host with the compat ports: a
/// WebSocket on `/api/sync/ws` and on port+1, an SSE stream on `/api/sync/events` and on
/// port+2 — opened, proven live, and checked for the end a revoked session must bring.
struct SessionStreams {
    let label: String
    let sockets: [TestWebSocket]
    let events: [TestEventStream]

    static func open(_ host: HostProcess, token: String, label: String) async throws -> SessionStreams {
        let sockets = [
            try await TestWebSocket.connect(port: host.port, token: token, label: "\(label) WS /api/sync/ws"),
            try await TestWebSocket.connect(port: host.wsCompatPort, path: "/", token: token, label: "\(label) WS port+1"),
        ]
        let events = [
            try await TestEventStream.connect(port: host.port, token: token, label: "\(label) SSE /api/sync/events"),
            try await TestEventStream.connect(port: host.sseCompatPort, path: "/", token: token, label: "\(label) SSE port+2"),
        ]
        for s in events where s.status != 200 { throw RealtimeTestError("\(s.summary)") }
        for ws in sockets { try await live(ws) }
        try await RealtimeTests.warmUp(host, events)
        return SessionStreams(label: label, sockets: sockets, events: events)
    }

    /// Like `RealtimeTests.ready`, but sends a fresh topic frame every 2 s until one comes
    /// back: a frame read before the connection's sender went live is relayed to everyone
    /// but that connection, so the first one alone can be missed on a loaded machine.
    static func live(_ ws: TestWebSocket) async throws {
        for attempt in 1...15 {
            let nonce = UUID().uuidString
            try ws.sendText(#"{"type":"topic","topic":"ready","data":"\#(nonce)"}"#)
            do {
                try await ws.waitForJSON("its own ready relay \(nonce)", timeout: 2) { $0["type"].string == "topic" && $0["data"].string == nonce }
                return
            } catch where attempt < 15 {
                continue
            }
        }
    }

    /// Waits for every stream to end as a revoked session's must: WS close 1008 `session
    /// revoked`, SSE `event: session_ended` and the end of the body.
    func expectEnded(_ why: String) async throws {
        for ws in sockets {
            let close = try await ws.waitForClose()
            #expect(close?.code == 1008 && close?.reason == "session revoked", "\(why): \(ws.summary)")
        }
        for s in events {
            try await s.waitForEnd()
            let notice = s.events.first { $0.event == "session_ended" }
            #expect((notice?.json as Any?).errorCode == "SESSION_REVOKED", "\(why): \(s.summary)")
        }
    }

    /// Every stream is still open.
    func expectOpen(_ why: String) {
        for ws in sockets { #expect(ws.closeFrame == nil && ws.end == nil, "\(why): \(ws.summary)") }
        for s in events { #expect(s.ended == nil, "\(why): \(s.summary)") }
    }

    var changeCounts: [Int] { sockets.map(\.changeEventCount) + events.map(\.changeEventCount) }

    func close() {
        for ws in sockets { ws.disconnect() }
        for s in events { s.close() }
    }
}

extension HostProcess {
    /// Runs SQL on the host's database behind its back (psql for Postgres, sqlite3 for a
    /// SQLite file), as an operator would; returns what the tool printed.
    @discardableResult
    func sql(_ statement: String) async throws -> String {
        if let url = storeURL {
            return try await TestPostgres.shared().psql(statement, url: url)
        }
        guard let file = storeFile else { throw RealtimeTestError("no database to run SQL on for this store") }
        let r = try await TestCommand.run("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", file, statement])
        guard r.status == 0 else { throw RealtimeTestError("sqlite3 \(statement): \(r.stderr)") }
        return r.stdout
    }

    /// `GET /api/auth/me` with `token`: the user id it stands for (nil: anonymous).
    func me(_ token: String) async throws -> String? {
        let r = try await request("GET", "/api/auth/me", token: token)
        guard r.status == 200 else { throw RealtimeTestError("GET /api/auth/me → \(r.status) \(r.body)") }
        return r.json["user_id"].string
    }

    /// Inserts a row and waits until `witness` (a stream that stays open) saw it: after
    /// that, any stream that was still delivering would have had it too.
    func insertSeenBy(_ witness: TestWebSocket) async throws -> String {
        let id = try await create("Item", #"{"title":"after revocation"}"#)
        try await witness.waitForEvent(rowID: id)
        return id
    }
}
